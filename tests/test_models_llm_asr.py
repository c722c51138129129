"""The LLM-ASR model: losses on text only, padding invariance, cached encoder outputs, CTC, router, HDMoLE."""

from __future__ import annotations

import pytest
import torch
from models_fixtures import ToyTokenizer, sub_batch, tiny_conf, toy_batch

from hdmole.models.inputs import IGNORE_ID, assemble_training_inputs
from hdmole.models.build import build_model

torch.set_num_threads(1)
TOK = ToyTokenizer()


def _model(**kw):
    torch.manual_seed(0)
    return build_model(tiny_conf(**kw), TOK, num_accents=2)


def test_forward_outputs_and_label_count():
    model = _model(cnn=True).eval()
    batch = toy_batch(TOK)
    out = model(batch)
    assert set(out) >= {"loss", "loss_asr", "loss_ctc", "acc", "num_tokens"}
    # Loss only on text + eos: 5 + 1 and 2 + 1 tokens, whatever the prompt and speech lengths.
    assert out["num_tokens"] == int(batch["text_lens"].sum()) + 2 == 9
    torch.testing.assert_close(out["loss"], out["loss_asr"] + 0.3 * out["loss_ctc"])
    model_long_prompt = build_model(dict(tiny_conf(cnn=True), prompt="转写：abcdefg"), TOK)
    assert model_long_prompt(batch)["num_tokens"] == 9
    longer = toy_batch(TOK, frames=(150, 90))
    assert model(longer)["num_tokens"] == 9


def test_assembled_labels_sit_where_they_are_predicted():
    d = 3
    prompt = torch.full((2, d), 7.0)
    speech = torch.arange(2 * 4 * d, dtype=torch.float).view(2, 4, d) + 100
    speech_lens = torch.tensor([4, 2])
    text_emb = -torch.ones(2, 3, d)  # [bos, t1, t2]
    text_in_lens = torch.tensor([3, 2])
    targets = torch.tensor([[11, 12, 2], [21, 2, 0]])
    target_lens = torch.tensor([3, 2])
    emb, mask, pos, labels = assemble_training_inputs(prompt, speech, speech_lens, text_emb, text_in_lens,
                                                      targets, target_lens)
    assert mask.tolist() == [[1] * 9, [1] * 6 + [0] * 3]
    torch.testing.assert_close(emb[1, 2:4], speech[1, :2])  # speech right after the prompt
    torch.testing.assert_close(emb[1, 4:6], text_emb[1, :2])  # text right after the speech, no gap
    assert labels.tolist() == [[IGNORE_ID] * 6 + [11, 12, 2], [IGNORE_ID] * 4 + [21, 2] + [IGNORE_ID] * 3]
    assert pos[1].tolist() == list(range(9))


@pytest.mark.parametrize("encoder", ["conformer", "whisper"])
def test_padding_does_not_change_an_utterance_loss(encoder):
    model = _model(encoder=encoder, cnn=True).eval()
    batch = toy_batch(TOK)
    with torch.no_grad():
        both = model(batch)
        singles = [model(sub_batch(batch, i)) for i in range(2)]
    n = [s["num_tokens"] for s in singles]
    token_mean = sum(s["loss_asr"] * k for s, k in zip(singles, n)) / sum(n)
    torch.testing.assert_close(both["loss_asr"], token_mean, atol=1e-5, rtol=1e-5)
    # Utterance 0's loss does not depend on its partner either: with another one (longer, other text) in
    # place of utterance 1, the batch loss minus the partner's share leaves utterance 0's loss alone.
    other = toy_batch(TOK, frames=(60, 90), texts=("你好abc", "abcd"))
    assert torch.equal(other["feats"][0, :60], batch["feats"][0, :60])  # utterance 0's features are drawn first
    with torch.no_grad():
        pair, partner = model(other), model(sub_batch(other, 1))
    alone = (pair["loss_asr"] * pair["num_tokens"] - partner["loss_asr"] * partner["num_tokens"]) / n[0]
    torch.testing.assert_close(alone, singles[0]["loss_asr"], atol=1e-5, rtol=1e-5)


def test_cached_encoder_outputs_give_the_same_loss():
    model = _model().eval()
    batch = toy_batch(TOK)
    with torch.no_grad():
        enc_out, enc_lens = model.encode(batch["feats"], batch["feat_lens"])
        cached = {k: v for k, v in batch.items() if k not in ("feats", "feat_lens")}
        cached.update(enc_out=enc_out, enc_lens=enc_lens)
        torch.testing.assert_close(model(cached)["loss"], model(batch)["loss"])


def test_gradients_reach_projector_llm_and_ctc():
    model = _model().train()
    model(toy_batch(TOK))["loss"].backward()
    for name in ("projector.linear1.weight", "projector.linear2.weight", "ctc.weight", "encoder.conformer.embed.conv.0.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_ctc_blank_is_the_last_id():
    """The CTC head's blank is the extra last output (id vocab_size), never a text token: encoder frames that
    say [a, blank, b, blank, c, blank] (made so, through a hand-set head) cost almost nothing for target "abc"
    and a lot for "cba". With any other id as blank, the blank frames would be a token the target lacks."""
    model = _model().eval()
    blank = TOK.vocab_size
    assert model.ctc.out_features == blank + 1
    targets = TOK.encode("abc")
    with torch.no_grad():  # frame feature j lights up output targets[j]; feature 31 the blank
        model.ctc.weight.zero_()
        model.ctc.bias.zero_()
        for j, token in enumerate(targets):
            model.ctc.weight[token, j] = 20.0
        model.ctc.weight[blank, 31] = 20.0
    frames = [0, 31, 1, 31, 2, 31]
    enc_out = torch.zeros(1, len(frames), 32)
    enc_out[0, torch.arange(len(frames)), torch.tensor(frames)] = 1.0

    def ctc_loss(text: str) -> float:
        ids = torch.tensor([TOK.encode(text)])
        batch = {"enc_out": enc_out, "enc_lens": torch.tensor([len(frames)]), "text_ids": ids,
                 "text_lens": torch.tensor([ids.size(1)])}
        with torch.no_grad():
            return float(model(batch)["loss_ctc"])

    assert ctc_loss("abc") < 1e-3
    assert ctc_loss("cba") > 5.0


def test_forward_hands_the_routers_posterior_over_domains_to_the_layers():
    """The posterior the HDMoLE layers see in the training forward pass is route()'s: one distribution over
    the domains per utterance (three utterances and three domains, so a softmax over the batch has the
    same shape and is caught by its values)."""
    from hdmole.nn import HDMoLEConfig, inject

    torch.manual_seed(0)
    model = build_model(tiny_conf(router=True), TOK, num_accents=3).eval()
    inject(model, HDMoLEConfig(rank=2, num_domains=3), ["projector.linear1"])
    batch = toy_batch(TOK, frames=(60, 37, 81), texts=("你好abc", "世界", "abc"))
    seen = []
    model.projector.linear1.register_forward_pre_hook(lambda layer, args: seen.append(layer._global_posterior))
    with torch.no_grad():
        model(batch)
        expected = model.route(*model.encode(batch["feats"], batch["feat_lens"]))
    assert len(seen) == 1
    torch.testing.assert_close(seen[0], expected)
    torch.testing.assert_close(seen[0].sum(-1), torch.ones(3))
    assert not torch.allclose(seen[0].sum(0), torch.ones(3), atol=1e-3)  # not a softmax over the batch


@pytest.mark.parametrize("router_grad", [False, True])
def test_router_grad_decides_whether_the_asr_loss_trains_the_global_router(router_grad):
    """With router_grad the ASR loss reaches the global router through the posterior it hands to the HDMoLE
    layers; without, the posterior is detached and only the accent loss trains the router (here there is
    none: the batch has no accent labels)."""
    from hdmole.nn import HDMoLEConfig, inject

    torch.manual_seed(0)
    model = build_model(dict(tiny_conf(router=True), router_grad=router_grad), TOK, num_accents=2).eval()
    inject(model, HDMoLEConfig(rank=2, num_domains=2, routing="global", gating="dense"),
           ["projector.linear1", "projector.linear2"])
    with torch.no_grad():  # trained experts (B != 0), so the update, and the loss, depend on the posterior
        for name, p in model.named_parameters():
            if "hdmole_lora_B" in name:
                p.normal_(0, 0.5)
    batch = {k: v for k, v in toy_batch(TOK).items() if k != "accents"}
    out = model(batch)
    assert "loss_accent" not in out
    out["loss"].backward()
    router_grads = [p.grad for p in model.global_router.parameters()]
    reached = any(g is not None and g.abs().sum() > 0 for g in router_grads)
    assert reached == router_grad


def test_no_bos_and_no_ctc_variant():
    conf = dict(tiny_conf(ctc_weight=0.0), use_bos=False)
    model = build_model(conf, TOK).eval()
    out = model(toy_batch(TOK))
    assert model.ctc is None and "loss_ctc" not in out and out["num_tokens"] == 9
    torch.testing.assert_close(out["loss"], out["loss_asr"])


def test_global_router_accent_loss_and_route():
    model = _model(router=True).eval()
    batch = toy_batch(TOK)
    out = model(batch)
    torch.testing.assert_close(out["loss"], out["loss_asr"] + 0.3 * out["loss_ctc"] + 0.1 * out["loss_accent"])
    enc_out, enc_lens = model.encode(batch["feats"], batch["feat_lens"])
    probs = model.route(enc_out, enc_lens)
    assert probs.shape == (2, 2)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2))
    # The accent loss and accuracy are those of the router's posterior against the labels.
    torch.testing.assert_close(out["loss_accent"], torch.nn.functional.nll_loss(probs.log(), batch["accents"]))
    torch.testing.assert_close(out["accent_acc"], (probs.argmax(-1) == batch["accents"]).float().mean())
    router_only = model(batch, compute_asr=False)
    assert set(router_only) == {"loss", "objective", "loss_accent", "accent_acc"}
    torch.testing.assert_close(router_only["loss"], out["loss_accent"])


def test_hdmole_in_projector_with_global_router():
    from hdmole.nn import HDMoLEConfig, adapter_state_dict, inject, mark_trainable

    model = _model(router=True).eval()
    batch = toy_batch(TOK)
    with torch.no_grad():
        before = model(batch)["loss_asr"]
    cfg = HDMoLEConfig(rank=2, alpha=4, num_domains=2, routing="hierarchical", gating="threshold")
    assert inject(model, cfg, ["projector.linear1", "projector.linear2"]) == ["projector.linear1", "projector.linear2"]
    assert model.has_adapters()
    with torch.no_grad():  # B = 0 at initialisation: the adapted model equals the base model
        torch.testing.assert_close(model(batch)["loss_asr"], before)
    mark_trainable(model, extra=[model.global_router])
    model.train()
    model(batch)["loss"].backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert any("hdmole_lora_B" in n and g is not None and g.abs().sum() > 0 for n, g in grads.items())
    assert all(n.startswith(("projector.", "global_router.")) for n in adapter_state_dict(model))
    # Without a global router the hierarchical layers have no posterior: a clear error.
    model.global_router = None
    with pytest.raises(RuntimeError, match="global_routing"):
        model(batch)


def test_build_model_config_errors():
    with pytest.raises(ValueError, match="'prompts'.*valid keys"):
        build_model(dict(tiny_conf(), prompts="x"), TOK)
    with pytest.raises(ValueError, match="projector.*'stak'"):
        build_model(dict(tiny_conf(), projector={"stak": 2}), TOK)
    with pytest.raises(ValueError, match="number of accents"):
        build_model(tiny_conf(router=True), TOK)
    with pytest.raises(ValueError, match="missing required key 'llm'"):
        build_model({"encoder": tiny_conf()["encoder"]}, TOK)
    with pytest.raises(ValueError, match="outside the tokenizer"):
        build_model(dict(tiny_conf(), prompt=[5, 999]), TOK)
