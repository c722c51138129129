"""A tiny decoding setup shared by the decoding tests (no tests here): a data dir of 3 utterances with random
features, a char tokenizer, a training config, a base checkpoint and an HD-MoLE adapter checkpoint."""

from __future__ import annotations

from pathlib import Path

import kaldiio
import numpy as np
import torch
import yaml
from models_fixtures import tiny_conf

from hdmole.bin.train_tokenizer import train_tokenizer
from hdmole.models.checkpoint import pretrained_parts
from hdmole.models.build import build_model
from hdmole.nn import HDMoLEConfig, adapter_state_dict, inject
from hdmole.text.tokenizer import build_tokenizer

UTTS = {"spk1-a": ("你好世界", "north", 83), "spk1-b": ("世界", "north", 45), "spk2-a": ("好世界你", "south", 120)}


def make_decode_setup(root: Path, model_conf: dict | None = None) -> dict:
    """Writes everything under root; returns root, data, config, tokenizer and the model (adapter injected).
    ``model_conf``: another model config (default: the tiny Conformer one); the base checkpoint leaves out its
    pre-trained parts (``name_or_path``), as the base stage saves it."""
    data = root / "data"
    data.mkdir()
    (root / "dump").mkdir()  # the ark beside the data dir, as a recipe's dump dir holds it (split_data.sh splits text)
    rng = np.random.default_rng(0)
    with kaldiio.WriteHelper(f"ark,scp:{root}/dump/feats.ark,{data}/feats.scp") as writer:
        for utt in sorted(UTTS):
            writer(utt, rng.standard_normal((UTTS[utt][2], 80)).astype(np.float32))
    lines = {"wav.scp": lambda u: f"/nonexistent/{u}.wav", "text": lambda u: UTTS[u][0],
             "utt2spk": lambda u: u.split("-")[0], "utt2accent": lambda u: UTTS[u][1],
             "utt2num_frames": lambda u: str(UTTS[u][2])}
    for name, value in lines.items():
        (data / name).write_text("".join(f"{u} {value(u)}\n" for u in sorted(UTTS)), encoding="utf-8")
    (data / "spk2utt").write_text("spk1 spk1-a spk1-b\nspk2 spk2-a\n", encoding="utf-8")
    (root / "accents.txt").write_text("north\nsouth\n", encoding="utf-8")
    spm = train_tokenizer([data], root / "char")
    tok_conf = {"type": "sentencepiece", "model": str(spm)}
    tokenizer = build_tokenizer(tok_conf)
    model_conf = model_conf or tiny_conf(router=True, prompt="你好")
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump({"mode": "adapt", "model": model_conf, "tokenizer": tok_conf},
                                     allow_unicode=True), encoding="utf-8")
    torch.manual_seed(0)
    model = build_model(model_conf, tokenizer, num_accents=2).eval()
    pretrained = pretrained_parts(model_conf)
    base = {k: v for k, v in model.state_dict().items() if k.split(".", 1)[0] not in pretrained}
    torch.save({"model": base, "mode": "base"}, root / "base.pt")
    adapter_conf = HDMoLEConfig(rank=2, num_domains=2)
    inject(model, adapter_conf, ["projector.linear1", "projector.linear2"])
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "hdmole_lora_B" in name:
                p.normal_(0, 0.3)
    torch.save({"model": adapter_state_dict(model, extra=[model.global_router]), "mode": "adapt",
                "adapter_config": adapter_conf.to_dict(), "target_modules": ["projector.linear1", "projector.linear2"]},
               root / "adapter.pt")
    return {"root": root, "data": data, "config": config, "tokenizer": tokenizer, "model": model}


