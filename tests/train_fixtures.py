"""Shared helpers for the trainer tests (no tests here): a small corpus of random features, a tiny model,
training configs, and a driver that trains in a child process and kills it with SIGKILL at a chosen moment.

The features are random (no speech synthesis: these tests are about the training arithmetic, not about
learning to recognise anything); texts have different lengths, so that batches, ranks and micro-batches
hold different numbers of tokens and utterances, which is what per-token loss normalisation is about.

As a script (``python tests/train_fixtures.py --kill-at save:N|forward:N -- <hdmole.bin.train args>``) it
runs ``hdmole.bin.train`` and SIGKILLs itself during the N-th checkpoint write (after half of the file's
bytes are on disk) or at the start of the N-th training forward pass.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
ACCENTS = ["Mandarin", "Dental"]
CHARS = "你好世界我们是中国人今天天气很好学生上课"

# No dropout anywhere, so one process and two compute the same function of the same batches.
MODEL = {
    "encoder": {"type": "conformer", "input_size": 80, "output_size": 32, "attention_heads": 2, "linear_units": 64,
                "num_blocks": 1, "input_layer": "conv2d", "dropout_rate": 0.0, "positional_dropout_rate": 0.0,
                "attention_dropout_rate": 0.0},
    "projector": {"stack": 2, "hidden": 48},
    "llm": {"type": "qwen2", "config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                        "num_attention_heads": 2, "num_key_value_heads": 1}},
    "global_router": {"hidden": 16, "dropout": 0.0},
    "ctc_weight": 0.3,
    "accent_weight": 0.1,  # trains the global router (per-utterance loss) in the hdmole system
    "prompt": "",
}
SYSTEMS = {
    "full_ft": {"adapter": {"system": "full_ft"}, "trainable": ["projector"]},
    "hdmole": {"adapter": {"system": "hdmole", "config": {"rank": 4, "alpha": 8, "threshold_init": 0.3}}},
}


def _write_table(path: Path, rows) -> None:
    path.write_text("".join(f"{k} {v}\n" for k, v in sorted(rows, key=lambda r: r[0].encode())), encoding="utf-8")


def make_data_dir(root: Path, name: str, num_utts: int, seed: int) -> Path:
    """A data dir with random 80-dim features of 40-130 frames and texts of 2-9 characters."""
    import kaldiio

    rng = np.random.default_rng(seed)
    d = root / name
    d.mkdir(parents=True)
    rows = []
    with kaldiio.WriteHelper(f"ark,scp:{d / 'feats.ark'},{d / 'feats.scp.unsorted'}") as writer:
        for i in range(num_utts):
            accent = ACCENTS[i % 2]
            utt = f"{accent[0].lower()}{i % 3}-{name}{i:03d}"
            frames = int(rng.integers(40, 131))
            writer(utt, rng.standard_normal((frames, 80)).astype(np.float32))
            text = "".join(rng.choice(list(CHARS), size=int(rng.integers(2, 10))))
            rows.append((utt, utt.split("-")[0], text, accent, frames))
    scp = dict(line.split(" ", 1) for line in (d / "feats.scp.unsorted").read_text().splitlines())
    (d / "feats.scp.unsorted").unlink()
    _write_table(d / "feats.scp", scp.items())
    _write_table(d / "wav.scp", [(u, f"/nonexistent/{u}.wav") for u, *_ in rows])  # features only
    _write_table(d / "text", [(u, t) for u, _, t, _, _ in rows])
    _write_table(d / "utt2spk", [(u, s) for u, s, _, _, _ in rows])
    _write_table(d / "utt2accent", [(u, a) for u, _, _, a, _ in rows])
    _write_table(d / "utt2num_frames", [(u, n) for u, *_, n in rows])
    speakers: dict[str, list[str]] = {}
    for u, s, *_ in sorted(rows, key=lambda r: r[0].encode()):
        speakers.setdefault(s, []).append(u)
    _write_table(d / "spk2utt", [(s, " ".join(us)) for s, us in speakers.items()])
    return d


class Corpus:
    """``root/{train,dev}``, ``accents.txt``, a char tokenizer, and ``base.pt``: the tiny model's weights as
    initialised (every tensor, so that ``load_model_for_inference`` can rebuild the model from it)."""

    def __init__(self, root: Path, num_train: int = 18, num_dev: int = 4):
        from hdmole.bin import train_tokenizer

        self.root = root
        self.train = make_data_dir(root, "train", num_train, seed=1)
        self.dev = make_data_dir(root, "dev", num_dev, seed=2)
        self.accents = root / "accents.txt"
        self.accents.write_text("".join(a + "\n" for a in ACCENTS))
        assert train_tokenizer.main([str(self.train), str(self.dev), str(root / "lang" / "char")]) == 0
        self.tokenizer = {"type": "sentencepiece", "model": str(root / "lang" / "char.model")}
        self.base = root / "base.pt"
        from hdmole.models.build import build_model
        from hdmole.text.tokenizer import build_tokenizer

        torch.manual_seed(123)
        model = build_model(MODEL, build_tokenizer(self.tokenizer), num_accents=len(ACCENTS))
        torch.save({"model": model.state_dict()}, self.base)

    def config(self, name: str, system: str, **extra) -> Path:
        """An adapt-mode training config for ``system`` (``extra``: top-level keys, dicts merged one level)."""
        conf = {
            "mode": "adapt", "model": MODEL, "tokenizer": self.tokenizer, "init": [str(self.base)],
            "data": {"train": str(self.train), "dev": str(self.dev), "accents": str(self.accents), "max_frames": 250},
            # A constant learning rate without warmup: every step moves the weights by about lr.
            "optim": {"lr": 5e-3, "max_steps": 4, "warmup_steps": 0, "scheduler": "constant"},
            "checkpoint": {"every_steps": 1, "keep_last": 100}, "log_every": 1,
            **SYSTEMS[system],
        }
        for key, value in extra.items():
            conf[key] = {**conf[key], **value} if isinstance(value, dict) and isinstance(conf.get(key), dict) else value
        path = self.root / "conf" / f"{name}.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(yaml.safe_dump(conf, allow_unicode=True))
        return path


# Subprocess timeout, only against a hang (a DDP deadlock): on the loaded shared machine runs of a few CPU
# seconds took minutes.
HANG = 3600


def subprocess_env() -> dict:
    """The environment of a child training process: one thread (the machine is shared), the repo importable."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}


def train_ddp(config: Path, exp_dir: Path, nproc: int = 2) -> subprocess.CompletedProcess:
    """``torchrun --standalone`` (a free rendezvous port chosen by the launcher, so parallel runs do not
    collide) with ``nproc`` CPU processes (gloo)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "hdmole.bin.train", "--config", str(config), "--exp-dir", str(exp_dir)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=subprocess_env(), timeout=HANG)


def train_and_kill(config: Path, exp_dir: Path, kill_at: str) -> subprocess.CompletedProcess:
    """Runs hdmole.bin.train in a child process that SIGKILLs itself at ``kill_at`` (see the module doc)."""
    cmd = [sys.executable, __file__, "--kill-at", kill_at, "--", "--config", str(config), "--exp-dir", str(exp_dir)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=subprocess_env(), timeout=HANG)


def model_state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def step_log(exp_dir: Path) -> list[dict]:
    """The per-step training records of train_log.jsonl (dev records left out)."""
    lines = (exp_dir / "train_log.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "loss" in r]


def assert_same_training(a: Path, b: Path, rtol: float = 1e-4, atol: float = 1e-6) -> None:
    """Two exp dirs trained the same model: per-step loss and gradient norm, and the final weights."""
    log_a, log_b = step_log(a), step_log(b)
    assert [r["step"] for r in log_a] == [r["step"] for r in log_b]
    for key in ("loss", "grad_norm"):
        got, want = [r[key] for r in log_b], [r[key] for r in log_a]
        np.testing.assert_allclose(got, want, rtol=rtol, err_msg=f"{key} per step: {b.name} vs {a.name}")
    state_a, state_b = model_state(a / "last.pt"), model_state(b / "last.pt")
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        torch.testing.assert_close(state_b[key], state_a[key], rtol=rtol, atol=atol, msg=lambda m: f"{key}: {m}")


# ------------------------------------------------------------------------------------------ the killing driver
def _kill_self() -> None:
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def _install_kill(kill_at: str) -> None:
    what, n = kill_at.split(":")
    n = int(n)
    calls = {"n": 0}
    if what == "save":
        import io

        import hdmole.train.checkpoint as checkpoint

        real_save = torch.save

        def dying_save(obj, f, *args, **kwargs):
            calls["n"] += 1
            if calls["n"] != n:
                return real_save(obj, f, *args, **kwargs)
            buffer = io.BytesIO()
            real_save(obj, buffer, *args, **kwargs)
            data = buffer.getvalue()
            with open(f, "wb") as out:  # half of the checkpoint reaches the disk, then the process dies
                out.write(data[: len(data) // 2])
                out.flush()
                os.fsync(out.fileno())
            _kill_self()

        checkpoint.torch.save = dying_save  # atomic_save calls torch.save (this process only)
    elif what == "forward":
        from hdmole.train.trainer import Trainer

        real_forward = Trainer.forward

        def dying_forward(self, net, batch, *args, **kwargs):
            if net.training:
                calls["n"] += 1
                if calls["n"] == n:
                    _kill_self()
            return real_forward(self, net, batch, *args, **kwargs)

        Trainer.forward = dying_forward
    else:
        raise SystemExit(f"--kill-at {kill_at}: expected save:N or forward:N")


if __name__ == "__main__":
    argv = sys.argv[1:]
    if len(argv) < 3 or argv[0] != "--kill-at" or argv[2] != "--":
        raise SystemExit("usage: train_fixtures.py --kill-at save:N|forward:N -- <hdmole.bin.train arguments>")
    torch.set_num_threads(1)
    _install_kill(argv[1])
    from hdmole.bin import train

    sys.exit(train.main(argv[3:]))
