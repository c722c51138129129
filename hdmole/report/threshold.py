"""The threshold's operating curve in RESULTS.md: for each trained system with a dynamic threshold, the dev
loss with tau forced to a grid of values (hdmole.bin.threshold_curve writes ``threshold_curve.json`` into
its exp dir), and whether the learned tau of each layer lies where the curve is within 1% of its best.
"""

from __future__ import annotations

import json
from pathlib import Path

# How close to the best point of the curve the learned tau must be to count as well placed (relative loss).
TOLERANCE = 0.01


def layer_verdict(curve: dict, layer: str, tolerance: float = TOLERANCE) -> dict:
    """For one layer's curve (that layer forced, the others learned): the best point (the grid and the
    learned tau together), the grid taus within ``tolerance`` of it, and whether the learned tau is."""
    learned = curve["learned"]["loss"]
    points = [(p["tau"], p["loss"]) for p in curve["per_layer"][layer]]
    best_tau, best = min(points + [(None, learned)], key=lambda p: p[1])
    bound = best * (1.0 + tolerance) if best >= 0 else best * (1.0 - tolerance)
    return {"best_tau": best_tau, "best_loss": best, "learned_loss": learned,
            "within": [tau for tau, loss in points if loss <= bound], "learned_within": learned <= bound}


def _taus(values) -> str:
    values = values if isinstance(values, list) else [values]
    return ", ".join(f"{v:.3f}" for v in values)


def _ranges(taus: list[float], grid: list[float]) -> str:
    """Grid points as runs of neighbours: '0.10-0.25, 0.40'."""
    if not taus:
        return "none"
    runs, run = [], [taus[0]]
    for tau in taus[1:]:
        if grid.index(tau) == grid.index(run[-1]) + 1:
            run.append(tau)
        else:
            runs.append(run)
            run = [tau]
    runs.append(run)
    return ", ".join(f"{r[0]:.2f}" if len(r) == 1 else f"{r[0]:.2f}-{r[-1]:.2f}" for r in runs)


def threshold_curve_section(exp_root: Path, systems: list[str]) -> tuple[str, dict[str, dict]]:
    """The table of every system with a ``threshold_curve.json`` (markdown, "" when none) and the curves
    (for the plots)."""
    curves = {s: json.loads((exp_root / s / "threshold_curve.json").read_text()) for s in systems
              if (exp_root / s / "threshold_curve.json").is_file()}
    if not curves:
        return "", {}
    lines = ["| system | layer | learned tau | active experts (learned) | dev loss (learned) | best tau | best dev loss | "
             f"taus within {100 * TOLERANCE:g}% of best | learned within {100 * TOLERANCE:g}% |",
             "|---|---|---|---|---|---|---|---|---|"]
    for system, curve in curves.items():
        for layer in curve["layers"]:
            verdict = layer_verdict(curve, layer)
            best = "learned" if verdict["best_tau"] is None else f"{verdict['best_tau']:.2f}"
            lines.append(f"| {system} | {layer} | {_taus(curve['learned']['thresholds'][layer])} | "
                         f"{curve['learned']['mean_active_experts'][layer]:.2f} | {verdict['learned_loss']:.4f} | {best} | "
                         f"{verdict['best_loss']:.4f} | {_ranges(verdict['within'], curve['taus'])} | "
                         f"{'yes' if verdict['learned_within'] else '**no**'} |")
    return "\n".join(lines) + "\n", curves


__all__ = ["TOLERANCE", "layer_verdict", "threshold_curve_section"]
