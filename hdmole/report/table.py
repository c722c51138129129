"""The comparison table of docs/method.md section 6, gathered from scored experiment dirs.

An experiment dir ``<exp>/<system>/`` contributes ``train_summary.json`` (written by hdmole.bin.train)
and ``decode_<set>/cer.json`` (written by hdmole.bin.score) for each test set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class SystemRow:
    name: str
    cer: dict[str, float | None] = field(default_factory=dict)  # test set -> CER (%), mean over seeds
    trainable: int | None = None
    full_ft: int | None = None
    train_seconds: float | None = None
    note: str = ""
    seed_cers: list[dict[str, float | None]] = field(default_factory=list)  # one per seed (when several)
    # per seed: test set -> (errors, reference characters), for CERs pooled over several sets
    seed_counts: list[dict[str, tuple[int, int] | None]] = field(default_factory=list)

    def pooled_cer(self, sets: list[str]) -> float | None:
        """The CER of ``sets`` taken as one test set (their errors over their reference characters: a micro
        average, weighting each set by its size), the mean over seeds."""
        return _mean([pooled_cer(counts, sets) for counts in self.seed_counts] or [None])

    @property
    def percent_of_full_ft(self) -> float | None:
        if self.trainable is None or not self.full_ft:
            return None
        return 100.0 * self.trainable / self.full_ft


def seed_dirs(exp_root: Path, name: str, seeds: int) -> list[Path]:
    """The exp dirs of a system's seeds: ``<name>``, then ``<name>_seed<k>`` (the recipe template's layout)."""
    return [exp_root / name] + [exp_root / f"{name}_seed{k}" for k in range(2, seeds + 1)]


def load_row(exp_dir: Path, name: str, test_sets: list[str], decoding: str = "decode", seeds: int = 1) -> SystemRow:
    """A system's row from ``exp_dir`` (its first seed's dir); with ``seeds`` > 1 the CERs are the mean over
    ``<name>``, ``<name>_seed2``, ... (the base model has one). ``decoding``: the decode dirs' prefix."""
    row = SystemRow(name)
    summary_file = exp_dir / "train_summary.json"
    if summary_file.is_file():
        summary = json.loads(summary_file.read_text())
        if summary.get("mode") == "adapt":
            row.trainable = summary.get("trainable_params")
            row.full_ft = summary.get("full_ft_params")
            row.train_seconds = summary.get("train_seconds")
        else:
            row.note = f"no adaptation ({summary.get('mode')} stage)"
    dirs = seed_dirs(exp_dir.parent, exp_dir.name, seeds) if row.trainable is not None else [exp_dir]
    for run in dirs:
        cers, counts = {}, {}
        for test_set in test_sets:
            cer_file = run / f"{decoding}_{test_set}" / "cer.json"
            total = json.loads(cer_file.read_text())["total"] if cer_file.is_file() else None
            cers[test_set] = total["cer"] if total else None
            counts[test_set] = (total["errors"], total["ref_chars"]) if total else None
        row.seed_cers.append(cers)
        row.seed_counts.append(counts)
    for test_set in test_sets:
        row.cer[test_set] = _mean([c[test_set] for c in row.seed_cers])
    return row


def seed_sd(row: SystemRow, value) -> float | None:
    """Sample standard deviation over the seeds of ``value(cers)`` (None with one seed)."""
    values = [value(c) for c in row.seed_cers]
    if len(values) < 2 or any(v is None for v in values):
        return None
    mean = sum(values) / len(values)
    return (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5


def pooled_cer(counts: dict[str, tuple[int, int] | None], sets: list[str]) -> float | None:
    """CER (%) of ``sets`` as one set, from their ``(errors, reference characters)``; None when one is missing."""
    if any(counts.get(s) is None for s in sets):
        return None
    chars = sum(counts[s][1] for s in sets)
    return 100.0 * sum(counts[s][0] for s in sets) / chars if chars else None


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _mean(values: list[float | None]) -> float | None:
    if not values or any(v is None for v in values):
        return None
    return sum(values) / len(values)


def markdown_table(rows: list[SystemRow], accent_sets: list[str], std_set: str, label=lambda s: s,
                   micro: bool = False, pooled: list[tuple[str, list[str]]] = ()) -> str:
    """Rows = systems; columns = CER per accent, average accent CER, standard CER, trainable parameters
    (count and % of full fine-tuning of the adapted module), training time. With several seeds the average
    accent and standard CERs are the mean +- the standard deviation over seeds. ``micro``: the average accent
    CER both as the mean over the sets (macro) and over their pooled characters (micro); ``pooled``: more
    columns, each ``(name, sets)`` the CER of those sets pooled (e.g. a corpus' whole test set)."""
    extra = (["avg accent (micro)"] if micro else []) + [name for name, _ in pooled]
    header = ["system", *(label(s) for s in accent_sets), "avg accent (macro)" if micro else "avg accent", *extra,
              f"{label(std_set)} (source)", "trainable params", "% of full FT", "train time (s)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    full_ft = next((r.full_ft for r in rows if r.full_ft), None)
    for r in rows:
        percent = r.percent_of_full_ft
        if percent is None and r.trainable is not None and full_ft:
            percent = 100.0 * r.trainable / full_ft
        avg_sd = seed_sd(r, lambda c: _mean([c.get(s) for s in accent_sets]))
        std_sd = seed_sd(r, lambda c: c.get(std_set))
        cells = [r.name, *(_fmt(r.cer.get(s)) for s in accent_sets),
                 _fmt(_mean([r.cer.get(s) for s in accent_sets])) + (f" ± {avg_sd:.2f}" if avg_sd is not None else ""),
                 *([_fmt(r.pooled_cer(accent_sets))] if micro else []),
                 *(_fmt(r.pooled_cer(sets)) for _, sets in pooled),
                 _fmt(r.cer.get(std_set)) + (f" ± {std_sd:.2f}" if std_sd is not None else ""),
                 f"{r.trainable:,}" if r.trainable is not None else "0",
                 _fmt(percent, 1) if percent is not None else "–",
                 _fmt(r.train_seconds, 0)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def average_accent_cer(row: SystemRow, accent_sets: list[str]) -> float | None:
    return _mean([row.cer.get(s) for s in accent_sets])
