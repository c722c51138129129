"""Transcript cleaning for a recipe's stage 0: tags, then the normalisation of training and scoring.

Transcripts of many corpora carry tags such as ``<SPOKEN_NOISE>`` or ``<PERIOD>`` (KeSpeech's). A YAML
file (egs/kespeech/conf/text_cleaning.yaml) lists which tags drop the utterance (noise: the audio holds
something the transcript does not) and which are stripped (silence, punctuation). An unknown tag is an error
naming the file and line, so a tag we have not thought about is never kept as letters or silently dropped.
Evaluation sets may keep their noise-tagged utterances with the tag stripped (``keep_noisy``), as lhotse's
KeSpeech recipe (icefall) does: the test sets are then the corpus' whole official ones, comparable with
published CERs; only training drops them.

After the tags, the text goes through ``hdmole.text.normalize_text`` -- the very normalisation training
and scoring apply (NFKC: full-width letters/digits to half-width; latin uppercased; punctuation, symbols
and all whitespace removed) -- so the data dirs hold exactly what is scored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from hdmole.data.errors import DataError
from hdmole.text.normalize import normalize_text

TAG = re.compile(r"<([^<>\s]*)>")


@dataclass(frozen=True)
class TextCleaner:
    drop_tags: frozenset[str]
    strip_tags: frozenset[str]
    source: str = "conf/text_cleaning.yaml"

    @classmethod
    def load(cls, path: str | Path) -> "TextCleaner":
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: text cleaning config not found (see egs/kespeech/conf/text_cleaning.yaml)")
        conf = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        unknown = set(conf) - {"drop_tags", "strip_tags"}
        if unknown:
            raise DataError(f"{path}: unknown key {sorted(unknown)[0]}; valid keys: drop_tags, strip_tags")
        drop, strip = frozenset(conf.get("drop_tags") or []), frozenset(conf.get("strip_tags") or [])
        both = drop & strip
        if both:
            raise DataError(f"{path}: tag {sorted(both)[0]} is in both drop_tags and strip_tags; keep it in one")
        return cls(drop, strip, str(path))

    def clean(self, text: str, where: str, keep_noisy: bool = False) -> tuple[str | None, str]:
        """``(cleaned text, "")`` or ``(None, reason)`` for an utterance to drop; ``where`` is ``file:line``.
        ``keep_noisy``: a drop tag is stripped like the others and the utterance kept (evaluation sets)."""
        tags = TAG.findall(text)
        for tag in tags:
            if tag not in self.drop_tags and tag not in self.strip_tags:
                raise DataError(
                    f"{where}: unknown tag <{tag}> in transcript {text!r}; add {tag} to drop_tags (the utterance is "
                    f"dropped) or strip_tags (the tag is removed) in {self.source}"
                )
        dropping = [t for t in tags if t in self.drop_tags]
        if dropping and not keep_noisy:
            return None, f"tag <{dropping[0]}>"
        cleaned = normalize_text(TAG.sub("", text))
        if not cleaned:
            return None, "empty after cleaning"
        return cleaned, ""
