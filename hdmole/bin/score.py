"""Character error rate (CER) of Kaldi-style hypotheses, in total and per accent.

    python -m hdmole.bin.score --ref <data_dir or text file> --hyp <hyp text> [--utt2accent FILE] [--accents accents.txt] --out <dir>
        [--ref ... --hyp ... --out ...]   (several hypothesis files in one call, each scored as on its own)

Reference and hypothesis are Kaldi `text` files (`<utt_id> <text>`; a hypothesis may be empty). With a
data dir as --ref, its `text` and (if present) `utt2accent` are used. Both sides are normalised with
hdmole.text.normalize_text and compared character by character with jiwer (characters joined by spaces
and aligned as words, so jiwer's substitution/deletion/insertion counts are character counts).

A hypothesis for an utterance that is not in the reference is an error. So is a reference utterance without
a hypothesis (an empty or partial hypothesis file is a decode that crashed or was cut short, not a CER of
100); with --allow-missing it is scored as all deletions instead, with a warning and its count in the outputs.

Writes (each via a temporary name, renamed at the end):
- `<out>/cer`: one line per accent, then the total (accent=ALL), e.g.
  `%CER 12.34 [ 123 / 1000, 10 ins, 20 del, 93 sub ] accent=Southwestern utts=300`
- `<out>/cer.json`: {"ref", "hyp", "num_missing_hyps", "missing_hyps", "total": COUNTS,
  "per_accent": {accent: COUNTS}} with COUNTS = {"cer" (percent, null without reference characters),
  "errors", "ref_chars", "hyp_chars", "sub", "del", "ins", "utts", "sentence_errors"}
- `<out>/per_utt`: per utterance its counts and the aligned ref / hyp / op (C S D I) rows.
- `<out>/utt_errors`: `<utt_id> <errors> <ref_chars>` per utterance (for paired bootstrap intervals).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import jiwer

from hdmole.data.accents import AccentList
from hdmole.data.errors import DataError
from hdmole.files import atomic_write_text
from hdmole.logs import log_failure, setup_stage_logging
from hdmole.data.table import read_kaldi_table
from hdmole.text.normalize import normalize_text

log = logging.getLogger("hdmole.score")
ALL = "ALL"
GAP = "*"


@dataclass
class Counts:
    utts: int = 0
    ref_chars: int = 0
    hyp_chars: int = 0
    sub: int = 0
    dele: int = 0
    ins: int = 0
    sentence_errors: int = 0

    @property
    def errors(self) -> int:
        return self.sub + self.dele + self.ins

    @property
    def cer(self) -> float | None:
        return 100.0 * self.errors / self.ref_chars if self.ref_chars else None

    def add(self, other: "Counts") -> None:
        for name in ("utts", "ref_chars", "hyp_chars", "sub", "dele", "ins", "sentence_errors"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict:
        cer = None if self.cer is None else round(self.cer, 4)
        return {"cer": cer, "errors": self.errors, "ref_chars": self.ref_chars, "hyp_chars": self.hyp_chars,
                "sub": self.sub, "del": self.dele, "ins": self.ins, "utts": self.utts, "sentence_errors": self.sentence_errors}

    def summary_line(self, accent: str) -> str:
        cer = "n/a" if self.cer is None else f"{self.cer:.2f}"
        return (f"%CER {cer} [ {self.errors} / {self.ref_chars}, {self.ins} ins, {self.dele} del, {self.sub} sub ] "
                f"accent={accent} utts={self.utts}")


@dataclass
class UttScore:
    utt_id: str
    accent: str | None
    counts: Counts
    ref_row: list[str] = field(default_factory=list)
    hyp_row: list[str] = field(default_factory=list)
    ops: list[str] = field(default_factory=list)


def align(utt_id: str, ref: str, hyp: str, accent: str | None) -> UttScore:
    """Character alignment of normalised `ref` and `hyp` with jiwer; counts and display rows."""
    ref_chars, hyp_chars = list(ref), list(hyp)
    result = UttScore(utt_id, accent, Counts(utts=1, ref_chars=len(ref_chars), hyp_chars=len(hyp_chars)))
    if not ref_chars and not hyp_chars:
        return result
    # jiwer splits on whitespace: one "word" per character gives character-level S/D/I counts.
    output = jiwer.process_words(" ".join(ref_chars), " ".join(hyp_chars))
    counts = result.counts
    counts.sub, counts.dele, counts.ins = output.substitutions, output.deletions, output.insertions
    counts.sentence_errors = int(counts.errors > 0)
    op_code = {"equal": "C", "substitute": "S", "delete": "D", "insert": "I"}
    for chunk in output.alignments[0]:
        refs = ref_chars[chunk.ref_start_idx : chunk.ref_end_idx]
        hyps = hyp_chars[chunk.hyp_start_idx : chunk.hyp_end_idx]
        width = max(len(refs), len(hyps))
        result.ref_row += refs + [GAP] * (width - len(refs))
        result.hyp_row += hyps + [GAP] * (width - len(hyps))
        result.ops += [op_code[chunk.type]] * width
    return result


def score_texts(refs: dict[str, str], hyps: dict[str, str], utt2accent: dict[str, str] | None = None,
                accent_order: list[str] | None = None) -> tuple[dict, list[UttScore]]:
    """Score raw (unnormalised) texts; `hyps` may lack utterances (scored as deletions) but not add any.

    Returns (the cer.json dict without "ref"/"hyp", per-utterance scores in reference order).
    """
    unknown = [utt for utt in hyps if utt not in refs]
    if unknown:
        raise DataError(f"hypothesis for {unknown[0]!r} (and {len(unknown) - 1} more) has no reference; score against the matching reference")
    missing = [utt for utt in refs if utt not in hyps]
    per_utt, total, per_accent = [], Counts(), {}
    for utt, ref in refs.items():
        accent = utt2accent[utt] if utt2accent is not None else None
        scored = align(utt, normalize_text(ref), normalize_text(hyps.get(utt, "")), accent)
        per_utt.append(scored)
        total.add(scored.counts)
        if accent is not None:
            per_accent.setdefault(accent, Counts()).add(scored.counts)
    order = [a for a in (accent_order or []) if a in per_accent] + sorted(a for a in per_accent if a not in (accent_order or []))
    summary = {
        "num_missing_hyps": len(missing),
        "missing_hyps": missing,
        "total": total.as_dict(),
        "per_accent": {accent: per_accent[accent].as_dict() for accent in order},
    }
    return summary, per_utt


def load_reference(ref: Path, utt2accent_path: Path | None) -> tuple[dict[str, str], dict[str, str] | None]:
    text_path = ref / "text" if ref.is_dir() else ref
    refs = read_kaldi_table(text_path, require_sorted=False, value_name="transcript")
    if utt2accent_path is None and ref.is_dir() and (ref / "utt2accent").is_file():
        utt2accent_path = ref / "utt2accent"
    if utt2accent_path is None:
        return refs.entries, None
    accents = read_kaldi_table(utt2accent_path, require_sorted=False, value_name="accent")
    for utt in refs.entries:
        if utt not in accents:
            raise DataError(f"{refs.where(utt)}: utterance {utt!r} has no accent in {utt2accent_path}; add it there")
    return refs.entries, {utt: accents[utt] for utt in refs.entries}


def read_hypotheses(path: Path, refs: dict[str, str]) -> dict[str, str]:
    if not path.is_file():
        raise DataError(f"{path}: hypothesis file not found; decode the set first (hdmole.bin.decode writes <out>/text)")
    hyps = read_kaldi_table(path, require_sorted=False, allow_empty_value=True, value_name="hypothesis")
    for utt in hyps.entries:
        if utt not in refs:
            raise DataError(f"{hyps.where(utt)}: hypothesis for {utt!r}, which is not in the reference; decode the matching set")
    return hyps.entries


def check_complete(hyps: dict[str, str], refs: dict[str, str], hyp_path: Path) -> None:
    """Every reference utterance has a hypothesis line (an empty hypothesis is fine: a line with the id)."""
    missing = [utt for utt in refs if utt not in hyps]
    if missing:
        what = "is empty" if not hyps else f"has no line for {len(missing)} of the {len(refs)} reference utterances (e.g. {missing[0]!r})"
        raise DataError(f"{hyp_path} {what}: the decode that wrote it did not finish; run it again (it redoes an "
                        "unfinished output), or pass --allow-missing to score missing hypotheses as all deletions")


def format_per_utt(scores: list[UttScore]) -> str:
    lines = []
    for s in scores:
        c = s.counts
        lines.append(f"{s.utt_id} accent={s.accent or '-'} ref_chars={c.ref_chars} errors={c.errors} sub={c.sub} del={c.dele} ins={c.ins}")
        lines.append(f"{s.utt_id} ref {' '.join(s.ref_row)}")
        lines.append(f"{s.utt_id} hyp {' '.join(s.hyp_row)}")
        lines.append(f"{s.utt_id} op  {' '.join(s.ops)}")
        lines.append("")
    return "\n".join(lines)


def write_outputs(out: Path, summary: dict, per_utt: list[UttScore]) -> None:
    def line(accent: str, counts: dict) -> str:
        return Counts(counts["utts"], counts["ref_chars"], counts["hyp_chars"], counts["sub"], counts["del"],
                      counts["ins"], counts["sentence_errors"]).summary_line(accent)

    cer_lines = [line(accent, counts) for accent, counts in summary["per_accent"].items()]
    cer_lines.append(line(ALL, summary["total"]))
    if summary["num_missing_hyps"]:
        cer_lines.append(f"# {summary['num_missing_hyps']} utterance(s) without a hypothesis were scored as all deletions")
    contents = {"cer": "\n".join(cer_lines) + "\n", "cer.json": json.dumps(summary, ensure_ascii=False, indent=1) + "\n",
                "per_utt": format_per_utt(per_utt),
                # machine-readable per-utterance errors, for paired bootstrap intervals (hdmole.report.stats)
                "utt_errors": "".join(f"{s.utt_id} {s.counts.errors} {s.counts.ref_chars}\n" for s in per_utt)}
    out.mkdir(parents=True, exist_ok=True)
    for name, text in contents.items():  # cer.json last but one: the report reads it as "scored"
        atomic_write_text(out / name, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hdmole.bin.score", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ref", type=Path, required=True, action="append",
                        help="reference data dir or Kaldi text file (repeat --ref --hyp --out to score several in one call)")
    parser.add_argument("--hyp", type=Path, required=True, action="append", help="hypotheses, Kaldi text format")
    parser.add_argument("--utt2accent", type=Path, help="accent of each utterance (default: <ref data dir>/utt2accent)")
    parser.add_argument("--accents", type=Path, help="accents.txt: order of the per-accent lines")
    parser.add_argument("--out", type=Path, required=True, action="append", help="output dir for cer, cer.json, per_utt")
    parser.add_argument("--allow-missing", action="store_true",
                        help="score reference utterances without a hypothesis as all deletions (default: an error)")
    parser.add_argument("--verbose", action="store_true", help="on an error, print its traceback too")
    args = parser.parse_args(argv)
    if not len(args.ref) == len(args.hyp) == len(args.out):
        parser.error(f"{len(args.ref)} --ref, {len(args.hyp)} --hyp and {len(args.out)} --out: give one of each per "
                     "hypothesis file scored")
    setup_stage_logging(verbose=args.verbose)
    # One process for many files: the recipe scores ~10 decodings per system, and a Python start costs more than
    # scoring one of them. Each triple is scored exactly as a call of its own would score it.
    for ref, hyp, out in zip(args.ref, args.hyp, args.out):
        if score_one(ref, hyp, out, args) != 0:
            return 1
    return 0


def score_one(ref: Path, hyp: Path, out: Path, args: argparse.Namespace) -> int:
    try:
        refs, utt2accent = load_reference(ref, args.utt2accent)
        hyps = read_hypotheses(hyp, refs)
        if not args.allow_missing:
            check_complete(hyps, refs, hyp)
        order = list(AccentList.load(args.accents).names) if args.accents else None
        summary, per_utt = score_texts(refs, hyps, utt2accent, order)
        summary = {"ref": str(ref), "hyp": str(hyp), **summary}
        if summary["num_missing_hyps"]:
            log.warning("%d reference utterance(s) have no hypothesis (e.g. %s); scored as all deletions",
                        summary["num_missing_hyps"], summary["missing_hyps"][0])
        write_outputs(out, summary, per_utt)
    except (DataError, OSError) as error:
        log_failure(log, error)
        return 1
    total = summary["total"]
    log.info("CER %s over %d characters of %d utterances -> %s/cer", total["cer"], total["ref_chars"], total["utts"], out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
