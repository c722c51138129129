"""hdmole.nn: mixture of LoRA experts with hierarchical routing and dynamic thresholds (HDMoLE).

Knows nothing about speech and imports nothing from the rest of hdmole. See docs/method.md.
"""

from .config import HDMoLEConfig
from .gating import (
    expert_domains,
    gate,
    routing_probabilities,
    soft_extra_experts,
    source_keep,
    threshold_gate,
    topk_gate,
)
from .inject import (
    adapter_parameters,
    adapter_state_dict,
    count_parameters,
    inject,
    is_adapter_parameter,
    load_adapter_state_dict,
    mark_trainable,
)
from .layer import HDMoLELinear, forced_thresholds, gate_cost, global_routing, hdmole_layers
from .reference import reference_forward
from .router import GlobalRouter, lengths_to_mask, masked_mean
from .stats import RoutingStatsRecorder, collect_routing_stats

__all__ = [
    "HDMoLEConfig",
    "HDMoLELinear",
    "GlobalRouter",
    "global_routing",
    "forced_thresholds",
    "gate_cost",
    "soft_extra_experts",
    "inject",
    "mark_trainable",
    "adapter_state_dict",
    "load_adapter_state_dict",
    "count_parameters",
    "is_adapter_parameter",
    "adapter_parameters",
    "hdmole_layers",
    "RoutingStatsRecorder",
    "collect_routing_stats",
    "reference_forward",
    "expert_domains",
    "routing_probabilities",
    "source_keep",
    "gate",
    "threshold_gate",
    "topk_gate",
    "lengths_to_mask",
    "masked_mean",
]
