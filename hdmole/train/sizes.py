"""The sizes that follow from the number of accents (docs/configs.md, "Sizes"): the parity rule.

A recipe's ``adapter_defaults`` writes both sizes out: ``mixture`` (each expert's rank r and alpha) and
``lora`` (the single LoRA). The single LoRA must be the size of the mixture: rank E x r and alpha E x alpha,
with E the number of experts, (D - 1) x m for D lines of accents.txt when the source domain owns no
expert (D x m otherwise). E changes with the corpus, so a recipe copied to a corpus with another number of
accents would silently compare a LoRA of the wrong size; this check makes that an error saying what to set.
"""

from __future__ import annotations

import math

from hdmole.nn import HDMoLEConfig

RULE = "docs/configs.md, 'Sizes'"


def mixture_experts(mixture: dict, num_accents: int) -> int:
    """E: the experts a mixture with these ``adapter_defaults.mixture`` keys has for ``num_accents`` domains."""
    domains = mixture.get("num_domains", num_accents)
    owning = domains - (mixture.get("source_domain") is not None)
    return owning * mixture.get("experts_per_domain", 1)


def check_lora_parity(defaults: dict, num_accents: int, accents_source: str) -> None:
    """Raises ValueError when ``defaults['lora']`` is not rank E x r, alpha E x alpha of ``defaults['mixture']``.

    Only when both entries are given: a recipe without a mixture (or without a single LoRA) has nothing to
    match. A system that sets its own ``adapter.config.rank`` is not affected (its value wins over the default)."""
    mixture, lora = defaults.get("mixture"), defaults.get("lora")
    if not isinstance(mixture, dict) or not isinstance(lora, dict):
        return
    experts = mixture_experts(mixture, num_accents)
    rank = mixture.get("rank", HDMoLEConfig.rank)
    alpha = mixture.get("alpha", HDMoLEConfig.alpha)
    want_rank, want_alpha = experts * rank, experts * alpha
    have_rank, have_alpha = lora.get("rank", HDMoLEConfig.rank), lora.get("alpha", HDMoLEConfig.alpha)
    if have_rank == want_rank and math.isclose(float(have_alpha), float(want_alpha)):
        return
    source_note = " (the source domain owns none)" if mixture.get("source_domain") is not None else ""
    raise ValueError(
        f"adapter_defaults.lora is rank {have_rank}, alpha {have_alpha:g}, but {accents_source} has "
        f"{num_accents} domains, so a mixture has E = {experts} experts{source_note} of rank {rank}, alpha {alpha:g}: "
        f"the single LoRA must be rank E x r = {want_rank}, alpha E x alpha = {want_alpha:g} to match their size. "
        f"Fix: set adapter_defaults.lora: {{rank: {want_rank}, alpha: {want_alpha:g}}} ({RULE}), "
        "or check that accents.txt lists every domain once"
    )
