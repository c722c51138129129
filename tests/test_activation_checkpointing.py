"""Activation checkpointing of the frozen LLM and encoder (``activation_checkpointing: true``): the loss and
the gradients of the trainable part are those of the plain model, and the layers really are run again in the
backward pass (frozen, in eval mode, where transformers' own gradient checkpointing does nothing)."""

from __future__ import annotations

import copy

import pytest
import torch
from models_fixtures import ToyTokenizer, tiny_conf, toy_batch

from hdmole.models.build import build_model

pytestmark = pytest.mark.slow  # ~30 s (the Conformer imports espnet)


def _frozen_but_projector(model):
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("projector."))
    model.train()
    model.encoder.eval()
    model.llm.eval()
    return model


@pytest.mark.parametrize("encoder", ["whisper", "conformer"])
def test_checkpointing_keeps_the_loss_and_the_projector_gradients(encoder):
    tok = ToyTokenizer()
    torch.manual_seed(0)
    plain = _frozen_but_projector(build_model(tiny_conf(encoder=encoder, ctc_weight=0.0), tok))
    checkpointed = copy.deepcopy(plain)
    calls = {"llm": 0}
    layer = checkpointed.llm.base_model.layers[0]
    forward = layer.forward

    def counting(*args, **kwargs):
        calls["llm"] += 1
        return forward(*args, **kwargs)

    layer.forward = counting
    assert checkpointed.checkpoint_activations() == 4  # two LLM layers, two encoder layers
    batch = toy_batch(tok)
    losses = []
    for model in (plain, checkpointed):
        out = model(batch)
        out["loss"].backward()
        losses.append(out["loss"].detach())
    torch.testing.assert_close(losses[1], losses[0])
    assert calls["llm"] == 2  # the forward pass, and again in the backward pass
    for (name, a), (_, b) in zip(plain.named_parameters(), checkpointed.named_parameters()):
        if a.requires_grad:
            assert a.grad is not None and a.grad.abs().sum() > 0, name
            torch.testing.assert_close(b.grad, a.grad, msg=name)
    with torch.no_grad():  # inference: no recomputation, nothing kept anyway
        checkpointed(batch)
    assert calls["llm"] == 3
