"""Small helpers for YAML-style config dicts."""

from __future__ import annotations

from collections.abc import Iterable


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
