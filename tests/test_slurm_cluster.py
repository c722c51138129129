"""utils/slurm.pl against a real SLURM: a private one-node cluster (tests/slurm_cluster.py, Debian's
slurm-wlm) runs job arrays submitted the way slurm.pl submits them, and the decoding of a tiny model split
over 3 SLURM jobs and merged, as the recipes' `--decode-nj 3 --decode-cmd utils/slurm.pl` does.
(tests/test_job_runners.py tests slurm.pl's job script and options with a fake sbatch.)"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
from slurm_cluster import slurm_cluster_fixture  # noqa: F401 (the slurm_cluster fixture)

pytestmark = pytest.mark.slow  # each sbatch --wait takes a few seconds; the decoding test loads torch 4 times
ROOT = Path(__file__).resolve().parent.parent
UTILS = ROOT / "utils"
HANG = 900  # only against a hang: a job array here takes seconds, minutes on the loaded shared machine


def run(cluster, *args, cwd, env=None):
    return cluster.run(*args, cwd=cwd, timeout=HANG, env={**cluster.env, "LC_ALL": "C", **(env or {})})


def test_sbatch_wait_parsable_prints_the_job_id_and_fails_with_a_failed_task(slurm_cluster, tmp_path):
    """What slurm.pl (and tests/test_job_runners.py's fake sbatch) assume of `sbatch --wait --parsable`."""
    script = tmp_path / "job.sh"
    script.write_text("#!/usr/bin/env bash\necho task $SLURM_ARRAY_TASK_ID of $SLURM_ARRAY_JOB_ID\n"
                      "case $SLURM_ARRAY_TASK_ID in 2) exit 3 ;; 3) exit 2 ;; esac\n")
    r = run(slurm_cluster, "sbatch", "--wait", "--parsable", "--array=1-3", f"--output={tmp_path}/o.%a.out", script,
            cwd=tmp_path)
    # Non-zero when a task failed: the exit code of one of the failed tasks (Slurm 22.05 returned 3 or 2 here, not
    # always the highest; slurm.pl reads the jobs' logs, not this code).
    assert r.returncode in (2, 3), (r.stdout, r.stderr, slurm_cluster.logs())
    assert re.fullmatch(r"\d+\n", r.stdout), r.stdout  # the job id alone (no ';cluster' on a single cluster)
    job = r.stdout.strip()
    for i in (1, 2, 3):
        assert (tmp_path / f"o.{i}.out").read_text() == f"task {i} of {job}\n"


def test_slurm_pl_runs_a_job_array_with_a_log_per_job(slurm_cluster, tmp_path):
    # The built-in rules' sbatch arguments (--mem-per-cpu, --cpus-per-task, --time) are accepted by a real sbatch.
    r = run(slurm_cluster, UTILS / "slurm.pl", "--mem", "100M", "--num-threads", "1", "--time", "10",
            "JOB=1:3", "log/x.JOB.log", "echo", "JOB", cwd=tmp_path)
    assert r.returncode == 0, (r.stderr, slurm_cluster.logs())
    job = (tmp_path / "log/q/x.sbatch").read_text().strip()  # what sbatch --parsable printed: the array's id
    assert re.fullmatch(r"\d+", job), job
    for i in (1, 2, 3):
        lines = (tmp_path / f"log/x.{i}.log").read_text().splitlines()
        assert lines[0] == f"# echo {i}" and f"(SLURM job {job}_{i})" in lines[1], lines
        assert lines[3] == str(i) and lines[-1].startswith("# Ended (code 0)"), lines
        assert (tmp_path / f"log/q/x.{i}.out").read_text() == ""  # SLURM had nothing to say


def test_slurm_pl_names_the_failed_and_the_cancelled_jobs(slurm_cluster, tmp_path):
    # Job 2 fails; job 3 is cancelled by SLURM while it runs (as at a time limit): its log never ends.
    # (The cancelling is in a script: slurm.pl replaces JOB in the command, SLURM_ARRAY_JOB_ID included.)
    (tmp_path / "cancel_me.sh").write_text("scancel ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}; sleep 30\n")
    cmd = "case JOB in 2) echo boom; exit 4 ;; 3) bash cancel_me.sh ;; esac; echo fine"
    r = run(slurm_cluster, UTILS / "slurm.pl", "JOB=1:3", "log/f.JOB.log", cmd, cwd=tmp_path)
    assert r.returncode == 1, (r.stderr, slurm_cluster.logs())
    assert "slurm.pl: 2 / 3 failed (jobs 2 3), log is in log/f.*.log" in r.stderr
    assert "the end of log/f.2.log" in r.stderr and "boom" in r.stderr
    assert "# Ended (code 4)" in (tmp_path / "log/f.2.log").read_text()
    assert "Ended" not in (tmp_path / "log/f.3.log").read_text()
    assert "# Ended (code 0)" in (tmp_path / "log/f.1.log").read_text()
    # What SLURM said about the cancelled job is shown too.
    assert "SLURM's output of job 3 (log/q/f.3.out)" in r.stderr and "CANCELLED" in r.stderr


def test_decoding_split_over_slurm_jobs_gives_the_hypotheses_of_one_job(slurm_cluster, tmp_path):
    """What egs/TEMPLATE/hdmole.sh's decode_jobs runs for `--decode-nj 3 --decode-cmd utils/slurm.pl`
    (split_data.sh --per-utt, one job array through slurm.pl, merge_decode), on the tiny model of
    tests/test_decode_cli.py: the same hypotheses, byte for byte, as one job through run.pl."""
    from decode_fixtures import UTTS, make_decode_setup  # here: torch takes long to import on a loaded machine

    (tmp_path / "model").mkdir()
    setup = make_decode_setup(tmp_path / "model")
    data, exp = setup["data"], tmp_path / "exp"
    decode = [sys.executable, "-m", "hdmole.bin.decode", "--config", setup["config"],
              "--checkpoint", setup["root"] / "base.pt", "--adapter", setup["root"] / "adapter.pt",
              "--accents", setup["root"] / "accents.txt", "--beam", "2", "--batch-frames", "200", "--threads", "1"]
    env = {"PYTHONPATH": f"{ROOT}:{os.environ.get('PYTHONPATH', '')}", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}

    r = run(slurm_cluster, UTILS / "run.pl", "JOB=1:1", exp / "log/one.JOB.log", *decode,
            "--data", data, "--out", exp / "decode_one", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    r = run(slurm_cluster, UTILS / "split_data.sh", "--per-utt", data, 3, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run(slurm_cluster, UTILS / "slurm.pl", "--mem", "500M", "--num-threads", "1", "JOB=1:3",
            exp / "log/decode.JOB.log", *decode, "--data", data / "split3utt/JOB",
            "--out", exp / "decode_test/split3/JOB", cwd=tmp_path, env=env)
    assert r.returncode == 0, (r.stderr, slurm_cluster.logs())
    r = run(slurm_cluster, sys.executable, "-m", "hdmole.bin.merge_decode", "--data", data,
            "--out", exp / "decode_test", *(exp / f"decode_test/split3/{j}" for j in (1, 2, 3)),
            cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr

    one = (exp / "decode_one/text").read_bytes()
    assert [line.split()[0] for line in one.decode().splitlines()] == sorted(UTTS)
    assert (exp / "decode_test/text").read_bytes() == one
    assert "nj 3\n" in (exp / "decode_test/rtf").read_text()
    job = (exp / "log/q/decode.sbatch").read_text().strip()
    for j in (1, 2, 3):
        log = (exp / f"log/decode.{j}.log").read_text()
        assert f"(SLURM job {job}_{j})" in log and "# Ended (code 0)" in log
        assert len((exp / f"decode_test/split3/{j}/text").read_text().splitlines()) == 1  # one utterance each
