"""Routing probabilities and gates, as pure tensor functions (no modules, no state).

Shapes: N tokens (all leading dims flattened), E experts, D domains.
    routing_probabilities(...) -> p [N, E], each row on the simplex
    gate(...)                  -> w [N, E], the expert weights actually applied
See docs/method.md for the reasoning behind every choice here.
"""

from __future__ import annotations

import math

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
    """[N, 1] factor 1 - g'_source that scales the routed update, or None without a source domain.

    g' is the posterior with ``source_gate_bias`` b added to the source domain's log-probability:
    g'_s = g_s e^b / (g_s e^b + 1 - g_s). With ``source_gate_hard`` the factor is 0 where the biased posterior's
    argmax is the source domain (g_s e^b >= every other g_d) and 1 elsewhere."""
    if config.source_domain is None:
        return None
    s = config.source_domain
    g_source = global_posterior[:, s : s + 1]
    boost = math.exp(config.source_gate_bias)
    if config.source_gate_hard:
        others = torch.cat([global_posterior[:, :s], global_posterior[:, s + 1 :]], dim=-1)
        return (g_source * boost < others.amax(dim=-1, keepdim=True)).to(global_posterior.dtype)
    if config.source_gate_bias == 0:
        return 1.0 - g_source
    biased = g_source * boost
    return (1.0 - g_source) / (biased + 1.0 - g_source).clamp_min(_TINY)


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


def _capped_tau(p: Tensor, tau: Tensor) -> tuple[Tensor, Tensor]:
    """(p_top [N, 1], tau' = min(tau, p_top - margin) [N, 1]): the top expert always keeps a positive weight."""
    p_top = p.amax(dim=-1, keepdim=True)
    return p_top, torch.minimum(tau.to(p.dtype).expand_as(p_top), p_top - _TOP_MARGIN)


def _shifted_weights(p: Tensor, tau_eff: Tensor) -> Tensor:
    shifted = torch.relu(p - tau_eff)
    return shifted / shifted.sum(dim=-1, keepdim=True).clamp_min(_TINY)


def threshold_gate(p: Tensor, tau: Tensor, gradient: str = "relaxed", temperature: float = 0.02) -> Tensor:
    """Dynamic-threshold gate: experts with p_e > tau are active, the top expert always is.

    Forward (every estimator): w_e = relu(p_e - tau') / sum_j relu(p_j - tau'), tau' = min(tau, p_top - margin):
    the active weights are shifted down by tau and renormalised to 1. Raising tau moves weight from the
    weaker active experts to the stronger ones and switches experts off continuously (a weight reaches 0
    exactly when its expert leaves), but never changes the size of the update (the weights sum to 1).
    Backward (``gradient``, docs/method.md section 4):
      "exact": autograd through that expression. It is the true derivative, but flat wherever one expert is
        active (the weight is the constant 1), so a tau above every runner-up never comes back.
      "straight_through": the surrogate u_e = (p_e - tau) * active_e, i.e. the derivative of an
        UN-normalised gate. Kept for comparison only: in it a lower tau enlarges every active weight, so
        while the adapters grow, dL/dtau is biased negative and tau collapses to dense gating (measured).
      "relaxed" (default): the router gets the straight-through gradient above with tau held fixed (it
        keeps learning when one expert is active, as Switch's top-1 does); tau gets the gradient of the same
        normalised gate with relu(z) smoothed to T * softplus(z / T) (T = ``temperature``). Its sign follows
        the forward pass's own dependence on tau, and the smoothing lets a runner-up within a few T below
        the threshold say whether letting it in would help, so tau also leaves the one-expert plateau.
    """
    p_top, tau_eff = _capped_tau(p, tau)
    if gradient == "exact":
        return _shifted_weights(p, tau_eff)
    with torch.no_grad():
        weights = _shifted_weights(p, tau_eff)
        active = (p > tau_eff).to(p.dtype)
    if gradient == "straight_through":
        return _straight_through((p - tau.to(p.dtype)) * active, weights)
    if gradient != "relaxed":
        raise ValueError(f"threshold_gate: unknown gradient {gradient!r} (relaxed, straight_through, exact)")
    router_part = (p - tau.detach().to(p.dtype)) * active
    soft = torch.nn.functional.softplus((p.detach() - tau_eff) / temperature)
    tau_part = soft / soft.sum(dim=-1, keepdim=True).clamp_min(_TINY)
    surrogate = router_part + tau_part
    return weights + (surrogate - surrogate.detach())


def soft_extra_experts(p: Tensor, tau: Tensor, temperature: float) -> Tensor:
    """[N]: a smooth count of the active experts beyond the always-active top one,
    sum_{e != top} sigmoid((p_e - tau) / T). Its mean is what an active expert is priced on
    (``HDMoLEConfig.active_cost``); differentiable in tau and in p."""
    counts = torch.sigmoid((p - tau.to(p.dtype)) / temperature)
    top = counts.gather(-1, p.argmax(dim=-1, keepdim=True))
    return counts.sum(dim=-1) - top.squeeze(-1)


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
    if config.gating == "dense":
        return p
    if config.gating == "topk":
        return topk_gate(p, config.top_k, straight_through=config.gate_gradient != "exact")
    return threshold_gate(p, tau, config.gate_gradient, config.gate_temperature)
