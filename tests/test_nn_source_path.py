"""The source-preserving path of hdmole.nn (config.source_domain): no experts for the source domain, the
update scaled by 1 - g_source, so a one-hot source posterior is exactly the base layer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hdmole.nn import HDMoLEConfig, RoutingStatsRecorder, expert_domains, global_routing, inject, reference_forward

torch.manual_seed(0)


def trained_model(config: HDMoLEConfig) -> nn.Module:
    """Two stacked linears with HDMoLE injected and non-zero experts (as after training)."""
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 8))
    inject(model, config, ["0", "2"])
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.5)
    return model


CONFIGS = [
    HDMoLEConfig(rank=2, num_domains=5, source_domain=0, routing="hierarchical", gating="threshold"),
    HDMoLEConfig(rank=2, num_domains=5, source_domain=0, routing="hierarchical", gating="topk", top_k=2),
    HDMoLEConfig(rank=2, num_domains=5, source_domain=0, routing="global", gating="threshold"),
    HDMoLEConfig(rank=2, num_domains=5, source_domain=2, experts_per_domain=2, routing="hierarchical",
                 combine="sum", gating="dense"),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.routing}-{c.gating}-src{c.source_domain}")
def test_one_hot_source_posterior_is_exactly_the_base_model(config):
    model = trained_model(config)
    base = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 8))
    base[0].load_state_dict({"weight": model[0].weight, "bias": model[0].bias})
    base[2].load_state_dict({"weight": model[2].weight, "bias": model[2].bias})
    x = torch.randn(3, 7, 12)
    g = torch.zeros(3, 5)
    g[:, config.source_domain] = 1.0
    with global_routing(model, g):
        out = model(x)
    assert torch.equal(out, base(x))
    # ... and any other posterior changes it (the experts are not zero)
    g_accent = torch.zeros(3, 5)
    g_accent[:, (config.source_domain + 1) % 5] = 1.0
    with global_routing(model, g_accent):
        assert not torch.allclose(model(x), base(x))


def test_update_scales_with_one_minus_the_source_posterior():
    config = CONFIGS[2]  # global routing: weights follow g over the target domains, no local router
    model = trained_model(config)
    layer = model[0]
    x = torch.randn(2, 4, 12)
    target = torch.tensor([[0.0, 0.7, 0.3, 0.0, 0.0]] * 2)
    half = torch.tensor([[0.5, 0.35, 0.15, 0.0, 0.0]] * 2)  # same target proportions, half the source mass
    with torch.no_grad():
        with global_routing(layer, target):
            full_update = layer(x) - layer.base_layer(x)
            assert torch.allclose(layer(x), reference_forward(layer, x), atol=1e-6)
        with global_routing(layer, half):
            half_update = layer(x) - layer.base_layer(x)
    assert torch.allclose(half_update, 0.5 * full_update, atol=1e-6)


def test_layout_and_size_have_no_source_experts():
    config = HDMoLEConfig(rank=3, num_domains=5, experts_per_domain=2, source_domain=0)
    assert config.num_experts == 8
    assert expert_domains(config).tolist() == [1, 1, 2, 2, 3, 3, 4, 4]
    layer = trained_model(config)[0]
    assert layer.hdmole_lora_A.shape == (8, 3, 12) and layer.hdmole_router.weight.shape == (8, 12)


@pytest.mark.parametrize("bad, message", [
    (dict(routing="local"), "needs the global posterior"),
    (dict(source_domain=5), "not a domain index"),
    (dict(num_domains=1, source_domain=0, routing="global"), "num_domains >= 2"),
])
def test_bad_source_domain_configs_are_errors(bad, message):
    kwargs = dict(num_domains=5, source_domain=0, routing="hierarchical") | bad
    with pytest.raises(ValueError, match=message):
        HDMoLEConfig(**kwargs)


def test_gradients_reach_experts_router_and_threshold_but_not_through_a_one_hot_source():
    config = CONFIGS[0]
    model = trained_model(config)
    x = torch.randn(4, 5, 12)
    g = torch.softmax(torch.randn(4, 5), -1)
    with global_routing(model, g):
        model(x).pow(2).sum().backward()
    layer = model[0]
    for p in (layer.hdmole_lora_A, layer.hdmole_lora_B, layer.hdmole_router.weight, layer.hdmole_threshold_logit):
        assert p.grad is not None and p.grad.abs().sum() > 0
    model.zero_grad()
    g = torch.zeros(4, 5)
    g[:, 0] = 1.0
    with global_routing(model, g):
        model(x).pow(2).sum().backward()
    assert layer.hdmole_lora_B.grad.abs().sum() == 0  # the base model's outputs: nothing for the experts to learn


def test_stats_record_the_update_scale_and_gate_activity_apart():
    model = trained_model(CONFIGS[0])
    x = torch.randn(2, 3, 12)
    g = torch.tensor([[1.0, 0, 0, 0, 0], [0.0, 1.0, 0, 0, 0]])
    with RoutingStatsRecorder(model) as recorder, global_routing(model, g):
        recorder.set_domain_labels(["Mandarin", "Southwestern"])
        model(x)
    stats = recorder.summary()["0"]["by_domain"]
    assert stats["Mandarin"]["mean_update_scale"] == 0.0 and sum(stats["Mandarin"]["mean_weight_per_expert"]) == 0.0
    assert stats["Southwestern"]["mean_update_scale"] == 1.0
    assert stats["Southwestern"]["mean_weight_per_expert"][0] == pytest.approx(1.0, abs=0.05)  # its own expert (e0)


# ------------------------------------------------------------------------------------------ the source gate
G_ROWS = torch.tensor([[0.60, 0.10, 0.10, 0.10, 0.10],   # clearly the source
                       [0.30, 0.40, 0.10, 0.10, 0.10],   # an accent, the source second
                       [0.05, 0.80, 0.05, 0.05, 0.05]])  # clearly an accent


def test_source_gate_bias_shifts_the_source_logit_and_zero_bias_is_the_plain_scale():
    from hdmole.nn import source_keep

    plain = HDMoLEConfig(rank=2, num_domains=5, source_domain=0)
    torch.testing.assert_close(source_keep(plain, G_ROWS), 1 - G_ROWS[:, :1])
    for bias in (-1.0, 0.7, 2.0):
        gated = HDMoLEConfig(rank=2, num_domains=5, source_domain=0, source_gate_bias=bias)
        biased = torch.softmax(G_ROWS.log() + torch.tensor([bias, 0, 0, 0, 0]), -1)  # the logit moved by b
        torch.testing.assert_close(source_keep(gated, G_ROWS), 1 - biased[:, :1])
    protective = HDMoLEConfig(rank=2, num_domains=5, source_domain=0, source_gate_bias=2.0)
    assert torch.all(source_keep(protective, G_ROWS) < source_keep(plain, G_ROWS))


def test_hard_source_gate_is_off_where_the_biased_argmax_is_the_source_and_fully_on_elsewhere():
    from hdmole.nn import source_keep

    hard = HDMoLEConfig(rank=2, num_domains=5, source_domain=0, source_gate_hard=True)
    torch.testing.assert_close(source_keep(hard, G_ROWS), torch.tensor([[0.0], [1.0], [1.0]]))
    # a bias of log(2) makes the second row's source (0.30 * 2 = 0.6 > 0.40) win
    hard_biased = HDMoLEConfig(rank=2, num_domains=5, source_domain=0, source_gate_hard=True, source_gate_bias=0.7)
    torch.testing.assert_close(source_keep(hard_biased, G_ROWS), torch.tensor([[0.0], [0.0], [1.0]]))
    # the layer applies it: the source-routed row is exactly the base layer, the others are not
    model = trained_model(hard)
    x = torch.randn(3, 4, 12)
    with global_routing(model, G_ROWS):
        y = model(x)
    base = model[2].base_layer(torch.relu(model[0].base_layer(x)))
    torch.testing.assert_close(y[0], base[0], rtol=0, atol=0)
    assert not torch.allclose(y[1], base[1])


def test_source_gate_needs_a_source_domain():
    with pytest.raises(ValueError, match="source_gate"):
        HDMoLEConfig(rank=2, num_domains=5, routing="local", source_gate_bias=1.0)

def test_stats_average_the_applied_weights_with_fractional_source_posteriors():
    """With g_source strictly between 0 and 1 the recorded mean weights are those the layer applies (the
    gate's weights times 1 - g_source, counted once) and the update scale is 1 - g_source, per utterance's
    domain label and overall. (A one-hot posterior cannot tell: 0 and 1 are their own squares.)"""
    config = CONFIGS[3]  # dense gating, source domain 2, two experts per domain: every weight row sums to 1
    layer = trained_model(config)[0]
    x = torch.randn(2, 3, 12)
    g = torch.tensor([[0.1, 0.2, 0.5, 0.2, 0.0], [0.3, 0.1, 0.2, 0.0, 0.4]])  # 1 - g_source: 0.5 and 0.8
    with torch.no_grad(), global_routing(layer, g):
        applied = layer.routing_weights(x).view(2, 3, -1)  # outside the recorder: what the layer applies
        with RoutingStatsRecorder(layer) as recorder:
            recorder.set_domain_labels(["half", "most"])
            layer(x)
    stats = recorder.summary()[""]
    for b, (label, keep) in enumerate((("half", 0.5), ("most", 0.8))):
        cell = stats["by_domain"][label]
        assert cell["mean_update_scale"] == pytest.approx(keep)
        assert cell["mean_weight_per_expert"] == pytest.approx(applied[b].mean(0).tolist(), abs=1e-6)
        assert sum(cell["mean_weight_per_expert"]) == pytest.approx(keep, abs=1e-6)
        assert cell["mean_active_experts"] == pytest.approx(config.num_experts)  # dense: every expert is active
    assert stats["mean_update_scale"] == pytest.approx(0.65)
    assert stats["mean_weight_per_expert"] == pytest.approx(applied.mean((0, 1)).tolist(), abs=1e-6)
