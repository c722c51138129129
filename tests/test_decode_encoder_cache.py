"""decode --encoder-cache-dir: the models of one frozen encoder encode a test set once (stage 6)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from decode_fixtures import make_decode_setup

ROOT = Path(__file__).resolve().parents[1]
HANG = 300
ENV = {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return make_decode_setup(tmp_path_factory.mktemp("decode_cache"))


def _decode(setup, out: Path, *extra, base: Path | None = None) -> dict:
    cmd = [sys.executable, "-m", "hdmole.bin.decode", "--config", str(setup["config"]),
           "--checkpoint", str(base or setup["root"] / "base.pt"), "--adapter", str(setup["root"] / "adapter.pt"),
           "--data", str(setup["data"]), "--accents", str(setup["root"] / "accents.txt"), "--out", str(out),
           "--beam", "2", "--batch-frames", "200", "--threads", "1", *extra]
    run = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=HANG)
    assert run.returncode == 0, run.stderr[-2000:]
    rtf = dict(line.split() for line in (out / "rtf").read_text().splitlines())
    return {"text": (out / "text").read_text(encoding="utf-8"), "rtf": rtf, "stderr": run.stderr}


def test_cached_encoder_outputs_decode_as_the_encoder_does_and_are_keyed_by_its_weights(setup, tmp_path):
    cache = tmp_path / "encoder_cache"
    plain = _decode(setup, tmp_path / "plain")
    assert plain["rtf"]["encoder_cache"] == "none"

    filled = _decode(setup, tmp_path / "filled", "--encoder-cache-dir", str(cache))
    assert filled["text"] == plain["text"] and filled["rtf"]["encoder_cache"] == "filled"
    files = sorted(cache.glob("*.pt"))
    assert len(files) == 1 and files[0].with_suffix(".json").is_file()

    loaded = _decode(setup, tmp_path / "loaded", "--encoder-cache-dir", str(cache))
    assert loaded["text"] == plain["text"] and loaded["rtf"]["encoder_cache"] == "loaded"
    assert float(loaded["rtf"]["rtf"]) > 0
    # the speed option is not part of what produced the hypotheses: a plain call finds them made
    again = subprocess.run([sys.executable, "-m", "hdmole.bin.decode", "--config", str(setup["config"]),
                            "--checkpoint", str(setup["root"] / "base.pt"),
                            "--adapter", str(setup["root"] / "adapter.pt"),
                            "--data", str(setup["data"]), "--accents", str(setup["root"] / "accents.txt"),
                            "--out", str(tmp_path / "loaded"), "--beam", "2", "--threads", "1"],
                           cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=HANG)
    assert again.returncode == 0 and "skipping" in again.stderr

    # The hypotheses really come from the file: silenced outputs decode to something else.
    outputs = torch.load(files[0], weights_only=True)
    torch.save({utt: torch.zeros_like(x) for utt, x in outputs.items()}, files[0])
    silenced = _decode(setup, tmp_path / "silenced", "--encoder-cache-dir", str(cache))
    assert silenced["rtf"]["encoder_cache"] == "loaded" and silenced["text"] != plain["text"]
    torch.save(outputs, files[0])

    # Another encoder (a retrained base) has its own file, never the first one's outputs.
    base = torch.load(setup["root"] / "base.pt", weights_only=False)
    name = next(k for k in base["model"] if k.startswith("encoder.") and base["model"][k].is_floating_point())
    base["model"][name] = base["model"][name] + 0.5
    other = tmp_path / "other_base.pt"
    torch.save(base, other)
    retrained = _decode(setup, tmp_path / "retrained", "--encoder-cache-dir", str(cache), base=other)
    assert retrained["rtf"]["encoder_cache"] == "filled" and len(list(cache.glob("*.pt"))) == 2
