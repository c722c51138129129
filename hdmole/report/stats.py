"""Paired bootstrap confidence intervals for differences in CER between two systems.

The systems are decoded on the same test sets, so their errors are paired by utterance: each bootstrap
replicate resamples the utterances of every test set with replacement (the same draw for both systems),
recomputes each set's CER as total errors / total reference characters, averages over the sets asked
for (one set: that set's CER; the accent sets: the average accent CER of the table) and takes the
difference. The percentile interval of those differences is the 95% interval (Koehn 2004; Bisani and
Ney 2004, "Bootstrap estimates for confidence intervals in ASR performance evaluation"). An interval
that excludes 0 is a difference beyond the noise of these test sets (not of training seeds: that spread
is reported separately).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

UttErrors = dict[str, tuple[float, int]]  # utt id -> (errors, reference characters)


def read_utt_errors(path: Path) -> UttErrors:
    """``utt_errors`` as written by hdmole.bin.score: ``<utt> <errors> <ref_chars>`` per line."""
    out: UttErrors = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3:
            raise ValueError(f"{path}:{number}: expected '<utt> <errors> <ref_chars>', got {line!r}; "
                             "re-run hdmole.bin.score")
        out[fields[0]] = (float(fields[1]), int(fields[2]))
    return out


def mean_utt_errors(runs: list[UttErrors]) -> UttErrors:
    """Errors averaged over several runs of one system (seeds) on the same utterances."""
    utts = runs[0].keys()
    if any(run.keys() != utts for run in runs):
        raise ValueError("the runs to average were not decoded on the same utterances")
    return {u: (sum(run[u][0] for run in runs) / len(runs), runs[0][u][1]) for u in utts}


@dataclass
class Interval:
    difference: float  # on the full test sets, CER points (a - b)
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        return f"{self.difference:+.2f} [{self.low:+.2f}, {self.high:+.2f}]"


def paired_bootstrap(a: dict[str, UttErrors], b: dict[str, UttErrors], sets: list[str], replicates: int = 2000,
                     seed: int = 0, confidence: float = 0.95) -> Interval:
    """CER(a) - CER(b), averaged over ``sets`` (per-set CERs averaged), with its bootstrap interval.

    ``a`` and ``b``: per test set, the errors of each utterance; both systems must cover the same utterances.
    """
    rng = np.random.default_rng(seed)
    diffs = np.zeros(replicates)
    full = 0.0
    for name in sets:
        utts = sorted(a[name])
        if sorted(b[name]) != utts:
            raise ValueError(f"test set {name}: the two systems were not scored on the same utterances")
        err_a = np.array([a[name][u][0] for u in utts])
        err_b = np.array([b[name][u][0] for u in utts])
        ref = np.array([a[name][u][1] for u in utts], dtype=float)
        full += 100.0 * (err_a.sum() - err_b.sum()) / ref.sum()
        draw = rng.integers(0, len(utts), size=(replicates, len(utts)))
        ref_sum = ref[draw].sum(axis=1)
        diffs += 100.0 * (err_a[draw].sum(axis=1) - err_b[draw].sum(axis=1)) / np.maximum(ref_sum, 1.0)
    diffs /= len(sets)
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(diffs, [tail, 100.0 - tail])
    return Interval(full / len(sets), float(low), float(high))


__all__ = ["Interval", "UttErrors", "paired_bootstrap", "read_utt_errors", "mean_utt_errors"]
