"""The ruff configuration of pyproject.toml holds over the whole repository (ruff respects .gitignore, so
generated data and the venv are not checked)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_finds_nothing():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "."],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, (f"ruff check (pyproject.toml's [tool.ruff]) failed; fix these, or run "
                                    f"`ruff check --fix` for the fixable ones:\n{result.stdout}{result.stderr}")
