"""Opt-in routing statistics per HDMoLE layer, as plain Python values for JSON logs and plots.

    with RoutingStatsRecorder(model) as rec:
        rec.set_domain_labels(["beijing", "sichuan"])   # optional: one label per utterance of the batch
        model(x)
    stats = rec.summary()   # {layer name: {...}}

Outside a recorder the layers pay one `is None` check per forward. Padding tokens are counted like
real tokens (the layer cannot see a mask); pass inputs without padding when that matters.
"""

from __future__ import annotations

from typing import Any, Callable, Hashable, Sequence

import torch
from torch import Tensor, nn

from .layer import HDMoLELinear, hdmole_layers


class _Sums:
    """Running sums for one (layer, domain) cell, kept on the device to avoid a sync per forward."""

    def __init__(self, num_experts: int, device: torch.device) -> None:
        self.tokens = torch.zeros((), dtype=torch.float64, device=device)
        self.active = torch.zeros(num_experts, dtype=torch.float64, device=device)
        self.weight = torch.zeros(num_experts, dtype=torch.float64, device=device)
        self.scale = torch.zeros((), dtype=torch.float64, device=device)

    def add(self, tokens: Tensor | int, active: Tensor, weight: Tensor, scale: Tensor | float) -> None:
        self.tokens += tokens
        self.active += active.to(torch.float64)
        self.weight += weight.to(torch.float64)
        self.scale += torch.as_tensor(scale, dtype=torch.float64, device=self.scale.device)

    def as_dict(self) -> dict[str, Any]:
        n = max(float(self.tokens), 1.0)
        active = (self.active / n).tolist()
        return {
            "tokens": int(self.tokens),
            "mean_active_experts": float(self.active.sum()) / n,
            "mean_weight_per_expert": (self.weight / n).tolist(),
            "active_fraction_per_expert": active,
            "mean_update_scale": float(self.scale) / n,
        }


class RoutingStatsRecorder:
    """Accumulates, per HDMoLE layer with more than one expert, over every forward inside the block:
    mean number of active experts per token, mean routing weight and active fraction per expert, the mean
    source-path scale (1 - g_source; 1 without a source domain),
    optionally split by a per-utterance domain label; `summary()` adds each layer's current threshold.
    """

    def __init__(self, model: nn.Module, domain_labels: Sequence[Hashable] | None = None) -> None:
        self.layers = {name: layer for name, layer in hdmole_layers(model) if not layer.config.is_plain_lora
                       and (layer.num_experts > 1 or layer.config.source_domain is not None)}
        if not self.layers:
            raise ValueError("RoutingStatsRecorder: the model has no routed HDMoLE layer (more than one expert, "
                             "or a source domain)")
        self._names = {id(layer): name for name, layer in self.layers.items()}
        self.domain_labels = list(domain_labels) if domain_labels is not None else None
        self.reset()

    def reset(self) -> None:
        self._totals: dict[str, _Sums] = {}
        self._by_domain: dict[str, dict[Hashable, _Sums]] = {}

    def set_domain_labels(self, labels: Sequence[Hashable] | None) -> None:
        """Labels (one per utterance, batch order) for the forwards that follow; None stops splitting."""
        self.domain_labels = list(labels) if labels is not None else None

    def __enter__(self) -> "RoutingStatsRecorder":
        for name, layer in self.layers.items():
            if layer._stats_sink is not None:
                raise RuntimeError(f"layer {name!r} is already being recorded by another RoutingStatsRecorder")
        for layer in self.layers.values():
            layer._stats_sink = self
        return self

    def __exit__(self, *exc) -> None:
        for layer in self.layers.values():
            layer._stats_sink = None

    # called by HDMoLELinear.routing_weights when this recorder is attached
    def record(self, layer: HDMoLELinear, weights: Tensor, lead_shape: torch.Size, keep: Tensor | None = None) -> None:
        """``weights`` [N, E]: the gate's weights (which experts are active); ``keep`` [N, 1]: the source-path
        scale 1 - g_source (None: 1). The weights applied, and averaged here, are ``weights * keep``."""
        name = self._names[id(layer)]
        E = weights.shape[-1]
        if keep is None:
            keep = torch.ones(weights.shape[0], 1, dtype=weights.dtype, device=weights.device)
        batch = lead_shape[0] if len(lead_shape) else 1
        if self.domain_labels is not None and len(self.domain_labels) != batch:
            raise ValueError(
                f"RoutingStatsRecorder: {len(self.domain_labels)} domain labels for a batch of {batch} "
                f"utterances at layer {name!r}; call set_domain_labels with one label per utterance"
            )
        active = weights > 0
        applied = weights * keep
        total = self._totals.setdefault(name, _Sums(E, weights.device))
        total.add(weights.shape[0], active.sum(dim=0), applied.sum(dim=0), keep.sum())
        if self.domain_labels is None:
            return
        per_utt = weights.shape[0] // batch
        utt_active = active.view(batch, per_utt, E).sum(dim=1)
        utt_weight = applied.view(batch, per_utt, E).sum(dim=1)
        utt_keep = keep.view(batch, per_utt).sum(dim=1)
        cells = self._by_domain.setdefault(name, {})
        groups: dict[Hashable, list[int]] = {}
        for index, label in enumerate(self.domain_labels):
            groups.setdefault(label, []).append(index)
        for label, rows in groups.items():
            index = torch.tensor(rows, device=weights.device)
            cell = cells.setdefault(label, _Sums(E, weights.device))
            cell.add(len(rows) * per_utt, utt_active[index].sum(dim=0), utt_weight[index].sum(dim=0),
                     utt_keep[index].sum())

    def summary(self) -> dict[str, dict[str, Any]]:
        """{layer name: {tokens, mean_active_experts, mean_weight_per_expert, active_fraction_per_expert,
        threshold (float or None), by_domain: {label: {...same counts...}}}}, layers seen so far only."""
        out: dict[str, dict[str, Any]] = {}
        for name, sums in self._totals.items():
            tau = self.layers[name].threshold()
            entry = sums.as_dict()
            entry["threshold"] = float(tau.detach()) if tau is not None else None
            entry["by_domain"] = {
                str(label): cell.as_dict() for label, cell in self._by_domain.get(name, {}).items()
            }
            out[name] = entry
        return out


def collect_routing_stats(
    model: nn.Module, run: Callable[[], Any], domain_labels: Sequence[Hashable] | None = None
) -> dict[str, dict[str, Any]]:
    """Call `run()` (one or more forwards of `model`) while recording; return the summary."""
    with RoutingStatsRecorder(model, domain_labels=domain_labels) as recorder:
        run()
    return recorder.summary()
