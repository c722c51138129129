"""SLAM-ASR style projector: frame stacking by k, then Linear -> ReLU -> Linear into the LLM's width."""

from __future__ import annotations

import torch
from torch import nn


class Projector(nn.Module):
    """Stack ``stack`` consecutive encoder frames, then ``linear2(relu(linear1(x)))``.

    ``linear1`` and ``linear2`` are plain ``nn.Linear`` modules named so that HDMoLE / LoRA can be injected
    by name (target patterns ``projector.linear1``, ``projector.linear2``).

    Tail handling (``tail``): ``"pad"`` (default) zero-pads every utterance to a multiple of ``stack`` so no
    frame is lost (out_len = ceil(len / k)); ``"drop"`` discards the last ``len % k`` frames, as SLAM-ASR
    does (out_len = floor(len / k), at least 1). Frames beyond an utterance's length are zeroed before
    stacking either way, so the output does not depend on how much padding the batch adds.
    """

    def __init__(self, d_in: int, d_llm: int, stack: int = 2, hidden: int = 2048, tail: str = "pad"):
        super().__init__()
        if stack < 1:
            raise ValueError(f"projector stack must be >= 1, got {stack}")
        if tail not in ("pad", "drop"):
            raise ValueError(f"projector tail must be 'pad' or 'drop', got {tail!r}")
        self.d_in, self.d_llm, self.stack, self.tail = d_in, d_llm, stack, tail
        self.linear1 = nn.Linear(d_in * stack, hidden)
        self.activation = nn.ReLU()
        self.linear2 = nn.Linear(hidden, d_llm)

    def output_lengths(self, lens: torch.Tensor) -> torch.Tensor:
        k = self.stack
        if self.tail == "pad":
            return (lens + k - 1) // k
        return torch.clamp(lens // k, min=1)

    def forward(self, x: torch.Tensor, lens: torch.Tensor):
        b, t, d = x.shape
        k = self.stack
        valid = torch.arange(t, device=x.device)[None, :] < lens[:, None]
        x = x * valid[..., None].to(x.dtype)
        t_pad = -(-t // k) * k
        if t_pad != t:
            x = nn.functional.pad(x, (0, 0, 0, t_pad - t))
        x = x.reshape(b, t_pad // k, d * k)
        out_lens = self.output_lengths(lens)
        x = x[:, : int(out_lens.max())] if b else x
        return self.linear2(self.activation(self.linear1(x))), out_lens
