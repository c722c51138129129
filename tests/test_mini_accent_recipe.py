"""egs/mini_accent/run.sh end to end with its fast config (tiny corpus, tiny model): every stage writes
what it should, a finished stage is skipped, a stage without its inputs names the stage to run first."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the whole recipe runs once for the module (minutes)
RECIPE = Path(__file__).resolve().parent.parent / "egs" / "mini_accent"
SYSTEMS = ["lora", "hdmole"]


def run(*args, **dirs):
    cmd = ["./run.sh", "--fast", "true", *map(str, args)]
    for key, value in dirs.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(cmd, cwd=RECIPE, capture_output=True, text=True, env=env, timeout=1500)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    root = tmp_path_factory.mktemp("mini_accent")
    dirs = {"data_dir": root / "data", "dump_dir": root / "dump", "exp_dir": root / "exp"}
    result = run("--systems", " ".join(SYSTEMS), **dirs)
    assert result.returncode == 0, result.stderr[-4000:]
    return dirs


def test_every_stage_writes_its_outputs(recipe):
    data, exp = recipe["data_dir"], recipe["exp_dir"]
    accents = (data / "accents.txt").read_text().split()
    assert accents[0] == "Mandarin" and len(accents) == 5
    test_sets = ["test_std"] + [f"test_{a}" for a in accents[1:]]
    for name in ["train_std", "train_accent", "dev_std", "dev_accent", *test_sets]:
        check = subprocess.run([str(RECIPE / "utils" / "validate_data_dir.sh"), "--no-feats", "false", "--accents",
                                str(data / "accents.txt"), str(data / name)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
    assert (data / "lang" / "char.model").is_file()
    for system in ["lm", "base", "router", *SYSTEMS]:
        assert (exp / system / "best.pt").is_file(), system
    for system in ["base", *SYSTEMS]:
        for name in test_sets:
            utts = (data / name / "text").read_text().splitlines()
            hyps = (exp / system / f"decode_{name}" / "text").read_text().splitlines()
            assert [h.split(" ", 1)[0] for h in hyps] == [u.split(" ", 1)[0] for u in utts]
            assert (exp / system / f"decode_{name}" / "cer.json").is_file()
    results = (exp / "RESULTS.md").read_text()
    for system in ["base", *SYSTEMS]:
        assert f"| {system} |" in results
    assert (exp / "results" / "routing_hdmole.png").is_file()
    assert "Made by" in results and "./run.sh --fast true" in results  # the recipe command, quoted
    stages = [line.split("\t")[0] for line in (exp / "stage_times.tsv").read_text().splitlines()]
    assert stages == [str(s) for s in range(8)]


def test_finished_stage_is_skipped(recipe):
    result = run("--stage", 3, "--stop-stage", 3, **recipe)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "already trained" in result.stdout + result.stderr


def test_stage_without_inputs_names_the_stage_to_run(recipe, tmp_path):
    result = run("--stage", 4, "--stop-stage", 4, data_dir=recipe["data_dir"], dump_dir=recipe["dump_dir"],
                 exp_dir=tmp_path / "empty_exp")
    assert result.returncode != 0
    assert "base/best.pt is missing: run stage 3 first" in result.stderr


def test_unknown_system_is_an_error(recipe):
    result = run("--systems", "hdmole bogus", "--stage", 5, **recipe)
    assert result.returncode != 0 and "unknown system 'bogus'" in result.stderr


def test_report_for_one_system_keeps_the_others(recipe):
    """`--systems hdmole` after a full run (one more system, or a rerun of one) must not shrink the table."""
    result = run("--stage", 7, "--systems", "hdmole", **recipe)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line.split("|")[1].strip() for line in (recipe["exp_dir"] / "RESULTS.md").read_text().splitlines()
            if line.startswith("| ") and not line.startswith("| system")]
    assert rows[: 1 + len(SYSTEMS)] == ["base", *SYSTEMS]  # table order, lora kept although not requested
