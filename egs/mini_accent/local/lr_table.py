"""The adaptation learning rate's grid as a table: best dev loss (the checkpoint criterion, on dev_accent) of
every system at every learning rate found in the given exp dirs (each system's lr read from its config.yaml),
the lowest marked, and whether it lies at an edge of the grid measured for that system.

    python local/lr_table.py exp exp_lr*        # (local/lr_grid.sh prints it after each grid point)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from hdmole.train.systems import known_systems


def best_losses(exp_dirs: list[Path]) -> dict[str, dict[float, float]]:
    """{system: {lr: best dev loss}} of every trained first-seed system dir (``<exp>/<system>``) of ``exp_dirs``."""
    table: dict[str, dict[float, float]] = {}
    for exp in exp_dirs:
        for summary in sorted(exp.glob("*/train_summary.json")):
            config = yaml.safe_load((summary.parent / "config.yaml").read_text())
            done = json.loads(summary.read_text())
            if config.get("mode") != "adapt" or done.get("best") is None or "_seed" in summary.parent.name:
                continue
            lr = float(config["optim"]["lr"])
            table.setdefault(summary.parent.name, {})[lr] = float(done["best"])
    return table


def markdown(table: dict[str, dict[float, float]]) -> str:
    lrs = sorted({lr for row in table.values() for lr in row})
    lines = ["| system | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " | chosen | bracketed |",
             "|---|" + "---|" * (len(lrs) + 2)]
    order = known_systems("conf")
    rank = {system: i for i, system in enumerate(order)}
    for system, row in sorted(table.items(), key=lambda item: (rank.get(item[0], len(order)), item[0])):
        best = min(row, key=row.__getitem__)
        measured = sorted(row)
        # The optimum is bracketed when a smaller and a larger lr were both measured and both lost.
        bracketed = measured[0] < best < measured[-1]
        cells = [(f"**{row[lr]:.4f}**" if lr == best else f"{row[lr]:.4f}") if lr in row else "-" for lr in lrs]
        lines.append(f"| {system} | " + " | ".join(cells) + f" | {best:g} | {'yes' if bracketed else 'NO: extend'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("exp_dirs", nargs="+", type=Path, help="exp dirs of stage 5 runs (exp, exp_lr4e-3, ...)")
    args = parser.parse_args(argv)
    table = best_losses([d for d in args.exp_dirs if d.is_dir()])
    if not table:
        print(f"no trained adaptation systems in {' '.join(map(str, args.exp_dirs))}", file=sys.stderr)
        return 1
    print(markdown(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
