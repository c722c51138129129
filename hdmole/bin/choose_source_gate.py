"""Choose HDMoLE's source gate on the dev set (recipe stage 5; docs/method.md section 3.5).

    python -m hdmole.bin.choose_source_gate --exp-dir exp/gate 0 1 2 hard

Each gate of the grid was trained in ``<exp-dir>/g<gate>`` (``<gate>``: a source_gate_bias value, or ``hard`` for
the hard source decision with bias 0); the one with the lowest best dev loss (the adaptation's validation on the
target dev set, which holds the source domain too) is chosen. Writes ``<exp-dir>/chosen.json`` (the gate, its
adapter settings, every gate's dev loss) and prints the training overrides that apply it to every system, one per
line, for the recipe: ``adapter_defaults.mixture.source_gate_bias=B`` and ``...source_gate_hard=H``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

log = logging.getLogger("hdmole.choose_source_gate")


def gate_settings(gate: str) -> dict:
    """{source_gate_bias, source_gate_hard} of a grid entry: a number, or 'hard'."""
    if gate == "hard":
        return {"source_gate_bias": 0.0, "source_gate_hard": True}
    try:
        return {"source_gate_bias": float(gate), "source_gate_hard": False}
    except ValueError:
        raise ValueError(f"source gate {gate!r} is neither a number (a bias) nor 'hard'; fix --source-gates") from None


def gate_overrides(gate: str) -> list[str]:
    return [f"adapter_defaults.mixture.{key}={str(value).lower()}" for key, value in gate_settings(gate).items()]


def choose(exp_dir: Path, gates: list[str]) -> dict:
    losses = {}
    for gate in gates:
        gate_settings(gate)
        summary = exp_dir / f"g{gate}" / "train_summary.json"
        if not summary.is_file():
            raise ValueError(f"{summary} is missing: the gate {gate!r} was not trained (recipe stage 5)")
        best = json.loads(summary.read_text()).get("best")
        if best is None:
            raise ValueError(f"{summary} has no best dev loss: train the gate with a dev set (data.dev)")
        losses[gate] = float(best)
    chosen = min(gates, key=losses.__getitem__)  # the first of equal losses: the grid's order breaks ties
    return {"gate": chosen, **gate_settings(chosen), "dev_loss": losses}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hdmole.bin.choose_source_gate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", type=Path, help="the dir holding g<gate>/ for every gate")
    p.add_argument("gates", nargs="*", help="the grid: source_gate_bias values, or 'hard'")
    p.add_argument("--overrides-for", metavar="GATE", help="only print the training overrides of GATE")
    p.add_argument("--verbose", action="store_true", help="on an error, print its traceback too")
    args = p.parse_args(argv)
    from hdmole.files import atomic_write_text
    from hdmole.logs import log_failure, setup_stage_logging

    setup_stage_logging(None, verbose=args.verbose)
    if args.overrides_for is None and (args.exp_dir is None or not args.gates):
        p.error("give --exp-dir and the grid of gates (or --overrides-for GATE)")
    try:
        if args.overrides_for is not None:
            print("\n".join(gate_overrides(args.overrides_for)))
            return 0
        result = choose(args.exp_dir, args.gates)
    except (ValueError, OSError) as error:
        log_failure(log, error)
        return 1
    atomic_write_text(args.exp_dir / "chosen.json", json.dumps(result, indent=1) + "\n")
    log.info("source gate chosen on dev: %s (dev loss %s)", result["gate"],
             ", ".join(f"{g}: {v:.4f}" for g, v in result["dev_loss"].items()))
    print("\n".join(gate_overrides(result["gate"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
