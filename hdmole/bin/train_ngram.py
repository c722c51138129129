"""Build a character n-gram LM for shallow fusion with KenLM's ``lmplz`` (modified Kneser-Ney).

    python -m hdmole.bin.train_ngram --order 4 --text data/lm_train.txt --out exp/ngram/char4.arpa

The text (one sentence a line) is normalised as transcripts are (hdmole.text.normalize_text) and
written one character a word, so the LM scores exactly the units CER counts; ``lmplz`` (built by
tools/install.sh into tools/kenlm/bin, on PATH through path.sh) estimates the ARPA file. A finished
output with the same text (by content, recorded in ``<out stem>_inputs.json``), order and options is
skipped unless ``--force``; the output appears only
when complete (written under a temporary name, then renamed), and next to it ``<out stem>.bin``, the same
model in KenLM's binary format (``build_binary``), which decoding loads in a fraction of a second.
Log: ``<out>.log``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from hdmole.files import changed_inputs, file_version, inputs_record_path, read_inputs_record, write_inputs_record

log = logging.getLogger("hdmole.train_ngram")


def char_corpus(text_path: Path, out) -> int:
    """Writes the normalised sentences of ``text_path``, characters separated by spaces; returns their count."""
    from hdmole.text.normalize import normalize_text

    count = 0
    with open(text_path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            try:
                chars = normalize_text(line)
            except UnicodeError as error:  # pragma: no cover - open() already decodes
                raise SystemExit(f"{text_path}:{number}: {error}") from None
            if chars:
                out.write(" ".join(chars) + "\n")
                count += 1
    return count


def find_lmplz(explicit: str | None) -> str:
    # tools/install.sh builds it into the repository's tools/kenlm/bin (path.sh puts that on PATH; a caller
    # without path.sh, e.g. pytest run directly, still finds it there)
    built = Path(__file__).resolve().parents[2] / "tools" / "kenlm" / "bin" / "lmplz"
    candidate = explicit or shutil.which("lmplz") or (str(built) if built.exists() else None)
    if not candidate or not os.access(candidate, os.X_OK):
        raise SystemExit("hdmole.bin.train_ngram: KenLM's lmplz was not found"
                         + (f" at {explicit}" if explicit else " on PATH")
                         + "; run tools/install.sh (it builds tools/kenlm/bin/lmplz) and source path.sh, "
                         "or pass --lmplz /path/to/lmplz")
    return candidate


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hdmole.bin.train_ngram", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--text", required=True, type=Path, help="LM text, one sentence a line (UTF-8)")
    p.add_argument("--out", required=True, type=Path, help="the ARPA file to write")
    p.add_argument("--order", type=int, default=4, help="n-gram order")
    p.add_argument("--prune", default="", help="lmplz --prune thresholds, e.g. '0 0 1' (default: none)")
    p.add_argument("--memory", default="20%", help="lmplz -S: memory for sorting")
    p.add_argument("--lmplz", default=None, help="path to lmplz (default: the one on PATH)")
    p.add_argument("--force", action="store_true", help="rebuild even if --out is complete")
    args = p.parse_args(argv)

    if not args.text.is_file():
        print(f"hdmole.bin.train_ngram: {args.text}: LM text not found (run the data stage first)", file=sys.stderr)
        return 1
    if args.order < 2:
        print(f"hdmole.bin.train_ngram: --order must be >= 2, got {args.order}", file=sys.stderr)
        return 1
    # What made it (hdmole.files' inputs record, as every stage): the LM text by content and the options.
    stamp = inputs_record_path(args.out)
    want = {"text": file_version(args.text), "options": {"order": args.order, "prune": args.prune}}
    if not args.force and args.out.is_file() and not changed_inputs(read_inputs_record(stamp), want):
        print(f"hdmole.bin.train_ngram: {args.out} is up to date; skipping (--force to rebuild)", file=sys.stderr)
        return 0
    lmplz = find_lmplz(args.lmplz)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from hdmole.logs import setup_stage_logging

    setup_stage_logging(args.out.with_name(args.out.name + ".log"))
    stamp.unlink(missing_ok=True)
    tmp_arpa = args.out.with_name(f".{args.out.name}.tmp{os.getpid()}")
    with tempfile.TemporaryDirectory(dir=args.out.parent) as tmp:
        corpus = Path(tmp) / "chars.txt"
        with open(corpus, "w", encoding="utf-8") as f:
            sentences = char_corpus(args.text, f)
        if sentences == 0:
            print(f"hdmole.bin.train_ngram: {args.text} has no sentence left after normalisation", file=sys.stderr)
            return 1
        # --discount_fallback: a small character vocabulary can leave a count-of-counts at zero, for which
        # modified Kneser-Ney has no discount; KenLM then uses its documented fallback instead of failing.
        cmd = [lmplz, "-o", str(args.order), "-S", args.memory, "-T", tmp, "--discount_fallback"]
        if args.prune:
            cmd += ["--prune", *args.prune.split()]
        log.info("%d sentences from %s; running %s", sentences, args.text, " ".join(cmd))
        with open(corpus, "rb") as stdin, open(tmp_arpa, "wb") as stdout:
            result = subprocess.run(cmd, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE)
        if result.returncode != 0:
            tmp_arpa.unlink(missing_ok=True)
            tail = result.stderr.decode(errors="replace").strip().splitlines()[-5:]
            print(f"hdmole.bin.train_ngram: lmplz failed (exit {result.returncode}):\n  " + "\n  ".join(tail),
                  file=sys.stderr)
            return 1
        log.info("lmplz: %s", result.stderr.decode(errors="replace").strip().splitlines()[-1:])
    os.replace(tmp_arpa, args.out)
    binary = args.out.with_suffix(".bin")
    build_binary = shutil.which("build_binary", path=str(Path(lmplz).parent)) or shutil.which("build_binary")
    if build_binary:  # KenLM's binary format loads in a fraction of a second (the ARPA is parsed each time)
        tmp_bin = binary.with_name(f".{binary.name}.tmp{os.getpid()}")
        result = subprocess.run([build_binary, str(args.out), str(tmp_bin)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        if result.returncode != 0:
            tmp_bin.unlink(missing_ok=True)
            print(f"hdmole.bin.train_ngram: build_binary failed: {result.stderr.decode(errors='replace')[-300:]}",
                  file=sys.stderr)
            return 1
        os.replace(tmp_bin, binary)
    write_inputs_record(stamp, want)
    log.info("wrote %s (order %d, %.1f MB)%s", args.out, args.order, args.out.stat().st_size / 1e6,
             f" and {binary}" if build_binary else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
