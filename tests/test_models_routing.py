"""The LLM-ASR model's routing inputs and CTC units: a router over what the CTC head hears, oracle routing,
CTC on a unit list (tonal syllables) instead of the LLM's tokens."""

from __future__ import annotations

import pytest
import torch
from models_fixtures import ToyTokenizer, sub_batch, tiny_conf, toy_batch

from hdmole.models.build import build_model
from hdmole.text.tokenizer import UnitTokenizer

torch.set_num_threads(1)
TOK = ToyTokenizer()


def ctc_router_conf(**extra) -> dict:
    conf = tiny_conf(router=True)
    conf["global_router"] = {"input": "ctc", "hidden": 0, "log_pooled": True, **extra}
    return conf


def test_ctc_router_pools_what_the_ctc_head_hears():
    torch.manual_seed(0)
    model = build_model(ctc_router_conf(), TOK, num_accents=3).eval()
    assert model.global_router.d_in == TOK.vocab_size  # the CTC head's units, blank excluded
    batch = toy_batch(TOK, frames=(60, 37, 81), texts=("abc", "你好", "世界"))
    with torch.no_grad():
        enc_out, enc_lens = model.encode(batch["feats"], batch["feat_lens"])
        posterior = model.route(enc_out, enc_lens)
        assert posterior.shape == (3, 3) and torch.allclose(posterior.sum(-1), torch.ones(3))
        # padding of the batch does not change an utterance's posterior
        one = sub_batch(batch, 1)
        enc_one, lens_one = model.encode(one["feats"], one["feat_lens"])
        assert torch.allclose(model.route(enc_one, lens_one)[0], posterior[1], atol=1e-5)
        # it is a function of the CTC head: change the head, change the routing
        model.ctc.weight.mul_(3.0)
        assert not torch.allclose(model.route(enc_out, enc_lens), posterior)


def test_ctc_router_needs_a_ctc_head():
    conf = ctc_router_conf()
    conf["ctc_weight"] = 0.0
    with pytest.raises(ValueError, match="ctc_weight > 0"):
        build_model(conf, TOK, num_accents=3)


def test_oracle_routing_hands_the_labels_to_the_layers():
    conf = tiny_conf(router=True)
    conf["oracle_routing"] = True
    model = build_model(conf, TOK, num_accents=4).eval()
    batch = toy_batch(TOK)
    enc_out, enc_lens = model.encode(batch["feats"], batch["feat_lens"])
    labels = torch.tensor([3, 1])
    assert torch.equal(model.routing_posterior(enc_out, enc_lens, labels), torch.eye(4)[[3, 1]])
    with pytest.raises(ValueError, match="accent label"):
        model.routing_posterior(enc_out, enc_lens, None)
    conf["oracle_routing"] = False
    plain = build_model(conf, TOK, num_accents=4).eval()
    assert torch.allclose(plain.routing_posterior(enc_out, enc_lens, labels), plain.route(enc_out, enc_lens))


def write_units(path, units) -> str:
    path.write_text("".join(f"{u}\n" for u in ["<unk>", *units]), encoding="utf-8")
    return str(path)


def test_ctc_on_units_trains_on_the_units_and_needs_them(tmp_path):
    units = write_units(tmp_path / "pinyin.units", ["ni3", "hao3", "shi4", "jie4"])
    conf = tiny_conf()
    conf["ctc_units"] = units
    model = build_model(conf, TOK)
    assert model.ctc.out_features == 5 + 1  # units + blank, not the LLM's vocabulary
    batch = toy_batch(TOK, texts=("你好", "世界"))
    unit_tok = UnitTokenizer(units)
    ids = [unit_tok.encode("ni3 hao3"), unit_tok.encode("shi4 jie4 xx9")]  # xx9: unknown -> <unk>
    assert ids[1][-1] == 0
    batch["ctc_ids"] = torch.tensor([ids[0] + [0], ids[1]])
    batch["ctc_lens"] = torch.tensor([2, 3])
    out = model(batch)
    assert torch.isfinite(out["loss_ctc"]) and out["loss_ctc"] > 0
    out["loss"].backward()
    assert model.ctc.weight.grad.abs().sum() > 0
    del batch["ctc_ids"], batch["ctc_lens"]
    with pytest.raises(ValueError, match="data.ctc_text"):
        model(batch)
    model.ctc.requires_grad_(False)  # a frozen head (router / adapt modes): its constant loss is skipped
    assert "loss_ctc" not in model(batch)


@pytest.mark.parametrize("content, message", [
    ("ni3\nhao3\n", "starts with '<unk>'"),
    ("<unk>\nni3\nni3\n", "listed twice"),
    ("<unk>\nni 3\n", "without spaces"),
])
def test_bad_unit_lists_name_the_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad.units"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        UnitTokenizer(path)


def test_ctc_ngram_router_counts_the_heard_units_and_their_bigrams(tmp_path):
    units = write_units(tmp_path / "if.units", ["n", "i3", "h", "ao3"])
    conf = tiny_conf(router=True)
    conf["ctc_units"] = units
    conf["global_router"] = {"input": "ctc_ngrams", "hidden": 0}
    model = build_model(conf, TOK, num_accents=3).eval()
    vocab = 5  # <unk> + 4 units; the blank is id 5
    assert model.global_router.d_in == vocab + vocab * vocab
    # Force the CTC head's best path: frames say n n <blank> i3 h h ao3 <blank> (then padding)
    path = [1, 1, 5, 2, 3, 3, 4, 5]
    logits = torch.full((1, 10, vocab + 1), -10.0)
    for t, unit in enumerate(path):
        logits[0, t, unit] = 10.0
    model.ctc.forward = lambda x: logits.expand(x.size(0), -1, -1)[:, : x.size(1)]
    enc_out, enc_lens = torch.zeros(1, 10, 32), torch.tensor([8])
    heard, lengths = model.heard_ngrams(enc_out, enc_lens)
    expected = torch.zeros(vocab + vocab * vocab)
    for unit in (1, 2, 3, 4):  # n i3 h ao3: four units, each once
        expected[unit] = 0.25
    for a, b in ((1, 2), (2, 3), (3, 4)):  # bigrams n-i3 (a syllable), i3-h, h-ao3 (a syllable)
        expected[vocab + a * vocab + b] = 0.25
    assert torch.equal(heard[0, 0], expected) and lengths.tolist() == [1]
    assert model.route(enc_out, enc_lens).shape == (1, 3)


def test_ctc_ngram_router_refuses_a_huge_vocabulary():
    conf = tiny_conf(router=True)
    conf["global_router"] = {"input": "ctc_ngrams", "hidden": 0}
    small = build_model(conf, TOK, num_accents=3)  # the toy vocabulary is small enough
    assert small.global_router.d_in == TOK.vocab_size + TOK.vocab_size ** 2
    big = ToyTokenizer(alphabet="".join(chr(0x4E00 + i) for i in range(1100)))
    with pytest.raises(ValueError, match="small unit list"):
        build_model(conf, big, num_accents=3)


def test_ctc_ngram_router_with_hashed_bigrams_or_units_only_is_small_and_counts_the_same_units():
    from hdmole.models.heard_units import bigram_feature, heard_ngram_features

    vocab = 5  # units 0-4, blank 5
    best = torch.tensor([[1, 1, 5, 2, 3, 3, 4, 5, 0, 0]])
    lengths = torch.tensor([8])
    full = heard_ngram_features(best, lengths, vocab)
    unigrams = heard_ngram_features(best, lengths, vocab, order=1)
    hashed = heard_ngram_features(best, lengths, vocab, order=2, buckets=7)
    assert unigrams.shape == (1, vocab) and hashed.shape == (1, vocab + 7)
    torch.testing.assert_close(unigrams[0], full[0, :vocab])  # the same units heard
    torch.testing.assert_close(hashed[0, :vocab], full[0, :vocab])
    assert hashed[0, vocab:].sum() == pytest.approx(full[0, vocab:].sum())  # every bigram lands in some bucket
    for a, b in ((1, 2), (2, 3), (3, 4)):
        assert hashed[0, int(bigram_feature(torch.tensor(a), torch.tensor(b), vocab, 7))] > 0
    conf = tiny_conf(router=True)
    conf["global_router"] = {"input": "ctc_ngrams", "hidden": 0, "ngram_buckets": 16}
    model = build_model(conf, TOK, num_accents=3)
    assert model.global_router.d_in == TOK.vocab_size + 16 and model.router_ngrams == (2, 16)
    conf["global_router"] = {"input": "ctc_ngrams", "hidden": 0, "ngram_order": 3}
    with pytest.raises(ValueError, match="ngram_order"):
        build_model(conf, TOK, num_accents=3)
