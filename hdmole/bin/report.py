"""Gather every scored system into RESULTS.md (the comparison table) and draw the report's plots.

    python -m hdmole.bin.report --exp-dir exp --systems base full_ft lora hdmole \\
        --std-set test_std --accent-sets test_Southwestern test_JiangHuai --out RESULTS.md

For each system ``<exp-dir>/<system>/`` is read: ``train_summary.json`` (trainable parameters, the
size of full fine-tuning of the adapted module, training time), ``decode_<set>/cer.json`` (CER per
test set, from hdmole.bin.score), ``routing_<set>.json`` (from hdmole.bin.routing_stats) and
``train_log.jsonl``. PNGs go next to the output file (``--plots-dir`` to change).

The header says where the results came from (hdmole.report.provenance): the git commit of the code and
whether it had uncommitted changes, the machine, the recipe commands, and the config files of every
trained exp dir (from its ``train_summary.json``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
from pathlib import Path


def _run_commands(path: Path | None) -> list[str]:
    if path is None or not path.is_file():
        return []
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return ["Made by (date, time, command, in the recipe directory):\n", "```\n" + "\n".join(lines) + "\n```\n"]


def stage_times_table(path: Path) -> str:
    """``stage_times.tsv``: ``stage<TAB>name<TAB>seconds`` lines written by the recipe's run.sh."""
    if not path.is_file():
        return ""
    rows = [line.split("\t") for line in path.read_text().splitlines() if line.strip()]
    lines = ["| stage | what | wall time |", "|---|---|---|"]
    total = 0.0
    for stage, name, seconds in rows:
        total += float(seconds)
        lines.append(f"| {stage} | {name} | {float(seconds) / 60:.1f} min |")
    lines.append(f"| | total | {total / 60:.1f} min |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hdmole.bin.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp-dir", required=True, type=Path)
    parser.add_argument("--systems", nargs="+", required=True, help="system dirs under --exp-dir, in table order")
    parser.add_argument("--std-set", required=True, help="the source-domain (standard) test set")
    parser.add_argument("--accent-sets", nargs="+", required=True, help="the target-domain (accent) test sets")
    parser.add_argument("--out", required=True, type=Path, help="the markdown file to write (RESULTS.md)")
    parser.add_argument("--plots-dir", type=Path, help="where the PNGs go (default: next to --out)")
    parser.add_argument("--routing-set", default=None, help="the set whose routing_<set>.json feeds the heatmaps")
    parser.add_argument("--stage-times", type=Path, help="stage_times.tsv of the recipe run")
    parser.add_argument("--title", default="Results")
    parser.add_argument("--notes", type=Path, help="a markdown file appended under the table")
    parser.add_argument("--run-commands", type=Path,
                        help="the recipe invocations that made these results (one a line, e.g. exp/run_commands.txt)")
    parser.add_argument("--decodings", nargs="+", default=["decode"],
                        help="decode dir prefixes, one table each (decode: the recipe's decoding; decode_llm: the LLM "
                             "alone when the recipe fuses an external LM)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per system (<system>, <system>_seed2, ...)")
    parser.add_argument("--router-dir", type=Path, help="the router stage's exp dir (router_<set>.json)")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap replicates of the intervals")
    parser.add_argument("--confidence", type=float, default=0.95, help="coverage of the intervals (default 0.95)")
    parser.add_argument("--resample-speakers", action="store_true",
                        help="a second interval per difference that also resamples each test set's speakers "
                             "(<data-dir>/<set>/utt2spk), crossed with the sentences; the verdict follows it")
    parser.add_argument("--source-gates", nargs="+", default=[],
                        help="the source gate's grid trained in stage 5 (<exp>/gate/g<gate>): its operating curve")
    parser.add_argument("--data-dir", type=Path,
                        help="the data dirs of the test sets (<data-dir>/<set>/utt2spk: the sentence id of an "
                             "utterance follows its speaker id; without it, the last '-' field of the id)")
    parser.add_argument("--micro-average", action="store_true",
                        help="also the accent CER pooled over the accent sets' characters (micro), beside their mean")
    parser.add_argument("--pooled", action="append", default=[], metavar="NAME=SET,SET,...",
                        help="a column with the CER of these scored test sets pooled as one (e.g. a corpus' whole test "
                             "set: 'KeSpeech test=test_Mandarin,test_Beijing,...'); repeatable")
    parser.add_argument("--extra-sets", nargs="+", default=[],
                        help="more scored sets shown as columns, in no average (e.g. dev sets)")
    args = parser.parse_args(argv)
    pooled = []
    for item in args.pooled:
        name, _, sets = item.partition("=")
        if not name or not sets:
            parser.error(f"--pooled {item!r}: expected NAME=SET,SET,...")
        pooled.append((name, sets.split(",")))
    pooled += [(s.removeprefix("test_"), [s]) for s in args.extra_sets]

    from hdmole.files import atomic_write_text
    from hdmole.report.provenance import config_list, git_state, machine_description
    from hdmole.report.plots import (read_jsonl, routing_heatmap, source_gate_curve, threshold_curves,
                                     threshold_operating_curve, training_curves)
    from hdmole.report.sections import (active_experts_section, correspondence_section, decoding_description,
                                        identical_to_base, interval_section, online_speaker_section,
                                        router_section, source_gate_points, source_gate_table)
    from hdmole.report.table import load_row, markdown_table, router_size
    from hdmole.report.threshold import TOLERANCE, threshold_curve_section

    if not 0.0 < args.confidence < 1.0:
        print(f"hdmole.bin.report: --confidence {args.confidence}: must be between 0 and 1 (e.g. 0.95)", file=sys.stderr)
        return 1
    if args.resample_speakers:
        lacking = [str(args.data_dir / s / "utt2spk") if args.data_dir else f"<data-dir>/{s}/utt2spk"
                   for s in [args.std_set, *args.accent_sets]
                   if args.data_dir is None or not (args.data_dir / s / "utt2spk").is_file()]
        if lacking:
            print(f"hdmole.bin.report: --resample-speakers needs the test sets' speakers: no {', '.join(lacking)}; pass "
                  "--data-dir with their Kaldi data dirs (utt2spk), or leave out --resample-speakers", file=sys.stderr)
            return 1
    missing = [s for s in args.systems if not (args.exp_dir / s).is_dir()]
    if missing:
        print(f"hdmole.bin.report: no experiment dir for {', '.join(missing)} under {args.exp_dir}; "
              "run the training and decoding stages for them first (or leave them out of --systems)", file=sys.stderr)
        return 1
    test_sets = [args.std_set, *args.accent_sets]
    router_dir = args.router_dir or args.exp_dir / "router"
    router_params = router_size(router_dir)
    test_sets += sorted({s for _, sets in pooled for s in sets} - set(test_sets))
    tables = {d: [load_row(args.exp_dir / s, s, test_sets, d, args.seeds, router_params) for s in args.systems]
              for d in args.decodings}
    rows = tables[args.decodings[0]]
    uncounted = [r.name for r in rows if r.trainable is not None and r.router is None]
    if uncounted:
        print(f"hdmole.bin.report: warning: {', '.join(uncounted)} route by the global router but "
              f"{router_dir / 'train_summary.json'} is missing: their router parameters are shown as ? (pass "
              "--router-dir, the router stage's exp dir)", file=sys.stderr)
    unscored = [f"{r.name}/decode_{t}" for r in rows for t in test_sets if r.cer.get(t) is None]
    if unscored:
        print(f"hdmole.bin.report: warning: not scored yet (shown as –): {', '.join(unscored[:6])}"
              f"{' ...' if len(unscored) > 6 else ''}", file=sys.stderr)

    plots_dir = args.plots_dir or args.out.parent
    plots_dir.mkdir(parents=True, exist_ok=True)
    label = lambda s: s.removeprefix("test_")  # noqa: E731
    accents = [label(s) for s in args.accent_sets] + [label(args.std_set)]
    figures = []
    logs = {s: read_jsonl(args.exp_dir / s / "train_log.jsonl") for s in args.systems}
    if training_curves(logs, plots_dir / "training_curves.png"):
        figures.append(("Training curves", "training_curves.png"))
    for s in args.systems:
        routing_file = args.exp_dir / s / f"routing_{args.routing_set}.json" if args.routing_set else None
        if routing_file is not None and routing_file.is_file():
            stats = json.loads(routing_file.read_text())
            accent_names = stats.pop("_accents", accents)
            if routing_heatmap(stats, accent_names, plots_dir / f"routing_{s}.png", f"{s}: routing weight per accent"):
                figures.append((f"{s}: mean routing weight of each expert per accent", f"routing_{s}.png"))
        if threshold_curves(logs[s], plots_dir / f"thresholds_{s}.png", f"{s}: thresholds and active experts"):
            figures.append((f"{s}: threshold and active experts per layer over training", f"thresholds_{s}.png"))

    command = " ".join(shlex.quote(a) for a in ["python", "-m", "hdmole.bin.report", *(argv if argv is not None else sys.argv[1:])])
    configs = config_list(args.exp_dir, args.systems)
    parts = [
        f"# {args.title}\n",
        f"Generated {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} on {machine_description()}.\n",
        f"Code: {git_state(outputs=(args.out, plots_dir))}.\n",
        *_run_commands(args.run_commands),
        f"Report command: `{command}`\n",
        *(["Configs of each exp dir, in the order they apply (paths from the repository root; the exp dir keeps "
           "the resolved `config.yaml`, and the command-line overrides in `cmd`):\n", configs] if configs else []),
    ]
    if args.router_dir is not None:
        router_sets = sorted(p.stem.removeprefix("router_") for p in args.router_dir.glob("router_*.json"))
        router_sets.sort(key=lambda name: name == args.routing_set)  # the test sets last: their matrix is shown
        router = router_section(args.router_dir, router_sets, label)
        if router:
            parts += ["## The accent router (router pre-training, stage 4)\n",
                      "Accuracy of the global router's argmax over the domains of `accents.txt`, and recall per domain "
                      "(the source domain's recall, line 1 of `accents.txt`, is how often its utterances are recognised as such).\n", router]
    seeds_note = (f" With {args.seeds} seeds per system, CERs are means over the seeds and *avg accent* and the "
                  "source CER carry +- one standard deviation." if args.seeds > 1 else "")
    for index, decoding in enumerate(args.decodings):
        how = decoding_description(args.exp_dir, args.std_set, decoding)
        title = "Comparison" if index == 0 else "The same systems, LLM alone"
        parts += [f"## {title}{': ' + how if how else ''}\n",
                  "CER in %, on normalised Chinese characters. *avg accent* is the mean over the accent test sets"
                  + (" (macro; *micro*: their errors over their characters)" if args.micro_average else "") + ". "
                  "Parameters count everything a system learns in any stage: *stage-5 params* in the adaptation, "
                  "*router params* the global router learned in router pre-training (stage 4, with the accent labels) "
                  "for the systems that route by it (not the oracle, which uses the labels, nor local routing "
                  "alone); *total learned* is their sum (a router retrained in stage 5 counted once) and "
                  "*% of full FT (total)* that total relative to full fine-tuning of the adapted module; "
                  f"train time is the wall time of the adaptation.{seeds_note}\n",
                  markdown_table(tables[decoding], args.accent_sets, args.std_set, label, args.micro_average, pooled)]
        try:
            intervals = interval_section(args.exp_dir, args.systems, args.std_set, args.accent_sets, decoding,
                                         args.seeds, args.bootstrap, args.confidence, args.data_dir,
                                         args.resample_speakers)
        except ValueError as error:  # a malformed utt2spk / utt_errors line, named with its file and line
            print(f"hdmole.bin.report: {error}", file=sys.stderr)
            return 1
        if intervals:
            parts.append(intervals)
    same = identical_to_base(args.exp_dir, args.systems, args.std_set, args.decodings[0])
    if same:
        parts += [f"## The source domain ({label(args.std_set)}) left as the base model spells it\n", same]
    if args.routing_set:
        correspondence = correspondence_section(args.exp_dir, args.systems, args.routing_set)
        if correspondence:
            parts += [f"## Which experts each domain uses ({label(args.routing_set)})\n",
                      "Share of each domain's routing weight carried by that domain's own experts, per adapted layer "
                      "(the expert-domain correspondence); for the source domain of a system with a source-preserving "
                      "path, the mean scale of the update (0: the base model exactly). Systems with local routing only "
                      "(mole_*, hdmole_no_global) are not listed: nothing ties their experts to a domain.\n",
                      correspondence]
        active = active_experts_section(args.exp_dir, args.systems, args.routing_set)
        if active:
            parts += [f"## Active experts per layer and domain ({label(args.routing_set)})\n",
                      "Mean number of experts the dynamic threshold keeps active per token (of *experts*), over all "
                      "tokens and per domain, with the layer's learned threshold tau, for every system with a threshold "
                      "(first seed). The layer computes every expert whatever the gate: an inactive expert's update is "
                      "multiplied by 0, not skipped.\n", active]
    gate_points = source_gate_points(args.exp_dir, args.source_gates, args.std_set, args.accent_sets)
    if gate_points:
        parts += ["## The source gate's operating curve\n",
                  "HDMoLE (first seed) trained and decoded with each source gate of the grid (a bias added to the source "
                  "domain's log-posterior before the 1 - g_source scale, or *hard*: the update off where the source "
                  "domain is the argmax; docs/method.md section 3.5). The gate with the lowest dev loss on the target "
                  "dev set (which holds the source domain too) is chosen, and every system of the tables is trained "
                  "and decoded with it.\n", source_gate_table(gate_points)]
        if source_gate_curve(gate_points, plots_dir / "source_gate.png", "the source gate: standard vs accents"):
            figures.append(("the source gate's operating curve: the change of the source CER against the accents, "
                            "the dev-chosen gate marked", "source_gate.png"))
    online = online_speaker_section(args.exp_dir, args.systems, args.std_set, args.accent_sets)
    if online:
        parts += ["## Speaker-level routing online: the first k utterances of each speaker\n",
                  "CER (beam search, first decoding above) of the speaker-routed systems when each speaker's posterior "
                  "pools only the speaker's first k utterances (utterance-id order), as an online system would have "
                  "after k utterances; *all*: every utterance of the speaker, as in the tables. Trained with all "
                  "of them; first seed.\n", online]
    curve_table, curves = threshold_curve_section(args.exp_dir, args.systems)
    if curve_table:
        parts += ["## The threshold's operating curve (dev)\n",
                  "Dev ASR loss (cross-entropy per token, the adaptation's validation loss) of each trained system with a "
                  "dynamic threshold, with tau forced (hdmole.bin.threshold_curve) to each value of a grid in one layer "
                  "while the other layers keep their learned tau; *best* is the lowest point of that layer's curve, the "
                  f"learned point included. *learned within {100 * TOLERANCE:g}%*: whether the learned tau's loss is within "
                  f"{100 * TOLERANCE:g}% of the best. First seed only.\n", curve_table]
        for s, curve in curves.items():
            if threshold_operating_curve(curve, plots_dir / f"threshold_curve_{s}.png", f"{s}: forced-tau dev loss"):
                figures.append((f"{s}: dev loss with tau forced per layer (solid) and in every layer (dashed), the "
                                "learned tau marked; mean active experts of the layer (dotted, right axis)",
                                f"threshold_curve_{s}.png"))
    if args.stage_times:
        times = stage_times_table(args.stage_times)
        if times:
            parts += ["## Wall time per stage\n", times]
    if args.notes and args.notes.is_file():
        parts.append(args.notes.read_text(encoding="utf-8"))
    if figures:
        parts.append("## Figures\n")
        rel = os.path.relpath(plots_dir, args.out.parent)
        for caption, name in figures:
            parts.append(f"{caption}:\n\n![{caption}]({name if rel == '.' else rel + '/' + name})\n")
    atomic_write_text(args.out, "\n".join(parts))
    print(f"hdmole.bin.report: wrote {args.out} ({len(rows)} systems, {len(figures)} figures)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
