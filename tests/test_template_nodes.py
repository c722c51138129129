"""egs/TEMPLATE/hdmole.sh with several nodes: nothing runs on node 0 alone between two multi-node training
stages. The router evaluation, which followed stage 4's training on node 0 while the other nodes went on to
stage 5's torchrun (whose rendezvous then timed out), moves to stage 6 with several nodes; on one node it
stays in stage 4. Run with stand-in ``python`` and ``torchrun`` commands that record their arguments."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORDER = """#!/usr/bin/env bash
echo "$(basename "$0") $*" >>"$CALLS"
"""


def _template(tmp_path: Path, *options: str) -> list[str]:
    recipe = tmp_path / "recipe"
    (recipe / "exp" / "base").mkdir(parents=True)
    (recipe / "exp" / "router").mkdir()
    (recipe / "exp" / "base" / "best.pt").write_text("")
    (recipe / "exp" / "router" / "best.pt").write_text("")
    (recipe / "dump" / "test_all").mkdir(parents=True)
    (recipe / "dump" / "test_all" / "utt2num_frames").write_text("")
    (recipe / "conf").mkdir()
    (recipe / "utils").symlink_to(ROOT / "utils")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("python", "torchrun"):
        (bin_dir / name).write_text(RECORDER)
        (bin_dir / name).chmod(0o755)
    calls = tmp_path / "calls"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls), "LC_ALL": "C"}
    result = subprocess.run(["bash", str(ROOT / "egs" / "TEMPLATE" / "hdmole.sh"), "--stage", "4", "--stop-stage", "4",
                             "--use-cmvn", "false", *options], cwd=recipe, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    return calls.read_text().splitlines()


def test_one_node_evaluates_the_router_right_after_training_it(tmp_path):
    calls = _template(tmp_path)
    assert calls[0].startswith("python -m hdmole.bin.train --config conf/router.yaml")
    assert calls[1].startswith("python -m hdmole.bin.eval_router")


def test_several_nodes_leave_the_router_evaluation_to_stage_6(tmp_path):
    for rank in ("0", "1"):
        calls = _template(tmp_path / rank, "--num-nodes", "2", "--node-rank", rank, "--master-addr", "node01")
        assert len(calls) == 1 and calls[0].startswith(f"torchrun --nnodes 2 --nproc_per_node 1 --node_rank {rank}")
