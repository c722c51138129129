"""Routing and gating semantics: threshold, top-k, dense, the combinations, and their gradients."""

import pytest
import torch
from torch import nn

from hdmole.nn import HDMoLEConfig, HDMoLELinear, global_routing, routing_probabilities, threshold_gate, topk_gate

E = 6


def random_p(n=200, e=E, seed=0, sharpness=2.0):
    generator = torch.Generator().manual_seed(seed)
    return torch.softmax(sharpness * torch.randn(n, e, generator=generator), dim=-1)


@pytest.mark.parametrize("gradient", ["relaxed", "straight_through", "exact"])
def test_threshold_top_expert_always_active_and_weights_sum_to_one(gradient):
    p = random_p()
    for tau in [0.01, 0.1, 0.3, 0.6, 0.99]:
        w = threshold_gate(p, torch.tensor(tau), gradient)
        assert torch.all(w.argmax(-1) == p.argmax(-1))
        assert torch.all(w.gather(-1, p.argmax(-1, keepdim=True)) > 0)
        torch.testing.assert_close(w.sum(-1), torch.ones(len(p)))
        # active = above tau (or the top one); weights are relu(p - tau) renormalised
        active = (p > tau) | (p == p.amax(-1, keepdim=True))
        assert torch.equal(w > 0, active)
        several = active.sum(-1) > 1
        shifted = torch.relu(p - tau)[several]
        torch.testing.assert_close(w[several], shifted / shifted.sum(-1, keepdim=True))
    single = threshold_gate(p, torch.tensor(0.99), gradient)
    assert torch.equal((single > 0).sum(-1), torch.ones(len(p), dtype=torch.long))


def test_threshold_below_the_smallest_probability_activates_all_experts():
    p = random_p(sharpness=0.3)
    w = threshold_gate(p, p.min() * 0.99)
    assert torch.all(w > 0)
    uniform = torch.full((5, E), 1.0 / E)
    w_uniform = threshold_gate(uniform, torch.tensor(0.9 / E))
    torch.testing.assert_close(w_uniform, uniform)


def test_raising_the_threshold_never_adds_experts_and_eventually_removes_them():
    p = random_p(sharpness=1.0)
    counts = [
        (threshold_gate(p, tau) > 0).sum().item() for tau in torch.linspace(0.0, 0.95, 40)
    ]
    assert all(a >= b for a, b in zip(counts, counts[1:]))
    assert counts[0] == p.numel() and counts[-1] == len(p)


@pytest.mark.parametrize("k", range(1, E + 1))
def test_topk_keeps_exactly_k_renormalised(k):
    p = random_p()
    w = topk_gate(p, k, straight_through=True)
    assert torch.equal((w > 0).sum(-1), torch.full((len(p),), k))
    top = p.topk(k, -1)
    kept = w.gather(-1, top.indices)
    torch.testing.assert_close(kept, top.values / top.values.sum(-1, keepdim=True))
    torch.testing.assert_close(w.sum(-1), torch.ones(len(p)))
    torch.testing.assert_close(w, topk_gate(p, k, straight_through=False))


def test_dense_local_routing_is_the_router_softmax():
    torch.manual_seed(0)
    layer = HDMoLELinear(nn.Linear(10, 4), HDMoLEConfig(num_domains=E, routing="local", gating="dense"))
    x = torch.randn(3, 5, 10)
    w = layer.routing_weights(x)
    torch.testing.assert_close(w, torch.softmax(x.reshape(-1, 10) @ layer.hdmole_router.weight.T, dim=-1))


def test_product_and_sum_combinations_follow_their_formulas():
    m, domains = 2, 3
    local_logits = torch.randn(4, domains * m)
    g = torch.softmax(torch.randn(4, domains), -1)
    g_expert = g.repeat_interleave(m, dim=-1)
    local = torch.softmax(local_logits, -1)
    product = HDMoLEConfig(num_domains=domains, experts_per_domain=m, combine="product")
    expected = g_expert * local / (g_expert * local).sum(-1, keepdim=True)
    torch.testing.assert_close(routing_probabilities(product, local_logits, g), expected)
    summed = HDMoLEConfig(num_domains=domains, experts_per_domain=m, combine="sum", combine_lambda=0.3)
    p_sum = routing_probabilities(summed, local_logits, g)
    torch.testing.assert_close(p_sum, 0.3 * g_expert / m + 0.7 * local)
    torch.testing.assert_close(p_sum.sum(-1), torch.ones(4))


def make_trained_layer(gate_gradient, threshold_init=0.05):
    """A hierarchical threshold layer after one real optimisation step (B leaves zero)."""
    torch.manual_seed(0)
    config = HDMoLEConfig(num_domains=3, experts_per_domain=2, rank=4, threshold_init=threshold_init,
                          gate_gradient=gate_gradient)
    layer = HDMoLELinear(nn.Linear(16, 8), config)
    layer.base_layer.requires_grad_(False)
    x, target, g = torch.randn(4, 6, 16), torch.randn(4, 6, 8), torch.softmax(torch.randn(4, 3), -1)
    optimiser = torch.optim.SGD([p for p in layer.parameters() if p.requires_grad], lr=0.1)

    def loss_and_backward():
        optimiser.zero_grad()
        with global_routing(layer, g):
            loss = nn.functional.mse_loss(layer(x), target)
        loss.backward()
        return loss

    loss_and_backward()
    assert layer.hdmole_lora_B.grad.abs().sum() > 0
    optimiser.step()
    loss_and_backward()
    return layer


@pytest.mark.parametrize("gate_gradient", ["relaxed", "straight_through", "exact"])
def test_threshold_and_router_receive_gradient_from_a_real_loss(gate_gradient):
    layer = make_trained_layer(gate_gradient)
    assert layer.hdmole_threshold_logit.grad is not None and layer.hdmole_threshold_logit.grad.abs() > 0
    assert layer.hdmole_router.weight.grad.abs().sum() > 0
    assert layer.hdmole_lora_A.grad.abs().sum() > 0


def test_straight_through_keeps_the_threshold_learning_when_one_expert_is_active():
    """With tau above every probability the forward weight is the constant 1: the exact gradient is
    zero (documented limitation), the straight-through one is not; the relaxed one gives the router its
    straight-through gradient and tau none (the forward does not depend on tau there)."""
    assert make_trained_layer("exact", threshold_init=0.95).hdmole_threshold_logit.grad.abs() == 0
    assert make_trained_layer("straight_through", threshold_init=0.95).hdmole_threshold_logit.grad.abs() > 0
    relaxed = make_trained_layer("relaxed", threshold_init=0.95)
    assert relaxed.hdmole_router.weight.grad.abs().sum() > 0
    assert relaxed.hdmole_threshold_logit.grad.abs() == 0
