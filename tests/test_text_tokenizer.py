"""Tokenisers: a character sentencepiece model trained here, and an offline transformers tokenizer."""

from __future__ import annotations

import pickle

import pytest

from hdmole.bin import train_tokenizer
from hdmole.text import HFTokenizer, SentencePieceTokenizer, Tokenizer, build_tokenizer
from test_data_fixtures import make_data_dir

SENTENCES = ["我爱北京天安门。", "今天天气很好", "四川火锅很辣！", "ＡＩ语音识别"]


@pytest.fixture(scope="module")
def char_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("spm")
    (root / "corpus.txt").write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    data = make_data_dir(root)
    assert train_tokenizer.main(["--model-type", "char", str(root / "corpus.txt"), str(data), str(root / "out" / "char")]) == 0
    return root / "out" / "char.model"


def test_char_model_round_trips_chinese(char_model):
    tok = build_tokenizer({"type": "sentencepiece", "model": str(char_model)})
    assert isinstance(tok, Tokenizer) and (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 2, 3)
    vocab = char_model.with_suffix(".vocab").read_text(encoding="utf-8").splitlines()
    assert tok.vocab_size == len(vocab)
    # Every distinct character of the normalised training text (file + data dir) has its own piece.
    assert {line.split("\t")[0] for line in vocab[4:]} >= set("我爱北京天安门今火锅AI语音识别你好世界吃饭了吗HELLO四川辣")
    for text in ["我爱北京天安门", "今天火锅很辣", "AI语音识别", "吃饭了吗"]:
        ids = tok.encode(text)
        assert len(ids) == len(text)  # one id per character
        assert tok.decode(ids) == text
        assert tok.decode([tok.bos_id, *ids, tok.eos_id, tok.pad_id, tok.pad_id]) == text
    assert tok.encode("我X")[1] == tok.unk_id  # unseen character
    restored = pickle.loads(pickle.dumps(tok))
    assert restored.encode("北京") == tok.encode("北京")


def test_vocab_size_bounds(tmp_path, char_model, caplog):
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(SENTENCES), encoding="utf-8")
    assert train_tokenizer.main(["--vocab-size", "200", str(corpus), str(tmp_path / "big")]) == 0
    distinct = set("我爱北京天安门" "今天天气很好" "四川火锅很辣" "AI语音识别")  # normalised: no punctuation, half-width
    assert SentencePieceTokenizer(tmp_path / "big.model").vocab_size == len(distinct) + 4  # 200 is only an upper bound
    assert train_tokenizer.main(["--vocab-size", "10", str(corpus), str(tmp_path / "small")]) == 1
    assert "too small" in caplog.text and not (tmp_path / "small.model").exists()
    assert train_tokenizer.main([str(tmp_path / "missing.txt"), str(tmp_path / "x")]) == 1
    assert "no such text file or data dir" in caplog.text


def test_build_tokenizer_config_errors(tmp_path):
    with pytest.raises(ValueError, match="'type' must be one of"):
        build_tokenizer({"type": "bpe"})
    with pytest.raises(ValueError, match=r"unknown keys \['vocab'\]"):
        build_tokenizer({"type": "sentencepiece", "model": "x", "vocab": 3})
    with pytest.raises(ValueError, match=r"missing keys \['name_or_path'\]"):
        build_tokenizer({"type": "hf"})
    with pytest.raises(FileNotFoundError, match="train it with"):
        build_tokenizer({"type": "sentencepiece", "model": str(tmp_path / "none.model")})
    with pytest.raises(FileNotFoundError, match="not available offline"):
        build_tokenizer({"type": "hf", "name_or_path": str(tmp_path / "no_such_tokenizer")})


def make_local_hf_tokenizer(path, with_pad: bool):
    """A tiny character-level fast tokenizer saved to disk (stands in for Qwen2's, which we cannot download)."""
    from tokenizers import Tokenizer as RawTokenizer
    from tokenizers.decoders import Fuse
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Split
    from transformers import PreTrainedTokenizerFast

    chars = sorted(set("".join(SENTENCES)))
    vocab = {"<|endoftext|>": 0, "<unk>": 1, **{ch: i + 2 for i, ch in enumerate(chars)}}
    raw = RawTokenizer(WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = Split("", behavior="isolated")
    raw.decoder = Fuse()
    specials = {"eos_token": "<|endoftext|>", "unk_token": "<unk>"}
    if with_pad:
        raw.add_special_tokens(["<pad>"])
        specials["pad_token"] = "<pad>"
    PreTrainedTokenizerFast(tokenizer_object=raw, **specials).save_pretrained(path)
    return vocab


@pytest.mark.parametrize("with_pad", [False, True])
def test_hf_tokenizer_offline(tmp_path, with_pad):
    vocab = make_local_hf_tokenizer(tmp_path / "tok", with_pad)
    tok = build_tokenizer({"type": "hf", "name_or_path": str(tmp_path / "tok")})
    assert isinstance(tok, HFTokenizer)
    assert tok.eos_id == 0 and tok.bos_id == tok.eos_id  # no bos token: eos stands in
    assert tok.pad_id == (len(vocab) if with_pad else tok.eos_id)
    assert tok.vocab_size == len(vocab) + int(with_pad)
    ids = tok.encode("今天天气很好")
    assert ids == [vocab[ch] for ch in "今天天气很好"]  # no special tokens added
    assert tok.decode([*ids, tok.eos_id]) == "今天天气很好"
