"""load_model_for_inference (base + adapter checkpoints) and the decode entry point on a tiny data dir."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch
from decode_fixtures import UTTS, make_decode_setup

from hdmole.decode.search import decode_batch
from hdmole.models.checkpoint import CheckpointError, load_model_for_inference

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A data dir with features, a char tokenizer, a training config, a base and an adapter checkpoint."""
    return make_decode_setup(tmp_path_factory.mktemp("decode"))


def _feats_batch(data: Path):
    feats = kaldiio.load_scp(str(data / "feats.scp"))
    utts = sorted(UTTS)
    arrays = [torch.from_numpy(np.array(feats[u])) for u in utts]
    return {"feats": torch.nn.utils.rnn.pad_sequence(arrays, batch_first=True),
            "feat_lens": torch.tensor([a.shape[0] for a in arrays])}


def test_load_model_for_inference_base_then_adapter(setup):
    reloaded = load_model_for_inference(setup["config"], [setup["root"] / "base.pt", setup["root"] / "adapter.pt"],
                                        num_accents=2)
    batch = _feats_batch(setup["data"])
    expected = decode_batch(setup["model"].eval(), batch, setup["tokenizer"], beam=2)
    assert decode_batch(reloaded, batch, setup["tokenizer"], beam=2) == expected


def test_load_model_for_inference_errors(setup):
    with pytest.raises(ValueError, match="in no checkpoint"):
        load_model_for_inference(setup["config"], [setup["root"] / "adapter.pt"], num_accents=2)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_model_for_inference(setup["config"], [setup["root"] / "missing.pt"], num_accents=2)
    stripped = setup["root"] / "adapter_without_config.pt"
    torch.save({"model": torch.load(setup["root"] / "adapter.pt")["model"]}, stripped)
    with pytest.raises(ValueError, match="no 'adapter_config' and 'target_modules'"):
        load_model_for_inference(setup["config"], [setup["root"] / "base.pt", stripped], num_accents=2)
    bad = setup["root"] / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_model_for_inference(setup["config"], [bad], num_accents=2)


@pytest.mark.parametrize("dropped", ["projector.linear2.hdmole_lora_B", "projector.linear1.hdmole_router.weight",
                                     "projector.linear1.hdmole_threshold_logit"])
def test_an_adapter_checkpoint_missing_a_tensor_is_an_error_not_the_init_value(setup, tmp_path, dropped):
    """An adapter checkpoint without one of its layers' tensors (a partial save, a renamed module) would
    leave that tensor at its initialisation (B = 0: the layer silently unadapted): it is an error naming it."""
    ckpt = torch.load(setup["root"] / "adapter.pt", weights_only=False)
    del ckpt["model"][dropped]
    partial = tmp_path / "adapter.pt"
    torch.save(ckpt, partial)
    with pytest.raises(CheckpointError, match=rf"1 model tensor\(s\) were in no checkpoint, e.g. \['{dropped}'\]"):
        load_model_for_inference(setup["config"], [setup["root"] / "base.pt", partial], num_accents=2)


# Only against a hang: under a full load of the shared 2-core machine, these few-second runs took minutes.
HANG = 1800


@pytest.mark.slow  # three decoding subprocesses, one of them with two spawned jobs
def test_decode_writes_one_hypothesis_per_utterance_and_rtf(setup):
    out = setup["root"] / "decode_out"
    cmd = [sys.executable, "-m", "hdmole.bin.decode", "--config", str(setup["config"]),
           "--checkpoint", str(setup["root"] / "base.pt"), "--adapter", str(setup["root"] / "adapter.pt"),
           "--data", str(setup["data"]), "--accents", str(setup["root"] / "accents.txt"), "--out", str(out),
           "--beam", "2", "--batch-frames", "200", "--threads", "1"]
    env = {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=HANG)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = (out / "text").read_text(encoding="utf-8").splitlines()
    assert [line.split(maxsplit=1)[0] for line in lines] == sorted(UTTS)
    expected = decode_batch(setup["model"].eval(), _feats_batch(setup["data"]), setup["tokenizer"], beam=2)
    assert [(line.split(maxsplit=1) + [""])[1] for line in lines] == [" ".join(h.split()) for h in expected]
    rtf = dict(line.split() for line in (out / "rtf").read_text().splitlines())
    assert float(rtf["rtf"]) > 0 and int(rtf["utterances"]) == 3
    assert abs(float(rtf["audio_seconds"]) - sum(v[2] for v in UTTS.values()) * 0.01) < 1e-6
    assert "RTF" in (out / "decode.log").read_text(encoding="utf-8")
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=HANG)
    assert again.returncode == 0 and "skipping" in again.stderr
    # Two parallel jobs (spawned processes) give the same hypotheses.
    parallel = subprocess.run(cmd + ["--nj", "2", "--force"], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=HANG)
    assert parallel.returncode == 0, parallel.stderr[-2000:]
    assert (out / "text").read_text(encoding="utf-8").splitlines() == lines
    assert dict(line.split() for line in (out / "rtf").read_text().splitlines())["nj"] == "2"


def test_passes_joined_by_then_decode_as_separate_calls_would(setup):
    """`--then`: the recipe's decodings of one model (beam search, then greedy) in one process give the
    hypotheses and the provenance records of two separate calls; a pass's own options are its own."""
    common = ["--config", str(setup["config"]), "--checkpoint", str(setup["root"] / "base.pt"), "--adapter",
              str(setup["root"] / "adapter.pt"), "--data", str(setup["data"]), "--accents",
              str(setup["root"] / "accents.txt"), "--batch-frames", "200", "--threads", "1"]
    root = setup["root"] / "then"
    env = {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}

    def decode(*args):
        return subprocess.run([sys.executable, "-m", "hdmole.bin.decode", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=HANG)

    for beam, name in (("2", "beam"), ("1", "greedy")):
        assert decode(*common, "--beam", beam, "--out", str(root / "alone" / name)).returncode == 0
    joined = decode(*common, "--beam", "2", "--out", str(root / "joined" / "beam"), "--then",
                    *common, "--beam", "1", "--out", str(root / "joined" / "greedy"))
    assert joined.returncode == 0, joined.stderr[-2000:]
    for name in ("beam", "greedy"):
        for produced in ("text", "decode_inputs.json"):
            assert (root / "joined" / name / produced).read_bytes() == (root / "alone" / name / produced).read_bytes()
    # every pass is checked before the first decodes: a bad second pass writes nothing
    bad = decode(*common, "--out", str(root / "bad" / "first"), "--then", *common, "--beam", "0",
                 "--out", str(root / "bad" / "second"))
    assert bad.returncode != 0 and "--beam" in bad.stderr and not (root / "bad" / "first").exists()
    empty = decode(*common, "--out", str(root / "bad" / "first"), "--then")
    assert empty.returncode != 0 and "--then" in empty.stderr
