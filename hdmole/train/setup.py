"""What trains in each mode, and what its checkpoints hold.

- ``lm``: the LLM alone on text; checkpoints hold the full model.
- ``base``: the parts named in ``trainable`` (e.g. encoder, projector, ctc; the LLM too for small
  from-scratch models); checkpoints hold the full model.
- ``router`` (HDMoLE's router pre-training): the global router alone, on the accent labels; checkpoints
  hold the router.
- ``adapt`` (HDMoLE's adaptation), per comparison system:
  ``full_ft`` the parts in ``trainable`` (e.g. the projector) unfrozen;
  ``lora | mole | hdmole`` adapters injected into ``adapter.target_modules`` with hdmole.nn, plus the
  global router when the routing uses it and ``train_global_router`` is set. Checkpoints hold only
  the trained tensors (adapter-only for the PEFT systems) and the adapter description, so that
  ``hdmole.models.checkpoint`` can rebuild the model on top of the base checkpoint.
"""

from __future__ import annotations

import logging
from pathlib import Path

from torch import nn

from hdmole.models.checkpoint import pretrained_parts, read_checkpoint
from hdmole.models.state import load_partial_state
from hdmole.nn import count_parameters, inject, is_adapter_parameter, mark_trainable
from hdmole.train.config import ConfigError, TrainConfig, adapter_config_for

log = logging.getLogger(__name__)

# An init checkpoint is an earlier stage's output: a damaged one is re-made, not resumed around.
INIT_FIX = "re-run the stage that writes it, or correct 'init' in the config"
# The model's top-level parts that `trainable` may name.
PARTS = ("encoder", "projector", "llm", "ctc", "global_router")


def freeze_all_but(model: nn.Module, parts: list[str]) -> None:
    for name in parts:
        if name not in PARTS:
            raise ConfigError(f"trainable: unknown model part {name!r}; valid parts: {', '.join(PARTS)}")
        if getattr(model, name, None) is None:
            raise ConfigError(f"trainable: the model has no {name!r} (is it enabled in the model config?)")
    for pname, param in model.named_parameters():
        param.requires_grad_(pname.split(".", 1)[0] in parts)


def prepare_model(model: nn.Module, config: TrainConfig, num_accents: int) -> dict:
    """Injects adapters and sets ``requires_grad`` for ``config.mode``; returns a description of the
    setup (stored in every checkpoint) with the parameter counts."""
    mode = config.mode
    adapter_conf = None
    targets: list[str] = []
    if mode == "lm":
        freeze_all_but(model, ["llm"])
    elif mode == "base":
        freeze_all_but(model, config.trainable)
    elif mode == "router":
        if getattr(model, "global_router", None) is None:
            raise ConfigError("mode router needs a model with a global_router (model config: global_router: {...})")
        freeze_all_but(model, ["global_router"])
        count_router_prior(model.global_router, config)
    else:  # adapt
        adapter_conf = adapter_config_for(config, num_accents)
        if adapter_conf is None:
            freeze_all_but(model, config.trainable)
        else:
            if adapter_conf.uses_global_posterior and getattr(model, "global_router", None) is None:
                raise ConfigError(f"adapter routing {adapter_conf.routing!r} needs the global router: "
                                  "enable global_router in the model config and init from the router stage")
            train_router = adapter_conf.uses_global_posterior and config.adapter.train_global_router
            if train_router and not getattr(model, "router_grad", False) and not getattr(model, "accent_weight", 0):
                raise ConfigError("adapter.train_global_router is set but the global router would get no gradient: "
                                  "set accent_weight > 0 (L_accent) or router_grad: true in the model config, "
                                  "or set adapter.train_global_router: false")
            targets = inject(model, adapter_conf, config.adapter.target_modules)
            extra = [model.global_router] if train_router else []
            mark_trainable(model, extra=extra)
    counts = count_parameters(model)
    full_ft = full_finetune_size(model, config)
    uses_router = uses_stage4_router(model, adapter_conf)
    router = getattr(model, "global_router", None)
    info = {
        "mode": mode,
        "system": config.adapter.system if config.adapter else mode,
        "adapter_config": adapter_conf.to_dict() if adapter_conf else None,
        "target_modules": targets,
        "trainable_params": counts["trainable"],
        "total_params": counts["total"],
        "full_ft_params": full_ft,
        # What the results table adds to trainable_params: the router learned in router pre-training (recipe
        # stage 4, with the accent labels) when this system routes by it; retrained: its parameters that
        # this run trains again (already in trainable_params, not to be counted twice).
        "uses_stage4_router": uses_router,
        "router_params_retrained": sum(p.numel() for p in router.parameters() if p.requires_grad)
        if uses_router and router is not None else 0,
    }
    log.info("mode %s: %d trainable of %d parameters%s", mode, counts["trainable"], counts["total"],
             f" ({100.0 * counts['trainable'] / full_ft:.2f}% of full fine-tuning of the adapted module)" if full_ft else "")
    return info


def count_router_prior(router: nn.Module, config: TrainConfig) -> None:
    """A router with a counted prior (the tone-channel router's standard tones) counts it on this stage's
    training transcripts in the CTC units before it learns."""
    if not hasattr(router, "count_prior"):
        return
    if not config.data.ctc_text:
        raise ConfigError("global_router.input: ctc_tones counts its standard tones on the training transcripts in the "
                          "CTC units: set data.ctc_text (e.g. phones)")
    path = Path(config.data.train) / config.data.ctc_text
    router.count_prior(path)
    log.info("router: standard tones counted on %s", path)


def uses_stage4_router(model: nn.Module, adapter_conf) -> bool:
    """Whether an adapted system depends on the global router of router pre-training: its routing uses the
    global posterior (hierarchical, global) and the posterior is the router's, not the oracle's labels."""
    return bool(adapter_conf is not None and adapter_conf.uses_global_posterior
                and not getattr(model, "oracle_routing", False))


def full_finetune_size(model: nn.Module, config: TrainConfig) -> int | None:
    """Parameters of the base modules the system adapts (e.g. the whole projector): the '100%' of the
    results table. For full_ft those are the trainable ones; for a PEFT system, the top-level parts
    its target modules live in, adapter tensors excluded."""
    if config.adapter is None:
        return None
    if config.adapter.system == "full_ft":
        return sum(p.numel() for p in model.parameters() if p.requires_grad)
    parts = {name.split(".")[0] for name in config.adapter.target_modules}
    return sum(p.numel() for name, p in model.named_parameters()
               if name.split(".")[0] in parts and not is_adapter_parameter(name))


def saved_state(model: nn.Module, mode: str, model_conf: dict) -> dict:
    """The tensors a checkpoint of this mode keeps (see the module docstring)."""
    state = model.state_dict()
    if mode == "lm":  # only the LLM trained; the base stage builds the rest afresh
        return {n: t for n, t in state.items() if n.startswith("llm.")}
    if mode == "base":
        # A frozen pre-trained part (Whisper, Qwen2 from name_or_path) is reloaded from there when the
        # model is built: not copying it keeps a 7B-LLM base checkpoint at the projector's size, not 18 GB.
        trained = {n.split(".", 1)[0] for n, p in model.named_parameters() if p.requires_grad}
        skip = pretrained_parts(model_conf) - trained
        # The global router is trained in the router stage: an untrained one here would only pin its shape.
        if "global_router" not in trained:
            skip.add("global_router")
        return {n: t for n, t in state.items() if n.split(".", 1)[0] not in skip}
    keep = {n for n, p in model.named_parameters() if p.requires_grad}
    if getattr(model, "global_router", None) is not None:
        keep |= {n for n in state if n.startswith("global_router.")}
    return {n: t for n, t in state.items() if n in keep}


def load_init(model: nn.Module, paths: list[str]) -> None:
    """Loads earlier stages' checkpoints (full or partial) before this stage's setup."""
    for path in paths:
        state = read_checkpoint(path, fix=INIT_FIX)["model"]
        load_partial_state(model, state, f"init checkpoint {path}",
                           fix="is it from another model config, or an adapter checkpoint given as init?")
        log.info("init: loaded %d tensors from %s", len(state), path)
