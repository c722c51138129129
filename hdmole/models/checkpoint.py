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

from hdmole.models.build import build_model
from hdmole.models.config_utils import load_yaml_mapping, resolve_model_conf
from hdmole.models.llm_asr import LLMASR
from hdmole.models.state import CheckpointError, load_partial_state


# What to do about an unreadable checkpoint depends on what it was meant to be.
DECODE_FIX = "point --checkpoint/--adapter at the best.pt (or last.pt) of the exp dir, or re-run the training stage that writes it"


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0][:200] if text else type(error).__name__)


def read_checkpoint(path: str | os.PathLike, fix: str = DECODE_FIX) -> dict:
    """The checkpoint at ``path`` as a dict with a ``model`` state dict. FileNotFoundError when it does not
    exist; CheckpointError, ending with ``fix``, when it cannot be read or is not a checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; {fix}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except PermissionError as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {error.strerror or error}; check its permissions") from error
    except Exception as error:  # truncated (a copy cut short, a full disk: torch says "Invalid argument") or not a torch file
        raise CheckpointError(f"cannot read checkpoint {path} ({_first_line(error)}): it is truncated or not a torch "
                              f"checkpoint; {fix}") from error
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise CheckpointError(f"checkpoint {path} has no 'model' state dict (expected a torch file {{'model': ...}}, as "
                              f"hdmole.bin.train writes); {fix}")
    return ckpt


def adapter_spec(ckpt: dict) -> tuple[dict, list[str]] | None:
    """``(adapter_config, target_modules)`` of an adapter checkpoint, or None for a plain one."""
    holder = ckpt.get("adapter") if isinstance(ckpt.get("adapter"), dict) else ckpt
    config, targets = holder.get("adapter_config"), holder.get("target_modules")
    if config is None:
        return None
    if not targets:
        raise CheckpointError("adapter checkpoint has 'adapter_config' but no 'target_modules' (the wrapped module names)")
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


def _needs_router(model: LLMASR) -> bool:
    from hdmole.nn import hdmole_layers

    return model.oracle_routing or any(layer.config.uses_global_posterior for _, layer in hdmole_layers(model))


def _load_into(model: nn.Module, state: dict, path) -> set[str]:
    load_partial_state(
        model, state, f"checkpoint {path}",
        fix="is it from another model config, or an adapter checkpoint whose base was not given first?",
        adapter_fix="but no 'adapter_config' and 'target_modules' saying how to inject them; re-save it with both",
    )
    return set(state)


def _differs(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return abs(float(a) - float(b)) > 1e-9 * max(1.0, abs(float(a)))
    return a != b


def _adapter_mismatch(train_conf: dict, ckpt: dict) -> str | None:
    """How the adapter checkpoint ``ckpt`` (as hdmole.bin.train saves it) differs from the adapt-mode
    training config ``train_conf``; None when they agree or cannot be compared."""
    wanted = train_conf.get("adapter") or {}
    if wanted.get("system") and ckpt.get("system") and wanted["system"] != ckpt["system"]:
        return f"it was trained as system {ckpt['system']!r}, the config is system {wanted['system']!r}"
    spec = ckpt.get("adapter_config") or {}
    for key, value in (wanted.get("config") or {}).items():
        if key == "source_domain" and spec.get("routing") == "local" and spec.get(key) is None:
            continue  # a local-routing mixture gives the source domain no expert and keeps no source path (the
            # train config's parity rule, hdmole.train.config.adapter_config_for): saved as None
        if key in spec and _differs(value, spec[key]):
            return f"it has adapter.config.{key} = {spec[key]!r}, the config {value!r}"
    if spec and wanted.get("target_modules") and ckpt.get("target_modules") \
            and list(wanted["target_modules"]) != list(ckpt["target_modules"]):
        return f"it adapts {ckpt['target_modules']}, the config {wanted['target_modules']}"
    return None


def check_checkpoints_match_config(config_path: str | os.PathLike, checkpoints: list[tuple]) -> None:
    """With a training config (an exp dir's config.yaml), the adapter checkpoints must be that system's:
    an adapter of another system, a LoRA adapter with the base config, or an adapt config without its
    adapter would otherwise decode without a word (the injected layers follow the checkpoint). A bare
    model config says nothing about adapters, so nothing is checked with one."""
    raw = load_yaml_mapping(config_path)
    mode = raw.get("mode")
    if mode is None:
        return
    system = (raw.get("adapter") or {}).get("system") if mode == "adapt" else mode
    adapters = [(path, ckpt) for path, ckpt in checkpoints if ckpt.get("mode") == "adapt"]
    fix = "decode an adapter with the config.yaml of the exp dir it was trained in"
    for path, ckpt in adapters:
        own_config = Path(path).parent / "config.yaml"
        if mode != "adapt":
            raise CheckpointError(f"{path} is an adapter (system {ckpt.get('system', '?')!r}) but {config_path} is the config "
                                  f"of a {mode!r} training; {fix} (e.g. --config {own_config})")
        mismatch = _adapter_mismatch(raw, ckpt)
        if mismatch:
            raise CheckpointError(f"{path} is not the adapter of {config_path} ({mismatch}); {fix} (e.g. --config "
                                  f"{own_config}), or pass that system's adapter")
    # A hand-made checkpoint without 'mode' may be anything: only checkpoints that say they are not
    # adapters prove the adapter missing.
    if mode == "adapt" and not adapters and all(ckpt.get("mode") for _, ckpt in checkpoints):
        raise CheckpointError(f"{config_path} is the config of adapted system {system or '?'!r}, but no checkpoint given is "
                              f"an adapter: add its adapter (e.g. --adapter {Path(config_path).parent / 'best.pt'}), or "
                              "decode the base model with the base config")


def _without_llm(ckpt: dict) -> dict:
    """A checkpoint without the LLM's tensors and without adapters injected into the LLM."""
    ckpt = {**ckpt, "model": {k: v for k, v in ckpt["model"].items() if not k.startswith("llm.")}}
    holder = "adapter" if isinstance(ckpt.get("adapter"), dict) else None
    spec = dict(ckpt[holder]) if holder else ckpt
    if spec.get("target_modules"):
        spec["target_modules"] = [t for t in spec["target_modules"] if not t.startswith("llm.")]
        if not spec["target_modules"]:  # an adapter of the LLM alone: nothing of it on the encoder side
            spec.pop("adapter_config", None)
    if holder:
        ckpt[holder] = spec
    return ckpt


def load_model_for_inference(
    model_conf_path: str | os.PathLike,
    checkpoint_paths: list,
    tokenizer=None,
    num_accents: int | None = None,
    device: str | torch.device = "cpu",
    encoder_side: bool = False,
) -> LLMASR:
    """Build the model from its config, load the checkpoints in order (base, then adapters), eval mode.

    ``tokenizer``: built from the config's ``tokenizer`` section when not given. ``num_accents``: the number
    of lines of accents.txt, needed when the model has a global router. ``encoder_side``: everything but the
    LLM (``model.llm`` is None; its weights are never read, its tensors and adapters in the checkpoints
    skipped): what the router evaluation and the routing statistics run, without 15 GB of a 7B LLM.
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
    model = build_model(model_conf, tokenizer, num_accents=num_accents, llm_weights=not encoder_side)
    checkpoints = [(path, read_checkpoint(path)) for path in checkpoint_paths]
    check_checkpoints_match_config(model_conf_path, checkpoints)
    if encoder_side:
        model.llm = None  # built on the meta device for its width only (the projector's output size)
        checkpoints = [(path, _without_llm(ckpt)) for path, ckpt in checkpoints]
    loaded: set[str] = set()
    for path, ckpt in checkpoints:
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
    if missing and all(k.startswith("global_router.") for k in missing) and not _needs_router(model):
        # A base model (no adapters) decoded without the router stage's checkpoint: it has no router.
        model.global_router = None
        missing = []
    if missing:
        raise CheckpointError(
            f"after loading {[str(p) for p in checkpoint_paths]}, {len(missing)} model tensor(s) were in no "
            f"checkpoint, e.g. {missing[:4]}: pass the base checkpoint first, then the adapter(s)"
        )
    return model.to(device).eval()


__all__ = ["CheckpointError", "read_checkpoint", "check_checkpoints_match_config", "adapter_spec", "read_inference_config",
           "load_model_for_inference", "pretrained_parts"]
