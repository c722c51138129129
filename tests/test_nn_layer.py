"""HDMoLELinear: exact start, stacked experts == per-expert loop, global posterior plumbing."""

import itertools

import pytest
import torch
from torch import nn

from hdmole.nn import HDMoLEConfig, HDMoLELinear, global_routing, reference_forward

D, M = 3, 2  # 3 domains x 2 experts each = 6 experts
ROUTED = [
    dict(routing=r, combine=c, gating=g, top_k=2)
    for r, c, g in itertools.product(["hierarchical"], ["product", "sum"], ["threshold", "topk", "dense"])
] + [dict(routing=r, gating=g, top_k=2) for r, g in itertools.product(["local", "global"], ["threshold", "topk", "dense"])]
PLAIN = dict(num_domains=1, experts_per_domain=1, routing="none", gating="dense")


def make_layer(d_in=12, d_out=7, seed=0, randomise_b=True, **kwargs):
    torch.manual_seed(seed)
    config = HDMoLEConfig(**{"rank": 3, "alpha": 6, "num_domains": D, "experts_per_domain": M, **kwargs})
    layer = HDMoLELinear(nn.Linear(d_in, d_out), config, name="proj")
    if randomise_b:  # B starts at zero; make the experts contribute so the comparison means something
        nn.init.normal_(layer.hdmole_lora_B, std=0.5)
    return layer


def posterior(batch, domains=D, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.softmax(2 * torch.randn(batch, domains, generator=generator), dim=-1)


@pytest.mark.parametrize("kwargs", ROUTED + [PLAIN], ids=lambda k: "-".join(str(v) for v in k.values()))
def test_initial_output_equals_base_output_exactly(kwargs):
    layer = make_layer(randomise_b=False, **kwargs)
    x = torch.randn(4, 9, 12)
    with global_routing(layer, posterior(4, layer.config.num_domains)):
        assert torch.equal(layer(x), layer.base_layer(x))


@pytest.mark.parametrize("gate_gradient", ["straight_through", "exact"])
@pytest.mark.parametrize("kwargs", ROUTED + [PLAIN], ids=lambda k: "-".join(str(v) for v in k.values()))
def test_stacked_equals_per_expert_loop_in_value_and_gradient(kwargs, gate_gradient):
    for trial, (batch, steps, d_in, d_out) in enumerate([(2, 5, 12, 7), (3, 1, 20, 33), (1, 17, 8, 4)]):
        layer = make_layer(d_in=d_in, d_out=d_out, seed=trial, gate_gradient=gate_gradient, **kwargs)
        x = torch.randn(batch, steps, d_in, requires_grad=True)
        with global_routing(layer, posterior(batch, layer.config.num_domains, seed=trial)):
            fast = layer(x)
            grads_fast = torch.autograd.grad(fast.square().sum(), [x, layer.hdmole_lora_A, layer.hdmole_lora_B])
            slow = reference_forward(layer, x)
            grads_slow = torch.autograd.grad(slow.square().sum(), [x, layer.hdmole_lora_A, layer.hdmole_lora_B])
        assert fast.shape == (batch, steps, d_out)
        torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
        for a, b in zip(grads_fast, grads_slow):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_tokens_follow_their_utterance_posterior():
    """Two utterances with opposite one-hot posteriors and global routing: each uses only its domain."""
    layer = make_layer(routing="global", gating="dense")
    x = torch.randn(2, 4, 12)
    g = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    with global_routing(layer, g):
        w = layer.routing_weights(x).view(2, 4, D * M)
    expected_first = torch.tensor([0.5, 0.5, 0, 0, 0, 0])  # domain 0 owns experts 0 and 1
    torch.testing.assert_close(w[0], expected_first.expand(4, -1))
    torch.testing.assert_close(w[1], expected_first.flip(0).expand(4, -1))


def test_inputs_of_any_rank_and_two_dimensional_batches():
    layer = make_layer(routing="hierarchical")
    with global_routing(layer, posterior(2)):
        out4 = layer(torch.randn(2, 3, 5, 12))
        out2 = layer(torch.randn(2, 12))
    assert out4.shape == (2, 3, 5, 7) and out2.shape == (2, 7)


def test_missing_or_wrong_global_posterior_is_a_clear_error():
    layer = make_layer(routing="hierarchical")
    with pytest.raises(RuntimeError, match="global_routing"):
        layer(torch.randn(2, 3, 12))
    with pytest.raises(ValueError, match=r"expected \[2, 3\]"):
        with global_routing(layer, posterior(5)):
            layer(torch.randn(2, 3, 12))
    with pytest.raises(ValueError, match="num_domains=3"):
        with global_routing(layer, posterior(2, domains=4)):
            pass
    with pytest.raises(ValueError, match="no HDMoLELinear"):
        with global_routing(nn.Linear(2, 2), posterior(2)):
            pass
    local = make_layer(routing="local")
    assert local(torch.randn(2, 3, 12)).shape == (2, 3, 7)  # local routing needs no posterior


def test_global_routing_restores_the_previous_posterior_and_nests():
    layer = make_layer(routing="global", gating="dense")
    outer, inner = posterior(2, seed=3), posterior(2, seed=4)
    with global_routing(layer, outer):
        with global_routing(layer, inner):
            assert layer._global_posterior is inner
        assert layer._global_posterior is outer
    assert layer._global_posterior is None


def test_plain_lora_has_no_router_and_no_threshold_and_is_a_linear_lookalike():
    layer = make_layer(**PLAIN)
    names = {name for name, _ in layer.named_parameters()}
    assert names == {"base_layer.weight", "base_layer.bias", "hdmole_lora_A", "hdmole_lora_B"}
    assert layer.weight is layer.base_layer.weight and layer.in_features == 12 and layer.out_features == 7
    x = torch.randn(3, 12)
    A, B = layer.hdmole_lora_A[0], layer.hdmole_lora_B[:, 0]
    torch.testing.assert_close(layer(x), layer.base_layer(x) + 2.0 * x @ A.T @ B.T)
    with pytest.raises(TypeError, match="nn.Linear only"):
        HDMoLELinear(nn.Conv1d(2, 2, 1), HDMoLEConfig())


def test_dropout_is_applied_to_the_adapter_path_only_in_training():
    layer = make_layer(dropout=0.5, **PLAIN)
    x = torch.randn(64, 12)
    layer.eval()
    torch.testing.assert_close(layer(x), reference_forward(layer, x))
    layer.train()
    torch.manual_seed(0)
    first = layer(x)
    torch.manual_seed(1)
    assert not torch.allclose(first, layer(x))
    # In training: base(x) + scaling * B A dropout(x), with the very mask dropout draws from the same seed.
    # Dropout on the base path (or on the output) would change the first term, not only the second.
    A, B = layer.hdmole_lora_A[0], layer.hdmole_lora_B[:, 0]
    torch.manual_seed(0)
    dropped = nn.functional.dropout(x, 0.5, training=True)
    assert 0 < int((dropped == 0).sum()) < x.numel()
    torch.testing.assert_close(first, layer.base_layer(x) + 2.0 * dropped @ A.T @ B.T)
