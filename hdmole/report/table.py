"""The comparison table of docs/method.md section 6, gathered from scored experiment dirs.

An experiment dir ``<exp>/<system>/`` contributes ``train_summary.json`` (written by hdmole.bin.train)
and ``decode_<set>/cer.json`` (written by hdmole.bin.score) for each test set.

Parameters are counted as everything a system learns in any stage: its adaptation (stage 5) and, when it
routes by the global router (routing hierarchical or global, not the oracle), the router learned in router
pre-training (stage 4, with the accent labels), read from the router exp dir's ``train_summary.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from hdmole.nn import HDMoLEConfig


@dataclass
class SystemRow:
    name: str
    cer: dict[str, float | None] = field(default_factory=dict)  # test set -> CER (%), mean over seeds
    trainable: int | None = None  # learned in the adaptation (stage 5)
    router: int | None = 0  # learned in router pre-training and used by this system; None: used, size unknown
    router_retrained: int = 0  # of those, retrained in stage 5 (already in ``trainable``)
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
    def learned(self) -> int | None:
        """Every parameter the system learns, in any stage (the router counted once)."""
        if self.trainable is None or self.router is None:
            return None
        return self.trainable + self.router - self.router_retrained


def seed_dirs(exp_root: Path, name: str, seeds: int) -> list[Path]:
    """The exp dirs of a system's seeds: ``<name>``, then ``<name>_seed<k>`` (the recipe template's layout)."""
    return [exp_root / name] + [exp_root / f"{name}_seed{k}" for k in range(2, seeds + 1)]


def router_size(router_dir: Path) -> int | None:
    """Parameters learned in router pre-training (``trainable_params`` of its train_summary.json), or None."""
    summary_file = router_dir / "train_summary.json"
    if not summary_file.is_file():
        return None
    return json.loads(summary_file.read_text()).get("trainable_params")


def uses_stage4_router(summary: dict, exp_dir: Path) -> bool:
    """Whether an adapted system routes by the router of router pre-training: ``uses_stage4_router`` of its
    summary, or for summaries written before it, from its adapter config and its config.yaml (oracle_routing)."""
    if "uses_stage4_router" in summary:
        return bool(summary["uses_stage4_router"])
    adapter = summary.get("adapter_config")
    if not adapter or not HDMoLEConfig.from_dict(adapter, source=str(exp_dir / 'train_summary.json')).uses_global_posterior:
        return False
    config_file = exp_dir / "config.yaml"
    config = yaml.safe_load(config_file.read_text()) if config_file.is_file() else {}
    return not ((config or {}).get("model") or {}).get("oracle_routing", False)


def load_row(exp_dir: Path, name: str, test_sets: list[str], decoding: str = "decode", seeds: int = 1,
             router_params: int | None = None) -> SystemRow:
    """A system's row from ``exp_dir`` (its first seed's dir); with ``seeds`` > 1 the CERs are the mean over
    ``<name>``, ``<name>_seed2``, ... (the base model has one). ``decoding``: the decode dirs' prefix.
    ``router_params``: the size of the stage-4 router (router_size), added when the system routes by it."""
    row = SystemRow(name)
    summary_file = exp_dir / "train_summary.json"
    if summary_file.is_file():
        summary = json.loads(summary_file.read_text())
        if summary.get("mode") == "adapt":
            row.trainable = summary.get("trainable_params")
            row.full_ft = summary.get("full_ft_params")
            row.train_seconds = summary.get("train_seconds")
            if uses_stage4_router(summary, exp_dir):
                row.router = router_params
                row.router_retrained = summary.get("router_params_retrained", 0)
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


def read_cer(decode_dir: Path) -> float | None:
    """The total CER (%) that hdmole.bin.score wrote into ``decode_dir/cer.json``, or None if unscored."""
    cer_file = decode_dir / "cer.json"
    return json.loads(cer_file.read_text())["total"]["cer"] if cer_file.is_file() else None


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


def _count(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def markdown_table(rows: list[SystemRow], accent_sets: list[str], std_set: str, label=lambda s: s,
                   micro: bool = False, pooled: list[tuple[str, list[str]]] = ()) -> str:
    """Rows = systems; columns = CER per accent, average accent CER, standard CER, the parameters learned in
    the adaptation (stage 5), those of the stage-4 router the system routes by, their total (the router
    counted once) and that total as % of full fine-tuning of the adapted module, training time. With several
    seeds the average accent and standard CERs are the mean +- the standard deviation over seeds. ``micro``: the
    average accent CER both as the mean over the sets (macro) and over their pooled characters (micro);
    ``pooled``: more columns, each ``(name, sets)`` the CER of those sets pooled (e.g. a corpus' whole test set)."""
    extra = (["avg accent (micro)"] if micro else []) + [name for name, _ in pooled]
    header = ["system", *(label(s) for s in accent_sets), "avg accent (macro)" if micro else "avg accent", *extra,
              f"{label(std_set)} (source)", "stage-5 params", "router params", "total learned", "% of full FT (total)",
              "train time (s)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    full_ft = next((r.full_ft for r in rows if r.full_ft), None)
    for r in rows:
        learned = r.learned
        size = r.full_ft or full_ft
        percent = 100.0 * learned / size if learned is not None and size else None
        avg_sd = seed_sd(r, lambda c: _mean([c.get(s) for s in accent_sets]))
        std_sd = seed_sd(r, lambda c: c.get(std_set))
        adapted = r.trainable is not None
        cells = [r.name, *(_fmt(r.cer.get(s)) for s in accent_sets),
                 _fmt(_mean([r.cer.get(s) for s in accent_sets])) + (f" ± {avg_sd:.2f}" if avg_sd is not None else ""),
                 *([_fmt(r.pooled_cer(accent_sets))] if micro else []),
                 *(_fmt(r.pooled_cer(sets)) for _, sets in pooled),
                 _fmt(r.cer.get(std_set)) + (f" ± {std_sd:.2f}" if std_sd is not None else ""),
                 _count(r.trainable) if adapted else "0", _count(r.router) if adapted else "0",
                 _count(learned) if adapted else "0",
                 _fmt(percent, 1) if percent is not None else "–",
                 _fmt(r.train_seconds, 0)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def average_accent_cer(row: SystemRow, accent_sets: list[str]) -> float | None:
    return _mean([row.cer.get(s) for s in accent_sets])
