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
    args = parser.parse_args(argv)

    from hdmole.files import atomic_write_text
    from hdmole.report.provenance import config_list, git_state, machine_description
    from hdmole.report.plots import read_jsonl, routing_heatmap, threshold_curves, training_curves
    from hdmole.report.sections import (correspondence_section, decoding_description, identical_to_base,
                                        interval_section, router_section)
    from hdmole.report.table import load_row, markdown_table

    missing = [s for s in args.systems if not (args.exp_dir / s).is_dir()]
    if missing:
        print(f"hdmole.bin.report: no experiment dir for {', '.join(missing)} under {args.exp_dir}; "
              "run the training and decoding stages for them first (or leave them out of --systems)", file=sys.stderr)
        return 1
    test_sets = [args.std_set, *args.accent_sets]
    tables = {d: [load_row(args.exp_dir / s, s, test_sets, d, args.seeds) for s in args.systems] for d in args.decodings}
    rows = tables[args.decodings[0]]
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
                  "CER in %, on normalised Chinese characters. *avg accent* is the mean over the accent test sets; "
                  "*% of full FT* is the trainable parameter count relative to full fine-tuning of the adapted module; "
                  f"train time is the wall time of the adaptation.{seeds_note}\n",
                  markdown_table(tables[decoding], args.accent_sets, args.std_set, label)]
        intervals = interval_section(args.exp_dir, args.systems, args.std_set, args.accent_sets, decoding, args.seeds,
                                     args.bootstrap)
        if intervals:
            parts += ["Differences in CER points (system minus reference) with 95% paired bootstrap intervals "
                      f"({args.bootstrap} resamplings of the utterances of each test set"
                      + (", errors averaged over the seeds" if args.seeds > 1 else "") + "): *lower* / *higher* when "
                      "the interval excludes 0.\n", intervals]
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
