"""inject / mark_trainable / count_parameters / adapter state dicts on real model classes."""

import pytest
import torch
from torch import nn

from hdmole.nn import (
    GlobalRouter,
    HDMoLEConfig,
    HDMoLELinear,
    adapter_state_dict,
    count_parameters,
    global_routing,
    inject,
    is_adapter_parameter,
    load_adapter_state_dict,
    mark_trainable,
)

HD = HDMoLEConfig(rank=2, alpha=4, num_domains=3, experts_per_domain=1, threshold_init=0.05)


def tiny_qwen2():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=50, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return Qwen2ForCausalLM(config).eval()


def tiny_conformer():
    from espnet2.asr.encoder.conformer_encoder import ConformerEncoder

    torch.manual_seed(0)
    return ConformerEncoder(input_size=20, output_size=32, attention_heads=4, linear_units=48, num_blocks=2,
                            input_layer="linear", cnn_module_kernel=7).eval()


def linear_names(model):
    return {name for name, m in model.named_modules() if isinstance(m, nn.Linear)}


def randomise_experts(model, seed=0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("hdmole_lora_B"):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)


def test_qwen2_only_the_named_linears_are_wrapped_and_the_start_is_exact():
    model = tiny_qwen2()
    ids = torch.randint(0, 50, (2, 7))
    before = model(ids).logits
    names = inject(model, HD, ["q_proj", "v_proj"])
    assert names == [f"model.layers.{i}.self_attn.{p}" for i in range(2) for p in ("q_proj", "v_proj")]
    wrapped = {name for name, m in model.named_modules() if isinstance(m, HDMoLELinear)}
    assert wrapped == set(names)
    assert "model.layers.0.self_attn.k_proj" in linear_names(model) - {f"{n}.base_layer" for n in names}
    g = torch.softmax(torch.randn(2, 3), -1)
    with global_routing(model, g):
        assert torch.equal(model(ids).logits, before)
        randomise_experts(model)
        assert not torch.allclose(model(ids).logits, before)


def test_conformer_injection_by_suffix_and_regex():
    encoder = tiny_conformer()
    x, lengths = torch.randn(2, 30, 20), torch.tensor([30, 21])
    before = encoder(x, lengths)[0]
    names = inject(encoder, HD, ["linear_q", r"encoders\.1\.feed_forward\.w_\d"])
    assert names == [
        "encoders.0.self_attn.linear_q",
        "encoders.1.feed_forward.w_1",
        "encoders.1.feed_forward.w_2",
        "encoders.1.self_attn.linear_q",
    ]
    assert sum(isinstance(m, HDMoLELinear) for m in encoder.modules()) == 4
    with global_routing(encoder, torch.softmax(torch.randn(2, 3), -1)):
        assert torch.equal(encoder(x, lengths)[0], before)


def test_bad_patterns_fail_clearly():
    model = tiny_qwen2()
    with pytest.raises(ValueError, match="'qproj' selects no nn.Linear.*q_proj"):
        inject(model, HD, ["q_proj", "qproj"])
    assert not any(isinstance(m, HDMoLELinear) for m in model.modules())  # nothing half-done
    with pytest.raises(ValueError, match="only non-Linear modules.*Qwen2MLP"):
        inject(model, HD, ["mlp"])
    with pytest.raises(ValueError, match="empty"):
        inject(model, HD, [])
    inject(model, HD, "q_proj")
    with pytest.raises(ValueError, match="already HDMoLE layers"):
        inject(model, HD, ["q_proj"])


def test_mark_trainable_and_count_parameters():
    model = tiny_qwen2()
    total_before = count_parameters(model)["total"]
    inject(model, HD, ["q_proj", "v_proj"])
    router = GlobalRouter(32, 3, hidden=8)
    model.global_router = router
    trainable = mark_trainable(model)
    assert trainable and all(is_adapter_parameter(name) for name in trainable)
    assert {n.rsplit(".", 1)[-1] for n in trainable} == {"hdmole_lora_A", "hdmole_lora_B", "weight",
                                                           "hdmole_threshold_logit"}
    counts = count_parameters(model)
    # per layer: A (3*2*32) + B (d_out*3*2) + router (3*32) + threshold 1; q_proj d_out 32, v_proj 16
    per_layer = {32: 3 * 2 * 32 + 32 * 6 + 96 + 1, 16: 3 * 2 * 32 + 16 * 6 + 96 + 1}
    expected_adapter = 2 * (per_layer[32] + per_layer[16])
    assert counts["trainable"] == counts["adapter"] == expected_adapter
    router_size = sum(p.numel() for p in router.parameters())
    assert counts["total"] == total_before + expected_adapter + router_size
    with_router = mark_trainable(model, extra=[router])
    assert set(with_router) - set(trainable) == {f"global_router.{n}" for n, _ in router.named_parameters()}
    assert count_parameters(model)["trainable"] == expected_adapter + router_size
    assert mark_trainable(model, extra=["lm_head"])[-1] == "lm_head.weight"
    with pytest.raises(ValueError, match="names no parameter"):
        mark_trainable(model, extra=["no_such_module"])
    with pytest.raises(ValueError, match="no HDMoLE adapter"):
        mark_trainable(nn.Linear(3, 3))


def test_adapter_state_dict_round_trip_is_exact_and_holds_only_adapters(tmp_path):
    model = tiny_qwen2()
    inject(model, HD, ["q_proj", "o_proj"])
    randomise_experts(model, seed=1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "hdmole_threshold" in name or "hdmole_router" in name:
                param.add_(0.3 * torch.randn_like(param))
    ids = torch.randint(0, 50, (2, 6))
    g = torch.softmax(torch.randn(2, 3), -1)
    with global_routing(model, g):
        expected = model(ids).logits
    state = adapter_state_dict(model)
    assert state and all(is_adapter_parameter(k) for k in state)
    assert len(state) == 4 * 4  # 4 layers x (A, B, router, threshold)
    torch.save(state, tmp_path / "adapter.pt")

    fresh = tiny_qwen2()  # same seed: same base weights, fresh (different-by-B) adapters
    inject(fresh, HD, ["q_proj", "o_proj"])
    with global_routing(fresh, g):
        assert not torch.equal(fresh(ids).logits, expected)
        load_adapter_state_dict(fresh, torch.load(tmp_path / "adapter.pt"))
        assert torch.equal(fresh(ids).logits, expected)


def test_loading_into_a_differently_shaped_model_fails_clearly():
    model = tiny_qwen2()
    inject(model, HD, ["q_proj"])
    state = adapter_state_dict(model)
    more_experts = tiny_qwen2()
    inject(more_experts, HDMoLEConfig(rank=2, alpha=4, num_domains=4), ["q_proj"])
    with pytest.raises(ValueError, match=r"shape mismatch.*\(3, 2, 32\) vs model \(4, 2, 32\)"):
        load_adapter_state_dict(more_experts, state)
    no_threshold = tiny_qwen2()
    inject(no_threshold, HDMoLEConfig(rank=2, alpha=4, num_domains=3, gating="dense"), ["q_proj"])
    with pytest.raises(ValueError, match="unexpected 2 key.*hdmole_threshold_logit"):
        load_adapter_state_dict(no_threshold, state)
    other_layers = tiny_qwen2()
    inject(other_layers, HD, ["q_proj", "v_proj"])
    with pytest.raises(ValueError, match="missing 8 key.*v_proj"):
        load_adapter_state_dict(other_layers, state)


def test_extra_modules_travel_with_the_adapters():
    model = tiny_qwen2()
    inject(model, HD, ["q_proj"])
    model.global_router = GlobalRouter(32, 3, hidden=8)
    state = adapter_state_dict(model, extra=[model.global_router])
    assert "global_router.mlp.0.weight" in state
    other = tiny_qwen2()
    inject(other, HD, ["q_proj"])
    other.global_router = GlobalRouter(32, 3, hidden=8)
    load_adapter_state_dict(other, state, extra=["global_router"])
    assert torch.equal(other.global_router.mlp[0].weight, model.global_router.mlp[0].weight)
    with pytest.raises(ValueError, match="not a submodule"):
        adapter_state_dict(model, extra=[GlobalRouter(4, 2)])
