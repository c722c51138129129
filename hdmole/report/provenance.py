"""Where a RESULTS.md came from: the code (git commit, and whether the tree had uncommitted changes), the
configs each system was trained with, and the machine, as icefall's and ESPnet's RESULTS.md record them."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path

# The checkout this package runs from (recipes run from a checkout, not an installed wheel).
REPO_ROOT = Path(__file__).resolve().parents[2]
# Training stages whose configs the report lists besides the table's systems, when their exp dirs exist.
EARLIER_STAGES = ("lm", "base", "router")


def machine_description() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()} cores ({cpu}), {gpu}, Python {platform.python_version()}, torch {torch.__version__}"


def git_state(root: Path = REPO_ROOT, outputs: tuple = ()) -> str:
    """``commit <hash>`` and whether tracked files differ from it (untracked files do not count, as in
    ``git describe --dirty``); says so when the code is not a git checkout. ``outputs``: files and dirs the
    caller is writing (a committed RESULTS.md and its plots, rewritten by the run): their changes are the
    run's results, not changed code, and do not count."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        top = Path(git("rev-parse", "--show-toplevel").strip()).resolve()
        changed = git("status", "--porcelain", "--untracked-files=no").splitlines()
    except (OSError, subprocess.CalledProcessError):
        return f"not a git checkout ({root})"
    own = [Path(p).resolve() for p in outputs]
    # porcelain v1: "XY path" or "XY old -> new"
    changed = [line for line in changed
               if not any(top / line[3:].split(" -> ")[-1] == o or o in (top / line[3:].split(" -> ")[-1]).parents
                          for o in own)]
    if not changed:
        return f"commit `{commit}` (clean: no uncommitted changes)"
    return f"commit `{commit}` with uncommitted changes to {len(changed)} tracked file(s) (dirty)"


def _shown(path: str) -> str:
    """A config path relative to the repository root when it is inside it (the same on every machine)."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return path


def config_list(exp_dir: Path, systems: list[str]) -> str:
    """One line per trained exp dir (the earlier stages, then the table's systems): the config files it was
    composed from, from its train_summary.json (``config_sources``; older ones only have ``config_file``).
    A list, not a table, so that the header holds it without a second table before the results."""
    lines = []
    for name in [*EARLIER_STAGES, *(s for s in systems if s not in EARLIER_STAGES)]:
        summary_file = exp_dir / name / "train_summary.json"
        if not summary_file.is_file():
            continue
        summary = json.loads(summary_file.read_text(encoding="utf-8"))
        sources = summary.get("config_sources") or [summary.get("config_file", "?")]
        lines.append(f"- {name}: {' + '.join(f'`{_shown(s)}`' for s in sources)}")
    return "\n".join(lines) + "\n" if lines else ""
