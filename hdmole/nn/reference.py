"""A slow, obviously-correct per-expert loop: the yardstick for tests and the benchmark only."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .layer import HDMoLELinear


def reference_forward(layer: HDMoLELinear, x: Tensor) -> Tensor:
    """Same result as ``layer(x)`` computed one expert at a time (a Python loop over E)."""
    cfg = layer.config
    flat = x.reshape(-1, layer.in_features)
    y = layer.base_layer(flat)
    w = layer.routing_weights(x)
    dropped = layer.hdmole_dropout(flat)
    for e in range(cfg.num_experts):
        A_e = layer.hdmole_lora_A[e]  # [r, d_in]
        B_e = layer.hdmole_lora_B[:, e, :]  # [d_out, r]
        expert = F.linear(F.linear(dropped, A_e), B_e) * cfg.scaling
        y = y + (expert if w is None else w[:, e : e + 1] * expert)
    return y.view(*x.shape[:-1], layer.out_features)
