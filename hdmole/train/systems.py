"""The comparison systems (the rows of the results table): where they are defined, and in what order.

A system is defined once for every recipe, at the top level: ``conf/systems/<system>.yaml`` holds its
method (``adapter``: system kind, routing, gating, ...; ``trainable`` for full fine-tuning). A recipe may
add ``<recipe>/conf/systems/<system>.yaml`` with what it sets differently for that one system (or a
system of its own). ``conf/systems/table_order.txt`` gives the table order; a system it does not list
comes after the listed ones, in name order, so adding a system is adding one YAML file.
How a training config is composed from these files: ``hdmole.train.config`` and docs/configs.md.

This module only looks at file names (no YAML, no torch), so that the recipes' shell can ask it cheaply
(``python -m hdmole.bin.systems``).
"""

from __future__ import annotations

import os
from pathlib import Path

# The top-level conf/ of the repository this package lives in (recipes run from a checkout).
SHARED_CONF = Path(__file__).resolve().parents[2] / "conf"
TABLE_ORDER = "table_order.txt"


class UnknownSystemError(ValueError):
    """A system name with no definition: the message names where it was looked for and the known ones."""


def _names(folder: Path) -> set[str]:
    return {path.stem for path in folder.glob("*.yaml")} if folder.is_dir() else set()


def known_systems(recipe_conf: str | os.PathLike | None = None, shared_conf: Path | None = None) -> list[str]:
    """Every system defined at the top level or in the recipe's conf dir, in table order."""
    shared_conf = shared_conf or SHARED_CONF
    names = _names(shared_conf / "systems")
    if recipe_conf is not None:
        names |= _names(Path(recipe_conf) / "systems")
    order_file = shared_conf / "systems" / TABLE_ORDER
    lines = order_file.read_text(encoding="utf-8").splitlines() if order_file.is_file() else []
    listed = [line.split("#", 1)[0].strip() for line in lines]
    ordered = [name for name in listed if name in names]
    return ordered + sorted(names - set(ordered))


def system_files(name: str, recipe_conf: str | os.PathLike | None = None,
                 shared_conf: Path | None = None) -> list[Path]:
    """The files that define system ``name``, in the order they apply: the top-level definition, then
    the recipe's own. At least one must exist."""
    shared_conf = shared_conf or SHARED_CONF
    candidates = [shared_conf / "systems" / f"{name}.yaml"]
    if recipe_conf is not None:
        candidates.append(Path(recipe_conf) / "systems" / f"{name}.yaml")
    found = [path for path in candidates if path.is_file()]
    if not found:
        known = known_systems(recipe_conf, shared_conf)
        raise UnknownSystemError(
            f"unknown system {name!r}: no {' or '.join(str(path) for path in candidates)}; "
            f"known systems: {' '.join(known) or '(none)'}. Fix the name, or define the system in "
            f"{shared_conf / 'systems'} (docs/configs.md)"
        )
    return found
