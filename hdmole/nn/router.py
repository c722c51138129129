"""GlobalRouter: utterance-level domain classifier (masked, optionally weighted, mean pooling + small MLP)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def lengths_to_mask(lengths: Tensor, max_len: int) -> Tensor:
    """[B] lengths -> [B, T] bool mask, True on valid frames."""
    if lengths.dim() != 1:
        raise ValueError(f"lengths must be 1-D [batch], got shape {tuple(lengths.shape)}")
    if bool((lengths < 1).any()) or bool((lengths > max_len).any()):
        raise ValueError(f"lengths must lie in [1, {max_len}] (the time axis), got {lengths.tolist()}")
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def masked_mean(x: Tensor, mask: Tensor | None, weights: Tensor | None = None) -> Tensor:
    """Mean over time of x [B, T, d] counting only frames where mask [B, T] is True; with ``weights``
    [B, T] (>= 0) a weighted mean, e.g. frames weighted by how much they carry."""
    if mask is None and weights is None:
        return x.mean(dim=1)
    w = torch.ones(x.shape[:2], dtype=x.dtype, device=x.device)
    for name, value in (("mask", mask), ("weights", weights)):
        if value is not None:
            if value.shape != x.shape[:2]:
                raise ValueError(f"{name} shape {tuple(value.shape)} does not match input [B, T] = {tuple(x.shape[:2])}")
            w = w * value.to(x.dtype)
    w = w.unsqueeze(-1)
    count = w.sum(dim=1)
    if bool((count <= 0).any()):
        raise ValueError("masked_mean: an utterance has no valid frame (all-False mask or all-zero weights row)")
    return (x * w).sum(dim=1) / count


class GlobalRouter(nn.Module):
    """``forward(x [B, T, d_in], lengths [B] or mask [B, T], weights [B, T]) -> logits [B, num_domains]``.

    One per model, shared by every HDMoLE layer through :func:`hdmole.nn.global_routing`; feed it
    ``posterior(...)`` (the softmax). ``hidden=0`` makes it a linear classifier on the pooled vector.

    ``log_pooled``: for inputs that are per-frame probability distributions (e.g. a recogniser's
    posteriors over units), the pooled vector is the expected unit histogram and the classifier sees its
    log: a linear layer over log-frequencies is a discriminatively trained naive Bayes / phonotactic
    classifier (the shape of PRLM-style language identification).
    """

    def __init__(self, d_in: int, num_domains: int, hidden: int = 256, dropout: float = 0.1,
                 log_pooled: bool = False, log_floor: float = 1e-4) -> None:
        super().__init__()
        if d_in < 1 or num_domains < 2 or hidden < 0:
            raise ValueError(
                f"GlobalRouter needs d_in >= 1, num_domains >= 2, hidden >= 0; got {d_in}, {num_domains}, {hidden}"
            )
        if not log_floor > 0:
            raise ValueError(f"GlobalRouter log_floor must be > 0, got {log_floor}")
        self.d_in = d_in
        self.num_domains = num_domains
        self.log_pooled, self.log_floor = bool(log_pooled), float(log_floor)
        if hidden:
            self.mlp = nn.Sequential(
                nn.Linear(d_in, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, num_domains)
            )
        else:
            self.mlp = nn.Sequential(nn.Dropout(dropout), nn.Linear(d_in, num_domains))

    def forward(self, x: Tensor, lengths: Tensor | None = None, mask: Tensor | None = None,
                weights: Tensor | None = None) -> Tensor:
        if x.dim() != 3 or x.shape[-1] != self.d_in:
            raise ValueError(f"GlobalRouter expects [B, T, {self.d_in}], got {tuple(x.shape)}")
        if lengths is not None and mask is not None:
            raise ValueError("GlobalRouter: pass lengths or mask, not both")
        if lengths is not None:
            mask = lengths_to_mask(lengths.to(x.device), x.shape[1])
        pooled = masked_mean(x, mask, weights)
        if self.log_pooled:
            pooled = torch.log(pooled.clamp_min(0.0) + self.log_floor)
        return self.mlp(pooled)

    def posterior(self, x: Tensor, lengths: Tensor | None = None, mask: Tensor | None = None,
                  weights: Tensor | None = None) -> Tensor:
        """Softmax of the logits: the [B, D] input of global_routing."""
        return torch.softmax(self.forward(x, lengths=lengths, mask=mask, weights=weights), dim=-1)
