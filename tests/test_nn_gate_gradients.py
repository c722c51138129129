"""Gate gradients against the formulas of docs/method.md section 4, for every gating mode.

The forward values are tested in test_nn_gating.py; here the backward pass: the exact mode is autograd
through the documented expression (gradcheck, and its Jacobian written out by hand), the straight-through
modes use the documented surrogates (dL/dp_e = dL/dw_e on the active or kept experts, dL/dtau =
-sum_active dL/dw_e), checked on hand-made inputs where every number can be read off. A sign flip or a
wrong mask in either surrogate changes these gradients, so these tests fail where the layer-level tests
(which only ask for non-zero gradients) would not.
"""

import pytest
import torch
from torch import nn

from hdmole.nn import (
    HDMoLEConfig,
    HDMoLELinear,
    forced_thresholds,
    gate,
    gate_cost,
    global_routing,
    inject,
    routing_probabilities,
    soft_extra_experts,
    threshold_gate,
    topk_gate,
)

# Rows chosen so that tau = 0.12 leaves 3, 2 and 1 active experts (the last row: tau above all but the top,
# and one row where tau is above every probability, so the cap tau' = p_top - margin applies).
P = torch.tensor([[0.50, 0.30, 0.15, 0.05],
                  [0.40, 0.35, 0.10, 0.15],
                  [0.70, 0.10, 0.11, 0.09],
                  [0.26, 0.25, 0.25, 0.24]], dtype=torch.float64)
TAU = 0.12
TAU_ABOVE_ALL = 0.30  # for the last row: above every probability (0.26 is the top)
# Upstream gradient dL/dw: distinct values of both signs, so that a wrong mask or sign shows up.
G = torch.tensor([[0.3, -0.7, 1.1, 0.4],
                  [-0.2, 0.5, 0.9, -1.3],
                  [0.6, 0.8, -0.4, 0.2],
                  [-0.5, 0.1, 0.7, 0.3]], dtype=torch.float64)


def active_mask(p: torch.Tensor, tau: float) -> torch.Tensor:
    """Active experts as documented: p_e > tau, plus the most probable one."""
    return ((p > tau) | (p == p.amax(-1, keepdim=True))).to(p.dtype)


def backward_of(fn, p: torch.Tensor, tau: float, grad: torch.Tensor):
    p = p.clone().requires_grad_(True)
    tau_t = torch.tensor(tau, dtype=p.dtype, requires_grad=True)
    w = fn(p, tau_t)
    w.backward(grad)
    return w.detach(), p.grad, tau_t.grad


# ------------------------------------------------------------------------------------------ threshold
def test_threshold_straight_through_gradients_are_the_surrogates():
    _, dp, dtau = backward_of(lambda p, t: threshold_gate(p, t, "straight_through"), P, TAU, G)
    active = active_mask(P, TAU)
    assert active.sum(-1).tolist() == [3.0, 3.0, 1.0, 4.0]  # the hand-made rows do what they are for
    torch.testing.assert_close(dp, G * active)  # dL/dp_e = dL/dw_e on the active experts, 0 elsewhere
    torch.testing.assert_close(dtau, -(G * active).sum())  # dL/dtau = -sum_active dL/dw_e
    # Read off row 0 by hand: experts 0, 1, 2 active -> dL/dp = [0.3, -0.7, 1.1, 0]
    torch.testing.assert_close(dp[0], torch.tensor([0.3, -0.7, 1.1, 0.0], dtype=torch.float64))


def test_threshold_straight_through_with_tau_above_every_probability_still_gives_gradients():
    """Only the top expert is active (weight 1): the surrogate still passes dL/dw_top to p_top and -dL/dw_top
    to tau, which is what keeps tau learning (docs/method.md)."""
    row, grad = P[3:], G[3:]
    w, dp, dtau = backward_of(lambda p, t: threshold_gate(p, t, "straight_through"), row, TAU_ABOVE_ALL, grad)
    torch.testing.assert_close(w, torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(dp, torch.tensor([[-0.5, 0.0, 0.0, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(dtau, torch.tensor(0.5, dtype=torch.float64))
    # The exact mode has nothing to differentiate there: the constant 1.
    _, dp_exact, dtau_exact = backward_of(lambda p, t: threshold_gate(p, t, "exact"), row,
                                          TAU_ABOVE_ALL, grad)
    assert torch.count_nonzero(dp_exact) == 0 and dtau_exact == 0


def exact_threshold_jacobians(p: torch.Tensor, tau: float):
    """The documented expression differentiated by hand, for a row whose tau is below p_top (no cap):
    with S the active set and Z = sum_S (p_j - tau), w_e = (p_e - tau) / Z on S, so for e, k in S
    dw_e/dp_k = (delta_ek Z - (p_e - tau)) / Z^2 and dw_e/dtau = (|S| (p_e - tau) - Z) / Z^2."""
    s = p > tau
    shifted = torch.where(s, p - tau, torch.zeros_like(p))
    z = shifted.sum()
    d_dp = (torch.diag(s.to(p.dtype)) * z - shifted[:, None] * s[None, :].to(p.dtype)) / z**2
    d_dtau = (s.sum() * shifted - z * s.to(p.dtype)) / z**2
    return d_dp, d_dtau


def test_threshold_exact_gradients_are_the_derivative_of_the_documented_expression():
    for row in P[:3]:  # rows 0-2: tau below the top probability, 3, 3 and 1 active experts
        jac_p, jac_tau = torch.autograd.functional.jacobian(
            lambda p, t: threshold_gate(p[None], t, "exact")[0], (row, torch.tensor(TAU, dtype=torch.float64)))
        d_dp, d_dtau = exact_threshold_jacobians(row, TAU)
        torch.testing.assert_close(jac_p, d_dp)
        torch.testing.assert_close(jac_tau, d_dtau)
    assert torch.count_nonzero(exact_threshold_jacobians(P[0], TAU)[1]) == 3  # tau really has a gradient


def test_threshold_exact_mode_passes_gradcheck():
    """Finite differences agree with autograd away from the kinks (no p within 1e-3 of tau or of p_top)."""
    generator = torch.Generator().manual_seed(0)
    p = torch.softmax(1.5 * torch.randn(12, 5, generator=generator, dtype=torch.float64), -1)
    tau = torch.tensor(0.17, dtype=torch.float64)
    gaps = (p - tau).abs()
    assert gaps.min() > 1e-3
    counts = (p > tau).sum(-1)
    assert counts.min() == 1 and counts.max() >= 3  # rows with one (constant weight) and several experts occur
    assert torch.autograd.gradcheck(lambda p, t: threshold_gate(p, t, "exact"),
                                    (p.requires_grad_(True), tau.requires_grad_(True)), eps=1e-6, atol=1e-7)


# ------------------------------------------------------------------------------------------ relaxed (default)
def relaxed_tau_oracle(p: torch.Tensor, tau: float, grad: torch.Tensor, temperature: float) -> torch.Tensor:
    """dL/dtau of the documented relaxation, written independently of the gate: relu(z) -> T softplus(z / T)
    in the shifted, renormalised gate, with the cap tau' = min(tau, p_top - 1e-6)."""
    tau_t = torch.tensor(tau, dtype=p.dtype, requires_grad=True)
    tau_eff = torch.minimum(tau_t.expand(len(p), 1), p.amax(-1, keepdim=True) - 1e-6)
    soft = temperature * nn.functional.softplus((p - tau_eff) / temperature)
    ((soft / soft.sum(-1, keepdim=True)) * grad).sum().backward()
    return tau_t.grad


def test_relaxed_router_gradient_is_the_straight_through_surrogate_with_tau_fixed():
    _, dp, _ = backward_of(lambda p, t: threshold_gate(p, t, "relaxed"), P, TAU, G)
    torch.testing.assert_close(dp, G * active_mask(P, TAU))


def test_relaxed_tau_gradient_is_the_smoothed_normalised_gate_s():
    for temperature in (0.01, 0.05):
        w, _, dtau = backward_of(lambda p, t: threshold_gate(p, t, "relaxed", temperature), P, TAU, G)
        torch.testing.assert_close(w, threshold_gate(P, torch.tensor(TAU, dtype=torch.float64), "exact"))  # same forward
        torch.testing.assert_close(dtau, relaxed_tau_oracle(P, TAU, G, temperature))


def test_relaxed_tau_gradient_tends_to_the_exact_one_as_the_temperature_shrinks():
    """Where several experts are active, the relaxation's derivative is the forward's own (unlike the
    straight-through surrogate, which differentiates an un-normalised gate)."""
    rows, grad = P[:2], G[:2]  # 3 active experts each, no runner-up within 1e-3 of tau
    _, _, exact = backward_of(lambda p, t: threshold_gate(p, t, "exact"), rows, TAU, grad)
    _, _, relaxed = backward_of(lambda p, t: threshold_gate(p, t, "relaxed", 1e-4), rows, TAU, grad)
    _, _, straight = backward_of(lambda p, t: threshold_gate(p, t, "straight_through"), rows, TAU, grad)
    torch.testing.assert_close(relaxed, exact, rtol=1e-3, atol=1e-4)
    assert not torch.allclose(straight, exact, rtol=0.1)  # the old surrogate is another quantity


def test_relaxed_tau_gradient_sees_a_runner_up_just_below_the_threshold():
    """One expert active, the runner-up 0.02 below tau: the forward is flat in tau (exact gradient 0), the
    relaxation says whether letting the runner-up in would help: dL/dw_1 < 0 (more of expert 1 lowers the
    loss), so dL/dtau > 0 and gradient descent lowers tau; the opposite upstream gradient raises it."""
    row = torch.tensor([[0.60, 0.28, 0.07, 0.05]], dtype=torch.float64)
    wants_expert_1 = torch.tensor([[0.0, -1.0, 0.0, 0.0]], dtype=torch.float64)
    _, _, exact = backward_of(lambda p, t: threshold_gate(p, t, "exact"), row, 0.30, wants_expert_1)
    _, _, relaxed = backward_of(lambda p, t: threshold_gate(p, t, "relaxed", 0.02), row, 0.30, wants_expert_1)
    _, _, against = backward_of(lambda p, t: threshold_gate(p, t, "relaxed", 0.02), row, 0.30, -wants_expert_1)
    assert exact == 0
    assert relaxed > 0 and against < 0


def test_relaxed_tau_gradient_has_the_sign_of_the_real_loss_s_finite_difference():
    """In a layer with trained-looking experts, dL/dtau of the relaxed estimator agrees in sign with the
    central difference of the real loss in tau (the forward pass with tau forced to tau +- h)."""
    agree = total = 0
    for seed in range(12):
        torch.manual_seed(seed)
        config = HDMoLEConfig(num_domains=4, routing="local", rank=2, threshold_init=0.2, gate_temperature=0.01)
        layer = HDMoLELinear(nn.Linear(8, 6), config)
        nn.init.normal_(layer.hdmole_lora_B, std=0.5)
        with torch.no_grad():
            layer.hdmole_router.weight.mul_(30)
        x, target = torch.randn(64, 8), torch.randn(64, 6)
        nn.functional.mse_loss(layer(x), target).backward()
        tau, h = layer.threshold().item(), 5e-3
        with torch.no_grad():
            losses = []
            for forced in (tau + h, tau - h):
                with forced_thresholds(layer, forced):
                    losses.append(float(nn.functional.mse_loss(layer(x), target)))
        slope = (losses[0] - losses[1]) / (2 * h)
        if abs(slope) < 1e-4:
            continue
        dtau = float(layer.hdmole_threshold_logit.grad) / (tau * (1 - tau))  # back through the sigmoid
        total += 1
        agree += (dtau > 0) == (slope > 0)
    assert total >= 8 and agree >= total - 1, (agree, total)


# ------------------------------------------------------------------------------------------ the price
def test_soft_extra_experts_counts_the_runners_up_smoothly():
    tau, temperature = torch.tensor(TAU, dtype=torch.float64, requires_grad=True), 0.02
    count = soft_extra_experts(P, tau, temperature)
    sig = torch.sigmoid((P - TAU) / temperature)
    expected = sig.sum(-1) - sig.gather(-1, P.argmax(-1, keepdim=True)).squeeze(-1)
    torch.testing.assert_close(count, expected.detach())
    # rows 0-2 have 2, 2 and 0 runners-up above tau; at a small temperature the smooth count is close to that
    sharp = soft_extra_experts(P, tau.detach(), 0.005)
    torch.testing.assert_close(sharp[:3], torch.tensor([2.0, 2.0, 0.0], dtype=torch.float64), atol=0.25, rtol=0)
    count.sum().backward()
    assert tau.grad < 0  # raising tau lowers the count


def test_gate_cost_is_the_price_times_the_mean_soft_count_summed_over_layers_and_read_once():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    config = HDMoLEConfig(num_domains=4, routing="local", rank=2, threshold_init=0.15, active_cost=0.5)
    inject(model, config, ["0", "2"])
    x = torch.randn(5, 3, 8)
    model(x).sum().backward()
    cost = gate_cost(model)
    expected = 0.0
    h = x
    with torch.no_grad():  # the oracle's own forwards price nothing
        for module in model:
            if isinstance(module, HDMoLELinear):
                p = torch.softmax(module.hdmole_router(h.reshape(-1, h.shape[-1])), -1)
                expected += 0.5 * soft_extra_experts(p, module.threshold(), config.gate_temperature).mean()
            h = module(h)
    torch.testing.assert_close(cost.detach(), expected)
    assert cost.requires_grad
    assert gate_cost(model) is None  # read once
    with torch.no_grad():
        model(x)
    assert gate_cost(model) is None  # nothing priced without gradients (decoding)
    free = nn.Sequential(nn.Linear(8, 4))
    inject(free, HDMoLEConfig(num_domains=4, routing="local", rank=2), ["0"])
    free(x).sum().backward()
    assert gate_cost(free) is None  # active_cost 0: no price


# ------------------------------------------------------------------------------------------ top-k
@pytest.mark.parametrize("k", [1, 2, 3])
def test_topk_straight_through_gradient_is_the_masked_probability_surrogate(k):
    _, dp, _ = backward_of(lambda p, t: topk_gate(p, k, straight_through=True), P[:3], TAU, G[:3])
    mask = torch.zeros_like(P[:3]).scatter_(-1, P[:3].topk(k, -1).indices, 1.0)
    torch.testing.assert_close(dp, G[:3] * mask)  # dL/dp_e = dL/dw_e on the k kept experts
    if k == 1:  # forward weight is the constant 1, yet the router still gets dL/dw_top
        torch.testing.assert_close(dp[0], torch.tensor([0.3, 0.0, 0.0, 0.0], dtype=torch.float64))


@pytest.mark.parametrize("k", [1, 2, 3])
def test_topk_exact_gradient_is_the_derivative_of_the_renormalisation(k):
    for row in P[:3]:
        jac = torch.autograd.functional.jacobian(lambda p: topk_gate(p[None], k, straight_through=False)[0], row)
        kept = torch.zeros_like(row).scatter_(-1, row.topk(k).indices, 1.0)
        z = (row * kept).sum()
        # w_e = p_e / Z on the kept set: dw_e/dp_j = (delta_ej Z - p_e) / Z^2 for e, j kept, else 0
        expected = (torch.diag(kept) * z - (row * kept)[:, None] * kept[None, :]) / z**2
        torch.testing.assert_close(jac, expected)
    p = P[:3].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: topk_gate(p, k, straight_through=False), (p,), eps=1e-6, atol=1e-7)


def test_dense_gate_passes_the_gradient_through_unchanged():
    config = HDMoLEConfig(num_domains=4, routing="local", gating="dense")
    p = P.clone().requires_grad_(True)
    gate(config, p, None).backward(G)
    torch.testing.assert_close(p.grad, G)


# ------------------------------------------------------------------------------------------ in the layer
def test_layer_router_and_threshold_gradients_follow_the_straight_through_rule():
    """The layer's router and threshold-logit gradients, recomputed from dL/dw with the documented rule:
    dL/dp = dL/dw * active, dL/dtau = -sum(dL/dw * active), then through p = normalise(g * softmax(s)) and
    tau = sigmoid(logit) by autograd of the (separately tested) routing formulas. The weights w enter this
    oracle as a detached leaf, so it does not share the gate's backward with the layer."""
    torch.manual_seed(0)
    config = HDMoLEConfig(num_domains=3, experts_per_domain=2, rank=2, threshold_init=0.12,
                          gate_gradient="straight_through")
    layer = HDMoLELinear(nn.Linear(8, 5), config)
    nn.init.normal_(layer.hdmole_lora_B, std=0.5)
    with torch.no_grad():  # a router sharp enough that the number of active experts varies by token
        layer.hdmole_router.weight.mul_(40)
    x, target = torch.randn(3, 4, 8), torch.randn(3, 4, 5)
    g = torch.softmax(torch.randn(3, 3), -1)
    with global_routing(layer, g):
        nn.functional.mse_loss(layer(x), target).backward()

    flat = x.reshape(-1, 8)
    logits = flat @ layer.hdmole_router.weight.detach().T
    logits.requires_grad_(True)
    logit_tau = layer.hdmole_threshold_logit.detach().clone().requires_grad_(True)
    tau = torch.sigmoid(logit_tau)
    p = routing_probabilities(config, logits, g.repeat_interleave(4, 0))
    w = threshold_gate(p.detach(), tau.detach(), "straight_through").detach().requires_grad_(True)
    active = (w > 0).to(w.dtype)
    counts = active.sum(-1)
    assert counts.min() == 1 and counts.max() >= 2  # both regimes occur
    A, B = layer.hdmole_lora_A.detach(), layer.hdmole_lora_B.detach()
    y = flat @ layer.weight.detach().T + layer.bias.detach()
    for e in range(config.num_experts):  # the per-expert sum, written out
        y = y + w[:, e : e + 1] * config.scaling * (flat @ A[e].T @ B[:, e].T)
    nn.functional.mse_loss(y.view(3, 4, 5), target).backward()
    dp = w.grad * active
    torch.autograd.backward([p, tau], [dp, -dp.sum()])
    torch.testing.assert_close(layer.hdmole_router.weight.grad, logits.grad.T @ flat)
    torch.testing.assert_close(layer.hdmole_threshold_logit.grad, logit_tau.grad)
    assert logit_tau.grad.abs() > 0
