"""Pinyin-level accent rules modelled on Mandarin dialect groups (KeSpeech's subdialect names).

Each accent is an ordered list of rules. A rule rewrites one tone-numbered syllable (`zhi1` ->
`zi1`); it only ever produces a syllable of the standard inventory (pinyin_inventory), otherwise
the syllable is left as it is. Every speaker of an accent draws its own application probability
for every rule from the rule's range, so two speakers of one accent differ the way real speakers
of a dialect area do (some merge n/l always, others only sometimes). Within an utterance each
rule fires on each syllable it applies to with the speaker's probability.

The rules, their dialect sources and the tone-value reasoning are documented in
egs/mini_accent/README.md ("Accents"); the rule `doc` strings below are the short form.

Tone remaps: the dialect's own tone values (Chao numbers) of the four Middle-Chinese-derived tone
categories are mapped to the Mandarin tone whose contour is closest: high level (55, 44) -> 1,
rising (24, 35, 13) -> 2, low or dipping (21, 213, 22, 11) -> 3, falling from mid/high
(53, 51, 42, 31) -> 4. The neutral tone (5) is never remapped.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

from pinyin_inventory import is_valid_base, join_tone3, split_initial, split_tone3

STANDARD = "Mandarin"

Change = Callable[[str, int], tuple[str, int]]


@dataclass(frozen=True)
class Rule:
    """One sound change. `change(base, tone)` proposes the changed syllable (or returns it unchanged)."""

    name: str
    doc: str
    probability: tuple[float, float]  # a speaker's application probability is drawn uniformly from this range
    change: Change = field(repr=False)

    def propose(self, syllable: str) -> str:
        """The syllable after this rule, or the syllable itself when the rule does not apply or the
        result would not be a valid Mandarin syllable."""
        base, tone = split_tone3(syllable)
        new_base, new_tone = self.change(base, tone)
        if (new_base, new_tone) == (base, tone) or not is_valid_base(new_base):
            return syllable
        return join_tone3(new_base, new_tone)


def regex_rule(name: str, doc: str, probability: tuple[float, float], pattern: str, replacement: str) -> Rule:
    compiled = re.compile(pattern)
    return Rule(name, doc, probability, lambda base, tone: (compiled.sub(replacement, base, count=1), tone))


def table_rule(name: str, doc: str, probability: tuple[float, float], table: Mapping[str, str]) -> Rule:
    return Rule(name, doc, probability, lambda base, tone: (table.get(base, base), tone))


def tone_rule(name: str, doc: str, probability: tuple[float, float], mapping: Mapping[int, int]) -> Rule:
    return Rule(name, doc, probability, lambda base, tone: (base, mapping.get(tone, tone)))


# Finals of retroflex (or r-) syllables and the final they take after an alveolo-palatal initial
# (j q x / y); used for Jiao-Liao's palatal [tʃ]-type reflex and its zero-initial r-words.
_PALATAL_FINAL = {
    "i": "i", "e": "ie", "en": "in", "eng": "ing", "ou": "iu", "u": "u", "an": "ian", "ang": "iang",
    "ao": "iao", "ong": "iong", "un": "un", "uan": "uan", "uo": "ue",
}
_TO_PALATAL = {"zh": "j", "ch": "q", "sh": "x"}
_TO_DENTAL = {"zh": "z", "ch": "c", "sh": "s"}
_Y_SPELLING = {"i": "yi", "ie": "ye", "in": "yin", "ing": "ying", "iu": "you", "u": "yu", "ian": "yan",
               "iang": "yang", "iao": "yao", "iong": "yong", "un": "yun", "uan": "yuan", "ue": "yue"}


def _retroflex_split(base: str, tone: int) -> tuple[str, int]:
    """Jiao-Liao: zh ch sh -> palatal (written j q x + i-medial) where the final allows it, else dental."""
    initial, final = split_initial(base)
    if initial not in _TO_PALATAL:
        return base, tone
    palatal = _PALATAL_FINAL.get(final)
    if palatal is not None and is_valid_base(_TO_PALATAL[initial] + palatal):
        return _TO_PALATAL[initial] + palatal, tone
    return _TO_DENTAL[initial] + final, tone


def _r_to_zero_initial(base: str, tone: int) -> tuple[str, int]:
    """Jiao-Liao / Northeastern: r- words lose the initial and take an i/u-umlaut medial (人 ren -> yin)."""
    initial, final = split_initial(base)
    if initial != "r" or final not in _PALATAL_FINAL:
        return base, tone
    return _Y_SPELLING[_PALATAL_FINAL[final]], tone


# Xi'an/Guanzhong [pf pf' f] for zh ch sh before u / ong, written with the nearest pinyin initial f.
_LABIODENTAL_FINAL = {"u": "u", "ua": "a", "uo": "o", "ui": "ei", "uan": "an", "un": "en", "uang": "ang", "ong": "eng"}


def _retroflex_rounded_to_f(base: str, tone: int) -> tuple[str, int]:
    initial, final = split_initial(base)
    if initial in _TO_DENTAL and final in _LABIODENTAL_FINAL:
        return "f" + _LABIODENTAL_FINAL[final], tone
    return base, tone


_DT_PALATAL = {"d": "j", "t": "q"}


def _dt_palatalisation(base: str, tone: int) -> tuple[str, int]:
    """Eastern Guanzhong: d t before i-finals become alveolo-palatal affricates (地 di -> ji, 天 tian -> qian)."""
    initial, final = split_initial(base)
    if initial in _DT_PALATAL and final.startswith("i"):
        return _DT_PALATAL[initial] + final, tone
    return base, tone


_ZERO_INITIAL_OPEN = {"a", "ai", "an", "ang", "ao", "e", "ei", "en", "ou"}


def _zero_initial_to_n(base: str, tone: int) -> tuple[str, int]:
    """Zhongyuan: open zero-initial syllables get a nasal onset [ŋ], written n (安 an -> nan)."""
    return ("n" + base, tone) if base in _ZERO_INITIAL_OPEN else (base, tone)


_UNROUNDED = {"yu": "yi", "yue": "ye", "yuan": "yan", "yun": "yin", "lv": "li", "nv": "ni", "lve": "lie", "nve": "nie"}


def _unround_u_umlaut(base: str, tone: int) -> tuple[str, int]:
    """ü-finals lose lip rounding: yu -> yi, ju -> ji, xue -> xie, juan -> jian, qun -> qin."""
    if base in _UNROUNDED:
        return _UNROUNDED[base], tone
    initial, final = split_initial(base)
    if initial in ("j", "q", "x") and final.startswith("u"):
        return initial + "i" + final[1:] if final != "un" else initial + "in", tone
    return base, tone


# ----------------------------------------------------------------------------------------------
# Rules shared by several groups (each group lists its own probability range).
def retroflex_to_dental(probability: tuple[float, float]) -> Rule:
    return regex_rule("retroflex_to_dental", "zh ch sh -> z c s (知 zhi -> zi)", probability, r"^([zcs])h", r"\1")


def velar_nasal_fronting(probability: tuple[float, float]) -> Rule:
    return regex_rule("velar_nasal_fronting", "-eng -> -en, -ing -> -in (京 jing -> jin, 生 sheng -> shen)",
                      probability, r"^(?!w)(.*[ei])ng$", r"\1n")


def velar_e_rounding(probability: tuple[float, float]) -> Rule:
    return table_rule("velar_e_rounding", "ge ke he -> guo kuo huo ([o]: 哥 ge -> guo, 河 he -> huo)", probability,
                      {"ge": "guo", "ke": "kuo", "he": "huo"})


@dataclass(frozen=True)
class Accent:
    name: str  # a token: used in utterance ids, utt2accent and accents.txt
    dialect_group: str
    reference_points: str
    rules: tuple[Rule, ...]


ACCENTS: dict[str, Accent] = {
    accent.name: accent
    for accent in (
        Accent("Southwestern", "Southwestern Mandarin (西南官话)", "Chengdu, Chongqing", (
            retroflex_to_dental((0.8, 1.0)),
            regex_rule("r_to_z", "r -> z (Chengdu [z]; 人 ren -> zen)", (0.6, 1.0), r"^r", "z"),
            regex_rule("n_to_l", "n -> l except before i/u-umlaut (南 nan -> lan)", (0.7, 1.0), r"^n(?=[aeou])", "l"),
            velar_nasal_fronting((0.7, 1.0)),
            table_rule("hu_to_fu", "hu -> fu (湖 hu -> fu)", (0.5, 1.0), {"hu": "fu"}),
            velar_e_rounding((0.4, 0.9)),
            Rule("u_umlaut_unrounding", "ü -> i (Kunming, Guiyang: 鱼 yu -> yi, 去 qu -> qi)", (0.3, 0.8), _unround_u_umlaut),
            tone_rule("chengdu_tones", "Chengdu 55 21 53 213: tones 1 2 3 4 -> 1 3 4 3", (0.6, 1.0), {2: 3, 3: 4, 4: 3}),
        )),
        Accent("JiangHuai", "Jiang-Huai Mandarin (江淮官话)", "Nanjing, Hefei, Yangzhou", (
            retroflex_to_dental((0.5, 1.0)),
            regex_rule("n_to_l_all", "n -> l in every position (南 nan -> lan, 你 ni -> li)", (0.8, 1.0), r"^n", "l"),
            regex_rule("an_backing", "-an/-uan -> -ang/-uang, not -ian/-üan (南 nan -> nang, 关 guan -> guang)",
                       (0.7, 1.0), r"^(zh|ch|sh|[bpmfdtnlgkhrzcsw]?)(u?)an$", r"\1\2ang"),
            velar_nasal_fronting((0.6, 1.0)),
            velar_e_rounding((0.5, 1.0)),
            tone_rule("nanjing_tones", "Nanjing 31 24 22 44: tones 1 2 3 4 -> 4 2 3 1", (0.6, 1.0), {1: 4, 4: 1}),
        )),
        Accent("JiaoLiao", "Jiao-Liao Mandarin (胶辽官话)", "Yantai, Weihai, Qingdao, Dalian", (
            Rule("retroflex_split", "zh ch sh -> palatal j q x + i (吃 chi -> qi, 说 shuo -> xue), else z c s",
                 (0.8, 1.0), _retroflex_split),
            Rule("r_to_zero_initial", "r -> zero initial y- (人 ren -> yin, 肉 rou -> you)", (0.7, 1.0), _r_to_zero_initial),
            table_rule("dental_u_loss", "loss of -u- after d t n l z c s (暖 nuan -> nan, 孙 sun -> sen)", (0.5, 1.0),
                       {"duan": "dan", "tuan": "tan", "nuan": "nan", "luan": "lan", "zuan": "zan", "cuan": "can",
                        "suan": "san", "dun": "den", "zun": "zen", "cun": "cen", "sun": "sen", "dui": "dei", "zui": "zei"}),
            tone_rule("qingdao_tones", "Qingdao 213 42 55 (qu merged into yangping 42): tones 1 2 3 4 -> 3 4 1 4",
                      (0.6, 1.0), {1: 3, 2: 4, 3: 1}),
        )),
        Accent("Zhongyuan", "Central Plains Mandarin (中原官话)", "Xi'an (Guanzhong), Luoyang", (
            Rule("retroflex_rounded_to_f", "zh ch sh before u/ong -> f (Xi'an [pf pf' f]: 书 shu -> fu, 水 shui -> fei)",
                 (0.7, 1.0), _retroflex_rounded_to_f),
            retroflex_to_dental((0.3, 0.7)),
            Rule("dt_palatalisation", "d t before i -> j q (天 tian -> qian, 地 di -> ji)", (0.5, 0.9), _dt_palatalisation),
            Rule("zero_initial_to_n", "open zero-initial syllables get n- ([ŋ]: 安 an -> nan, 爱 ai -> nai)", (0.6, 1.0),
                 _zero_initial_to_n),
            tone_rule("xian_tones", "Xi'an 21 24 53 44: tones 1 2 3 4 -> 3 2 4 1", (0.6, 1.0), {1: 3, 3: 4, 4: 1}),
        )),
    )
}


def accent_names(accents: Iterable[str]) -> list[str]:
    """`[Mandarin] + accents`, checking every name; this order is accents.txt's (domain index)."""
    names = [STANDARD]
    for name in accents:
        if name not in ACCENTS:
            raise ValueError(f"unknown accent {name!r}; known accents: {', '.join(ACCENTS)}")
        if name in names:
            raise ValueError(f"accent {name!r} is listed twice")
        names.append(name)
    return names


@dataclass(frozen=True)
class SpeakerAccent:
    """One speaker's version of an accent: the probability with which it applies each rule."""

    accent: str
    probabilities: tuple[tuple[str, float], ...] = ()

    def rules(self) -> list[tuple[Rule, float]]:
        if self.accent == STANDARD:
            return []
        by_name = {rule.name: rule for rule in ACCENTS[self.accent].rules}
        return [(by_name[name], p) for name, p in self.probabilities]


def draw_speaker_accent(accent: str, rng: random.Random) -> SpeakerAccent:
    """Draw a speaker's per-rule probabilities (uniform in each rule's range)."""
    if accent == STANDARD:
        return SpeakerAccent(STANDARD)
    if accent not in ACCENTS:
        raise ValueError(f"unknown accent {accent!r}; known accents: {', '.join(ACCENTS)}")
    return SpeakerAccent(accent, tuple((rule.name, round(rng.uniform(*rule.probability), 3)) for rule in ACCENTS[accent].rules))


def apply_accent(syllables: Sequence[str], speaker: SpeakerAccent, rng: random.Random) -> list[str]:
    """The syllables as this speaker says them. One random draw per (syllable, rule), applicable or
    not, so the outcome depends only on the seed, the speaker and the sentence."""
    rules = speaker.rules()
    spoken = []
    for syllable in syllables:
        for rule, probability in rules:
            if rng.random() < probability:
                syllable = rule.propose(syllable)
        spoken.append(syllable)
    return spoken


def change_rates(standard: Sequence[Sequence[str]], spoken: Sequence[Sequence[str]]) -> dict[str, float]:
    """Fractions of syllables changed at all, in their segments (initial/final), and in tone only."""
    total = changed = segmental = 0
    for std_sentence, spoken_sentence in zip(standard, spoken):
        for std, said in zip(std_sentence, spoken_sentence):
            total += 1
            if std != said:
                changed += 1
                segmental += split_tone3(std)[0] != split_tone3(said)[0]
    if total == 0:
        raise ValueError("no syllables to measure")
    return {"any": changed / total, "segmental": segmental / total, "tone_only": (changed - segmental) / total}
