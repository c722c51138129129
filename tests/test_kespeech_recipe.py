"""egs/kespeech stages 1-7 through run.sh and ../TEMPLATE/hdmole.sh on fake KeSpeech/AISHELL-1 trees, with
the recipe's own conf/model_small.yaml pointed at tiny random Whisper and Qwen2 models (and a tokenizer)
saved with save_pretrained here: the real loading path (from_pretrained on a local dir, the LLM's own HF
tokenizer, Whisper log-mel features, no CMVN, bf16 LLM), one training step per stage, decoding and the
report, all on CPU (ngpu 0)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from test_kespeech_data import (RECIPE, SENTENCES, make_aishell, make_kespeech, recipe_checkout, run_recipe,
                                voice_wavs)  # noqa: F401 (voice_wavs is a fixture)

PROMPT = "转写："


def save_tiny_models(root: Path) -> tuple[Path, Path]:
    """A tiny Whisper (80 mel bins) and a tiny Qwen2 with a character tokenizer in the same dir, as a
    downloaded hub model would be."""
    from tokenizers import Tokenizer as RawTokenizer
    from tokenizers.decoders import Fuse
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Split
    from transformers import (PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM, WhisperConfig,
                              WhisperForConditionalGeneration)

    torch.manual_seed(0)
    whisper_dir, qwen_dir = root / "whisper-tiny-random", root / "qwen2-tiny-random"
    whisper = WhisperForConditionalGeneration(WhisperConfig(
        num_mel_bins=80, d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64,
        decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=64, max_source_positions=1500,
        vocab_size=100, pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1))
    whisper.save_pretrained(whisper_dir)
    chars = sorted(set("".join(SENTENCES) + PROMPT + "ABC"))
    vocab = {"<|endoftext|>": 0, "<unk>": 1, **{ch: i + 2 for i, ch in enumerate(chars)}}
    raw = RawTokenizer(WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = Split("", behavior="isolated")
    raw.decoder = Fuse()
    PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|endoftext|>", unk_token="<unk>").save_pretrained(qwen_dir)
    qwen = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                                        num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                        max_position_embeddings=512, eos_token_id=0, bos_token_id=0))
    qwen.save_pretrained(qwen_dir)
    return whisper_dir, qwen_dir


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory, voice_wavs):  # noqa: F811 (pytest fixture injection)
    root = tmp_path_factory.mktemp("kespeech_recipe")
    # Two utterances per subdialect and part, fewer for speed; still all nine subdialects.
    kespeech = make_kespeech(root / "KeSpeech", voice_wavs,
                             per_part={"train_phase1": 1, "train_phase2": 1, "dev_phase1": 1, "dev_phase2": 1, "test": 1})
    aishell = make_aishell(root / "aishell", voice_wavs)
    recipe = recipe_checkout(root / "work")
    whisper_dir, qwen_dir = save_tiny_models(root / "models")
    # The recipe's own small-model config, only the two model locations changed.
    conf = yaml.safe_load((RECIPE / "conf" / "model_small.yaml").read_text(encoding="utf-8"))
    conf["encoder"]["name_or_path"], conf["llm"]["name_or_path"] = str(whisper_dir), str(qwen_dir)
    model_conf = root / "model_small_tiny.yaml"
    model_conf.write_text(yaml.safe_dump(conf, allow_unicode=True), encoding="utf-8")
    train_args = ("--override optim.max_steps=1 --override optim.warmup_steps=0 --override checkpoint.every_steps=1 "
                  "--override data.num_workers=0 --override data.max_frames=3000 --override log_every=1")
    result = run_recipe(recipe, "--stage", "0", "--stop-stage", "7", "--kespeech-root", str(kespeech),
                        "--aishell-root", str(aishell), "--model-conf", str(model_conf), "--nj", "1",
                        "--systems", "hdmole", "--accent-tests", "test_Ji-Lu",
                        "--train-args", train_args)
    return {"result": result, "recipe": recipe, "whisper": whisper_dir, "qwen": qwen_dir, "model_conf": model_conf}


@pytest.mark.slow  # the recipe_run fixture runs stages 0-7
def test_all_stages_run_through_the_template(recipe_run):
    result = recipe_run["result"]
    assert result.returncode == 0, result.stderr[-5000:]
    recipe = recipe_run["recipe"]
    times = [line.split("\t")[0] for line in (recipe / "exp" / "model_small_tiny" / "stage_times.tsv").read_text().splitlines()]
    assert times == ["1", "2", "3", "4", "5", "6", "7"]
    assert "no conf/lm.yaml: the LLM is used as loaded" in result.stderr


@pytest.mark.slow  # the recipe_run fixture runs stages 0-7
def test_features_are_whisper_log_mel_computed_from_raw_audio_without_cmvn(recipe_run):
    """The recipe's default --feats-type raw: no feature dumps at all; the loader computes Whisper log-mel."""
    from hdmole.data import read_wav
    from hdmole.data.dataset import ASRDataset
    from hdmole.models.features import whisper_log_mel

    recipe = recipe_run["recipe"]
    data = recipe / "data" / "whisper80" / "train_aishell"
    assert not (data / "feats.scp").exists()
    assert json.loads((data / "frontend.json").read_text())["feature_type"] == "whisper"
    dataset = ASRDataset(data, data.parent / "accents.txt")
    utt, wav = next(iter(line.split(" ", 1) for line in (data / "wav.scp").read_text().splitlines()))
    samples, _ = read_wav(wav.strip())
    assert dataset[0]["utt_id"] == utt
    np.testing.assert_array_equal(dataset[0]["feats"], whisper_log_mel(samples, 16000, num_mel_bins=80))
    # Nothing under dump/: no features, no CMVN (Whisper log-mel is already scaled), test_all in data/.
    dump = recipe / "dump"
    assert not dump.exists() or not [p for p in dump.rglob("*") if p.is_file()]
    # Stage 0's own dirs hold no features: each feature type has its copy (data/whisper<bins>).
    assert not (recipe / "data" / "train_aishell" / "utt2num_frames").exists()


@pytest.mark.slow  # the recipe_run fixture runs stages 0-7
def test_stages_load_the_pretrained_models_frozen_and_train_what_they_should(recipe_run):
    from safetensors.torch import load_file

    exp = recipe_run["recipe"] / "exp" / "model_small_tiny"
    config = yaml.safe_load((exp / "base" / "config.yaml").read_text())
    assert config["model"]["encoder"]["name_or_path"] == str(recipe_run["whisper"])
    assert config["model"]["llm"] == {"name_or_path": str(recipe_run["qwen"]), "dtype": "bfloat16"}
    assert config["tokenizer"] == {"type": "hf", "name_or_path": str(recipe_run["qwen"])}
    assert config["trainable"] == ["projector"] and config["dtype"] == "bfloat16" and config["data"]["cmvn"] is None
    assert config["model"]["projector"] == {"stack": 5, "hidden": 2048}

    base = torch.load(exp / "base" / "best.pt", map_location="cpu", weights_only=False)
    assert base["step"] == 1
    whisper = load_file(recipe_run["whisper"] / "model.safetensors")
    qwen = load_file(recipe_run["qwen"] / "model.safetensors")
    # The base checkpoint holds what trained (the projector, the router); the frozen pre-trained parts
    # are reloaded from name_or_path, so a real base checkpoint is megabytes, not 18 GB.
    assert not any(k.startswith(("encoder.", "llm.")) for k in base["model"])
    assert base["trainable_params"] == sum(t.numel() for k, t in base["model"].items() if k.startswith("projector."))
    from hdmole.models.checkpoint import load_model_for_inference

    model = load_model_for_inference(exp / "base" / "config.yaml", [exp / "base" / "best.pt"], num_accents=9)
    # Frozen pre-trained weights come from the saved models, unchanged by training; the LLM in bf16 (llm.dtype).
    torch.testing.assert_close(model.encoder.whisper.conv1.weight, whisper["model.encoder.conv1.weight"])
    up = model.llm.model.layers[0].mlp.up_proj.weight
    assert up.dtype == torch.bfloat16
    torch.testing.assert_close(up, qwen["model.layers.0.mlp.up_proj.weight"].to(torch.bfloat16))
    torch.testing.assert_close(model.projector.linear1.weight, base["model"]["projector.linear1.weight"])

    router = torch.load(exp / "router" / "best.pt", map_location="cpu", weights_only=False)
    assert router["model"] and all(k.startswith("global_router.") for k in router["model"])
    hdmole = torch.load(exp / "hdmole" / "best.pt", map_location="cpu", weights_only=False)
    assert hdmole["adapter_config"]["num_domains"] == 9 and hdmole["adapter_config"]["gating"] == "threshold"
    assert hdmole["target_modules"] == ["projector.linear1", "projector.linear2"]
    assert hdmole["model"] and all("hdmole_" in k or k.startswith("global_router.") for k in hdmole["model"])
    summary = json.loads((exp / "hdmole" / "train_summary.json").read_text())
    assert summary["steps"] == 1 and summary["trainable_params"] > 0


@pytest.mark.slow  # the recipe_run fixture runs stages 0-7
def test_decode_and_report(recipe_run):
    recipe = recipe_run["recipe"]
    exp = recipe / "exp" / "model_small_tiny"
    for system in ("base", "hdmole"):
        for test_set in ("test_aishell", "test_Ji-Lu"):
            ref = (recipe / "data" / test_set / "text").read_text().splitlines()
            hyp = (exp / system / f"decode_{test_set}" / "text").read_text().splitlines()
            assert [line.split(" ", 1)[0] for line in hyp] == [line.split(" ", 1)[0] for line in ref]
            assert (exp / system / f"decode_{test_set}" / "cer.json").is_file()
    assert json.loads((exp / "hdmole" / "routing_test_all.json").read_text())["_accents"][0] == "Mandarin"
    results = (recipe / "RESULTS.md").read_text()
    for system in ("base", "hdmole"):
        assert f"| {system} |" in results
    assert "Ji-Lu" in results and "aishell (source)" in results
    # KeSpeech as its users report it: macro and micro accent averages, the pooled test set, the dev phases,
    # and where the recipe deviates from the paper
    header = next(line for line in results.splitlines() if line.startswith("| system |"))
    for column in ("avg accent (macro)", "avg accent (micro)", "KeSpeech", "Mandarin", "dev_phase1", "dev_phase2"):
        assert f"| {column} |" in header, column
    assert "Where this recipe deviates from the paper" in results
    assert "95% interval, + speakers |" in results and "| hdmole − base | test_aishell |" in results
    assert (exp / "hdmole" / "decode_dev_phase2" / "cer.json").is_file()


def test_base_and_router_configs_train_only_their_part():
    from hdmole.train.config import load_train_config

    base, _ = load_train_config(RECIPE / "conf" / "base.yaml", ["data.train=x", "data.accents=y"])
    assert base.mode == "base" and base.trainable == ["projector"] and base.dtype == "bfloat16"
    router, _ = load_train_config(RECIPE / "conf" / "router.yaml", ["data.train=x", "data.accents=y"])
    assert router.mode == "router" and router.data.cache_encoder is False and router.checkpoint.metric == "acc"
    small, _ = load_train_config(RECIPE / "conf" / "base.yaml", ["data.train=x", "data.accents=y",
                                                                 f"model={RECIPE / 'conf' / 'model_small.yaml'}"])
    assert small.model["encoder"]["name_or_path"] == "openai/whisper-small"
    assert small.model["llm"]["name_or_path"] == "Qwen/Qwen2-0.5B"
    assert not (RECIPE / "conf" / "lm.yaml").exists()  # the LLM is pre-trained: no LM stage


def model_info(conf: str, hub_cache: Path) -> subprocess.CompletedProcess:
    """local/model_info.py offline, with ``hub_cache`` as the only Hugging Face cache (hermetic: what the
    machine happens to have downloaded does not matter)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(hub_cache.parent), HF_HUB_CACHE=str(hub_cache))
    return subprocess.run([sys.executable, "local/model_info.py", conf], cwd=RECIPE, capture_output=True, text=True,
                          env=env)


@pytest.mark.parametrize("model, tokenizer, bins", [("large", "Qwen/Qwen2-7B", 128), ("small", "Qwen/Qwen2-0.5B", 80)])
def test_model_info_without_the_model_downloaded_uses_the_known_mel_bins(model, tokenizer, bins, tmp_path):
    """An empty cache: the documented constants (large-v3: 128, other Whispers: 80), so features can be
    extracted before the download."""
    result = model_info(f"conf/model_{model}.yaml", tmp_path / "hub")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"tokenizer={{name_or_path: {tokenizer}, type: hf}}", f"num_mel_bins={bins}"]


def test_model_info_reads_the_mel_bins_of_a_cached_model(tmp_path):
    """A cached whisper-small whose config says 96 bins (no real Whisper has 96): the script must report
    the cached config's value, not the 80 it would fall back to."""
    snapshot = tmp_path / "hub" / "models--openai--whisper-small" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps({"model_type": "whisper", "num_mel_bins": 96}))
    (tmp_path / "hub" / "models--openai--whisper-small" / "refs").mkdir()
    (tmp_path / "hub" / "models--openai--whisper-small" / "refs" / "main").write_text("0" * 40)
    result = model_info("conf/model_small.yaml", tmp_path / "hub")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1] == "num_mel_bins=96"


@pytest.mark.slow  # two subprocesses that import transformers
def test_model_info_reads_a_local_model_dir_and_rejects_one_without_config(tmp_path):
    model_dir = tmp_path / "my-whisper"
    model_dir.mkdir()
    conf = tmp_path / "model.yaml"
    conf.write_text(yaml.safe_dump({"encoder": {"type": "whisper", "name_or_path": str(model_dir)},
                                    "llm": {"name_or_path": "Qwen/Qwen2-0.5B"}}))
    result = model_info(str(conf), tmp_path / "hub")
    assert result.returncode == 1 and "has no readable Whisper config.json" in result.stderr
    (model_dir / "config.json").write_text(json.dumps({"model_type": "whisper", "num_mel_bins": 128}))
    result = model_info(str(conf), tmp_path / "hub")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1] == "num_mel_bins=128"
