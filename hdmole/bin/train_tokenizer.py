"""Train a sentencepiece tokenizer (character-level by default) on normalised training text.

    python -m hdmole.bin.train_tokenizer [--model-type char] [--vocab-size N] <text files or data dirs>... <out_prefix>

A data dir contributes its Kaldi `text` file (utterance ids dropped); any other path is plain text, one
sentence per line. Every line is normalised with hdmole.text.normalize_text (unless --no-normalize).
Writes `<out_prefix>.model` and `<out_prefix>.vocab` with ids pad=0, unk=1, bos=2, eos=3.

Settings chosen so that Chinese round-trips: character_coverage=1.0 (every character of the training text
gets a piece), sentencepiece's own normalisation off (identity rule, no dummy prefix, whitespace kept).
For --model-type char, --vocab-size is an upper bound (0 = exactly the characters seen + 4 specials).

    python -m hdmole.bin.train_tokenizer --model-type units --text-file pinyin data/train_std data/lang/pinyin

writes a plain unit list `data/lang/pinyin.units` (`<unk>`, then the units by frequency) of the data dirs'
`pinyin` files, for CTC on tonal syllables (hdmole.text.tokenizer.UnitTokenizer).

Next to the output, `<out_prefix>_inputs.json` records the text it was made from (by content) and the
options: run again, it is skipped when they are the same and made again when they changed (--force: always).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections import Counter
from pathlib import Path

import sentencepiece as spm

from hdmole.data.errors import DataError, where
from hdmole.files import changed_inputs, file_version, inputs_record_path, read_inputs_record, write_inputs_record
from hdmole.logs import log_failure, setup_stage_logging
from hdmole.data.table import read_kaldi_table
from hdmole.text.normalize import normalize_text
from hdmole.text.tokenizer import UnitTokenizer

log = logging.getLogger("hdmole.train_tokenizer")
NUM_SPECIAL = 4  # pad, unk, bos, eos


def read_sentences(sources: list[Path], normalize: bool, text_file: str = "text") -> list[str]:
    sentences = []
    for source in sources:
        if source.is_dir():
            lines = read_kaldi_table(source / text_file, require_sorted=False, value_name="transcript").entries.values()
        elif source.is_file():
            raw = source.read_bytes()
            try:
                lines = raw.decode("utf-8").splitlines()
            except UnicodeDecodeError as error:
                line = raw.count(b"\n", 0, error.start) + 1
                raise DataError(
                    f"{where(source, line)}: not valid UTF-8 ({error.reason}; GBK or another legacy encoding?). "
                    f"Fix: re-encode it, e.g. iconv -f GBK -t UTF-8 {source} > {source}.utf8, and give that file"
                ) from None
        else:
            raise DataError(f"{source}: no such text file or data dir")
        for line in lines:
            line = normalize_text(line) if normalize else line.strip()
            if line:
                sentences.append(line)
    if not sentences:
        raise DataError(f"no text in {', '.join(map(str, sources))}; give a data dir or a non-empty text file")
    return sentences


def write_unit_list(sources: list[Path], out_prefix: Path, text_file: str, min_count: int = 1) -> Path:
    """``<out_prefix>.units``: ``<unk>``, then every whitespace-separated unit of the text seen at least
    ``min_count`` times, most frequent first (ties in byte order), for hdmole.text.UnitTokenizer."""
    counts = Counter(unit for line in read_sentences(sources, normalize=False, text_file=text_file) for unit in line.split())
    units = sorted((u for u, c in counts.items() if c >= min_count and u != UnitTokenizer.UNK),
                   key=lambda u: (-counts[u], u))
    out = Path(str(out_prefix) + ".units")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("".join(f"{u}\n" for u in [UnitTokenizer.UNK, *units]), encoding="utf-8")
    tmp.replace(out)
    log.info("unit list: %d units (+ <unk>) from the %s files of %s -> %s", len(units), text_file,
             ", ".join(map(str, sources)), out)
    return out


def train_tokenizer(sources: list[Path], out_prefix: Path, model_type: str = "char", vocab_size: int = 0, normalize: bool = True) -> Path:
    """Train and write `<out_prefix>.model/.vocab`; return the .model path."""
    sentences = read_sentences(sources, normalize)
    num_chars = len(set("".join(sentences)))
    if vocab_size <= 0:
        if model_type != "char":
            raise ValueError("--vocab-size is required for model types other than char")
        vocab_size = num_chars + NUM_SPECIAL
    if model_type == "char" and vocab_size < num_chars + NUM_SPECIAL:
        raise ValueError(
            f"--vocab-size {vocab_size} is too small: the text has {num_chars} distinct characters and a char model "
            f"covers them all (plus {NUM_SPECIAL} special ids); use at least {num_chars + NUM_SPECIAL} or 0"
        )
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text("".join(f"{s}\n" for s in sentences), encoding="utf-8")
        # Train under a temporary prefix and rename: a failed run leaves no half-written model.
        temp_prefix = Path(tmp) / "model"
        spm.SentencePieceTrainer.train(
            input=str(corpus),
            model_prefix=str(temp_prefix),
            model_type=model_type,
            vocab_size=vocab_size,
            character_coverage=1.0,
            normalization_rule_name="identity",
            add_dummy_prefix=False,
            remove_extra_whitespaces=False,
            pad_id=0,
            unk_id=1,
            bos_id=2,
            eos_id=3,
            hard_vocab_limit=model_type != "char",
            input_sentence_size=0,
            num_threads=1,
            minloglevel=2,
        )
        for suffix in (".vocab", ".model"):
            Path(str(temp_prefix) + suffix).replace(Path(str(out_prefix) + suffix))
    log.info("trained a %s model: %d sentences, %d distinct characters, vocab %d -> %s.model",
             model_type, len(sentences), num_chars, vocab_size, out_prefix)
    return Path(str(out_prefix) + ".model")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hdmole.bin.train_tokenizer", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-type", default="char", choices=["char", "bpe", "unigram", "word", "units"],
                        help="a sentencepiece model type, or units: a plain list of the whitespace-separated units "
                             "of the text (CTC targets such as tonal pinyin), written to <out_prefix>.units")
    parser.add_argument("--text-file", default="text",
                        help="the data-dir file to read (units: e.g. pinyin, a tonal syllable per character)")
    parser.add_argument("--min-count", type=int, default=1, help="units: keep units seen at least this often")
    parser.add_argument("--vocab-size", type=int, default=0, help="vocabulary size (char: upper bound; 0 = all characters)")
    parser.add_argument("--no-normalize", dest="normalize", action="store_false", help="train on the text as written")
    parser.add_argument("inputs", nargs="+", type=Path, help="text files and/or data dirs")
    parser.add_argument("out_prefix", type=Path)
    parser.add_argument("--force", action="store_true", help="train again even if made from the same text")
    args = parser.parse_args(argv)
    setup_stage_logging()
    units = args.model_type == "units"
    out = Path(str(args.out_prefix) + (".units" if units else ".model"))
    # What made it (hdmole.files): the text it read, by content, and the options. The same again is skipped;
    # new text (a corpus with new characters) trains it again instead of mapping them to <unk>.
    record_file = inputs_record_path(out)
    inputs = {"text": [file_version(p / args.text_file if p.is_dir() else p) for p in args.inputs],
              "options": {k: getattr(args, k) for k in ("model_type", "text_file", "min_count", "vocab_size", "normalize")}}
    if not args.force and out.is_file() and not changed_inputs(read_inputs_record(record_file), inputs):
        log.info("%s was made from the same text with the same options; skipping (--force to train again)", out)
        return 0
    try:
        record_file.unlink(missing_ok=True)  # written last: an output without it counts as unfinished
        if units:
            write_unit_list(args.inputs, args.out_prefix, args.text_file, args.min_count)
        else:
            train_tokenizer(args.inputs, args.out_prefix, args.model_type, args.vocab_size, args.normalize)
        write_inputs_record(record_file, inputs)
    except (DataError, ValueError, OSError) as error:
        log_failure(log, error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
