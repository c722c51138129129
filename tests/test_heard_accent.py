"""egs/mini_accent/local/heard_accent.py: at the syllables an accent changed, did the CTC head hear the accented
form, the standard one or something else (the misrouted-speaker analysis of issue 19)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOCAL = ROOT / "egs" / "mini_accent" / "local"
sys.path.insert(0, str(LOCAL))
spec = importlib.util.spec_from_file_location("heard_accent", LOCAL / "heard_accent.py")
heard_accent = importlib.util.module_from_spec(spec)
spec.loader.exec_module(heard_accent)


def write_set(tmp_path: Path, spoken_b: str = "ni3 hao3") -> Path:
    data = tmp_path / "test_X"
    data.mkdir()
    (data / "utt2spk").write_text("a-1 a\nb-1 b\n")
    (data / "pinyin").write_text("a-1 zhong1 guo2\nb-1 ni3 hao3\n")
    (data / "spoken_pinyin").write_text(f"a-1 zong1 guo4\nb-1 {spoken_b}\n")
    # a: the segment change (zh -> z) heard as spoken, the tone change (2 -> 4) heard as the standard tone;
    # b: left alone by the accent, its first syllable heard right and its second with another tone
    (tmp_path / "x.heard").write_text("a-1 z ong1 g uo2\nb-1 n i3 h ao1\n")
    return data


def test_each_changed_syllable_is_counted_as_heard_spoken_standard_or_other(tmp_path, capsys):
    data = write_set(tmp_path)
    rows = list(heard_accent.heard_outcomes(heard_accent.read_table(tmp_path / "x.heard"),
                                            heard_accent.read_table(data / "pinyin"),
                                            heard_accent.read_table(data / "spoken_pinyin")))
    assert [(u, kind, outcome) for u, kind, _, _, outcome in rows] == [
        ("a-1", "segment", "spoken"), ("a-1", "tone", "standard"), ("b-1", "same", "spoken"), ("b-1", "same", "other")]
    heard_accent.main(["--heard", str(tmp_path / "x.heard"), "--data", str(data), "--speaker", "a"])
    out = capsys.readouterr().out
    assert "| a | 0.0% / 100.0% / 0.0% (n=1) | 100.0% / 0.0% / 0.0% (n=1) | 0.0% |" in out
    assert "| b | - | - | 50.0% |" in out
    assert "| 2->4 | 0.0% / 100.0% / 0.0% (n=1) | - |" in out


def test_a_data_dir_whose_spoken_pinyin_does_not_match_its_pinyin_is_refused(tmp_path):
    data = write_set(tmp_path, spoken_b="ni3")
    with pytest.raises(ValueError, match="b-1: pinyin has 2 syllables, spoken_pinyin 1"):
        heard_accent.main(["--heard", str(tmp_path / "x.heard"), "--data", str(data)])


def test_an_unknown_speaker_is_refused_by_name(tmp_path):
    data = write_set(tmp_path)
    with pytest.raises(SystemExit, match="--speaker c: not a speaker of"):
        heard_accent.main(["--heard", str(tmp_path / "x.heard"), "--data", str(data), "--speaker", "c"])


def test_a_bad_line_in_the_data_dir_is_named_with_its_file_and_line(tmp_path):
    from hdmole.data.errors import DataError

    data = write_set(tmp_path)
    (data / "pinyin").write_text("a-1 zhong1 guo2\na-1 ni3 hao3\n")
    with pytest.raises(DataError, match=r"pinyin:2: duplicate id 'a-1'"):
        heard_accent.main(["--heard", str(tmp_path / "x.heard"), "--data", str(data)])


def test_a_heard_utterance_missing_from_the_data_dir_is_refused_by_name(tmp_path):
    data = write_set(tmp_path)
    (tmp_path / "x.heard").write_text("a-1 z ong1 g uo2\nc-1 n i3\n")
    with pytest.raises(ValueError, match="c-1: in the heard file but not in the data dir"):
        heard_accent.main(["--heard", str(tmp_path / "x.heard"), "--data", str(data)])
