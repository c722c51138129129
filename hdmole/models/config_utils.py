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
