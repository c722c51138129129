"""Accent rules of egs/mini_accent: each rule on pinyin, validity of every output, speakers, audio."""

import random
import subprocess
import sys
import wave
from pathlib import Path

import pytest

LOCAL = Path(__file__).resolve().parents[1] / "egs" / "mini_accent" / "local"
sys.path.insert(0, str(LOCAL))

import accent_rules as A  # noqa: E402
from corpus_synthesis import Voice, synthesize  # noqa: E402
from pinyin_inventory import PinyinError, initial_final, is_valid_tone3, split_tone3, text_to_tone3, valid_syllables  # noqa: E402


def rule(accent, name):
    return next(r for r in A.ACCENTS[accent].rules if r.name == name)


CASES = [
    # (accent, rule, input, expected)
    ("Southwestern", "retroflex_to_dental", "zhi1", "zi1"),
    ("Southwestern", "retroflex_to_dental", "shuo1", "suo1"),
    ("Southwestern", "retroflex_to_dental", "ri4", "ri4"),
    ("Southwestern", "r_to_z", "ren2", "zen2"),
    ("Southwestern", "n_to_l", "nan2", "lan2"),
    ("Southwestern", "n_to_l", "ni3", "ni3"),  # Chengdu keeps a palatal nasal before i
    ("Southwestern", "velar_nasal_fronting", "jing1", "jin1"),
    ("Southwestern", "velar_nasal_fronting", "sheng1", "shen1"),
    ("Southwestern", "velar_nasal_fronting", "ting2", "ting2"),  # *tin is no Mandarin syllable: unchanged
    ("Southwestern", "velar_nasal_fronting", "weng1", "weng1"),
    ("Southwestern", "hu_to_fu", "hu2", "fu2"),
    ("Southwestern", "velar_e_rounding", "ge1", "guo1"),
    ("Southwestern", "u_umlaut_unrounding", "yu2", "yi2"),
    ("Southwestern", "u_umlaut_unrounding", "xue2", "xie2"),
    ("Southwestern", "u_umlaut_unrounding", "lv4", "li4"),
    ("Southwestern", "u_umlaut_unrounding", "jun1", "jin1"),
    ("Southwestern", "chengdu_tones", "ma1", "ma1"),
    ("Southwestern", "chengdu_tones", "ma2", "ma3"),
    ("Southwestern", "chengdu_tones", "ma3", "ma4"),
    ("Southwestern", "chengdu_tones", "ma4", "ma3"),
    ("Southwestern", "chengdu_tones", "de5", "de5"),
    ("JiangHuai", "n_to_l_all", "ni3", "li3"),
    ("JiangHuai", "n_to_l_all", "nan2", "lan2"),
    ("JiangHuai", "an_backing", "nan2", "nang2"),
    ("JiangHuai", "an_backing", "guan1", "guang1"),
    ("JiangHuai", "an_backing", "an1", "ang1"),
    ("JiangHuai", "an_backing", "bian4", "bian4"),
    ("JiangHuai", "an_backing", "yuan2", "yuan2"),
    ("JiangHuai", "nanjing_tones", "ma1", "ma4"),
    ("JiangHuai", "nanjing_tones", "ma4", "ma1"),
    ("JiangHuai", "nanjing_tones", "ma2", "ma2"),
    ("JiaoLiao", "retroflex_split", "chi1", "qi1"),
    ("JiaoLiao", "retroflex_split", "shuo1", "xue1"),
    ("JiaoLiao", "retroflex_split", "zhou1", "jiu1"),
    ("JiaoLiao", "retroflex_split", "zha1", "za1"),  # no palatal counterpart: dental
    ("JiaoLiao", "r_to_zero_initial", "ren2", "yin2"),
    ("JiaoLiao", "r_to_zero_initial", "rou4", "you4"),
    ("JiaoLiao", "r_to_zero_initial", "rui4", "rui4"),
    ("JiaoLiao", "dental_u_loss", "nuan3", "nan3"),
    ("JiaoLiao", "dental_u_loss", "sun1", "sen1"),
    ("JiaoLiao", "qingdao_tones", "ma1", "ma3"),
    ("JiaoLiao", "qingdao_tones", "ma2", "ma4"),
    ("JiaoLiao", "qingdao_tones", "ma3", "ma1"),
    ("JiaoLiao", "qingdao_tones", "ma4", "ma4"),
    ("Zhongyuan", "retroflex_rounded_to_f", "shu1", "fu1"),
    ("Zhongyuan", "retroflex_rounded_to_f", "shui3", "fei3"),
    ("Zhongyuan", "retroflex_rounded_to_f", "zhong1", "feng1"),
    ("Zhongyuan", "retroflex_rounded_to_f", "zhi1", "zhi1"),
    ("Zhongyuan", "dt_palatalisation", "tian1", "qian1"),
    ("Zhongyuan", "dt_palatalisation", "di4", "ji4"),
    ("Zhongyuan", "dt_palatalisation", "dao4", "dao4"),
    ("Zhongyuan", "zero_initial_to_n", "an1", "nan1"),
    ("Zhongyuan", "zero_initial_to_n", "ai4", "nai4"),
    ("Zhongyuan", "xian_tones", "ma1", "ma3"),
    ("Zhongyuan", "xian_tones", "ma3", "ma4"),
    ("Zhongyuan", "xian_tones", "ma4", "ma1"),
]


@pytest.mark.parametrize("accent,name,syllable,expected", CASES)
def test_rule_on_pinyin(accent, name, syllable, expected):
    assert rule(accent, name).propose(syllable) == expected


def test_every_rule_output_is_valid_pinyin():
    syllables = [f"{base}{tone}" for base in sorted(valid_syllables()) for tone in range(1, 6)]
    for accent in A.ACCENTS.values():
        changed = 0
        for r in accent.rules:
            for syllable in syllables:
                result = r.propose(syllable)
                assert is_valid_tone3(result), (accent.name, r.name, syllable, result)
                changed += result != syllable
        assert changed > 0, accent.name


def test_inventory_and_espeak_speaks_every_syllable():
    inventory = sorted(valid_syllables())
    assert 390 < len(inventory) < 420 and "zhuang" in inventory and "lv" in inventory and "hm" not in inventory
    out = subprocess.run(["espeak-ng", "-v", "cmn-latn-pinyin", "-q", "-x"], input="\n".join(s + "1" for s in inventory),
                         capture_output=True, text=True, check=True).stdout
    phonemes = [p.strip() for p in out.replace("\n", " ").split("_|") if p.strip()]
    assert len(phonemes) == len(inventory)
    assert not [p for p in phonemes if "(" in p]  # "(en)" would mean espeak fell back to another language


def test_text_to_tone3_and_errors():
    assert text_to_tone3("我们去北京") == ["wo3", "men5", "qu4", "bei3", "jing1"]
    assert text_to_tone3("绿") == ["lv4"]
    with pytest.raises(PinyinError):
        text_to_tone3("abc")
    with pytest.raises(PinyinError):
        split_tone3("zhong")


@pytest.mark.parametrize("syllable, units", [
    ("zhong1", ["zh", "ong1"]), ("guo2", ["g", "uo2"]), ("er2", ["er2"]), ("de5", ["d", "e5"]),
    ("yi1", ["y", "i1"]), ("lv4", ["l", "v4"]), ("a1", ["a1"]), ("ze3", ["z", "e3"]),
])
def test_initial_final_units(syllable, units):
    assert initial_final(syllable) == units


def test_initial_final_units_spell_every_accented_syllable_with_few_units():
    """Every valid syllable with every tone is spelt by a small set of units (what makes them CTC targets
    a standard-Mandarin recogniser can learn and still use on accented speech)."""
    units = {u for base in valid_syllables() for tone in "12345" for u in initial_final(base + tone)}
    assert 120 < len(units) < 260
    rng = random.Random(0)
    for accent in A.ACCENTS:
        speaker = A.draw_speaker_accent(accent, rng)
        spoken = A.apply_accent(text_to_tone3("中国人民很好说话"), speaker, rng)
        assert all(set(initial_final(s)) <= units for s in spoken)


def test_speakers_of_one_accent_differ_and_are_reproducible():
    rng = random.Random(0)
    first, second = A.draw_speaker_accent("JiangHuai", rng), A.draw_speaker_accent("JiangHuai", rng)
    assert first.probabilities != second.probabilities
    for (name, p) in first.probabilities:
        low, high = rule("JiangHuai", name).probability
        assert low <= p <= high
    sentence = text_to_tone3("南京市长江大桥很难建成")
    assert A.apply_accent(sentence, first, random.Random(5)) == A.apply_accent(sentence, first, random.Random(5))
    never = A.SpeakerAccent("JiangHuai", tuple((name, 0.0) for name, _ in first.probabilities))
    always = A.SpeakerAccent("JiangHuai", tuple((name, 1.0) for name, _ in first.probabilities))
    assert A.apply_accent(sentence, never, random.Random(1)) == sentence
    assert A.apply_accent(sentence, always, random.Random(1))[:2] == ["lang2", "jin4"]  # nan2 jing1: n->l, an->ang, ing->in; tone 2 stays, 1 -> 4
    assert A.apply_accent(sentence, A.draw_speaker_accent("Mandarin", rng), random.Random(1)) == sentence


def test_accent_names_and_errors():
    assert A.accent_names(["Southwestern", "JiaoLiao"]) == ["Mandarin", "Southwestern", "JiaoLiao"]
    with pytest.raises(ValueError, match="unknown accent"):
        A.accent_names(["Cantonese"])
    with pytest.raises(ValueError, match="twice"):
        A.accent_names(["JiaoLiao", "JiaoLiao"])


@pytest.mark.slow  # collects and converts 400 real sentences
def test_change_rates_on_real_sentences():
    sys.path.insert(0, str(LOCAL))
    from corpus_sentences import collect_sentences

    pool = collect_sentences(["reviews_pos"], min_chars=4, max_chars=12, num_chars=800, seed=3, max_lines=400)
    sentences = [text_to_tone3(s) for s in pool.sentences[:400]]
    rng = random.Random(7)
    for name in A.ACCENTS:
        speakers = [A.draw_speaker_accent(name, rng) for _ in range(8)]
        spoken = [A.apply_accent(s, speakers[i % 8], rng) for i, s in enumerate(sentences)]
        rates = A.change_rates(sentences, spoken)
        assert rates["any"] >= 0.30, (name, rates)
        assert rates["segmental"] >= 0.08, (name, rates)  # consonant/rime changes, not only tones
        assert abs(rates["any"] - rates["segmental"] - rates["tone_only"]) < 1e-9


def test_two_accents_give_different_audio(tmp_path):
    sentence = text_to_tone3("这是四川人说的话")
    voice = Voice("m3", 50, 160)
    spoken = {}
    for name in ("Southwestern", "JiaoLiao"):
        always = A.SpeakerAccent(name, tuple((r.name, 1.0) for r in A.ACCENTS[name].rules))
        spoken[name] = A.apply_accent(sentence, always, random.Random(0))
    assert spoken["Southwestern"][:2] == ["ze3", "si3"] and spoken["JiaoLiao"][:2] == ["jie4", "xi4"]
    samples = {}
    for name, syllables in spoken.items():
        path = tmp_path / f"{name}.wav"
        synthesize(" ".join(syllables), voice, path)
        with wave.open(str(path)) as handle:
            assert handle.getframerate() == 16000 and handle.getsampwidth() == 2 and handle.getnchannels() == 1
            samples[name] = handle.readframes(handle.getnframes())
        assert len(samples[name]) > 16000  # more than half a second of speech
    assert samples["Southwestern"] != samples["JiaoLiao"]
    again = tmp_path / "again.wav"
    synthesize(" ".join(spoken["Southwestern"]), voice, again)
    with wave.open(str(again)) as handle:
        assert handle.readframes(handle.getnframes()) == samples["Southwestern"]  # synthesis is deterministic
