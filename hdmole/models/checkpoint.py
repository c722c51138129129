"""Rebuild a trained model for inference: model config + a base checkpoint + optional adapter checkpoints.

A checkpoint is a torch file ``{"model": state_dict, ...}``. ``model`` is either a full (or partial:
``lm`` mode saves only ``llm.*``, ``router`` mode only ``global_router.*``) state dict of the plain
model, or an adapter-only one; an adapter checkpoint says how to rebuild its injected layers with
``adapter_config`` (hdmole.nn.HDMoLEConfig fields) and ``target_modules`` (the wrapped module names),
either at its top level (as hdmole.train writes them) or under ``"adapter"``.

Checkpoints are applied in order; after the last one every tensor of the model must have come from some
checkpoint, so a forgotten base checkpoint is an error, not a randomly initialised decoder.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from hdmole.models.config_utils import load_yaml_mapping, resolve_model_conf
from hdmole.models.llm_asr import LLMASR, build_model
from hdmole.models.state import load_partial_state


def read_checkpoint(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # truncated or foreign file: name it
        raise RuntimeError(f"cannot read checkpoint {path}: {error}") from error
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise ValueError(f"checkpoint {path} has no 'model' state dict (expected a torch file {{'model': ...}})")
    return ckpt


def adapter_spec(ckpt: dict) -> tuple[dict, list[str]] | None:
    """``(adapter_config, target_modules)`` of an adapter checkpoint, or None for a plain one."""
    holder = ckpt.get("adapter") if isinstance(ckpt.get("adapter"), dict) else ckpt
    config, targets = holder.get("adapter_config"), holder.get("target_modules")
    if config is None:
        return None
    if not targets:
        raise ValueError("adapter checkpoint has 'adapter_config' but no 'target_modules' (the wrapped module names)")
    return dict(config), list(targets)


def read_inference_config(path: str | os.PathLike) -> tuple[dict, dict | None, str | None]:
    """``(model_conf, tokenizer_conf, cmvn_path)`` from a training config (e.g. an exp dir's resolved
    ``config.yaml``: ``model``, ``tokenizer``, ``data.cmvn``) or from a bare model config (no tokenizer)."""
    raw = load_yaml_mapping(path)
    if "encoder" in raw:  # a bare model config
        return raw, None, None
    if "model" not in raw:
        raise ValueError(f"{path}: neither a model config (no 'encoder') nor a training config (no 'model')")
    model_conf = resolve_model_conf(raw["model"], path)
    cmvn = (raw.get("data") or {}).get("cmvn")
    return model_conf, raw.get("tokenizer") or None, cmvn


def pretrained_parts(model_conf: dict) -> set[str]:
    """The model's top-level parts whose weights come from ``name_or_path`` (a hub id or a local dir)
    when the model is built: checkpoints need not carry them, unless they were trained."""
    return {part for part in ("encoder", "llm")
            if isinstance(model_conf.get(part), dict) and "name_or_path" in model_conf[part]}


def _load_into(model: nn.Module, state: dict, path) -> set[str]:
    load_partial_state(
        model, state, f"checkpoint {path}",
        fix="is it from another model config, or an adapter checkpoint whose base was not given first?",
        adapter_fix="but no 'adapter_config' and 'target_modules' saying how to inject them; re-save it with both",
    )
    return set(state)


def load_model_for_inference(
    model_conf_path: str | os.PathLike,
    checkpoint_paths: list,
    tokenizer=None,
    num_accents: int | None = None,
    device: str | torch.device = "cpu",
) -> LLMASR:
    """Build the model from its config, load the checkpoints in order (base, then adapters), eval mode.

    ``tokenizer``: built from the config's ``tokenizer`` section when not given. ``num_accents``: the number
    of lines of accents.txt, needed when the model has a global router.
    """
    from hdmole.nn import HDMoLEConfig, inject

    model_conf, tok_conf, _ = read_inference_config(model_conf_path)
    if tokenizer is None:
        if tok_conf is None:
            raise ValueError(f"{model_conf_path} is a bare model config: pass a tokenizer (or use the training config)")
        from hdmole.text.tokenizer import build_tokenizer

        tokenizer = build_tokenizer(tok_conf)
    if not checkpoint_paths:
        raise ValueError("load_model_for_inference: give at least one checkpoint (the base model)")
    model = build_model(model_conf, tokenizer, num_accents=num_accents)
    loaded: set[str] = set()
    for path in checkpoint_paths:
        ckpt = read_checkpoint(path)
        spec = adapter_spec(ckpt)
        if spec is not None:
            config, targets = spec
            wrapped = inject(model, HDMoLEConfig.from_dict(config, source=f"{path}: adapter_config"), targets)
            # The wrapped layers' base weights were loaded under their pre-injection names.
            for name in wrapped:
                for leaf in ("weight", "bias"):
                    if f"{name}.{leaf}" in loaded:
                        loaded.add(f"{name}.base_layer.{leaf}")
        loaded |= _load_into(model, ckpt["model"], path)
    from_hub = pretrained_parts(model_conf)
    missing = [k for k in model.state_dict() if k not in loaded and k.split(".", 1)[0] not in from_hub]
    if missing:
        raise ValueError(
            f"after loading {[str(p) for p in checkpoint_paths]}, {len(missing)} model tensor(s) were in no "
            f"checkpoint, e.g. {missing[:4]}: pass the base checkpoint first, then the adapter(s)"
        )
    return model.to(device).eval()


__all__ = ["read_checkpoint", "adapter_spec", "read_inference_config", "load_model_for_inference", "pretrained_parts"]
