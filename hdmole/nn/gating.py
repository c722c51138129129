"""Routing probabilities and gates, as pure tensor functions (no modules, no state).

Shapes: N tokens (all leading dims flattened), E experts, D domains.
    routing_probabilities(...) -> p [N, E], each row on the simplex
    gate(...)                  -> w [N, E], the expert weights actually applied
See docs/method.md for the reasoning behind every choice here.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .config import HDMoLEConfig

# Guard for renormalisation: rows whose mass is exactly 0 cannot happen for softmax-based p,
# but a user-supplied one-hot global posterior times an underflowed softmax could produce them.
_TINY = 1e-12
# tau is capped just below the top probability so the top expert always keeps a positive weight.
_TOP_MARGIN = 1e-6


def expert_domains(config: HDMoLEConfig, device: torch.device | None = None) -> Tensor:
    """Domain index of each expert: expert e belongs to domain e // experts_per_domain (counting only the
    domains that own experts: the source domain, when set, is skipped)."""
    owners = torch.tensor(config.expert_domain_ids, device=device)
    return owners.repeat_interleave(config.experts_per_domain)


def source_keep(config: HDMoLEConfig, global_posterior: Tensor) -> Tensor | None:
    """[N, 1] factor 1 - g_source that scales the routed update, or None without a source domain."""
    if config.source_domain is None:
        return None
    return 1.0 - global_posterior[:, config.source_domain : config.source_domain + 1]


def routing_probabilities(
    config: HDMoLEConfig, local_logits: Tensor | None, global_posterior: Tensor | None
) -> Tensor:
    """Combine the token-level router and the utterance-level posterior into p [N, E].

    local_logits: [N, E] or None (routing == "global"); global_posterior: [N, D] (already broadcast
    from utterances to their tokens) or None (routing == "local").
    """
    m = config.experts_per_domain
    if config.routing == "local":
        return torch.softmax(local_logits, dim=-1)
    if config.source_domain is not None:
        # Among the domains that own experts: g renormalised over them (the source share is applied as the
        # 1 - g_source scale of the whole update, see source_keep).
        owned = global_posterior[:, config.expert_domain_ids]
        global_posterior = owned / owned.sum(dim=-1, keepdim=True).clamp_min(_TINY)
    # g_{d(e)}: each domain's probability repeated for its m experts (experts are grouped by domain).
    g_expert = global_posterior.repeat_interleave(m, dim=-1) if m > 1 else global_posterior
    if config.routing == "global":
        return g_expert / m
    local = torch.softmax(local_logits, dim=-1)
    if config.combine == "product":
        joint = g_expert * local
        return joint / joint.sum(dim=-1, keepdim=True).clamp_min(_TINY)
    lam = config.combine_lambda
    return lam * g_expert / m + (1.0 - lam) * local


def _straight_through(surrogate: Tensor, forward_value: Tensor) -> Tensor:
    """Value of forward_value, gradient of surrogate."""
    return surrogate + (forward_value - surrogate).detach()


def threshold_gate(p: Tensor, tau: Tensor, straight_through: bool) -> Tensor:
    """Dynamic-threshold gate: experts with p_e > tau are active, the top expert always is.

    Forward: w_e = relu(p_e - tau') / sum_j relu(p_j - tau'), tau' = min(tau, p_top - margin), so weights
    of active experts are shifted down by tau and renormalised to 1.
    Backward: "exact" differentiates that expression (tau and the router get no gradient when a single
    expert is active, because its weight is the constant 1); "straight_through" uses the surrogate
    u_e = (p_e - tau) * active_e, which gives dL/dtau = -sum_active dL/dw_e and dL/dp_e = dL/dw_e for
    every active expert, whatever their number.
    """
    p_top = p.amax(dim=-1, keepdim=True)
    with torch.set_grad_enabled(torch.is_grad_enabled() and not straight_through):
        tau_eff = torch.minimum(tau.to(p.dtype).expand_as(p_top), p_top - _TOP_MARGIN)
        shifted = torch.relu(p - tau_eff)
        weights = shifted / shifted.sum(dim=-1, keepdim=True).clamp_min(_TINY)
    if not straight_through:
        return weights
    active = (shifted > 0).to(p.dtype)
    return _straight_through((p - tau.to(p.dtype)) * active, weights)


def topk_gate(p: Tensor, k: int, straight_through: bool) -> Tensor:
    """Static top-k gate: the k most probable experts, their weights renormalised to 1.

    With straight_through the backward pass sees the un-renormalised masked probabilities (as Switch
    Transformer's top-1 does), so the router keeps learning even for k = 1 where the forward weight
    is the constant 1.
    """
    index = p.topk(k, dim=-1).indices
    mask = torch.zeros_like(p).scatter_(-1, index, 1.0)
    masked = p * mask
    if not straight_through:
        return masked / masked.sum(dim=-1, keepdim=True).clamp_min(_TINY)
    with torch.no_grad():
        weights = masked / masked.sum(dim=-1, keepdim=True).clamp_min(_TINY)
    return _straight_through(masked, weights)


def gate(config: HDMoLEConfig, p: Tensor, tau: Tensor | None) -> Tensor:
    straight_through = config.gate_gradient == "straight_through"
    if config.gating == "dense":
        return p
    if config.gating == "topk":
        return topk_gate(p, config.top_k, straight_through)
    return threshold_gate(p, tau, straight_through)
