"""HDMoLEConfig: every choice of the method (docs/method.md) as one validated dataclass."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

ROUTINGS = ("hierarchical", "local", "global", "none")
COMBINES = ("product", "sum")
GATINGS = ("threshold", "topk", "dense")
GATE_GRADIENTS = ("relaxed", "straight_through", "exact")


@dataclass
class HDMoLEConfig:
    """Configuration of the LoRA experts that :func:`hdmole.nn.inject` adds to each target ``nn.Linear``.

    E = ``num_domains * experts_per_domain`` experts; expert e serves domain ``e // experts_per_domain``.
    With ``source_domain`` s set, only the other D - 1 domains own experts (E = (D - 1) * m, the domains in
    their order with s skipped) and the update is scaled by 1 - g_s: g_s = 1 is exactly the base layer.
    With E == 1 the layer is a plain LoRA whatever ``routing`` and ``gating`` say (a single expert has
    nothing to route): ``HDMoLEConfig(num_domains=1, experts_per_domain=1, routing="none", gating="dense")``
    is the canonical spelling.
    """

    rank: int = 8  # r: rank of each expert
    alpha: float = 16  # LoRA scaling is alpha / rank, as in peft
    dropout: float = 0.0  # dropout on the adapter input (shared by all experts, like peft's lora_dropout)
    num_domains: int = 1  # D: domains (accents) the global posterior ranges over
    experts_per_domain: int = 1  # m: experts owned by each domain
    routing: str = "hierarchical"  # hierarchical | local | global | none
    combine: str = "product"  # product | sum (how global and local routing combine, hierarchical only)
    combine_lambda: float = 0.5  # weight of the global term when combine == "sum"
    gating: str = "threshold"  # threshold | topk | dense
    top_k: int = 1  # k for gating == "topk"
    threshold_init: float = 0.1  # initial tau in (0, 1); tau = sigmoid(learned logit)
    gate_gradient: str = "relaxed"  # relaxed | straight_through | exact (docs/method.md section 4: the estimators)
    gate_temperature: float = 0.02  # T of the relaxed threshold gradient and of the soft active-expert count
    # Price of an active expert beyond the top one, in loss units per token and layer: the model adds
    # active_cost * mean_tokens(sum_{e != top} sigmoid((p_e - tau) / T)) to its loss (hdmole.nn.gate_cost).
    active_cost: float = 0.0
    # Domain whose posterior keeps the base model (docs/method.md, "the source-preserving path"): it owns no
    # expert, and the routed update is scaled by 1 - g_source, so g_source = 1 gives exactly the base layer.
    source_domain: int | None = None
    # The source gate (docs/method.md section 3.5): a bias added to the source domain's log-posterior before the
    # 1 - g_source scale (> 0 protects the source domain more), and optionally a hard decision (the update is
    # off when the biased posterior's argmax is the source domain, fully on otherwise). Part of the layer, so
    # training and decoding use the same gate.
    source_gate_bias: float = 0.0
    source_gate_hard: bool = False

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ derived
    @property
    def num_expert_domains(self) -> int:
        """Domains that own experts: all of them, or all but the source domain."""
        return self.num_domains - (self.source_domain is not None)

    @property
    def expert_domain_ids(self) -> list[int]:
        """The domain index of each group of m experts, in expert order."""
        return [d for d in range(self.num_domains) if d != self.source_domain]

    @property
    def num_experts(self) -> int:
        return self.num_expert_domains * self.experts_per_domain

    @property
    def scaling(self) -> float:
        return float(self.alpha) / float(self.rank)

    @property
    def is_plain_lora(self) -> bool:
        return self.num_experts == 1 and self.source_domain is None

    @property
    def uses_local_router(self) -> bool:
        return not self.is_plain_lora and self.routing in ("hierarchical", "local")

    @property
    def uses_global_posterior(self) -> bool:
        return not self.is_plain_lora and self.routing in ("hierarchical", "global")

    @property
    def uses_threshold(self) -> bool:
        return not self.is_plain_lora and self.gating == "threshold"

    # ------------------------------------------------------------------ io
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "config") -> "HDMoLEConfig":
        """Build from a mapping (e.g. a YAML section); unknown keys are an error naming the valid ones."""
        if not isinstance(d, Mapping):
            raise TypeError(f"{source}: HDMoLE config must be a mapping, got {type(d).__name__}")
        valid = cls.field_names()
        unknown = sorted(set(d) - set(valid))
        if unknown:
            raise ValueError(
                f"{source}: unknown HDMoLE config key(s) {unknown}; valid keys are {valid}. "
                "Fix the spelling or remove the key."
            )
        try:
            return cls(**dict(d))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}: {err}") from None

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ValueError(f"HDMoLEConfig: {msg}")

        for name in ("rank", "num_domains", "experts_per_domain", "top_k"):
            value = getattr(self, name)
            need(isinstance(value, int) and not isinstance(value, bool), f"{name} must be an int, got {value!r}")
            need(value >= 1, f"{name} must be >= 1, got {value}")
        for name in ("alpha", "dropout", "combine_lambda", "threshold_init", "gate_temperature", "active_cost",
                     "source_gate_bias"):
            value = getattr(self, name)
            need(
                isinstance(value, (int, float)) and not isinstance(value, bool),
                f"{name} must be a number, got {value!r}",
            )
        need(self.alpha > 0, f"alpha must be > 0, got {self.alpha}")
        need(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        need(0.0 <= self.combine_lambda <= 1.0, f"combine_lambda must be in [0, 1], got {self.combine_lambda}")
        need(0.0 < self.threshold_init < 1.0, f"threshold_init must be in (0, 1), got {self.threshold_init}")
        need(self.gate_temperature > 0, f"gate_temperature must be > 0, got {self.gate_temperature}")
        need(self.active_cost >= 0, f"active_cost must be >= 0 (a price, not a reward), got {self.active_cost}")
        need(self.routing in ROUTINGS, f"routing must be one of {ROUTINGS}, got {self.routing!r}")
        need(self.combine in COMBINES, f"combine must be one of {COMBINES}, got {self.combine!r}")
        need(self.gating in GATINGS, f"gating must be one of {GATINGS}, got {self.gating!r}")
        need(
            self.gate_gradient in GATE_GRADIENTS,
            f"gate_gradient must be one of {GATE_GRADIENTS}, got {self.gate_gradient!r}",
        )
        need(isinstance(self.source_gate_hard, bool), f"source_gate_hard must be true or false, got {self.source_gate_hard!r}")
        if self.source_domain is None:
            need(self.source_gate_bias == 0 and not self.source_gate_hard,
                 "source_gate_bias / source_gate_hard need a source_domain (the gate acts on its posterior)")
        if self.source_domain is not None:
            s = self.source_domain
            need(isinstance(s, int) and not isinstance(s, bool), f"source_domain must be an int or None, got {s!r}")
            need(self.num_domains >= 2, f"source_domain needs num_domains >= 2 (a source and a target), got {self.num_domains}")
            need(0 <= s < self.num_domains, f"source_domain={s} is not a domain index in [0, {self.num_domains})")
            need(
                self.routing in ("hierarchical", "global"),
                f"source_domain needs the global posterior (routing hierarchical or global), got routing={self.routing!r}",
            )
        E = self.num_experts
        if self.gating == "topk":
            need(self.top_k <= E, f"top_k={self.top_k} exceeds the number of experts E={E}")
        if E > 1:
            need(
                self.routing != "none",
                f"routing='none' means a single plain LoRA, but num_domains*experts_per_domain={E}; "
                "use routing='local' (or set both counts to 1)",
            )
            if self.routing in ("global", "hierarchical"):
                need(
                    self.num_domains > 1,
                    f"routing={self.routing!r} needs num_domains > 1 (a global posterior over one domain "
                    "cannot tell experts apart); use routing='local'",
                )
