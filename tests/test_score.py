"""Scoring: CER on fixed reference/hypothesis files against counts worked out by hand, per accent."""

from __future__ import annotations

import json

import pytest

from hdmole.bin import score
from test_data_fixtures import ACCENTS, make_data_dir, write_table

REF = [
    ("a1", "你好世界", "mandarin"),
    ("a2", "今天天气很好。", "mandarin"),
    ("b1", "我爱北京", "northeastern"),
    ("b2", "吃饭了吗", "northeastern"),
    ("c1", "ＡＩ识别", "southwestern"),
    ("c2", "火锅", "southwestern"),
]
HYP = [
    ("a1", "你好是界"),        # 1 sub                      (4 ref chars)
    ("a2", "今天天气很好"),     # correct (ref punctuation)   (6)
    ("b1", "我爱北京天安门"),   # 3 ins                       (4)
    ("b2", "吃了吗"),           # 1 del                       (4)
    ("c1", "ai识别！"),         # correct after normalisation (4)
    ("c2", "火锅"),             # correct                     (2)
]


def write_inputs(tmp_path, hyp_rows=HYP):
    write_table(tmp_path / "ref_text", [(u, t) for u, t, _ in REF])
    write_table(tmp_path / "utt2accent", [(u, a) for u, _, a in REF])
    (tmp_path / "hyp").write_text("".join(f"{u} {t}".rstrip() + "\n" for u, t in hyp_rows), encoding="utf-8")
    (tmp_path / "accents.txt").write_text("southwestern\nmandarin\nnortheastern\n")


def run(tmp_path, *extra):
    return score.main(["--ref", str(tmp_path / "ref_text"), "--hyp", str(tmp_path / "hyp"),
                       "--utt2accent", str(tmp_path / "utt2accent"), "--out", str(tmp_path / "out"), *extra])


def test_cer_by_hand_per_accent(tmp_path):
    write_inputs(tmp_path)
    assert run(tmp_path, "--accents", str(tmp_path / "accents.txt")) == 0
    # mandarin 1/10, northeastern (3 ins + 1 del)/8, southwestern 0/6, total 5/24; lines in accents.txt order.
    assert (tmp_path / "out" / "cer").read_text(encoding="utf-8").splitlines() == [
        "%CER 0.00 [ 0 / 6, 0 ins, 0 del, 0 sub ] accent=southwestern utts=2",
        "%CER 10.00 [ 1 / 10, 0 ins, 0 del, 1 sub ] accent=mandarin utts=2",
        "%CER 50.00 [ 4 / 8, 3 ins, 1 del, 0 sub ] accent=northeastern utts=2",
        "%CER 20.83 [ 5 / 24, 3 ins, 1 del, 1 sub ] accent=ALL utts=6",
    ]
    result = json.loads((tmp_path / "out" / "cer.json").read_text(encoding="utf-8"))
    assert result["total"] == {"cer": round(500 / 24, 4), "errors": 5, "ref_chars": 24, "hyp_chars": 26, "sub": 1,
                               "del": 1, "ins": 3, "utts": 6, "sentence_errors": 3}
    assert list(result["per_accent"]) == ["southwestern", "mandarin", "northeastern"]
    assert result["per_accent"]["northeastern"]["cer"] == 50.0 and result["num_missing_hyps"] == 0
    per_utt = (tmp_path / "out" / "per_utt").read_text(encoding="utf-8")
    assert "b1 accent=northeastern ref_chars=4 errors=3 sub=0 del=0 ins=3" in per_utt
    assert "b1 ref 我 爱 北 京 * * *\nb1 hyp 我 爱 北 京 天 安 门\nb1 op  C C C C I I I" in per_utt
    assert "a1 ref 你 好 世 界\na1 hyp 你 好 是 界\na1 op  C C S C" in per_utt
    assert "b2 op  C D C C" in per_utt
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_missing_hypotheses_count_as_deletions(tmp_path, caplog):
    write_inputs(tmp_path, [row for row in HYP if row[0] != "c2"] + [])
    assert run(tmp_path, "--allow-missing") == 0
    result = json.loads((tmp_path / "out" / "cer.json").read_text(encoding="utf-8"))
    assert result["num_missing_hyps"] == 1 and result["missing_hyps"] == ["c2"]
    assert result["per_accent"]["southwestern"]["del"] == 2 and result["total"]["errors"] == 7
    assert "1 reference utterance(s) have no hypothesis" in caplog.text
    assert "# 1 utterance(s) without a hypothesis" in (tmp_path / "out" / "cer").read_text()


def test_empty_hypothesis_line_is_all_deletions(tmp_path):
    write_inputs(tmp_path, [("a1", "")] + HYP[1:])
    assert run(tmp_path) == 0
    result = json.loads((tmp_path / "out" / "cer.json").read_text(encoding="utf-8"))
    assert result["per_accent"]["mandarin"] == {**result["per_accent"]["mandarin"], "del": 4, "sub": 0, "errors": 4}


def test_data_dir_reference_uses_its_utt2accent(tmp_path):
    data = make_data_dir(tmp_path)
    rows = [line.split(maxsplit=1) for line in (data / "text").read_text(encoding="utf-8").splitlines()]
    (tmp_path / "hyp").write_text("".join(f"{u} {t}\n" for u, t in rows), encoding="utf-8")
    assert score.main(["--ref", str(data), "--hyp", str(tmp_path / "hyp"), "--out", str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out" / "cer.json").read_text(encoding="utf-8"))
    assert result["total"]["cer"] == 0.0 and sorted(result["per_accent"]) == sorted(ACCENTS)


@pytest.mark.parametrize(
    "hyp_text, message",
    [
        ("a1 你好\nz9 多余\n", r"hyp:2: hypothesis for 'z9', which is not in the reference"),
        ("a1 你好\n\n", r"hyp:2: malformed line"),
        ("a1 你好\na1 你\n", r"hyp:2: duplicate id 'a1'"),
    ],
)
def test_bad_hypothesis_files(tmp_path, caplog, hyp_text, message):
    write_inputs(tmp_path)
    (tmp_path / "hyp").write_text(hyp_text, encoding="utf-8")
    assert run(tmp_path) == 1
    assert message in caplog.text.replace(str(tmp_path) + "/", "")
    assert not (tmp_path / "out").exists()


def test_reference_utterance_without_accent(tmp_path, caplog):
    write_inputs(tmp_path)
    write_table(tmp_path / "utt2accent", [(u, a) for u, _, a in REF if u != "b2"])
    assert run(tmp_path) == 1
    assert "ref_text:4: utterance 'b2' has no accent" in caplog.text and not (tmp_path / "out").exists()


def test_without_accents_only_total(tmp_path):
    write_inputs(tmp_path)
    summary, per_utt = score.score_texts(dict((u, t) for u, t, _ in REF), dict(HYP))
    assert summary["per_accent"] == {} and summary["total"]["errors"] == 5 and len(per_utt) == 6


def test_several_hypothesis_files_in_one_call_score_as_separate_calls(tmp_path):
    """The recipe scores every decoding of a system in one call: each --ref --hyp --out triple gets the files a
    call of its own writes, and the triples must pair up."""
    write_inputs(tmp_path)
    (tmp_path / "hyp2").write_text("".join(f"{u} {t}\n" for u, t, _ in REF), encoding="utf-8")  # all correct
    args = ["--utt2accent", str(tmp_path / "utt2accent")]
    for hyp in ("hyp", "hyp2"):
        assert score.main(["--ref", str(tmp_path / "ref_text"), "--hyp", str(tmp_path / hyp),
                           "--out", str(tmp_path / "alone" / hyp), *args]) == 0
    assert score.main(["--ref", str(tmp_path / "ref_text"), "--hyp", str(tmp_path / "hyp"), "--out",
                       str(tmp_path / "joined" / "hyp"), "--ref", str(tmp_path / "ref_text"), "--hyp",
                       str(tmp_path / "hyp2"), "--out", str(tmp_path / "joined" / "hyp2"), *args]) == 0
    for hyp in ("hyp", "hyp2"):
        for name in ("cer", "cer.json", "per_utt", "utt_errors"):
            assert (tmp_path / "joined" / hyp / name).read_bytes() == (tmp_path / "alone" / hyp / name).read_bytes()
    assert "ALL" in (tmp_path / "joined" / "hyp2" / "cer").read_text() and \
        "%CER 0.00" in (tmp_path / "joined" / "hyp2" / "cer").read_text().splitlines()[-1]
    with pytest.raises(SystemExit):  # two --hyp, one --out: argparse's usage error, exit status 2
        score.main(["--ref", str(tmp_path / "ref_text"), "--ref", str(tmp_path / "ref_text"), "--hyp",
                    str(tmp_path / "hyp"), "--hyp", str(tmp_path / "hyp2"), "--out", str(tmp_path / "x"), *args])
