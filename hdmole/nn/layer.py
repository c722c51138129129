"""HDMoLELinear: a frozen nn.Linear plus E stacked LoRA experts, a local router and a learned threshold."""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import HDMoLEConfig
from .gating import gate, routing_probabilities, soft_extra_experts, source_keep

# Local-router init: logits of std ~0.1 for unit-variance inputs, i.e. a near-uniform softmax (so at
# the start p is essentially the global posterior) that still breaks ties token by token (so static
# top-k does not send every token to expert 0 and collapse there).
_ROUTER_INIT_LOGIT_STD = 0.1


class HDMoLELinear(nn.Module):
    """``y = base(x) + sum_e w_e(x, u) * (alpha / r) * B_e A_e dropout(x)`` for input ``[B, ..., d_in]``.

    Wraps ``base`` by composition (``self.base_layer``), as peft's LoRA layers do; ``base`` is left as
    it is (call :func:`hdmole.nn.mark_trainable` to freeze it). Adapter tensors are named ``hdmole_*``:
      hdmole_lora_A [E, r, d_in]  (kaiming-uniform, like peft)
      hdmole_lora_B [d_out, E, r] (zeros, so the wrapped layer starts equal to the base layer)
      hdmole_router.weight [E, d_in]  (token-level local router; routing in {hierarchical, local})
      hdmole_threshold_logit []       (tau = sigmoid(logit); gating == threshold)
    The experts are evaluated stacked: two matmuls whatever E is (docs/method.md section 2, Efficiency).
    """

    def __init__(self, base: nn.Linear, config: HDMoLEConfig, name: str = "") -> None:
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"HDMoLELinear wraps nn.Linear only, got {type(base).__name__} for {name!r}")
        if not isinstance(config, HDMoLEConfig):
            raise TypeError(f"config must be an HDMoLEConfig, got {type(config).__name__}")
        config.validate()  # again: fields may have been edited after construction
        self.base_layer = base
        self.config = config
        self.module_name = name
        E, r = config.num_experts, config.rank
        d_in, d_out = base.in_features, base.out_features
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}

        self.hdmole_lora_A = nn.Parameter(torch.empty(E, r, d_in, **factory))
        for e in range(E):  # per expert, so the fan-in is d_in as for a Linear(d_in, r) (peft's init)
            nn.init.kaiming_uniform_(self.hdmole_lora_A.data[e], a=math.sqrt(5))
        self.hdmole_lora_B = nn.Parameter(torch.zeros(d_out, E, r, **factory))
        self.hdmole_dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()

        if config.uses_local_router:
            self.hdmole_router = nn.Linear(d_in, E, bias=False, **factory)
            nn.init.normal_(self.hdmole_router.weight, std=_ROUTER_INIT_LOGIT_STD / math.sqrt(d_in))
        else:
            self.hdmole_router = None
        if config.uses_threshold:
            logit = math.log(config.threshold_init / (1.0 - config.threshold_init))
            self.hdmole_threshold_logit = nn.Parameter(torch.tensor(logit, **factory))
        else:
            self.register_parameter("hdmole_threshold_logit", None)

        # Set only inside `with global_routing(...)`; a plain attribute, not a buffer, so it is never saved.
        self._global_posterior: Tensor | None = None
        # Set only inside a RoutingStatsRecorder; None means recording costs one attribute check.
        self._stats_sink = None
        # The active-expert price of the last forward with gradients (config.active_cost > 0), until gate_cost reads it.
        self._gate_cost: Tensor | None = None
        # Set only inside `with forced_thresholds(...)`: a fixed tau replacing the learned one (operating curves).
        self._forced_tau: float | None = None

    # ------------------------------------------------------------------ nn.Linear look-alike
    @property
    def weight(self) -> Tensor:
        return self.base_layer.weight

    @property
    def bias(self) -> Tensor | None:
        return self.base_layer.bias

    @property
    def in_features(self) -> int:
        return self.base_layer.in_features

    @property
    def out_features(self) -> int:
        return self.base_layer.out_features

    @property
    def num_experts(self) -> int:
        return self.config.num_experts

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"experts={c.num_experts} (domains={c.num_domains} x {c.experts_per_domain}), rank={c.rank}, "
            f"alpha={c.alpha}, routing={c.routing}, combine={c.combine}, gating={c.gating}"
            + (f", top_k={c.top_k}" if c.gating == "topk" else "")
        )

    def threshold(self) -> Tensor | None:
        """tau in (0, 1), or None when the layer has no threshold."""
        if self.hdmole_threshold_logit is None:
            return None
        if self._forced_tau is not None:
            return torch.tensor(self._forced_tau, dtype=self.hdmole_threshold_logit.dtype,
                                device=self.hdmole_threshold_logit.device)
        return torch.sigmoid(self.hdmole_threshold_logit)

    # ------------------------------------------------------------------ routing
    def _token_posterior(self, lead_shape: torch.Size, num_tokens: int, dtype: torch.dtype) -> Tensor:
        g = self._global_posterior
        where = f"HDMoLELinear {self.module_name!r}" if self.module_name else "HDMoLELinear"
        if g is None:
            raise RuntimeError(
                f"{where} uses routing={self.config.routing!r} and needs the utterance-level domain "
                "posterior: call the model inside `with hdmole.nn.global_routing(model, g):` with g of "
                f"shape [batch, {self.config.num_domains}] (probabilities)"
            )
        if len(lead_shape) == 0:
            raise ValueError(f"{where}: global routing needs a batch dimension, got a 1-D input")
        batch = lead_shape[0]
        if g.shape != (batch, self.config.num_domains):
            raise ValueError(
                f"{where}: global posterior has shape {tuple(g.shape)}, expected "
                f"[{batch}, {self.config.num_domains}] (batch size of the input by num_domains)"
            )
        per_utt = num_tokens // batch if batch else 0
        return g.to(device=self.hdmole_lora_A.device, dtype=dtype)[:, None, :].expand(batch, per_utt, g.shape[1]).reshape(num_tokens, g.shape[1])

    def routing_weights(self, x: Tensor) -> Tensor | None:
        """Expert weights w [N, E] for x [B, ..., d_in] (N = all tokens), or None for a plain LoRA.

        With a source domain the weights of a token sum to 1 - g_source, not 1."""
        cfg = self.config
        if cfg.is_plain_lora:
            return None
        lead = x.shape[:-1]
        flat = x.reshape(-1, x.shape[-1])
        dtype = self.hdmole_lora_A.dtype
        local_logits = self.hdmole_router(flat.to(dtype)) if self.hdmole_router is not None else None
        posterior = self._token_posterior(lead, flat.shape[0], dtype) if cfg.uses_global_posterior else None
        p = routing_probabilities(cfg, local_logits, posterior)
        tau = self.threshold()
        w = gate(cfg, p, tau)
        if cfg.uses_threshold and cfg.active_cost > 0 and torch.is_grad_enabled():
            extra = soft_extra_experts(p, tau, cfg.gate_temperature).mean()
            self._gate_cost = cfg.active_cost * extra if self._gate_cost is None else self._gate_cost + cfg.active_cost * extra
        keep = source_keep(cfg, posterior) if posterior is not None else None
        if self._stats_sink is not None:
            self._stats_sink.record(self, w.detach(), lead, None if keep is None else keep.detach())
        if keep is not None:  # the source-preserving path: g_source = 1 leaves exactly the base layer
            w = w * keep
        return w

    # ------------------------------------------------------------------ forward
    def forward(self, x: Tensor) -> Tensor:
        y = self.base_layer(x)
        E, r = self.config.num_experts, self.config.rank
        d_in, d_out = self.in_features, self.out_features
        flat = x.reshape(-1, d_in)
        w = self.routing_weights(x)
        A = self.hdmole_lora_A.reshape(E * r, d_in)  # views: parameters are contiguous
        B = self.hdmole_lora_B.reshape(d_out, E * r)
        h = F.linear(self.hdmole_dropout(flat.to(A.dtype)), A)  # [N, E*r]: every expert's A_e x at once
        if w is None:
            h = h * self.config.scaling
        else:  # weight each expert's r coordinates by its routing weight (scaling folded in: N*E mults)
            h = (h.view(-1, E, r) * (w * self.config.scaling).unsqueeze(-1)).view(-1, E * r)
        delta = F.linear(h, B)  # [N, d_out]: sum over experts happens inside this matmul
        return y + delta.to(y.dtype).view(*x.shape[:-1], d_out)


def hdmole_layers(module: nn.Module) -> Iterator[tuple[str, HDMoLELinear]]:
    """(name, layer) for every HDMoLELinear in module (module itself included, with name '')."""
    for name, sub in module.named_modules():
        if isinstance(sub, HDMoLELinear):
            yield name, sub


@contextmanager
def global_routing(module: nn.Module, g: Tensor):
    """Give every HDMoLELinear in ``module`` the utterance-level posterior ``g`` [B, D] for the block.

    Tokens of a layer input ``[B, ..., d_in]`` belong to utterance b by their first index. The
    previous value is restored on exit, so blocks nest and nothing leaks between batches. Layers that
    are re-run during backward (reentrant activation checkpointing) need the backward call inside
    the block too.
    """
    if not isinstance(g, Tensor) or g.dim() != 2:
        shape = tuple(g.shape) if isinstance(g, Tensor) else type(g).__name__
        raise ValueError(f"global_routing: g must be a [batch, num_domains] tensor, got {shape}")
    layers = [layer for _, layer in hdmole_layers(module)]
    if not layers:
        raise ValueError("global_routing: the module holds no HDMoLELinear (call hdmole.nn.inject first)")
    for layer in layers:
        if layer.config.uses_global_posterior and g.shape[1] != layer.config.num_domains:
            raise ValueError(
                f"global_routing: g has {g.shape[1]} domains but layer {layer.module_name!r} was built "
                f"with num_domains={layer.config.num_domains}"
            )
    previous = [layer._global_posterior for layer in layers]
    for layer in layers:
        layer._global_posterior = g
    try:
        yield
    finally:
        for layer, old in zip(layers, previous):
            layer._global_posterior = old


def gate_cost(module: nn.Module) -> Tensor | None:
    """The active-expert price (``HDMoLEConfig.active_cost``) of the HDMoLE layers' forwards since the last call,
    summed over layers, to be added to the training loss; None when no layer priced anything. Reading it clears
    it, so call it once per forward (a layer run twice before a read adds both runs)."""
    total = None
    for _, layer in hdmole_layers(module):
        if layer._gate_cost is not None:
            total = layer._gate_cost if total is None else total + layer._gate_cost
            layer._gate_cost = None
    return total


@contextmanager
def forced_thresholds(module: nn.Module, tau: float | dict[str, float]):
    """Replace the learned threshold of HDMoLE layers by a fixed tau inside the block (the forced-tau
    operating curve: how the loss depends on tau around the learned value). ``tau``: one value for every
    layer with a threshold, or {layer name: tau} for some of them. Restored on exit."""
    layers = {name: layer for name, layer in hdmole_layers(module) if layer.config.uses_threshold}
    if not layers:
        raise ValueError("forced_thresholds: the module holds no HDMoLE layer with a threshold (gating: threshold)")
    wanted = dict(tau) if isinstance(tau, dict) else {name: tau for name in layers}
    unknown = sorted(set(wanted) - set(layers))
    if unknown:
        raise ValueError(f"forced_thresholds: no thresholded HDMoLE layer named {unknown}; layers: {sorted(layers)}")
    for name, value in wanted.items():
        if not 0.0 <= float(value) < 1.0:
            raise ValueError(f"forced_thresholds: tau for {name!r} must be in [0, 1), got {value}")
    previous = {name: layers[name]._forced_tau for name in wanted}
    for name, value in wanted.items():
        layers[name]._forced_tau = float(value)
    try:
        yield
    finally:
        for name, old in previous.items():
            layers[name]._forced_tau = old
