"""The ruff configuration of pyproject.toml holds over the whole repository (ruff respects .gitignore, so
generated data and the venv are not checked), and .gitignore keeps what a run generates out of `git status`."""

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


def test_generated_paths_are_ignored_also_as_symlinks(tmp_path):
    """A recipe's data, dump and exp (often links to a larger disk, as in Kaldi and ESPnet) and a shared
    tools/venv stay out of `git status` whether they are directories or symlinks; sources named like them
    (the hdmole.data package, docs/data_dirs.md) stay tracked."""
    (tmp_path / "target").mkdir()
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / ".gitignore").write_text((ROOT / ".gitignore").read_text())
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    generated = ["egs/r/data", "egs/r/dump", "egs/r/exp", "egs/r/exp_lr4e-3", "tools/venv", "tools/kenlm"]
    for i, rel in enumerate(generated):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        if i % 2:
            (repo / rel).mkdir()
            (repo / rel / "x.txt").write_text("generated\n")
        else:
            (repo / rel).symlink_to(tmp_path / "target", target_is_directory=True)
    for rel in ["hdmole/data/table.py", "docs/data_dirs.md", "utils/data_dir_lib.sh"]:
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text("source\n")
    status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=all"],
                            capture_output=True, text=True, check=True).stdout.split("\n")
    untracked = sorted(line[3:] for line in status if line.startswith("??"))
    assert untracked == [".gitignore", "docs/data_dirs.md", "hdmole/data/table.py", "utils/data_dir_lib.sh"]
