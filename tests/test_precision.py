"""The precision policy (hdmole.models.precision): a Whisper checkpoint saved in float16 (as whisper-large-v3 is
on the hub) is loaded in the dtype the config says, never in the checkpoint's own ("auto"), and with the
encoder in float16 and the projector, router and LLM in float32, decode, eval_router and routing_stats run
without autocast (a CPU) and agree with the float32 model. Before the policy the three tools failed with
"mat1 and mat2 must have the same dtype, but got Half and Float"."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from decode_fixtures import make_decode_setup
from models_fixtures import tiny_conf, tiny_whisper_config

from hdmole.bin import decode, eval_router, routing_stats
from hdmole.models.checkpoint import load_model_for_inference
from hdmole.models.precision import autocast, inference_autocast_dtype, load_dtype

torch.set_num_threads(1)
pytestmark = pytest.mark.slow  # the three entry points end to end on a tiny Whisper (about 45 s)


def _half_whisper(root):
    from transformers import WhisperConfig, WhisperModel

    torch.manual_seed(3)
    path = root / "whisper-tiny-fp16"
    WhisperModel(WhisperConfig(**tiny_whisper_config())).half().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The tiny decoding setup with a Whisper encoder loaded from a float16 checkpoint: ``config.yaml`` gives no
    encoder dtype (so float32: the reference), ``config_fp16.yaml`` the same model with ``encoder.dtype:
    float16``; both share the base and adapter checkpoints."""
    root = tmp_path_factory.mktemp("precision")
    conf = tiny_conf(encoder="whisper", router=True, prompt="你好")
    conf["encoder"] = {"type": "whisper", "name_or_path": str(_half_whisper(root))}
    setup = make_decode_setup(root, model_conf=conf)
    raw = yaml.safe_load(setup["config"].read_text(encoding="utf-8"))
    raw["model"]["encoder"]["dtype"] = "float16"
    setup["config_fp16"] = root / "config_fp16.yaml"
    setup["config_fp16"].write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return setup


def _checkpoints(setup):
    return [setup["root"] / "base.pt", setup["root"] / "adapter.pt"]


def test_the_load_dtype_is_the_configs_not_the_checkpoints(setup):
    fp32 = load_model_for_inference(setup["config"], _checkpoints(setup), num_accents=2)
    fp16 = load_model_for_inference(setup["config_fp16"], _checkpoints(setup), num_accents=2)
    assert {p.dtype for p in fp32.encoder.parameters()} == {torch.float32}  # not the file's float16
    assert {p.dtype for p in fp16.encoder.parameters()} == {torch.float16}
    assert {p.dtype for p in fp16.projector.parameters()} == {torch.float32}
    feats = torch.randn(2, 90, 80)
    lens = torch.tensor([90, 61])
    out16, lens16 = fp16.encode(feats, lens)
    out32, _ = fp32.encode(feats, lens)
    assert out16.dtype == torch.float32  # cast to the projector's dtype
    torch.testing.assert_close(out16, out32, atol=2e-2, rtol=2e-2)
    with pytest.raises(ValueError, match="encoder dtype must be one of"):
        load_dtype({"dtype": "auto"}, "encoder")


def _decode(setup, config, out):
    code = decode.main(["--config", str(config), "--checkpoint", str(setup["root"] / "base.pt"),
                        "--adapter", str(setup["root"] / "adapter.pt"), "--data", str(setup["data"]),
                        "--accents", str(setup["root"] / "accents.txt"), "--out", str(out), "--beam", "2"])
    assert code == 0
    return (out / "text").read_text(encoding="utf-8")


def test_decode_with_a_float16_encoder_matches_float32(setup):
    hyps32 = _decode(setup, setup["config"], setup["root"] / "dec32")
    hyps16 = _decode(setup, setup["config_fp16"], setup["root"] / "dec16")
    assert len(hyps16.splitlines()) == 3
    assert hyps16 == hyps32


def test_eval_router_with_a_float16_encoder_matches_float32(setup):
    results = {}
    for name, config in (("32", setup["config"]), ("16", setup["config_fp16"])):
        out = setup["root"] / f"router{name}"
        code = eval_router.main(["--config", str(config), "--checkpoint", str(setup["root"] / "base.pt"),
                                 "--checkpoint", str(setup["root"] / "adapter.pt"),
                                 "--accents", str(setup["root"] / "accents.txt"), "--data", str(setup["data"]),
                                 "--out", str(out)])
        assert code == 0
        results[name] = json.loads((out / "router_data.json").read_text())
    assert results["16"]["confusion"] == results["32"]["confusion"]
    for accent, posterior in results["32"]["mean_posterior"].items():
        assert results["16"]["mean_posterior"][accent] == pytest.approx(posterior, abs=1e-2)


def test_routing_stats_with_a_float16_encoder_matches_float32(setup):
    results = {}
    for name, config in (("32", setup["config"]), ("16", setup["config_fp16"])):
        out = setup["root"] / f"routing{name}.json"
        code = routing_stats.main(["--config", str(config), "--checkpoint", str(setup["root"] / "base.pt"),
                                   "--checkpoint", str(setup["root"] / "adapter.pt"), "--data", str(setup["data"]),
                                   "--accents", str(setup["root"] / "accents.txt"), "--device", "cpu",
                                   "--out", str(out)])
        assert code == 0
        results[name] = json.loads(out.read_text())
    layers = [k for k in results["32"] if not k.startswith("_")]
    assert layers
    for layer in layers:
        for key, value in results["32"][layer].items():
            if isinstance(value, float):
                assert results["16"][layer][key] == pytest.approx(value, abs=1e-2), (layer, key)


def test_the_inference_tools_use_the_trainings_autocast(setup, tmp_path):
    assert inference_autocast_dtype(setup["config"]) == "float32"
    bf16 = tmp_path / "config.yaml"
    bf16.write_text(yaml.safe_dump({"mode": "adapt", "model": {}, "dtype": "bfloat16"}))
    assert inference_autocast_dtype(bf16) == "bfloat16"
    bare = tmp_path / "model.yaml"
    bare.write_text(yaml.safe_dump({"encoder": {"type": "whisper"}}))
    assert inference_autocast_dtype(bare) == "float32"
    # No autocast on a CPU or in float32 (the casts between the parts do the work there); CUDA's otherwise.
    assert not isinstance(autocast("cpu", "bfloat16"), torch.autocast)
    assert not isinstance(autocast("cuda", "float32"), torch.autocast)
    ctx = autocast("cuda", "float16")
    assert isinstance(ctx, torch.autocast) and ctx.fast_dtype == torch.float16


def test_the_encoder_side_tools_never_read_the_llm(setup, tmp_path):
    """eval_router and routing_stats build everything but the LLM: with an LLM dir that holds only its
    config (no weights), they give what the full model gives; loading the whole model fails there."""
    from transformers import Qwen2Config

    llm_conf = tiny_conf()["llm"]["config"]
    llm_dir = tmp_path / "qwen-config-only"
    Qwen2Config(vocab_size=setup["tokenizer"].vocab_size, **llm_conf).save_pretrained(llm_dir)
    raw = yaml.safe_load(setup["config"].read_text(encoding="utf-8"))
    raw["model"]["llm"] = {"name_or_path": str(llm_dir)}
    config = tmp_path / "config_no_llm_weights.yaml"
    config.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(OSError):
        load_model_for_inference(config, _checkpoints(setup), num_accents=2)
    side = load_model_for_inference(config, _checkpoints(setup), num_accents=2, encoder_side=True)
    full = load_model_for_inference(setup["config"], _checkpoints(setup), num_accents=2)
    assert side.llm is None
    feats, lens = torch.randn(2, 90, 80), torch.tensor([90, 61])
    with torch.no_grad():
        enc, enc_lens = full.encode(feats, lens)
        probs = full.route(enc, enc_lens)
        torch.testing.assert_close(side.route(*side.encode(feats, lens)), probs)
        with full.routing(probs), side.routing(probs):
            torch.testing.assert_close(side.project(enc, enc_lens)[0], full.project(enc, enc_lens)[0])
    out = tmp_path / "router"
    assert eval_router.main(["--config", str(config), "--checkpoint", str(setup["root"] / "base.pt"),
                             "--checkpoint", str(setup["root"] / "adapter.pt"), "--accents",
                             str(setup["root"] / "accents.txt"), "--data", str(setup["data"]), "--out", str(out),
                             "--num-workers", "1"]) == 0
    assert json.loads((out / "router_data.json").read_text())["utterances"] == 3
