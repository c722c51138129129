"""Tone-numbered pinyin (pypinyin Style.TONE3) syllables: the valid inventory, splitting, conversion.

A syllable is written the way pypinyin's TONE3 style writes it and espeak-ng's `cmn-latn-pinyin`
voice reads it: the toneless spelling with `v` for u-umlaut (`lv4`, `nve4`), then the tone digit
1-4, or 5 for the neutral tone (`de5`).

The inventory of valid syllables is not typed in by hand: it is every syllable that pypinyin's own
character dictionary uses (about 420), minus interjections and dialect-only spellings that are not
part of the standard syllable table (`hm`, `ng`, `fiao`, `biang`, ...). espeak-ng speaks every
syllable of this inventory with its Mandarin rules (tests/test_accent_rules.py checks it).
"""

from __future__ import annotations

import functools
import re

# Syllables pypinyin lists for some rare character but that are not in the standard syllable table
# of Putonghua (interjections without a vowel, dialect words, one-character oddities).
NONSTANDARD_SYLLABLES = frozenset(
    {"biang", "bong", "cei", "din", "eng", "fiao", "hm", "hng", "len", "m", "n", "ng", "nia", "rua", "tei", "wong", "ê"}
)

# The spelled initial (y and w count as initials for spelling purposes) and the spelled final.
_SYLLABLE_RE = re.compile(r"^(zh|ch|sh|[bpmfdtnlgkhjqxrzcsyw])?([a-zv]+)$")
_TONE3_RE = re.compile(r"^([a-zv]+)([1-5])$")


class PinyinError(ValueError):
    """A syllable or a text that cannot be turned into valid tone-numbered pinyin."""


@functools.lru_cache(maxsize=1)
def valid_syllables() -> frozenset[str]:
    """The toneless syllables (TONE3 spelling, `v` for u-umlaut) that count as valid Mandarin."""
    from pypinyin import pinyin_dict
    from pypinyin.contrib.tone_convert import to_tone3

    found = set()
    for readings in pinyin_dict.pinyin_dict.values():
        for reading in readings.split(","):
            found.add(re.sub(r"\d", "", to_tone3(reading)))
    return frozenset(found - NONSTANDARD_SYLLABLES)


def is_valid_base(base: str) -> bool:
    """True when the toneless syllable `base` is in the standard inventory."""
    return base in valid_syllables()


def split_tone3(syllable: str) -> tuple[str, int]:
    """`'zhong1'` -> `('zhong', 1)`. Raises PinyinError for anything that is not `<letters><1-5>`."""
    match = _TONE3_RE.match(syllable)
    if not match:
        raise PinyinError(f"{syllable!r} is not a tone-numbered pinyin syllable (expected e.g. 'zhong1', 'de5')")
    return match.group(1), int(match.group(2))


def join_tone3(base: str, tone: int) -> str:
    return f"{base}{tone}"


def split_initial(base: str) -> tuple[str, str]:
    """`'zhuang'` -> `('zh', 'uang')`; zero-initial syllables give `('', 'an')`."""
    match = _SYLLABLE_RE.match(base)
    if not match:
        raise PinyinError(f"{base!r} is not a pinyin spelling")
    return match.group(1) or "", match.group(2)


def is_valid_tone3(syllable: str) -> bool:
    try:
        base, _ = split_tone3(syllable)
    except PinyinError:
        return False
    return is_valid_base(base)


def text_to_tone3(text: str) -> list[str]:
    """Standard-Mandarin tone-numbered pinyin of an all-CJK text, one syllable per character.

    pypinyin chooses readings of polyphonic characters from its phrase dictionary; neutral tones
    are written 5. Raises PinyinError when a character gets no valid syllable.
    """
    from pypinyin import Style, lazy_pinyin

    syllables = lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True, errors=lambda chars: [None] * len(chars))
    if len(syllables) != len(text):
        raise PinyinError(f"{text!r}: got {len(syllables)} syllables for {len(text)} characters")
    for char, syllable in zip(text, syllables):
        if syllable is None or not is_valid_tone3(syllable):
            raise PinyinError(f"{text!r}: character {char!r} has no valid pinyin (got {syllable!r}); drop the sentence")
    return syllables


def initial_final(syllable: str) -> list[str]:
    """A TONE3 syllable as CTC units: its initial (if any) and its final with the tone, e.g. ``zhong1`` ->
    ``zh ong1``, ``er2`` -> ``er2``, ``de5`` -> ``d e5``. Kaldi's Mandarin recipes model speech with such
    (tonal) initial/final units; here they let a recogniser trained on standard Mandarin spell what an
    accent says: ``ze3`` (from zhe3) is two units that standard speech has plenty of, though the syllable
    itself may never occur in standard text. Spelling as written (``y``, ``w`` count as initials)."""
    from pypinyin.contrib.tone_convert import to_finals_tone3, to_initials

    initial = to_initials(syllable, strict=False)
    final = to_finals_tone3(syllable, strict=False)
    if not final:
        raise PinyinError(f"{syllable!r} has no final")
    if not final[-1].isdigit():  # pypinyin drops the neutral tone's 5
        final += "5"
    return [initial, final] if initial else [final]
