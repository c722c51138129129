"""Chinese text normalisation, used identically for training targets and for scoring (CER).

`normalize_text(text)` applies, in this order:
1. Unicode NFKC. This maps full-width ASCII letters, digits and punctuation (U+FF01..U+FF5E) to their
   half-width forms, the ideographic space U+3000 to a space, and CJK compatibility ideographs to the
   unified ones (it also folds other compatibility forms, e.g. circled digits to digits).
2. Remove non-speech tags: any `[...]` or `<...>` span without spaces inside, e.g. `[NOISE]`, `<unk>`,
   `<SIL>` (Kaldi/corpus markup that would otherwise leave its letters in the text).
3. Uppercase: latin letters become uppercase (CJK characters have no case).
4. Keep only letters (Unicode categories L*: CJK ideographs, kana, hangul, latin, ...) and numbers (N*:
   digits are kept as written, not verbalised). Everything else is removed: punctuation (P*), symbols
   (S*), whitespace and separators (Z*), control/format characters (C*) and combining marks (M*).

The result has no spaces, so CER counts every remaining character (a latin word counts per letter).
"""

from __future__ import annotations

import re
import unicodedata

_NON_SPEECH_TAG = re.compile(r"\[[^\s\[\]]*\]|<[^\s<>]*>")
_KEPT_CATEGORIES = ("L", "N")


def normalize_text(text: str) -> str:
    """Normalised text (see the module docstring for the exact rules)."""
    text = unicodedata.normalize("NFKC", text)
    text = _NON_SPEECH_TAG.sub("", text)
    text = text.upper()
    return "".join(ch for ch in text if unicodedata.category(ch)[0] in _KEPT_CATEGORIES)


def split_characters(text: str) -> list[str]:
    """The scoring units of already-normalised text: its characters."""
    return list(text)
