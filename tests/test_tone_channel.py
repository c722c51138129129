"""The tone-channel accent router (``global_router.input: ctc_tones``, hdmole/models/tone_channel.py): syllables
parsed from the heard units, the standard tone prior, and a router that learns an accent's tone channel."""

from __future__ import annotations

import pytest
import torch
from models_fixtures import ToyTokenizer, tiny_conf

from hdmole.models.build import build_model
from hdmole.models.tone_channel import SyllableIndex, ToneChannelRouter, tone_prior

torch.set_num_threads(1)
UNITS = ["<unk>", "b", "zh", "a1", "a2", "a3", "a4", "ong1", "ong3", "ong4", "e5"]
ID = {u: i for i, u in enumerate(UNITS)}
BLANK = len(UNITS)


def ids(text: str) -> list[int]:
    return [ID[u] for u in text.split()]


def test_syllables_pair_an_initial_with_the_tonal_final_after_it():
    index = SyllableIndex(UNITS)
    assert index.num_finals == 3 and index.num_bases == 4 * 3  # finals a, e, ong; initials <unk>, b, zh + none
    syllables = index.syllables(ids("b a1 ong4 zh ong1 e5 b zh a3"))
    base = lambda initial, final: initial * 3 + ["a", "e", "ong"].index(final)  # noqa: E731
    b, zh = 2, 3  # initials sorted: <unk> 1, b 2, zh 3; 0 = no initial
    assert syllables == [(base(b, "a"), 0), (base(0, "ong"), 3), (base(zh, "ong"), 0), (base(0, "e"), 4),
                         (base(zh, "a"), 2)]  # "b zh a3": an initial with no final after it stands alone
    with pytest.raises(ValueError, match="tonal CTC units"):
        SyllableIndex(["<unk>", "b", "zh"])


def test_tone_prior_counts_standard_text_and_refuses_text_in_other_units(tmp_path):
    index = SyllableIndex(UNITS)
    text = tmp_path / "phones"
    text.write_text("u1 b a1 b a1 b a3\nu2 zh ong1\n", encoding="utf-8")
    prior = tone_prior(text, index, UNITS, smoothing=0.5)
    assert prior.shape == (12, 5) and torch.allclose(prior.sum(1), torch.ones(12))
    ba = 2 * 3 + 0
    assert prior[ba].tolist() == pytest.approx([2.5 / 5.5, 0.5 / 5.5, 1.5 / 5.5, 0.5 / 5.5, 0.5 / 5.5])
    assert prior[0].tolist() == pytest.approx([0.2] * 5)  # a base never seen: uniform
    text.write_text("u1 b a1 zh ang2\n", encoding="utf-8")  # a unit the list left out is <unk>, as in CTC targets
    assert torch.equal(tone_prior(text, index, UNITS)[2 * 3 + 0], torch.tensor([1.5, 0.5, 0.5, 0.5, 0.5]) / 3.5)
    text.write_text("u1 ba1 zhong4\n", encoding="utf-8")  # tonal syllables, not the CTC units
    with pytest.raises(ValueError, match="no syllable of the CTC units"):
        tone_prior(text, index, UNITS)
    with pytest.raises(FileNotFoundError, match="data.ctc_text"):
        tone_prior(tmp_path / "missing", index, UNITS)


def best_paths(sequences: list[list[int]], frames: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    """CTC best paths that spell ``sequences``: each unit twice (a repeat to merge), a blank after every unit."""
    best = torch.full((len(sequences), frames), BLANK)
    lengths = []
    for b, seq in enumerate(sequences):
        path = [x for unit in seq for x in (unit, unit, BLANK)]
        best[b, : len(path)] = torch.tensor(path)
        lengths.append(len(path))
    return best, torch.tensor(lengths)


def test_router_counts_heard_syllables_and_units_and_its_logits_have_gradients():
    router = ToneChannelRouter(UNITS, num_domains=3, dropout=0.0)
    assert torch.equal(router.prior, torch.full((12, 5), 0.2))  # uniform until counted
    assert sum(p.numel() for p in router.parameters()) == 3 * 25 + len(UNITS) * 3 + 3
    best, lengths = best_paths([ids("b a1 b a1 zh ong4"), ids("e5")])
    syllables, units = router.heard_counts(best, lengths)
    assert units[0, ID["b"]] == 2 and units[0, ID["a1"]] == 2 and units[0].sum() == 6 and units[1].sum() == 1
    assert syllables[0, 2 * 3 + 0, 0] == 2 and syllables[0, 3 * 3 + 2, 3] == 1 and syllables[0].sum() == 3
    assert syllables[1, 0 * 3 + 1, 4] == 1 and syllables[1].sum() == 1
    logits = router(best, lengths)
    assert logits.shape == (2, 3)
    logits[:, 1].sum().backward()
    assert router.channel.grad.abs().sum() > 0 and router.units[1].weight.grad.abs().sum() > 0


def test_the_channel_sends_the_spoken_tone_to_the_heard_one():
    """log P(heard base, tone | domain) = log sum_t P_std(t | base) M[t, heard], M's rows the spoken tones."""
    router = ToneChannelRouter(UNITS, 2, 0.0)
    ba = 2 * 3 + 0
    shift = torch.full((5, 5), 0.025)
    shift[0] = torch.tensor([0.05, 0.0, 0.0, 0.9, 0.05])  # tone 1 is heard as tone 4
    with torch.no_grad():
        router.prior[ba] = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0])  # standard "b a" is always tone 1
        router.channel[1] = shift.clamp_min(1e-6).log()
    heard = router.log_channel()[1, ba].exp()
    torch.testing.assert_close(heard, shift[0] / shift[0].sum(), atol=1e-4, rtol=0)


def test_router_learns_which_domain_swaps_tones():
    """Domain 0 speaks the standard tones, domain 1 says every tone 1 as tone 4 and every 4 as 3: the same syllable
    bases, only the tones differ. With the unit layer frozen at zero, the channel alone learns the shift from
    labelled utterances, in its direction (spoken tone -> heard tone)."""
    torch.manual_seed(0)
    prior = torch.full((12, 5), 0.01)
    prior[2 * 3 + 0] = torch.tensor([0.9, 0.02, 0.02, 0.05, 0.01])  # standard "b a": mostly tone 1
    prior[3 * 3 + 2] = torch.tensor([0.05, 0.01, 0.01, 0.9, 0.03])  # standard "zh ong": mostly tone 4
    prior = prior / prior.sum(1, keepdim=True)
    standard = [ids("b a1 zh ong4"), ids("b a1 b a1 zh ong4 zh ong4")]
    swapped = [ids("b a4 zh ong3"), ids("b a4 b a4 zh ong3 zh ong3")]
    best, lengths = best_paths(standard + swapped)
    labels = torch.tensor([0, 0, 1, 1])
    router = ToneChannelRouter(UNITS, 2, 0.0)
    with torch.no_grad():
        router.prior.copy_(prior)
        router.units[1].weight.zero_()
    optim = torch.optim.Adam([router.channel], lr=0.1)
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(router(best, lengths), labels)
        optim.zero_grad()
        loss.backward()
        optim.step()
    assert router(best, lengths).argmax(-1).tolist() == [0, 0, 1, 1]
    channel = router.channel.softmax(-1)
    assert channel[1, 0, 3] > 2 * channel[1, 0, 0] and channel[1, 3, 2] > 2 * channel[1, 3, 3]  # 1 -> 4, 4 -> 3
    assert channel[0, 0, 0] > 2 * channel[0, 0, 3] and channel[0, 3, 3] > 2 * channel[0, 3, 0]  # as spoken


def tone_conf(tmp_path, **router) -> dict:
    (tmp_path / "u.units").write_text("".join(f"{u}\n" for u in UNITS), encoding="utf-8")
    conf = tiny_conf(router=True)
    conf["ctc_units"] = str(tmp_path / "u.units")
    conf["global_router"] = {"input": "ctc_tones", **router}
    return conf


def test_model_routes_through_the_tone_channel_and_keeps_the_counted_prior(tmp_path):
    model = build_model(tone_conf(tmp_path), ToyTokenizer(), num_accents=3).eval()
    assert isinstance(model.global_router, ToneChannelRouter) and model.global_router.num_domains == 3
    learned = sum(p.numel() for p in model.global_router.parameters())
    assert learned == 3 * 25 + len(UNITS) * 3 + 3  # the prior is a buffer: counted, not learned
    text = tmp_path / "phones"
    text.write_text("s1 b a1 zh ong4\n", encoding="utf-8")
    model.global_router.count_prior(text)
    state = model.state_dict()
    assert torch.equal(state["global_router.prior"], tone_prior(text, SyllableIndex(UNITS), UNITS))
    fresh = build_model(tone_conf(tmp_path), ToyTokenizer(), num_accents=3)
    fresh.load_state_dict(state)  # a checkpoint carries it: decoding needs no transcript
    assert torch.equal(fresh.global_router.prior, state["global_router.prior"])
    enc_out, enc_lens = torch.randn(2, 9, 32), torch.tensor([9, 5])
    with torch.no_grad():
        posterior = model.route(enc_out, enc_lens)
        assert posterior.shape == (2, 3) and torch.allclose(posterior.sum(-1), torch.ones(2))
        # it reads the CTC head's best path
        expected = model.global_router(model.ctc(enc_out).argmax(-1), enc_lens).softmax(-1)
        torch.testing.assert_close(posterior, expected)


def test_router_stage_counts_the_prior_on_its_training_transcripts(tmp_path):
    from hdmole.train.config import ConfigError
    from hdmole.train.setup import count_router_prior

    data = tmp_path / "train"
    data.mkdir()
    (data / "phones").write_text("u1 b a3 b a3\n", encoding="utf-8")
    router = ToneChannelRouter(UNITS, 2)
    config = type("Config", (), {"data": type("Data", (), {"train": str(data), "ctc_text": "phones"})()})()
    count_router_prior(router, config)
    assert router.prior[2 * 3 + 0].argmax() == 2  # "b a" said with tone 3
    config.data.ctc_text = ""
    with pytest.raises(ConfigError, match="data.ctc_text"):
        count_router_prior(router, config)


def test_model_config_errors_name_what_is_missing(tmp_path):
    conf = tone_conf(tmp_path)
    del conf["ctc_units"]
    with pytest.raises(ValueError, match="ctc_units"):
        build_model(conf, ToyTokenizer(), num_accents=3)
    with pytest.raises(ValueError, match="hidden"):
        build_model(tone_conf(tmp_path, hidden=16), ToyTokenizer(), num_accents=3)
