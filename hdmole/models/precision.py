"""The precision policy (docs/model.md, "Precision"): one place that says in which dtype the pre-trained parts
are loaded and in which autocast every forward pass runs, training and inference alike.

- **Load dtype.** ``encoder.dtype`` and ``llm.dtype`` (float32 | bfloat16 | float16, default float32) are
  passed to ``from_pretrained`` explicitly. transformers 5.x would otherwise take the checkpoint's own dtype
  (``dtype="auto"``): whisper-large-v3 says float16, so the encoder came out in fp16 while the projector is
  fp32, and every tool that runs without CUDA autocast failed with "mat1 and mat2 must have the same dtype".
- **Casts between the parts.** The encoder's output is cast to the projector's dtype
  (``LLMASR.encode``), the projector's to the LLM embeddings' (``LLMASR.decoding_prefix`` and the training
  forward), so any mix of load dtypes runs, with or without autocast.
- **Autocast.** A training config's ``dtype`` (float32 | bfloat16 | float16) is the autocast of its
  forward passes on CUDA (float16 also turns on loss scaling in training: ``hdmole.train.trainer``);
  decoding, ``eval_router`` and ``routing_stats`` read it from the exp dir's ``config.yaml`` and use the
  same ``autocast`` helper, so they compute what training computed.
"""

from __future__ import annotations

import contextlib
import os

import torch

from hdmole.models.config_utils import load_yaml_mapping

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_dtype(conf: dict, part: str) -> torch.dtype:
    """The dtype a pre-trained part (``part``: encoder | llm) is loaded or built in: its config's ``dtype``,
    float32 when not given; never the checkpoint's own ("auto")."""
    name = conf.get("dtype", "float32")
    if name not in DTYPES:
        raise ValueError(f"{part} dtype must be one of {', '.join(DTYPES)}, got {name!r}")
    return DTYPES[name]


def check_autocast_dtype(name: str) -> None:
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {name!r}")


def autocast(device: torch.device | str, dtype: str):
    """The autocast context of a forward pass: on CUDA with ``dtype`` bfloat16 or float16, that autocast;
    otherwise none (float32, or a CPU: there the parts' output casts make mixed load dtypes work)."""
    check_autocast_dtype(dtype)
    device_type = torch.device(device).type
    if device_type == "cuda" and dtype != "float32":
        return torch.autocast("cuda", dtype=DTYPES[dtype])
    return contextlib.nullcontext()


def inference_autocast_dtype(config_path: str | os.PathLike) -> str:
    """The autocast dtype a model was trained with: the ``dtype`` of a training config (an exp dir's
    ``config.yaml``); float32 for a bare model config."""
    raw = load_yaml_mapping(config_path)
    if "encoder" in raw:  # a bare model config: no training precision
        return "float32"
    name = raw.get("dtype", "float32")
    try:
        check_autocast_dtype(name)
    except ValueError as error:
        raise ValueError(f"{config_path}: {error}") from None
    return name


__all__ = ["DTYPES", "load_dtype", "autocast", "inference_autocast_dtype", "check_autocast_dtype"]
