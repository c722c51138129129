"""hdmole.bin.bench_scale (the real-scale GPU benchmark of egs/kespeech) on CPU with the tiny shapes: the
same code path as on a GPU, so a broken benchmark is found here and not in the first minutes of a GPU lease."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hdmole.bin import bench_scale

ROOT = Path(__file__).resolve().parents[1]


def test_bench_scale_times_every_stage_with_the_recipe_trainables(tmp_path):
    out = tmp_path / "bench.json"
    assert bench_scale.main(["--device", "cpu", "--models", "tiny", "--batch", "2", "--seconds", "1", "--warmup", "0",
                             "--steps", "1", "--decode-repeats", "0", "--out", str(out)]) == 0
    results = {r["what"]: r for r in json.loads(out.read_text())["results"]}
    assert list(results) == ["train base", "train router", "train adapt", "decode beam 1", "decode beam 4"]
    base, router, adapt = results["train base"], results["train router"], results["train adapt"]
    conf = bench_scale.model_conf("tiny")
    d_in, hidden = conf["encoder"]["config"]["d_model"] * conf["projector"]["stack"], conf["projector"]["hidden"]
    d_out = conf["llm"]["config"]["hidden_size"]
    # base (conf/base.yaml): the projector alone; router: the global router alone (a small fraction); adapt: the
    # hdmole system's adapters on both projector linears (E = 8 experts of rank 16) and their routers
    assert base["trainable_params"] == d_in * hidden + hidden + hidden * d_out + d_out
    assert 0 < router["trainable_params"] < base["trainable_params"] / 10
    assert adapt["trainable_params"] > 8 * 16 * (d_in + hidden + hidden + d_out)
    assert all(r["steps_per_s"] > 0 for r in (base, router, adapt))
    # the random model runs every hypothesis to decoding's length limit: 4 characters per second of audio (1 s
    # each here) + the 2 tokens hdmole.decode.search.token_limits always allows
    assert results["decode beam 1"]["tokens"] == results["decode beam 4"]["tokens"] == 2 * (4 + 2)


SMALL = ["--device", "cpu", "--models", "tiny", "--warmup", "0", "--steps", "1", "--decode-repeats", "0", "--beams", "1"]


def test_the_default_shapes_are_the_recipes_batch_and_its_longest_bucket(tmp_path):
    max_frames = bench_scale.stage_config("base", bench_scale.model_conf("tiny"), tmp_path).data.max_frames
    assert bench_scale.recipe_shapes(max_frames) == [(40, 5.0), (6, 30.0)]  # 200 s per GPU; 30 s utterances
    assert bench_scale.parse_args([]).shape_list is None  # -> those
    assert bench_scale.parse_args(["--shapes", "40x5", "6x30"]).shape_list == [(40, 5.0), (6, 30.0)]


def test_pretrained_dir_loads_the_weights_through_the_recipes_loading_path(tmp_path):
    """--pretrained-dir: the recipe's model config with name_or_path under DIR (from_pretrained, the configs'
    load dtypes), every listed shape measured."""
    from transformers import Qwen2Config, Qwen2ForCausalLM, WhisperConfig, WhisperModel

    from hdmole.models.build import build_model

    models = tmp_path / "models"
    WhisperModel(WhisperConfig(num_mel_bins=80, d_model=32, encoder_layers=1, encoder_attention_heads=2,
                               encoder_ffn_dim=64, decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=64,
                               vocab_size=100, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                               decoder_start_token_id=1)).half().save_pretrained(models / "whisper-small")
    Qwen2ForCausalLM(Qwen2Config(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=1)).save_pretrained(models / "Qwen2-0.5B")
    conf = bench_scale.model_conf("tiny", models)
    assert conf["encoder"]["name_or_path"] == str(models / "whisper-small")
    model = build_model(conf, bench_scale._IdTokenizer(300), num_accents=bench_scale.NUM_ACCENTS)
    assert model.encoder.whisper.conv1.weight.dtype == torch.float32  # the recipe's small config: float32
    out = tmp_path / "bench.json"
    assert bench_scale.main([*SMALL, "--pretrained-dir", str(models), "--stages", "adapt", "--shapes", "2x1", "1x3",
                             "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["weights"] == str(models)
    assert [(r["what"], r["batch"]) for r in report["results"]] == [
        ("train adapt", "2 x 1 s"), ("train adapt", "1 x 3 s"), ("decode beam 1", "2 x 1 s"), ("decode beam 1", "1 x 3 s")]


@pytest.mark.slow  # torchrun with two CPU processes
def test_torchrun_reports_the_scaling_from_one_process_to_two(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "hdmole.bin.bench_scale", *SMALL, "--stages", "base", "--shapes", "2x1", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    train = json.loads(out.read_text())["results"][0]
    assert train["processes"] == 2 and train["s_per_step"] > 0 and train["s_per_step_ddp"] > 0
    assert train["scaling_efficiency"] == pytest.approx(train["s_per_step"] / train["s_per_step_ddp"])
    assert "scaling 1 -> 2" in result.stdout


def test_loader_mode_times_the_data_loader_alone(tmp_path):
    from decode_fixtures import UTTS, make_decode_setup

    setup = make_decode_setup(tmp_path)
    out = tmp_path / "loader.json"
    assert bench_scale.main(["--loader", str(setup["data"]), "--accents", str(setup["root"] / "accents.txt"),
                             "--num-workers", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())["results"][0]
    assert result["utterances"] == len(UTTS) and result["batches"] >= 1
    assert result["audio_s_per_s"] == pytest.approx(sum(u[2] for u in UTTS.values()) / 100 / result["seconds"])
