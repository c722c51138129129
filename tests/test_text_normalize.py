"""Chinese text normalisation: the exact documented rules."""

from __future__ import annotations

import pytest

from hdmole.text import normalize_text, split_characters


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("你好，世界！", "你好世界"),                     # CJK punctuation removed
        ("今天 天气\t很好。", "今天天气很好"),              # whitespace removed
        ("ＡＢＣ１２３ａｂ", "ABC123AB"),                   # full-width -> half-width, latin uppercased
        ("\u3000全角空格\u3000", "全角空格"),                # ideographic space
        ("[NOISE]我爱<unk>北京<SIL>", "我爱北京"),           # non-speech tags dropped whole
        ("hello, World!", "HELLOWORLD"),
        ("《三体》——“好看”…", "三体好看"),
        ("价格：100元，约$15", "价格100元约15"),             # symbols removed, digits kept
        ("二〇二四年，人々", "二〇二四年人々"),               # every letter and number: 〇 is Nl, 々 is Lm
        ("第Ⅲ章 ²", "第III章2"),                           # NFKC first: Roman numeral, superscript
        ("", ""),
    ],
)
def test_normalize_text(raw, expected):
    assert normalize_text(raw) == expected


def test_normalize_is_idempotent_and_split():
    text = normalize_text("Ｈｉ，你好！")
    assert text == "HI你好" and normalize_text(text) == text
    assert split_characters(text) == ["H", "I", "你", "好"]
