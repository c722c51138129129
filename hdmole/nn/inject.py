"""Put HDMoLE layers into any model by module name; freeze, save and restore only the adapters."""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Iterable, Iterator, Mapping, Sequence, Union

import torch
from torch import Tensor, nn

from .config import HDMoLEConfig
from .layer import HDMoLELinear, hdmole_layers

ADAPTER_PREFIX = "hdmole_"
Extra = Union[nn.Module, str]


def _pattern_matches(pattern: str, name: str) -> bool:
    """peft-style: the exact name, a dotted suffix of it ('q_proj' matches 'layers.0.attn.q_proj'),
    or a regular expression matching the whole name."""
    if name == pattern or name.endswith("." + pattern):
        return True
    try:
        return re.fullmatch(pattern, name) is not None
    except re.error:
        return False


def inject(model: nn.Module, config: HDMoLEConfig, target_modules: Sequence[str] | str) -> list[str]:
    """Replace every nn.Linear whose name matches a pattern by an HDMoLELinear; return their names.

    A pattern that matches no nn.Linear is an error (listing some Linear names to choose from), as is
    a pattern that hits a layer already wrapped. The base layers keep their parameters (by reference).
    """
    if isinstance(target_modules, str):
        target_modules = [target_modules]
    if not target_modules:
        raise ValueError("inject: target_modules is empty; give patterns such as ['q_proj', 'v_proj']")
    wrapped_prefixes = tuple(name + "." for name, _ in hdmole_layers(model) if name)
    modules = [
        (name, module)
        for name, module in model.named_modules()
        if name and not name.startswith(wrapped_prefixes)  # never descend into an existing wrapper
    ]
    linear_names = [name for name, module in modules if isinstance(module, nn.Linear)]
    selected: set[str] = set()
    for pattern in target_modules:
        hits = [(name, module) for name, module in modules if _pattern_matches(pattern, name)]
        already = [name for name, module in hits if isinstance(module, HDMoLELinear)]
        if already:
            raise ValueError(f"inject: pattern {pattern!r} hits {already}, which are already HDMoLE layers")
        linear_hits = [name for name, module in hits if isinstance(module, nn.Linear)]
        if not linear_hits:
            other = [f"{name} ({type(module).__name__})" for name, module in hits][:5]
            hint = f"it matches only non-Linear modules {other}" if other else "it matches no module"
            raise ValueError(
                f"inject: target_modules pattern {pattern!r} selects no nn.Linear: {hint}. "
                f"Linear modules in this model include {linear_names[:12]}"
            )
        selected.update(linear_hits)
    for name in sorted(selected):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, HDMoLELinear(getattr(parent, child), config, name=name))
    return sorted(selected)


# ---------------------------------------------------------------------- which parameters are adapters
def is_adapter_parameter(name: str) -> bool:
    """True for a parameter name (as in model.named_parameters()) that belongs to an HDMoLE adapter."""
    return any(part.startswith(ADAPTER_PREFIX) for part in name.split("."))


def adapter_parameters(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """(name, parameter) for the experts, local routers and thresholds of every HDMoLE layer."""
    for name, param in model.named_parameters():
        if is_adapter_parameter(name):
            yield name, param


def _extra_parameters(model: nn.Module, extra: Iterable[Extra], need_in_model: bool) -> dict[str, nn.Parameter]:
    """Resolve `extra` (modules, or parameter-name prefixes of model) to {name: parameter}."""
    by_id = {id(module): name for name, module in model.named_modules()}
    named = dict(model.named_parameters())
    out: dict[str, nn.Parameter] = {}
    for item in extra:
        if isinstance(item, nn.Module):
            prefix = by_id.get(id(item))
            if prefix is None:
                if need_in_model:
                    raise ValueError(
                        f"{type(item).__name__} given in extra is not a submodule of the model; "
                        "save it with its own state_dict()"
                    )
                out.update({f"<extra>.{n}": p for n, p in item.named_parameters()})
                continue
            out.update({(f"{prefix}.{n}" if prefix else n): p for n, p in item.named_parameters()})
        elif isinstance(item, str):
            hits = {n: p for n, p in named.items() if n == item or n.startswith(item + ".")}
            if not hits:
                raise ValueError(f"extra {item!r} names no parameter or module of the model")
            out.update(hits)
        else:
            raise TypeError(f"extra items must be nn.Module or str, got {type(item).__name__}")
    return out


def mark_trainable(model: nn.Module, extra: Iterable[Extra] = ()) -> list[str]:
    """Freeze every parameter except the adapters (and those of `extra` modules / name prefixes).

    Returns the names of the trainable parameters of `model`.
    """
    extra = list(extra)
    for param in model.parameters():
        param.requires_grad_(False)
    adapters = list(adapter_parameters(model))
    extras = _extra_parameters(model, extra, need_in_model=False)
    if not adapters and not extras:
        raise ValueError("mark_trainable: the model has no HDMoLE adapter (call hdmole.nn.inject first)")
    for _, param in adapters:
        param.requires_grad_(True)
    for param in extras.values():
        param.requires_grad_(True)
    return [name for name, param in model.named_parameters() if param.requires_grad]


def count_parameters(model: nn.Module) -> dict[str, int]:
    """{"trainable", "total", "adapter"} parameter counts (shared tensors counted once)."""
    params = list(model.named_parameters())
    return {
        "trainable": sum(p.numel() for _, p in params if p.requires_grad),
        "total": sum(p.numel() for _, p in params),
        "adapter": sum(p.numel() for name, p in params if is_adapter_parameter(name)),
    }


# ---------------------------------------------------------------------- adapter-only checkpoints
def _adapter_tensors(model: nn.Module, extra: Iterable[Extra]) -> dict[str, nn.Parameter]:
    tensors = dict(adapter_parameters(model))
    tensors.update(_extra_parameters(model, extra, need_in_model=True))
    return tensors


def adapter_state_dict(model: nn.Module, extra: Iterable[Extra] = ()) -> "OrderedDict[str, Tensor]":
    """A snapshot (cloned, detached) of the adapter parameters, keyed by their names in `model`."""
    tensors = _adapter_tensors(model, extra)
    if not tensors:
        raise ValueError("adapter_state_dict: the model has no HDMoLE adapter (call hdmole.nn.inject first)")
    return OrderedDict((name, param.detach().clone()) for name, param in tensors.items())


def load_adapter_state_dict(model: nn.Module, state_dict: Mapping[str, Tensor], extra: Iterable[Extra] = ()) -> None:
    """Load what adapter_state_dict saved; missing, unexpected or mis-shaped keys are an error."""
    tensors = _adapter_tensors(model, extra)
    missing = sorted(set(tensors) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(tensors))
    mismatched = [
        f"{name}: checkpoint {tuple(state_dict[name].shape)} vs model {tuple(param.shape)}"
        for name, param in tensors.items()
        if name in state_dict and tuple(state_dict[name].shape) != tuple(param.shape)
    ]
    if missing or unexpected or mismatched:
        problems = []
        if missing:
            problems.append(f"missing {len(missing)} key(s), e.g. {missing[:5]}")
        if unexpected:
            problems.append(f"unexpected {len(unexpected)} key(s), e.g. {unexpected[:5]}")
        if mismatched:
            problems.append(f"{len(mismatched)} shape mismatch(es), e.g. {mismatched[:3]}")
        raise ValueError(
            "load_adapter_state_dict: the checkpoint does not fit this model: " + "; ".join(problems)
            + ". Build the model with the same HDMoLEConfig (rank, experts, routing, gating) and "
            "target_modules as the run that saved it."
        )
    with torch.no_grad():
        for name, param in tensors.items():
            param.copy_(state_dict[name].to(device=param.device, dtype=param.dtype))
