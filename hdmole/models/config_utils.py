"""Small helpers for YAML-style config dicts."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import yaml


def check_keys(conf: dict, valid: Iterable[str], where: str) -> None:
    """Raise a ValueError naming every unknown key of ``conf`` and the valid ones."""
    if not isinstance(conf, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(conf).__name__}")
    valid = set(valid)
    unknown = sorted(set(conf) - valid)
    if unknown:
        raise ValueError(
            f"{where}: unknown config key(s) {', '.join(repr(k) for k in unknown)}; "
            f"valid keys are: {', '.join(sorted(valid))}"
        )


def load_yaml_mapping(path: str | os.PathLike) -> dict:
    """A YAML file whose top level is a mapping; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return raw


def resolve_model_conf(model_conf, config_path: str | os.PathLike):
    """A training config's ``model``: a dict as is, or the YAML it names (relative to the working
    directory, else to the training config's folder) read in."""
    if not isinstance(model_conf, str):
        return model_conf
    model_path = Path(model_conf)
    if not model_path.is_absolute() and not model_path.exists():
        model_path = Path(config_path).parent / model_path
    if not model_path.is_file():
        raise FileNotFoundError(f"{config_path}: model config {model_conf} does not exist")
    return load_yaml_mapping(model_path)


# Sizes the libraries would reject with a message that names no key ("math domain error" from ESPnet's
# positional encoding, an assertion on n_feat % n_head, a transformers validation error): checked here.
CONFORMER_SIZES = ("input_size", "output_size", "attention_heads", "linear_units", "num_blocks", "cnn_module_kernel",
                   "frame_stack")
QWEN2_SIZES = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
               "max_position_embeddings", "vocab_size")


def check_sizes(conf: dict) -> None:
    """Every size of the Conformer and of a Qwen2 built from a config is a whole number >= 1, and the widths
    divide into the attention heads; a ValueError naming the key and the value otherwise."""
    parts = []
    if conf["encoder"].get("type") == "conformer":
        parts.append(("encoder", conf["encoder"], CONFORMER_SIZES, ("output_size", "attention_heads")))
    if isinstance(conf["llm"].get("config"), dict):
        parts.append(("llm.config", conf["llm"]["config"], QWEN2_SIZES, ("hidden_size", "num_attention_heads")))
    for where, part, keys, (width, heads) in parts:
        for key in keys:
            value = part.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"model config: {where}.{key} must be a whole number >= 1, got {value!r}")
        if part.get(width) and part.get(heads) and part[width] % part[heads]:
            raise ValueError(f"model config: {where}.{width} ({part[width]}) must be a multiple of {where}.{heads} "
                             f"({part[heads]}): each attention head gets {width} / {heads} dimensions")
    llm = conf["llm"].get("config")
    if isinstance(llm, dict) and llm.get("num_attention_heads") and llm.get("num_key_value_heads") \
            and llm["num_attention_heads"] % llm["num_key_value_heads"]:
        raise ValueError(f"model config: llm.config.num_attention_heads ({llm['num_attention_heads']}) must be a "
                         f"multiple of llm.config.num_key_value_heads ({llm['num_key_value_heads']})")
