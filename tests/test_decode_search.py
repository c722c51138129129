"""Greedy and beam search: batched == one by one == a naive no-cache reference; beam 1 == greedy; limits."""

from __future__ import annotations

import itertools

import pytest
import torch
from models_fixtures import (
    DECODE_FRAMES as FRAMES,
    ToyTokenizer,
    decode_test_batch,
    decode_test_model,
    position_sensitive_model,
    sub_batch,
    tiny_conf,
    toy_batch,
)

from hdmole.decode.search import decode_batch, decode_batch_ids, hf_generate, token_limits
from hdmole.models.build import build_model

torch.set_num_threads(1)
TOK = ToyTokenizer()



@pytest.fixture(scope="module")
def model():
    return decode_test_model(TOK)


@pytest.fixture(scope="module")
def batch():
    return decode_test_batch(TOK)


@pytest.fixture(scope="module")
def positional():
    """The position-sensitive model (runs every utterance to its limit): the cache comparisons' model."""
    return position_sensitive_model(TOK)


@torch.no_grad()
def naive_greedy(model, one: dict, shift: int = 0, advance: bool = True) -> list[int]:
    """Re-runs the whole sequence for every token: no cache, no padding, no batching. The generated tokens sit
    at the positions after the prefix; ``shift`` and ``advance=False`` misplace them on purpose (to check that
    the model notices)."""
    enc_out, enc_lens = model.encode(one["feats"], one["feat_lens"])
    speech, speech_lens = model.project(enc_out, enc_lens)
    embeds, _, _ = model.decoding_prefix(speech, speech_lens)
    prefix = embeds.size(1)
    limit = token_limits(speech_lens, None, 1.0)[0]
    out: list[int] = []
    for k in range(limit):
        generated = [prefix + shift + (n if advance else 0) for n in range(k)]
        positions = torch.tensor([list(range(prefix)) + generated])
        nxt = int(model.llm(inputs_embeds=embeds, position_ids=positions).logits[0, -1].argmax())
        if nxt == model.eos_id:
            break
        out.append(nxt)
        embeds = torch.cat([embeds, model.embed_tokens(torch.tensor([[nxt]]))], dim=1)
    return out


def utterance_limits(model, batch) -> list[int]:
    with torch.no_grad():
        _, speech_lens = model.project(*model.encode(batch["feats"], batch["feat_lens"]))
    return token_limits(speech_lens, None, 1.0)


def test_the_positional_model_reacts_to_a_misplaced_token(positional, batch):
    """What makes the cache comparisons below real: decoded without any cache, tokens one position too far,
    one too near, or all at the first position after the prefix give other hypotheses than tokens where they
    belong. (The plain tiny model does not notice: its attention is nearly uniform.)"""
    right = [naive_greedy(positional, sub_batch(batch, i)) for i in range(len(FRAMES))]
    assert [len(h) for h in right] == utterance_limits(positional, batch)  # no eos: every one runs to its limit
    for wrong in ({"shift": 1}, {"shift": -1}, {"advance": False}):
        assert [naive_greedy(positional, sub_batch(batch, i), **wrong) for i in range(len(FRAMES))] != right, wrong


def test_greedy_batched_equals_unbatched_equals_naive(positional, batch):
    batched = decode_batch_ids(positional, batch)
    alone = [decode_batch_ids(positional, sub_batch(batch, i))[0] for i in range(len(FRAMES))]
    naive = [naive_greedy(positional, sub_batch(batch, i)) for i in range(len(FRAMES))]
    assert batched == alone == naive
    assert [len(h) for h in batched] == utterance_limits(positional, batch)  # long hypotheses: a real comparison


def test_beam_one_is_greedy_and_beam_is_batch_invariant(positional, batch):
    from hdmole.decode.search import beam_search

    greedy = [naive_greedy(positional, sub_batch(batch, i)) for i in range(len(FRAMES))]
    assert decode_batch_ids(positional, batch, beam=1) == greedy
    enc_out, enc_lens = positional.encode(batch["feats"], batch["feat_lens"])
    with torch.no_grad():  # the beam loop (its own cache and positions) with one beam: the cache-free greedy
        assert beam_search(positional, enc_out, enc_lens, beam=1) == greedy
    beams = decode_batch_ids(positional, batch, beam=3)
    assert beams == [decode_batch_ids(positional, sub_batch(batch, i), beam=3)[0] for i in range(len(FRAMES))]


@torch.no_grad()
def _sequence_logprob(model, one: dict, hyp: list[int]) -> float:
    enc_out, enc_lens = model.encode(one["feats"], one["feat_lens"])
    speech, speech_lens = model.project(enc_out, enc_lens)
    embeds, _, _ = model.decoding_prefix(speech, speech_lens)
    ids = torch.tensor([hyp + [model.eos_id]])
    full = torch.cat([embeds, model.embed_tokens(ids)], dim=1)
    logp = model.llm(inputs_embeds=full).logits[0].log_softmax(-1)
    start = embeds.size(1) - 1
    return float(sum(logp[start + k, t] for k, t in enumerate(ids[0].tolist())))


def test_beam_finds_a_hypothesis_at_least_as_likely_as_greedy_when_eos_is_likely(batch):
    torch.manual_seed(3)
    model = build_model(tiny_conf(), TOK).eval()
    with torch.no_grad():  # make eos plausible so that hypotheses end before the limit
        model.llm.lm_head.weight[model.eos_id] *= 0.0
        model.llm.lm_head.weight[model.eos_id] += model.llm.model.norm.weight.sign() * 0.05
    one = sub_batch(batch, 0)
    greedy = decode_batch_ids(model, one)[0]
    beam = decode_batch_ids(model, one, beam=4, length_norm=False)[0]
    with torch.no_grad():
        _, speech_lens = model.project(*model.encode(one["feats"], one["feat_lens"]))
    limit = token_limits(speech_lens, None, 1.0)[0]
    assert len(greedy) < limit and len(beam) < limit  # both ended with eos, not at the limit
    assert _sequence_logprob(model, one, beam) >= _sequence_logprob(model, one, greedy) - 1e-4


def test_limits_and_texts(model, batch):
    assert token_limits(torch.tensor([10, 3]), None, 1.0) == [12, 5]
    assert token_limits(torch.tensor([10, 3]), 4, 1.0) == [4, 4]
    short = decode_batch_ids(model, batch, max_len=3)
    assert all(len(h) <= 3 for h in short)
    texts = decode_batch(model, batch, TOK)
    assert len(texts) == len(FRAMES) and all(isinstance(t, str) for t in texts)
    with pytest.raises(ValueError, match="beam"):
        decode_batch_ids(model, batch, beam=0)


def test_greedy_with_hdmole_adapters_and_global_router(batch):
    from hdmole.nn import HDMoLEConfig, inject

    torch.manual_seed(2)
    model = build_model(tiny_conf(router=True), TOK, num_accents=2).eval()
    before = decode_batch_ids(model, batch)
    inject(model, HDMoLEConfig(rank=2, num_domains=2), ["projector.linear1", "projector.linear2"])
    assert decode_batch_ids(model, batch) == before  # zero-initialised B: same output
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "hdmole_lora_B" in name:
                p.normal_(0, 0.5)
    adapted = decode_batch_ids(model, batch, beam=2)
    assert adapted == [decode_batch_ids(model, sub_batch(batch, i), beam=2)[0] for i in range(len(FRAMES))]


# ------------------------------------------------------------------------------------------ exhaustive search
TINY = ToyTokenizer(alphabet="ab")  # 6 ids: pad, bos, eos, unk, a, b; any of them but eos may be emitted
LIMIT = 3  # tokens per utterance, eos included (max_len=3)
EXHAUSTIVE_BEAM = 75  # >= 25 live hypotheses after two steps, and 2 * beam >= the 150 candidates of step 3


# Three tiny-vocabulary models (an LM head scaled up from its init, so that the distributions are peaked and
# the hypotheses' scores far apart), picked because they exercise what the test is about (checked below):
# with "deep", the best hypothesis under either rule is not the greedy one, so beam search has to keep and
# reorder other histories to find it; with "rules", the two scoring rules pick different hypotheses; with
# "norm", dividing by one token fewer (eos left out of the count) picks another hypothesis than the documented
# normalisation.
TINY_MODELS = {"deep": (5, 10.0), "rules": (4, 30.0), "norm": (10, 10.0)}


@pytest.fixture(scope="module", params=list(TINY_MODELS))
def tiny_vocab_model(request):
    seed, head_scale = TINY_MODELS[request.param]
    torch.manual_seed(seed)
    model = build_model(tiny_conf(cnn=True, prompt=""), TINY).eval()
    with torch.no_grad():
        model.llm.lm_head.weight *= head_scale
    model.name = request.param
    return model


@torch.no_grad()
def all_hypotheses(model, one: dict) -> dict[tuple[int, ...], tuple[float, int]]:
    """Every hypothesis beam search can end with, scored without cache, padding or batching:
    ``x + [eos]`` for ``len(x) < LIMIT`` and ``x`` of ``LIMIT`` tokens (the limit ends it), each mapped to
    (summed log-probability, number of tokens counted by the length normalisation, eos included)."""
    enc_out, enc_lens = model.encode(one["feats"], one["feat_lens"])
    speech, speech_lens = model.project(enc_out, enc_lens)
    prefix, _, _ = model.decoding_prefix(speech, speech_lens)
    emit = [t for t in range(TINY.vocab_size) if t != model.eos_id]
    seqs = torch.tensor(list(itertools.product(emit, repeat=LIMIT)))  # [125, 3]
    embeds = torch.cat([prefix.expand(len(seqs), -1, -1), model.embed_tokens(seqs)], dim=1)
    logp = model.llm(inputs_embeds=embeds).logits.log_softmax(-1)[:, prefix.size(1) - 1 :]  # [125, 4, V]
    scores = {}
    for row, seq in enumerate(seqs.tolist()):
        prefix_score = 0.0
        for n in range(LIMIT):  # seq[:n] + eos
            scores[tuple(seq[:n])] = (prefix_score + float(logp[row, n, model.eos_id]), n + 1)
            prefix_score += float(logp[row, n, seq[n]])
        scores[tuple(seq)] = (prefix_score, LIMIT)
    assert len(scores) == 1 + 5 + 25 + 125
    return scores


@pytest.mark.parametrize("length_norm", [True, False])
def test_beam_search_with_a_beam_covering_every_hypothesis_finds_the_exhaustive_best(tiny_vocab_model, length_norm):
    """Beam search with a beam that never prunes returns the best of all possible hypotheses under its
    scoring rule (summed log-probability, divided by the length including eos when length_norm), scored
    here without cache, padding or batching."""
    model = tiny_vocab_model
    batch = toy_batch(TINY, frames=FRAMES, texts=("ab", "a", "ba"))
    found = decode_batch_ids(model, batch, beam=EXHAUSTIVE_BEAM, max_len=LIMIT, length_norm=length_norm)
    for i, hyp in enumerate(found):
        scores = all_hypotheses(model, sub_batch(batch, i))
        rule = (lambda s: s[0] / s[1]) if length_norm else (lambda s: s[0])
        ranked = sorted(scores, key=lambda h: rule(scores[h]), reverse=True)
        assert rule(scores[ranked[0]]) - rule(scores[ranked[1]]) > 1e-4  # a unique best: no tie to break
        assert tuple(hyp) == ranked[0], (i, hyp, ranked[:3])


def test_the_tiny_models_exercise_what_the_exhaustive_test_is_about(tiny_vocab_model):
    batch = toy_batch(TINY, frames=FRAMES, texts=("ab", "a", "ba"))
    found = {norm: decode_batch_ids(tiny_vocab_model, batch, beam=EXHAUSTIVE_BEAM, max_len=LIMIT, length_norm=norm)
             for norm in (True, False)}
    greedy = decode_batch_ids(tiny_vocab_model, batch, max_len=LIMIT)
    if tiny_vocab_model.name == "deep":  # the best is reached through a beam other than the greedy one
        assert all(found[norm] != greedy and all(len(h) == LIMIT for h in found[norm]) for norm in found)
    elif tiny_vocab_model.name == "rules":  # the unnormalised rule prefers a shorter hypothesis somewhere
        assert found[True] != found[False]
        assert all(len(s) <= len(n) for s, n in zip(found[False], found[True]))
    else:  # normalised by n - 1 (eos not counted, as if it were free), another hypothesis would win somewhere
        def best(scores, count):
            return max(scores, key=lambda h: scores[h][0] / count(h, scores[h][1]))

        one_fewer = {"eos not counted": lambda h, n: max(n - 1, 1) if n == len(h) + 1 else n,
                     "every length minus one": lambda h, n: max(n - 1, 1)}
        scores = [all_hypotheses(tiny_vocab_model, sub_batch(batch, i)) for i in range(len(FRAMES))]
        documented = [best(s, lambda h, n: n) for s in scores]
        assert documented == [tuple(h) for h in found[True]]
        for name, count in one_fewer.items():
            assert [best(s, count) for s in scores] != documented, name


# ------------------------------------------------------------------------------------------ generate()
def test_greedy_equals_hf_generate(positional, batch):
    """Our cached greedy loop and transformers' generate(inputs_embeds=...) give the same tokens, each
    utterance cut at its own limit (generate runs the whole batch to the longest one). On the positional
    model, whose every utterance runs to its limit."""
    ours = decode_batch_ids(positional, batch, max_len_ratio=0.5)
    assert ours == hf_generate(positional, batch, max_len_ratio=0.5)
    assert [len(h) for h in ours] == [6, 4, 7]  # three different limits: the per-utterance cut matters


def test_greedy_equals_hf_generate_with_hdmole_adapters_and_global_router(batch):
    from hdmole.nn import HDMoLEConfig, inject

    torch.manual_seed(5)
    model = build_model(tiny_conf(router=True), TOK, num_accents=2).eval()
    inject(model, HDMoLEConfig(rank=2, num_domains=2), ["projector.linear1", "projector.linear2"])
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "hdmole_lora_B" in name:
                p.normal_(0, 0.5)
    assert decode_batch_ids(model, batch) == hf_generate(model, batch)
