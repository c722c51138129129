"""SpecAugment (time and frequency masking) on one utterance's features, with torch ops; training only.

Time warping is left out: it costs a resampling per utterance and adds little next to masking for
Conformer/Whisper encoders (ESPnet and WeNet recipes commonly disable it too).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch


@dataclass
class SpecAugment:
    """Mask `num_freq_masks` bands of width U{0..max_freq_width} and `num_time_masks` spans of width
    U{0..min(max_time_width, max_time_ratio * T)} with `mask_value` (0 = the mean after global CMVN)."""

    num_freq_masks: int = 2
    max_freq_width: int = 27
    num_time_masks: int = 2
    max_time_width: int = 40
    max_time_ratio: float = 0.2
    mask_value: float = 0.0

    def __post_init__(self):
        for name in ("num_freq_masks", "max_freq_width", "num_time_masks", "max_time_width"):
            if getattr(self, name) < 0:
                raise ValueError(f"SpecAugment {name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.max_time_ratio <= 1.0:
            raise ValueError(f"SpecAugment max_time_ratio must be in [0, 1], got {self.max_time_ratio}")

    @classmethod
    def from_config(cls, conf: dict | None) -> "SpecAugment | None":
        """None/{} -> None (no augmentation); unknown keys are an error that lists the valid ones."""
        if not conf:
            return None
        valid = {field.name for field in fields(cls)}
        unknown = set(conf) - valid
        if unknown:
            raise ValueError(f"unknown SpecAugment option(s) {sorted(unknown)}; valid options: {sorted(valid)}")
        return cls(**conf)

    def as_dict(self) -> dict:
        return asdict(self)

    def _mask(self, feats: torch.Tensor, axis: int, count: int, max_width: int, generator) -> None:
        size = feats.shape[axis]
        for _ in range(count):
            width = int(torch.randint(0, max(0, min(max_width, size)) + 1, (1,), generator=generator))
            if width == 0:
                continue
            start = int(torch.randint(0, size - width + 1, (1,), generator=generator))
            feats.narrow(axis, start, width).fill_(self.mask_value)

    def __call__(self, feats: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Masked copy of `feats` [T, F]."""
        feats = feats.clone()
        self._mask(feats, 1, self.num_freq_masks, self.max_freq_width, generator)
        max_time = min(self.max_time_width, int(self.max_time_ratio * feats.shape[0]))
        self._mask(feats, 0, self.num_time_masks, max_time, generator)
        return feats
