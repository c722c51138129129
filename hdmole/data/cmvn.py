"""Global (corpus-level) cepstral mean and variance normalisation: per-dimension mean and std of the training features."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable

import numpy as np

from hdmole.data.errors import DataError
from hdmole.files import atomic_write_text


class GlobalCMVN:
    """`(feats - mean) / std` per feature dimension; works on numpy arrays and torch tensors [..., dim]."""

    def __init__(self, mean: Iterable[float], std: Iterable[float], count: int = 0):
        self.mean = np.asarray(list(mean), dtype=np.float32)
        self.std = np.asarray(list(std), dtype=np.float32)
        self.count = int(count)
        self.source: str | None = None  # the file it was loaded from, for error messages
        if self.mean.ndim != 1 or self.mean.shape != self.std.shape:
            raise ValueError(f"mean and std must be 1-D of the same size, got {self.mean.shape} and {self.std.shape}")
        if not np.all(self.std > 0):
            raise ValueError("every std must be positive")

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @classmethod
    def from_features(cls, features: Iterable[np.ndarray], std_floor: float = 1e-5) -> "GlobalCMVN":
        """Accumulate in float64 over [T, dim] arrays (one pass; sum and sum of squares)."""
        total = squares = None
        count = 0
        for feats in features:
            feats = np.asarray(feats, dtype=np.float64)
            if feats.ndim != 2:
                raise DataError(f"features must be [frames, dim], got shape {feats.shape}")
            if total is None:
                total, squares = np.zeros(feats.shape[1]), np.zeros(feats.shape[1])
            elif feats.shape[1] != total.shape[0]:
                raise DataError(f"feature dim {feats.shape[1]} differs from earlier utterances' {total.shape[0]}; re-extract the features")
            total += feats.sum(axis=0)
            squares += np.square(feats).sum(axis=0)
            count += feats.shape[0]
        if count == 0:
            raise DataError("no feature frames to compute CMVN statistics from")
        mean = total / count
        variance = np.maximum(squares / count - np.square(mean), 0.0)
        return cls(mean, np.maximum(np.sqrt(variance), std_floor), count)

    def save(self, path: str | Path) -> None:
        """Write JSON `{"dim", "count", "mean": [...], "std": [...]}` (atomically: temp file then rename)."""
        atomic_write_text(
            path, json.dumps({"dim": self.dim, "count": self.count, "mean": self.mean.tolist(), "std": self.std.tolist()}, indent=1)
        )

    @classmethod
    def load(cls, path: str | Path) -> "GlobalCMVN":
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: CMVN statistics not found; run `python -m hdmole.bin.compute_cmvn <data_dir> {path}`")
        try:
            stats = json.loads(path.read_text(encoding="utf-8"))
            mean, std = stats["mean"], stats["std"]
            if not all(math.isfinite(value) for value in [*mean, *std]):
                raise ValueError("non-finite value")
            cmvn = cls(mean, std, stats.get("count", 0))
            cmvn.source = str(path)
            return cmvn
        except (ValueError, KeyError, TypeError) as error:
            raise DataError(f"{path}: not a valid CMVN JSON file ({error}); re-run compute_cmvn") from None

    def apply(self, feats):
        """Normalise numpy [..., dim] (returns float32) or a torch tensor (same dtype/device)."""
        if feats.shape[-1] != self.dim:
            where = f" of {self.source}" if self.source else ""
            raise DataError(f"features have dim {feats.shape[-1]} but the CMVN statistics{where} have dim {self.dim} "
                            "(the features were made with other options, e.g. --pitch); recompute the CMVN of the "
                            "training features (python -m hdmole.bin.compute_cmvn, recipe stage 1)")
        if isinstance(feats, np.ndarray):
            return ((feats - self.mean) / self.std).astype(np.float32, copy=False)
        import torch  # only when given tensors, so feature extraction never pays for importing torch

        mean = torch.as_tensor(self.mean, dtype=feats.dtype, device=feats.device)
        std = torch.as_tensor(self.std, dtype=feats.dtype, device=feats.device)
        return (feats - mean) / std

    __call__ = apply
