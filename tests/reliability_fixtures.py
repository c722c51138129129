"""Shared by the tests/test_reliability_*.py files (no tests here): a tiny data dir with features and a
char tokenizer, a tiny model config, and checkpoints saved the way hdmole.bin.train saves them (with
their mode, system and adapter description), so that mismatches can be made on purpose."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from models_fixtures import tiny_conf
from test_data_fixtures import make_data_dir

MODEL = tiny_conf(router=True, prompt="")  # a 2-block conformer and a 2-layer Qwen2
TARGETS = ["projector.linear1", "projector.linear2"]
ADAPTERS = {  # system -> adapter.config as a system YAML would give it
    "hdmole": {"rank": 2, "alpha": 4},
    "lora": {"rank": 4, "alpha": 8, "num_domains": 1, "experts_per_domain": 1, "routing": "none", "gating": "dense"},
}


def make_features(root: Path) -> dict:
    """``data`` (6 utterances, 3 accents, features), ``accents``, ``tokenizer`` (a tokenizer config)."""
    from hdmole.bin import compute_fbank
    from hdmole.bin.train_tokenizer import train_tokenizer

    data = make_data_dir(root)
    assert compute_fbank.main([str(data), str(root / "fbank")]) == 0
    spm = train_tokenizer([data], root / "lang" / "char")
    return {"data": data, "accents": root / "accents.txt",
            "tokenizer": {"type": "sentencepiece", "model": str(spm)}}


def train_config(path: Path, mode: str, setup: dict, system: str | None = None, **extra) -> Path:
    """A resolved training config (as an exp dir's config.yaml) for ``mode`` (and adapt ``system``)."""
    conf = {"mode": mode, "model": MODEL, "tokenizer": setup["tokenizer"],
            "data": {"train": str(setup["data"]), "dev": str(setup["data"]), "accents": str(setup["accents"]),
                     "max_frames": 4000},
            "optim": {"lr": 1e-3, "max_steps": 2, "warmup_steps": 1}, "checkpoint": {"every_steps": 1},
            "log_every": 1}
    if mode == "base":
        conf["trainable"] = ["encoder", "projector", "ctc", "llm"]
    if system is not None:
        conf["adapter"] = {"system": system, "target_modules": TARGETS, "config": ADAPTERS[system]}
    conf.update(extra)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(conf, allow_unicode=True), encoding="utf-8")
    return path


def save_checkpoints(root: Path, setup: dict, seed: int = 0) -> dict:
    """base.pt and one adapter checkpoint per system of ADAPTERS, keyed as hdmole.bin.train keys them."""
    from hdmole.models.build import build_model
    from hdmole.nn import HDMoLEConfig, adapter_state_dict, inject
    from hdmole.text.tokenizer import build_tokenizer

    torch.manual_seed(seed)
    tokenizer = build_tokenizer(setup["tokenizer"])
    root.mkdir(parents=True, exist_ok=True)
    paths = {"base": root / "base.pt"}
    model = build_model(MODEL, tokenizer, num_accents=3)
    torch.save({"model": model.state_dict(), "mode": "base", "system": "base"}, paths["base"])
    for system, conf in ADAPTERS.items():
        adapted = build_model(MODEL, tokenizer, num_accents=3)
        adapted.load_state_dict(model.state_dict())
        adapter_conf = HDMoLEConfig.from_dict({"num_domains": 3, **conf})
        inject(adapted, adapter_conf, TARGETS)
        with torch.no_grad():
            for name, p in adapted.named_parameters():
                if "hdmole_lora_B" in name:
                    p.normal_(0, 0.3)
        paths[system] = root / system / "best.pt"
        paths[system].parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model": adapter_state_dict(adapted, extra=[adapted.global_router]), "mode": "adapt",
                    "system": system, "adapter_config": adapter_conf.to_dict(), "target_modules": TARGETS},
                   paths[system])
    return paths


def assert_one_line_error(code: int, err: str, *named: str) -> None:
    """An expected failure: non-zero exit, the file(s) named, no traceback."""
    assert code != 0, err
    assert "Traceback" not in err, err
    for name in named:
        assert str(name) in err, err
