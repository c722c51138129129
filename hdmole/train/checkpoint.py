"""Training checkpoints: written atomically (temp file, then rename), the last N kept plus the best on dev.

Files in ``<exp>/``: ``ckpt-<step>.pt`` (model part, optimizer, scheduler, step, RNG states: enough to
resume), ``best.pt`` (the best on dev) and ``last.pt`` (the newest), the latter two holding what
inference needs. ``model`` holds the full state dict for ``lm``/``base`` training and only the
adapter (and global-router) tensors for the PEFT systems, with ``adapter`` describing how to rebuild
the injected layers before loading them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from hdmole.files import atomic_output

_CKPT = re.compile(r"^ckpt-(\d+)\.pt$")


def atomic_save(obj, path: str | os.PathLike) -> None:
    """Saves so that a kill at any moment leaves either the old file or the new one, never half."""
    with atomic_output(path) as tmp:
        torch.save(obj, tmp)


def list_checkpoints(exp_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """``(step, path)`` of every resumable checkpoint, oldest first."""
    exp_dir = Path(exp_dir)
    found = []
    for p in exp_dir.glob("ckpt-*.pt") if exp_dir.is_dir() else []:
        m = _CKPT.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(exp_dir: str | os.PathLike) -> Path | None:
    found = list_checkpoints(exp_dir)
    return found[-1][1] if found else None


def save_checkpoint(exp_dir: str | os.PathLike, state: dict, step: int, keep_last: int) -> Path:
    """Writes ``ckpt-<step>.pt`` and ``last.pt``, then removes all but the newest ``keep_last``."""
    exp_dir = Path(exp_dir)
    path = exp_dir / f"ckpt-{step}.pt"
    atomic_save(state, path)
    atomic_save(inference_part(state), exp_dir / "last.pt")
    for _, old in list_checkpoints(exp_dir)[:-max(keep_last, 1)]:
        old.unlink(missing_ok=True)
    return path


def inference_part(state: dict) -> dict:
    """What decoding needs: the model tensors and how to rebuild adapters, without optimizer state."""
    return {k: v for k, v in state.items() if k not in ("optimizer", "scheduler", "rng")}



RESUME_FIX = "delete it and resume from an older ckpt-*.pt (or start again in a fresh exp dir)"
