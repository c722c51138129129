"""Stage 0 of egs/kespeech: Kaldi data dirs from KeSpeech v1.0 and AISHELL-1.

    python local/prepare_data.py --kespeech-root DIR --aishell-root DIR [--out data]
        [--text-cleaning conf/text_cleaning.yaml]

Writes under ``--out``: ``train_aishell dev_aishell test_aishell`` (source domain, accent Mandarin),
``train_kespeech`` (train_phase1 + train_phase2), ``dev_kespeech`` (dev_phase1 + dev_phase2), ``dev_phase1``,
``dev_phase2`` and
``test_<Subdialect>`` for the nine KeSpeech subdialects; ``accents.txt`` (Mandarin first, then the
eight subdialects); ``local/prep_summary.json`` and ``local/prep_summary.md`` (utterances kept and
dropped per set, subdialect and reason); the log goes to ``local/prepare_data.log``.

All or nothing: everything is read and checked first and written to ``<out>/.stage0.tmp``; only then
are the finished dirs moved into place, so a bad corpus tree leaves earlier outputs untouched.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules of local/

from aishell_corpus import aishell_sets  # noqa: E402
from hdmole.data.errors import DataError  # noqa: E402
from hdmole.data.prepare import accent_counts, replace_data_dirs, write_data_dir  # noqa: E402
from hdmole.logs import setup_stage_logging  # noqa: E402
from hdmole.text.cleaning import TextCleaner  # noqa: E402
from kespeech_corpus import SUBDIALECTS, kespeech_sets  # noqa: E402

log = logging.getLogger("hdmole.kespeech.prepare_data")


def summary_markdown(kept: dict[str, dict[str, int]], dropped: Counter) -> str:
    lines = ["| set | accent | kept | dropped (reason) |", "|---|---|---|---|"]
    for name, counts in kept.items():
        for accent, n in counts.items():
            reasons = ", ".join(f"{k[2]}: {v}" for k, v in sorted(dropped.items()) if k[0] == name and k[1] == accent)
            lines.append(f"| {name} | {accent} | {n} | {reasons or '-'} |")
    lines.append("")
    lines.append("Dropped per corpus part (KeSpeech parts before merging):")
    lines.append("")
    for (part, accent, reason), n in sorted(dropped.items()):
        lines.append(f"- {part} / {accent}: {n} ({reason})")
    return "\n".join(lines) + "\n"


def prepare(kespeech_root: Path, aishell_root: Path, out: Path, cleaning: Path) -> dict:
    cleaner = TextCleaner.load(cleaning)
    dropped: Counter = Counter()
    sets = {**aishell_sets(aishell_root, cleaner, dropped), **kespeech_sets(kespeech_root, cleaner, dropped)}
    staging = out / ".stage0.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    kept = {}
    for name, utterances in sets.items():
        write_data_dir(staging / name, utterances)
        kept[name] = accent_counts(utterances)
        log.info("%s: %d utterances %s", name, len(utterances), kept[name])
    (staging / "accents.txt").write_text("".join(f"{s}\n" for s in SUBDIALECTS), encoding="utf-8")
    summary = {"kespeech_root": str(kespeech_root), "aishell_root": str(aishell_root), "kept": kept,
               "dropped": [{"part": p, "accent": a, "reason": r, "count": n} for (p, a, r), n in sorted(dropped.items())]}
    (staging / "local").mkdir()
    (staging / "local" / "prep_summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n",
                                                         encoding="utf-8")
    (staging / "local" / "prep_summary.md").write_text(summary_markdown(kept, dropped), encoding="utf-8")
    # data/local also holds the log of this run: move the summaries in, not the whole dir.
    (out / "local").mkdir(parents=True, exist_ok=True)
    for name in ("prep_summary.json", "prep_summary.md"):
        (staging / "local" / name).replace(out / "local" / name)
    (staging / "local").rmdir()
    replace_data_dirs(staging, out, [*sets, "accents.txt"])
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="local/prepare_data.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kespeech-root", type=Path, required=True, help="KeSpeech v1.0 root (holds Tasks/, Audio/)")
    parser.add_argument("--aishell-root", type=Path, required=True, help="the directory holding data_aishell/")
    parser.add_argument("--out", type=Path, default=Path("data"))
    parser.add_argument("--text-cleaning", type=Path, default=Path("conf/text_cleaning.yaml"))
    args = parser.parse_args(argv)
    setup_stage_logging(args.out / "local" / "prepare_data.log")
    log.info("command: %s", " ".join([sys.executable, *sys.argv]))
    try:
        summary = prepare(args.kespeech_root.resolve(), args.aishell_root.resolve(), args.out, args.text_cleaning)
    except DataError as error:
        shutil.rmtree(args.out / ".stage0.tmp", ignore_errors=True)
        log.error("%s", error)
        return 1
    total = sum(sum(c.values()) for c in summary["kept"].values())
    log.info("wrote %d data dirs (%d utterances) and accents.txt under %s; summary: %s", len(summary["kept"]), total,
             args.out, args.out / "local" / "prep_summary.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
