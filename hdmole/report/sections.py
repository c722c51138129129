"""RESULTS.md sections beyond the CER table: the accent router, the differences the claims rest on (with
seed-inclusive bootstrap intervals), how much of standard Mandarin is left exactly as the base model spells it,
which experts each domain uses, and the decoding speed. Each takes the files a recipe run leaves in its
exp dir and returns markdown ("" when the files are not there).
"""

from __future__ import annotations

import json
from pathlib import Path

from hdmole.data.table import read_kaldi_table
from hdmole.report.stats import bootstrap_difference, read_utt_errors, sentence_id
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
    speaker = [(s, summary["speaker_level"]) for s, summary in found if summary.get("speaker_level")]
    if speaker:  # eval_router's speaker-level routing (hdmole.models.speaker_routing): all, and the online case
        keys = list(speaker[0][1])
        lines += ["", "Speaker-level routing (the log-posteriors of a speaker's utterances summed; *first k*: only "
                  "the speaker's first k utterances, the online case): accuracy over the utterances, and speakers "
                  "whose every utterance is routed right.", "",
                  "| set | " + " | ".join("all" if k == "all" else k.replace("_", " ") for k in keys) + " |",
                  "|---|" + "---|" * len(keys)]
        for name, levels in speaker:
            lines.append(f"| {label(name)} | " + " | ".join(
                f"{_pct(levels[k]['utterance_accuracy'])} ({levels[k]['speakers_correct']}/{levels[k]['speakers']})"
                for k in keys) + " |")
    name, summary = found[-1]
    lines += ["", f"Confusion matrix on {label(name)} (rows: the true domain, columns: the router's choice):", "",
              "| true \\ routed | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for i, n in enumerate(names):
        lines.append(f"| {n} | " + " | ".join(str(c) for c in summary["confusion"][i]) + " |")
    return "\n".join(lines) + "\n"


def _errors(exp_root: Path, system: str, sets: list[str], decoding: str, seeds: int) -> dict | None:
    """Per test set, the per-utterance errors of each seed of a system (the base model: one), or None if unscored."""
    dirs = seed_dirs(exp_root, system, seeds) if system != "base" else [exp_root / "base"]
    out = {}
    for test_set in sets:
        files = [d / f"{decoding}_{test_set}" / "utt_errors" for d in dirs]
        if not all(f.is_file() for f in files):
            return None
        out[test_set] = [read_utt_errors(f) for f in files]
    return out


# HDMoLE against the rows that attribute its gain: a single LoRA, static top-2 MoLE (neither router nor source
# path), hierarchical + dense gating, hierarchical static top-2 (the threshold's share) and the accent-label
# baseline through the same router (the local routers' and mixture's share beyond the router).
HDMOLE_REFERENCES = ("lora", "mole_top2", "hdmole_dense", "hdmole_no_threshold", "hdmole_global_only")
# (system, reference) pairs compared on both the accent average and the standard set.
BOTH_SETS_PAIRS = (*(("hdmole", r) for r in HDMOLE_REFERENCES), ("hdmole_spk", "hdmole_oracle"))


def comparisons(systems: list[str]) -> list[tuple[str, str, str]]:
    """(system, reference, "accent" | "std") pairs, of systems present only: every system against full
    fine-tuning on the accent average and against the base model on the standard set; then HDMoLE against
    the rows of HDMOLE_REFERENCES and speaker-level routing against the oracle, on both."""
    pairs = [(s, "full_ft", "accent") for s in systems if s not in ("base", "full_ft") and "full_ft" in systems]
    pairs += [(s, "base", "std") for s in systems if s != "base" and "base" in systems]
    for system, reference in BOTH_SETS_PAIRS:
        if system in systems and reference in systems:
            pairs += [(system, reference, "accent"), (system, reference, "std")]
    return pairs


def read_test_speakers(data_dir: Path | None, sets: list[str], required: bool = False) -> dict[str, dict[str, str]]:
    """Per set, ``<data_dir>/<set>/utt2spk`` (utterance -> speaker), read as every Kaldi table of the project
    (hdmole.data.table: errors name the file and line; order is not needed here). A set without the file is
    left out, or refused when ``required``."""
    speakers: dict[str, dict[str, str]] = {}
    for name in sets:
        path = data_dir / name / "utt2spk" if data_dir is not None else None
        if path is not None and path.is_file():
            speakers[name] = read_kaldi_table(path, require_sorted=False, value_name="speaker").entries
        elif required:
            raise ValueError(f"resampling speakers needs {path or f'<data-dir>/{name}/utt2spk'} (Kaldi data dir: "
                             "'<utt> <speaker>' per line): pass --data-dir with the test sets' data dirs, or leave "
                             "out --resample-speakers")
    return speakers


def sentence_items(speakers: dict[str, dict[str, str]]):
    """``item_of(set, utt)`` for the bootstrap: the sentence id, after the utterance's speaker id when
    ``speakers`` (read_test_speakers) has it, else the last '-' field of the utterance id."""
    return lambda test_set, utt: sentence_id(utt, speakers.get(test_set, {}).get(utt) or None)


def speakers_of(speakers: dict[str, dict[str, str]], data_dir: Path | None):
    """``speaker_of(set, utt)`` for the bootstrap, from ``speakers`` (read_test_speakers of ``data_dir``, every set
    present); a scored utterance without a speaker is refused."""
    def speaker_of(test_set: str, utt: str) -> str:
        if utt not in speakers[test_set]:
            raise ValueError(f"{data_dir / test_set / 'utt2spk'}: no line for the scored utterance {utt!r}; the "
                             "decodings and the data dir disagree (re-run the decoding stage on this data dir)")
        return speakers[test_set][utt]
    return speaker_of


def interval_section(exp_root: Path, systems: list[str], std_set: str, accent_sets: list[str], decoding: str = "decode",
                     seeds: int = 1, replicates: int = 2000, confidence: float = 0.95,
                     data_dir: Path | None = None, resample_speakers: bool = False) -> str:
    """The differences of ``comparisons`` with two-level bootstrap intervals at ``confidence`` (hdmole.report.stats):
    a paragraph that says how they were made, and the table; "" when no pair is scored. With
    ``resample_speakers``, a second interval column also resamples each set's speakers (utt2spk of ``data_dir``),
    and the verdict follows that one."""
    errors = {s: _errors(exp_root, s, [std_set, *accent_sets], decoding, seeds) for s in systems}
    speakers = read_test_speakers(data_dir, [std_set, *accent_sets], required=resample_speakers)
    item_of = sentence_items(speakers)
    speaker_of = speakers_of(speakers, data_dir) if resample_speakers else None
    level = f"{100 * confidence:g}%"
    rows, paired = [], set()
    for system, reference, which in comparisons(systems):
        if errors.get(system) is None or errors.get(reference) is None:
            continue
        sets = accent_sets if which == "accent" else [std_set]
        interval = bootstrap_difference(errors[system], errors[reference], sets, item_of, replicates=replicates,
                                        confidence=confidence)
        paired.update(tuple(g) for g in interval.paired)
        cells = f"[{interval.low:+.2f}, {interval.high:+.2f}] |"
        if speaker_of is not None:
            interval = bootstrap_difference(errors[system], errors[reference], sets, item_of, replicates=replicates,
                                            confidence=confidence, speaker_of=speaker_of)
            cells += f" [{interval.low:+.2f}, {interval.high:+.2f}] |"
        verdict = "lower" if interval.high < 0 else "higher" if interval.low > 0 else "within noise"
        rows.append(f"| {system} − {reference} | {'avg accent' if which == 'accent' else std_set} | "
                    f"{interval.difference:+.2f} | {cells} {verdict} |")
    if not rows:
        return ""
    joint = "; ".join(", ".join(g) for g in sorted(paired))
    text = (f"Differences in CER points (system minus reference, each averaged over its seeds) with {level} two-level "
            f"paired bootstrap intervals ({replicates} replicates; hdmole.report.stats): each replicate resamples the "
            f"seeds of each system{' (' + str(seeds) + ' per system, the base model 1)' if seeds > 1 else ''} and the "
            "sentences of each test set, with replacement, and averages the per-set CERs over the sets compared (for "
            "*avg accent* the accent sets, each weighted equally whatever its size; never the source set). "
            + (f"Test sets that read the same sentences are resampled jointly (one draw of sentence ids for all): "
               f"{joint}. " if joint else "The test sets share no sentences: each is resampled on its own. "))
    if speaker_of is None:
        text += ("**Speakers are not resampled**: the intervals cover the sentences and the training seeds of these "
                 "test speakers, not other speakers. *lower* / *higher* when the interval excludes 0.\n")
        header = f"| difference | CER | points | {level} interval | |\n|---|---|---|---|---|"
    else:
        many = ", ".join(str(c) for c in sorted({len(set(speakers[n].values())) for n in speakers}))
        text += ("The second interval resamples the speakers too: each replicate also draws each set's speakers "
                 f"({many} per set) with replacement, crossed with the sentences (an utterance counts as often as its "
                 "sentence times its speaker was drawn; Owen's pigeonhole bootstrap), so it covers other speakers of "
                 "these voices as well. *lower* / *higher* when that interval excludes 0.\n")
        header = (f"| difference | CER | points | {level} interval, sentences + seeds | "
                  f"{level} interval, + speakers | |\n|---|---|---|---|---|---|")
    return "\n".join([text, header, *rows]) + "\n"


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


def _routing_files(exp_root: Path, system: str, routing_set: str) -> tuple[dict, dict] | None:
    """(adapter config of train_summary.json, routing_<set>.json of hdmole.bin.routing_stats) of a system, or None."""
    stats_file = exp_root / system / f"routing_{routing_set}.json"
    summary_file = exp_root / system / "train_summary.json"
    if not stats_file.is_file() or not summary_file.is_file():
        return None
    config = json.loads(summary_file.read_text()).get("adapter_config") or {}
    return config, json.loads(stats_file.read_text())


def correspondence_section(exp_root: Path, systems: list[str], routing_set: str) -> str:
    """Per routed system and layer: the share of each domain's routing weight that its own experts carry
    (the expert-domain correspondence), and, with a source-preserving path, the update scale per domain."""
    lines = []
    for s in systems:
        found = _routing_files(exp_root, s, routing_set)
        if found is None:
            continue
        config, stats = found
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


def active_experts_section(exp_root: Path, systems: list[str], routing_set: str) -> str:
    """Per system with a dynamic threshold and per adapted layer: the threshold and the mean number of active
    experts per token, over all tokens and per domain (``routing_<set>.json`` of hdmole.bin.routing_stats)."""
    lines: list[str] = []
    for s in systems:
        found = _routing_files(exp_root, s, routing_set)
        if found is None or found[0].get("gating", "threshold") != "threshold":
            continue
        stats = found[1]
        names = stats.pop("_accents", None) or []
        for layer, entry in stats.items():
            if entry.get("threshold") is None:
                continue  # a plain LoRA layer, or no threshold
            if not lines:
                lines = ["| system | layer | experts | tau | all | " + " | ".join(names) + " |",
                         "|---|---|---|---|---|" + "---|" * len(names)]
            tau = entry["threshold"]
            taus = ", ".join(f"{t:.3f}" for t in tau) if isinstance(tau, list) else f"{tau:.3f}"
            by_domain = entry.get("by_domain", {})
            cells = [f"{by_domain[n]['mean_active_experts']:.2f}" if n in by_domain else "–" for n in names]
            lines.append(f"| {s} | {layer} | {len(entry['mean_weight_per_expert'])} | {taus} | "
                         f"{entry['mean_active_experts']:.2f} | " + " | ".join(cells) + " |")
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


__all__ = ["active_experts_section", "router_section", "interval_section", "identical_to_base", "correspondence_section",
           "decoding_description", "comparisons", "expert_domains", "read_test_speakers", "sentence_items",
           "speakers_of"]


# The enrolment sizes stage 6 decodes a speaker-routed system with (the online case, docs/method.md section 3.7).
ONLINE_FIRST_K = (1, 3, 10)


def online_speaker_section(exp_root: Path, systems: list[str], std_set: str, accent_sets: list[str]) -> str:
    """CERs of each speaker-routed system decoded with only its speakers' first k utterances pooled
    (``decode_first<k>_<set>``, first seed), next to all of them (``decode_<set>``)."""
    from hdmole.report.table import read_cer

    rows = []
    for system in systems:
        variants = [("all", "decode")] + [(f"first {k}", f"decode_first{k}") for k in ONLINE_FIRST_K]
        if not (exp_root / system / f"decode_first{ONLINE_FIRST_K[0]}_{std_set}").is_dir():
            continue
        for name, prefix in variants:
            cers = [read_cer(exp_root / system / f"{prefix}_{s}") for s in accent_sets + [std_set]]
            if any(c is None for c in cers):
                continue
            accent = sum(cers[:-1]) / len(accent_sets)
            rows.append(f"| {system} | {name} | {accent:.2f} | {cers[-1]:.2f} |")
    if not rows:
        return ""
    return "\n".join(["| system | speaker evidence | avg accent | std (source) |", "|---|---|---|---|", *rows]) + "\n"


def source_gate_points(exp_root: Path, gates: list[str], std_set: str, accent_sets: list[str]) -> list[dict]:
    """One point per gate of the grid that stage 5 trained (``<exp>/gate/g<gate>``, beam search decoding): its avg
    accent CER, its source CER minus the base model's, its dev loss and whether it is the dev-chosen one
    (``<exp>/gate/chosen.json`` of hdmole.bin.choose_source_gate)."""
    from hdmole.report.table import read_cer

    chosen_file = exp_root / "gate" / "chosen.json"
    chosen = json.loads(chosen_file.read_text()) if chosen_file.is_file() else {}
    base = read_cer(exp_root / "base" / f"decode_{std_set}")
    points = []
    for gate in gates:
        cers = [read_cer(exp_root / "gate" / f"g{gate}" / f"decode_{s}") for s in accent_sets + [std_set]]
        if base is None or any(c is None for c in cers):
            continue
        points.append({"gate": gate, "accent": sum(cers[:-1]) / len(accent_sets), "std_change": cers[-1] - base,
                       "dev_loss": chosen.get("dev_loss", {}).get(gate), "chosen": gate == chosen.get("gate")})
    return points


def source_gate_table(points: list[dict]) -> str:
    if not points:
        return ""
    rows = [f"| {p['gate']}{' (chosen on dev)' if p['chosen'] else ''} | "
            f"{'–' if p['dev_loss'] is None else format(p['dev_loss'], '.4f')} | {p['std_change']:+.2f} | {p['accent']:.2f} |"
            for p in points]
    return "\n".join(["| gate (bias, or hard) | dev loss | std (source) minus base | avg accent |",
                      "|---|---|---|---|", *rows]) + "\n"
