"""GlobalRouter pooling and training, and routing statistics."""

import json

import pytest
import torch
from torch import nn

from hdmole.nn import (
    GlobalRouter,
    HDMoLEConfig,
    HDMoLELinear,
    RoutingStatsRecorder,
    collect_routing_stats,
    global_routing,
    inject,
)


def test_global_router_masked_mean_ignores_padding():
    torch.manual_seed(0)
    router = GlobalRouter(6, 3, hidden=5, dropout=0.0).eval()
    x = torch.randn(2, 8, 6)
    lengths = torch.tensor([8, 3])
    padded = x.clone()
    padded[1, 3:] = 1e3  # garbage in the padding must not matter
    logits = router(padded, lengths=lengths)
    assert logits.shape == (2, 3)
    torch.testing.assert_close(logits[1], router(x[1:2, :3])[0])
    mask = torch.arange(8)[None] < lengths[:, None]
    torch.testing.assert_close(router(padded, mask=mask), logits)
    torch.testing.assert_close(router.posterior(padded, lengths).sum(-1), torch.ones(2))


def test_global_router_bad_input():
    router = GlobalRouter(6, 3)
    with pytest.raises(ValueError, match=r"\[B, T, 6\]"):
        router(torch.randn(2, 6))
    with pytest.raises(ValueError, match="lengths must lie"):
        router(torch.randn(2, 4, 6), lengths=torch.tensor([4, 0]))
    with pytest.raises(ValueError, match="num_domains >= 2"):
        GlobalRouter(6, 1)


def test_global_router_learns_to_classify_domains():
    torch.manual_seed(0)
    means = torch.randn(3, 8) * 2
    router = GlobalRouter(8, 3, hidden=16, dropout=0.0)
    optimiser = torch.optim.Adam(router.parameters(), lr=0.02)
    for _ in range(80):
        labels = torch.randint(0, 3, (16,))
        x = means[labels][:, None, :] + torch.randn(16, 10, 8)
        loss = nn.functional.cross_entropy(router(x, lengths=torch.full((16,), 10)), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    labels = torch.arange(3).repeat(20)
    x = means[labels][:, None, :] + torch.randn(60, 10, 8)
    accuracy = (router(x).argmax(-1) == labels).float().mean().item()
    assert accuracy > 0.9


def test_routing_stats_per_layer_and_per_domain():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    inject(model, HDMoLEConfig(num_domains=2, experts_per_domain=2, threshold_init=0.2), ["0", "2"])
    # utterance 0 is certainly domain 0, utterance 1 certainly domain 1: with product routing only the
    # two experts of that domain can be active, and their weights sum to 1
    g = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    x = torch.randn(2, 5, 8)
    with global_routing(model, g):
        stats = collect_routing_stats(model, lambda: model(x), domain_labels=["north", "south"])
        assert model[0]._stats_sink is None  # recording stops with the block
    assert set(stats) == {"0", "2"}
    layer0 = stats["0"]
    assert layer0["tokens"] == 10 and abs(layer0["threshold"] - 0.2) < 1e-6
    assert 1.0 <= layer0["mean_active_experts"] <= 2.0
    north, south = layer0["by_domain"]["north"], layer0["by_domain"]["south"]
    assert north["tokens"] == south["tokens"] == 5
    assert north["mean_weight_per_expert"][2:] == [0.0, 0.0] and south["mean_weight_per_expert"][:2] == [0.0, 0.0]
    assert sum(north["mean_weight_per_expert"]) == pytest.approx(1.0)
    assert sum(layer0["mean_weight_per_expert"]) == pytest.approx(1.0)
    assert layer0["mean_active_experts"] == pytest.approx(sum(layer0["active_fraction_per_expert"]))
    json.dumps(stats)  # plain Python values only


def test_routing_stats_accumulate_over_forwards_and_check_labels():
    torch.manual_seed(0)
    layer = HDMoLELinear(nn.Linear(8, 4), HDMoLEConfig(num_domains=4, routing="local", gating="topk", top_k=2),
                         name="proj")
    with RoutingStatsRecorder(layer) as recorder:
        layer(torch.randn(3, 4, 8))
        layer(torch.randn(2, 8))
        recorder.set_domain_labels(["a"])
        with pytest.raises(ValueError, match="1 domain labels for a batch of 3"):
            layer(torch.randn(3, 4, 8))
    summary = recorder.summary()[""]
    assert summary["tokens"] == 14 and summary["mean_active_experts"] == pytest.approx(2.0)
    assert summary["threshold"] is None
    with pytest.raises(ValueError, match="more than one expert"):
        RoutingStatsRecorder(HDMoLELinear(nn.Linear(2, 2), HDMoLEConfig()))
