"""HDMoLEConfig: defaults, derived values, validation and from_dict."""

import pytest

from hdmole.nn import HDMoLEConfig


def test_defaults_are_a_valid_plain_lora():
    config = HDMoLEConfig()
    assert (config.rank, config.alpha, config.dropout) == (8, 16, 0.0)
    assert config.num_experts == 1 and config.is_plain_lora
    assert not config.uses_local_router and not config.uses_threshold and not config.uses_global_posterior
    assert config.scaling == 2.0


def test_derived_flags_per_mode():
    hd = HDMoLEConfig(num_domains=4, experts_per_domain=2)
    assert hd.num_experts == 8 and hd.uses_local_router and hd.uses_global_posterior and hd.uses_threshold
    local = HDMoLEConfig(num_domains=4, routing="local", gating="topk", top_k=2)
    assert local.uses_local_router and not local.uses_global_posterior and not local.uses_threshold
    glob = HDMoLEConfig(num_domains=3, routing="global", gating="dense")
    assert not glob.uses_local_router and glob.uses_global_posterior
    plain = HDMoLEConfig(num_domains=1, experts_per_domain=1, routing="none", gating="dense", rank=32)
    assert plain.is_plain_lora and plain.scaling == 0.5


def test_from_dict_round_trip_and_unknown_keys():
    config = HDMoLEConfig(num_domains=3, rank=4, gating="topk", top_k=2, routing="local")
    assert HDMoLEConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError) as err:
        HDMoLEConfig.from_dict({"rank": 4, "num_expert": 3}, source="conf/hdmole.yaml")
    message = str(err.value)
    assert "conf/hdmole.yaml" in message and "num_expert" in message and "experts_per_domain" in message
    with pytest.raises(TypeError):
        HDMoLEConfig.from_dict(["rank", 4])


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"rank": 0}, "rank must be >= 1"),
        ({"rank": 2.5}, "rank must be an int"),
        ({"alpha": 0}, "alpha must be > 0"),
        ({"dropout": 1.0}, "dropout"),
        ({"routing": "tree"}, "routing must be one of"),
        ({"gating": "soft"}, "gating must be one of"),
        ({"combine": "max"}, "combine must be one of"),
        ({"threshold_init": 1.0}, "threshold_init"),
        ({"combine_lambda": 1.5}, "combine_lambda"),
        ({"gate_gradient": "reinforce"}, "gate_gradient"),
        ({"num_domains": 1, "experts_per_domain": 4, "routing": "global"}, "needs num_domains > 1"),
        ({"num_domains": 1, "experts_per_domain": 4, "routing": "hierarchical"}, "needs num_domains > 1"),
        ({"num_domains": 4, "routing": "none"}, "single plain LoRA"),
        ({"num_domains": 2, "routing": "local", "gating": "topk", "top_k": 3}, "exceeds the number of experts"),
    ],
)
def test_bad_values_are_rejected_with_a_reason(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        HDMoLEConfig(**kwargs)
    with pytest.raises(ValueError, match=fragment):
        HDMoLEConfig.from_dict(kwargs)
