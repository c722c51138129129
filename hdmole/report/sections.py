"""RESULTS.md sections beyond the CER table: the accent router, the differences the claims rest on (with
paired bootstrap intervals), how much of standard Mandarin is left exactly as the base model spells it,
which experts each domain uses, and the decoding speed. Each takes the files a recipe run leaves in its
exp dir and returns markdown ("" when the files are not there).
"""

from __future__ import annotations

import json
from pathlib import Path

from hdmole.report.stats import mean_utt_errors, paired_bootstrap, read_utt_errors
from hdmole.report.table import seed_dirs


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def router_section(router_dir: Path, sets: list[str], label=lambda s: s) -> str:
    """Accuracy and recall per domain of the global router on each set (``router_<set>.json`` of
    hdmole.bin.eval_router), and the confusion matrix of the last set."""
    found = [(s, json.loads((router_dir / f"router_{s}.json").read_text())) for s in sets
             if (router_dir / f"router_{s}.json").is_file()]
    if not found:
        return ""
    names = found[0][1]["accents"]
    lines = ["| set | utterances | accuracy | " + " | ".join(f"{n} recall" for n in names) + " |",
             "|---|---|---|" + "---|" * len(names)]
    for name, summary in found:
        lines.append(f"| {label(name)} | {summary['utterances']} | {_pct(summary['accuracy'])} | "
                     + " | ".join(_pct(summary["recall"][n]) for n in names) + " |")
    name, summary = found[-1]
    lines += ["", f"Confusion matrix on {label(name)} (rows: the true domain, columns: the router's choice):", "",
              "| true \\ routed | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for i, n in enumerate(names):
        lines.append(f"| {n} | " + " | ".join(str(c) for c in summary["confusion"][i]) + " |")
    return "\n".join(lines) + "\n"


def _errors(exp_root: Path, system: str, sets: list[str], decoding: str, seeds: int) -> dict | None:
    """Per test set, the per-utterance errors of a system (averaged over its seeds), or None if unscored."""
    dirs = seed_dirs(exp_root, system, seeds) if system != "base" else [exp_root / "base"]
    out = {}
    for test_set in sets:
        files = [d / f"{decoding}_{test_set}" / "utt_errors" for d in dirs]
        if not all(f.is_file() for f in files):
            return None
        out[test_set] = mean_utt_errors([read_utt_errors(f) for f in files])
    return out


def comparisons(systems: list[str]) -> list[tuple[str, str, str]]:
    """(system, reference, which CER) pairs: every system against full fine-tuning on the accents and against
    the base model on standard Mandarin; HDMoLE against the single LoRA and the static top-k mixtures."""
    pairs = []
    for s in systems:
        if s not in ("base", "full_ft") and "full_ft" in systems:
            pairs.append((s, "full_ft", "accent"))
    for s in systems:
        if s != "base":
            pairs.append((s, "base", "std"))
    for other in ("lora", "mole_top1", "mole_top2"):
        if "hdmole" in systems and other in systems:
            pairs.append(("hdmole", other, "accent"))
    return pairs


def interval_section(exp_root: Path, systems: list[str], std_set: str, accent_sets: list[str], decoding: str = "decode",
                     seeds: int = 1, replicates: int = 2000) -> str:
    errors = {s: _errors(exp_root, s, [std_set, *accent_sets], decoding, seeds) for s in systems}
    rows = []
    for system, reference, which in comparisons(systems):
        if errors.get(system) is None or errors.get(reference) is None:
            continue
        sets = accent_sets if which == "accent" else [std_set]
        interval = paired_bootstrap(errors[system], errors[reference], sets, replicates=replicates)
        verdict = "lower" if interval.high < 0 else "higher" if interval.low > 0 else "within noise"
        rows.append(f"| {system} − {reference} | {'avg accent' if which == 'accent' else std_set} | "
                    f"{interval.difference:+.2f} | [{interval.low:+.2f}, {interval.high:+.2f}] | {verdict} |")
    if not rows:
        return ""
    return "\n".join(["| difference | CER | points | 95% interval | |", "|---|---|---|---|---|", *rows]) + "\n"


def _texts(path: Path) -> dict[str, str] | None:
    if not path.is_file():
        return None
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        utt, _, text = line.partition(" ")
        out[utt] = text.strip()
    return out


def identical_to_base(exp_root: Path, systems: list[str], std_set: str, decoding: str = "decode") -> str:
    """Share of the standard test set's hypotheses that are exactly the base model's, per system (first seed)."""
    base = _texts(exp_root / "base" / f"{decoding}_{std_set}" / "text")
    if base is None:
        return ""
    rows = []
    for s in systems:
        hyps = _texts(exp_root / s / f"{decoding}_{std_set}" / "text")
        if s == "base" or hyps is None:
            continue
        same = sum(hyps.get(u) == h for u, h in base.items())
        rows.append(f"| {s} | {same} / {len(base)} | {100 * same / len(base):.1f}% |")
    if not rows:
        return ""
    return "\n".join([f"| system | {std_set} hypotheses identical to base | share |", "|---|---|---|", *rows]) + "\n"


def expert_domains(adapter_config: dict, num_domains: int) -> list[int]:
    """The domain owning each expert, as hdmole.nn lays them out (source domain, when set, owns none)."""
    source = adapter_config.get("source_domain")
    owners = [d for d in range(adapter_config.get("num_domains", num_domains)) if d != source]
    return [d for d in owners for _ in range(adapter_config.get("experts_per_domain", 1))]


def correspondence_section(exp_root: Path, systems: list[str], routing_set: str) -> str:
    """Per routed system and layer: the share of each domain's routing weight that its own experts carry
    (the expert-domain correspondence), and, with a source-preserving path, the update scale per domain."""
    lines = []
    for s in systems:
        stats_file = exp_root / s / f"routing_{routing_set}.json"
        summary_file = exp_root / s / "train_summary.json"
        if not stats_file.is_file() or not summary_file.is_file():
            continue
        config = json.loads(summary_file.read_text()).get("adapter_config") or {}
        stats = json.loads(stats_file.read_text())
        names = stats.pop("_accents", None)
        if not names or not config or config.get("routing") == "local":
            continue  # a local router learns no domain labels: its expert k belongs to no domain
        owners = expert_domains(config, len(names))
        for layer, entry in stats.items():
            cells = []
            for d, name in enumerate(names):
                cell = entry.get("by_domain", {}).get(name)
                if cell is None:
                    cells.append("–")
                    continue
                weights = cell["mean_weight_per_expert"]
                total = sum(weights)
                if d == config.get("source_domain"):
                    cells.append(f"scale {cell.get('mean_update_scale', 1.0):.2f}")
                    continue
                own = sum(w for w, o in zip(weights, owners) if o == d)
                cells.append(_pct(own / total) if total > 0 else "–")
            if not lines:
                lines = ["| system | layer | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
            lines.append(f"| {s} | {layer} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n" if lines else ""


def decoding_description(exp_root: Path, std_set: str, decoding: str) -> str:
    """How a decoding was made and its speed, from the base model's rtf file (hdmole.bin.decode)."""
    rtf_file = exp_root / "base" / f"{decoding}_{std_set}" / "rtf"
    if not rtf_file.is_file():
        return ""
    info = dict(line.split(" ", 1) for line in rtf_file.read_text().splitlines() if " " in line)
    beam = int(info.get("beam", "1"))
    search = "greedy search" if beam == 1 else f"beam search (beam {beam})"
    ngram = info.get("ngram", "none")
    lm = "no external LM" if ngram == "none" else f"shallow fusion of `{Path(ngram).name}` (weight {info.get('ngram_weight')})"
    rtf = float(info.get("rtf", "nan"))
    return f"{search}, {lm}; base model real-time factor {rtf:.4f} on {std_set} ({info.get('device', 'cpu')}, " \
           f"{info.get('threads_per_job', '?')} thread(s))"


__all__ = ["router_section", "interval_section", "identical_to_base", "correspondence_section",
           "decoding_description", "comparisons", "expert_domains"]
