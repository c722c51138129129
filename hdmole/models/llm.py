"""The decoder-only LLM: a transformers causal LM from a config (mini) or a hub id / local dir (real)."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from hdmole.models.config_utils import check_keys
from hdmole.models.precision import load_dtype

LLM_KEYS = {"type", "config", "name_or_path", "dtype", "attn_implementation"}


def build_llm(conf: dict, weights: bool = True) -> nn.Module:
    """Build a causal LM.

    ``{"type": "qwen2", "config": {...Qwen2Config kwargs}}`` builds a randomly initialised Qwen2 model;
    ``{"name_or_path": hub id or local dir}`` loads any ``AutoModelForCausalLM`` (offline: set
    HF_HUB_OFFLINE=1; nothing is downloaded unless the hub cache already holds it).
    ``dtype``: float32 (default), bfloat16 (GPU) or float16; ``attn_implementation``: sdpa (default) or eager.
    ``weights=False``: the model's shapes only, on the meta device (no memory, no weights read: the
    encoder-only tools need the LLM's width, not the LLM).
    """
    from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

    check_keys(conf, LLM_KEYS, "llm")
    dtype = load_dtype(conf, "llm")  # explicit: never the checkpoint's own ("auto"), see hdmole.models.precision
    attn = conf.get("attn_implementation", "sdpa")
    has_path, has_config = "name_or_path" in conf, "config" in conf
    if has_path == has_config:
        raise ValueError("llm needs exactly one of 'name_or_path' (hub id or local dir) or 'config' (with 'type')")
    if has_path:
        if "type" in conf:
            raise ValueError("llm: 'type' is only used with 'config'; a pre-trained model's type comes from its files")
        if not weights:
            from transformers import AutoConfig

            with torch.device("meta"):
                return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(conf["name_or_path"]), dtype=dtype)
        return AutoModelForCausalLM.from_pretrained(conf["name_or_path"], dtype=dtype, attn_implementation=attn)
    kind = conf.get("type", "qwen2")
    if kind != "qwen2":
        raise ValueError(f"llm 'type' must be 'qwen2' when built from a config, got {kind!r}")
    config = Qwen2Config(**conf["config"])
    config._attn_implementation = attn
    with contextlib.nullcontext() if weights else torch.device("meta"):
        return Qwen2ForCausalLM(config).to(dtype)
