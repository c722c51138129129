"""RESULTS.md says where it came from: the commit (and a dirty tree), and each exp dir's config files."""

from __future__ import annotations

import json
import subprocess

from hdmole.report import provenance


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_git_state_names_the_commit_and_a_dirty_tree(tmp_path):
    assert provenance.git_state(tmp_path).startswith("not a git checkout")
    git(tmp_path, "init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    git(tmp_path, "add", "a.py")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    commit = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    (tmp_path / "notes.txt").write_text("untracked files do not make the tree dirty\n")
    assert provenance.git_state(tmp_path) == f"commit `{commit}` (clean: no uncommitted changes)"
    (tmp_path / "a.py").write_text("x = 2\n")
    assert provenance.git_state(tmp_path) == f"commit `{commit}` with uncommitted changes to 1 tracked file(s) (dirty)"


def test_the_reports_own_committed_outputs_do_not_make_the_tree_dirty(tmp_path):
    """A recipe commits its RESULTS.md and plots; the run that rewrites them has not changed the code."""
    git(tmp_path, "init", "-q")
    (tmp_path / "results").mkdir()
    for name in ("a.py", "RESULTS.md", "results/plot.png"):
        (tmp_path / name).write_text("1\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    commit = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    (tmp_path / "RESULTS.md").write_text("2\n")
    (tmp_path / "results" / "plot.png").write_text("2\n")
    outputs = (tmp_path / "RESULTS.md", tmp_path / "results")
    assert provenance.git_state(tmp_path, outputs) == f"commit `{commit}` (clean: no uncommitted changes)"
    assert provenance.git_state(tmp_path).endswith("2 tracked file(s) (dirty)")
    (tmp_path / "a.py").write_text("2\n")
    assert provenance.git_state(tmp_path, outputs).endswith("1 tracked file(s) (dirty)")


def test_config_list_gives_each_exp_dir_configs_from_the_repository_root(tmp_path):
    root = provenance.REPO_ROOT
    summaries = {
        "base": {"config_sources": [str(root / "egs/mini_accent/conf/base.yaml")]},
        "hdmole": {"config_sources": [str(root / "egs/mini_accent/conf/adapt.yaml"), str(root / "conf/systems/hdmole.yaml")]},
        "old": {"config_file": "conf/systems/old.yaml"},  # written before config_sources existed
    }
    for name, summary in summaries.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "train_summary.json").write_text(json.dumps(summary))
    lines = provenance.config_list(tmp_path, ["base", "old", "hdmole", "not_trained"]).splitlines()
    assert lines == ["- base: `egs/mini_accent/conf/base.yaml`",
                     "- old: `conf/systems/old.yaml`",
                     "- hdmole: `egs/mini_accent/conf/adapt.yaml` + `conf/systems/hdmole.yaml`"]
