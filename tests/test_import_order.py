"""The one-way import order of docs/layout.md, enforced by parsing every module's imports (ast): lazy
imports inside functions count too, since they are dependencies all the same.

    bin -> train, decode, report -> models -> nn        bin, train -> data, text
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "hdmole"
# What each part of hdmole must not import. `nn` is a library usable on any PyTorch model and the two
# top-level modules are leaves: they import nothing else of hdmole. Nothing but bin imports bin.
EVERYTHING = {"nn", "data", "text", "models", "train", "decode", "report", "bin", "files", "logs"}
FORBIDDEN = {
    "nn": EVERYTHING - {"nn"},
    "files": EVERYTHING - {"files"},
    "logs": EVERYTHING - {"logs"},
    "data": {"models", "train", "decode", "report", "bin"},
    "text": {"models", "train", "decode", "report", "bin"},
    "models": {"train", "decode", "report", "bin"},
    "decode": {"train", "report", "bin"},
    "train": {"decode", "report", "bin"},
    "report": {"train", "decode", "bin"},
}


def imported_parts(source: str, module: str) -> set[str]:
    """The hdmole parts (``nn``, ``data``, ...) that ``source``, the code of module ``module`` (e.g.
    ``hdmole.nn.layer``), imports, relative imports resolved."""
    package = module.split(".")[:-1]  # hdmole.nn for hdmole.nn.layer and for hdmole.nn.__init__
    parts = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            # `from .. import x` climbs level - 1 packages; `from hdmole import models` imports a part too.
            base = package[: len(package) - node.level + 1] if node.level else []
            origin = ".".join([*base, *([node.module] if node.module else [])])
            names = [f"{origin}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            pieces = name.split(".")
            if pieces[0] == "hdmole" and len(pieces) > 1:
                parts.add(pieces[1])
    return parts


def part_of(path: Path) -> tuple[str, str]:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    return relative.parts[1], ".".join(relative.parts)


def test_imports_point_one_way():
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        part, module = part_of(path)
        if path.parent == PACKAGE:  # hdmole/files.py, hdmole/logs.py, hdmole/__init__.py
            part = path.stem
        bad = imported_parts(path.read_text(encoding="utf-8"), module) & FORBIDDEN.get(part, set())
        violations += [f"{path.relative_to(PACKAGE.parent)} imports hdmole.{name}" for name in sorted(bad)]
    assert not violations, "imports against docs/layout.md's order:\n" + "\n".join(violations)


def test_the_check_sees_every_kind_of_import():
    source = """
import hdmole.train.config
from hdmole import models
from ..decode import search
def lazy():
    from hdmole.bin import report
"""
    assert imported_parts(source, "hdmole.nn.layer") == {"train", "models", "decode", "bin"}
    assert imported_parts("from .gating import x\nfrom . import router\n", "hdmole.nn.layer") == {"nn"}
    assert imported_parts("from . import layer\n", "hdmole.nn.__init__") == {"nn"}
