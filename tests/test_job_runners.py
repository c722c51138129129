"""utils/run.pl, utils/slurm.pl (the job script it writes, and its runs through a fake sbatch that executes
the array tasks here) and utils/split_data.sh. A real SLURM is tested in tests/test_slurm_cluster.py."""
import os
import re
import subprocess
from pathlib import Path

import pytest

UTILS = Path(__file__).resolve().parent.parent / "utils"

# A stand-in for `sbatch --wait --array=S-E[%M] --output=PAT ... script`: records its arguments and runs
# every array task in turn, here, the way SLURM would (SLURM_ARRAY_TASK_ID set, output to PAT with %a
# replaced), then exits with the highest task exit code (a real `sbatch --wait` exits with the code of one of
# the failed tasks, not always the highest: tests/test_slurm_cluster.py; slurm.pl reads the logs instead).
FAKE_SBATCH = r"""#!/usr/bin/env bash
printf '%s\n' "$@" >"$FAKE_SBATCH_ARGS"
array=""; output=""
for a in "$@"; do
  case "$a" in --array=*) array=${a#--array=} ;; --output=*) output=${a#--output=} ;; esac
done
script=${!#}
range=${array%%%*}; start=${range%-*}; end=${range#*-}
echo 4242
rc=0
for ((i = start; i <= end; i++)); do
  SLURM_ARRAY_TASK_ID=$i SLURM_ARRAY_JOB_ID=4242 bash "$script" >"${output//%a/$i}" 2>&1 || { r=$?; [ $r -gt $rc ] && rc=$r; }
done
exit $rc
"""


def run(*args, cwd=None, env=None):
    env = {**os.environ, "LC_ALL": "C", **(env or {})}
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd, env=env)


@pytest.fixture
def fake_sbatch(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH)
    (bin_dir / "sbatch").chmod(0o755)
    args_file = tmp_path / "sbatch.args"
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_SBATCH_ARGS": str(args_file)}, args_file


# ---------------------------------------------------------------- run.pl
def test_run_pl_ignores_cluster_options_and_takes_one_job_index(tmp_path):
    r = run(UTILS / "run.pl", "--mem", "4G", "--gpu", "1", "--num-threads", "2", "--time", "1:00:00",
            "JOB=3", tmp_path / "log/a.JOB.log", "echo", "job JOB")
    assert r.returncode == 0, r.stderr
    assert "job 3\n" in (tmp_path / "log/a.3.log").read_text()
    assert not (tmp_path / "log/a.1.log").exists()


FAKE_NVIDIA_SMI = """#!/bin/sh
[ "$1" = -L ] || exit 2
for i in 0 1 2 3; do echo "GPU $i: NVIDIA H100 80GB HBM3 (UUID: GPU-000$i)"; done
"""
NO_DRIVER_NVIDIA_SMI = "#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate with the driver' >&2\nexit 9\n"


def _job_cards(tmp_path, nvidia_smi: str, cuda_visible: str | None, *args) -> list[str]:
    """The CUDA_VISIBLE_DEVICES each job of run.pl --gpu ... JOB=1:4 saw ('unset' when it had none)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "nvidia-smi").write_text(nvidia_smi)
    (bin_dir / "nvidia-smi").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env.update(PATH=f"{bin_dir}:{os.environ['PATH']}", LC_ALL="C")
    if cuda_visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = cuda_visible
    r = subprocess.run([str(UTILS / "run.pl"), *args, "JOB=1:4", str(tmp_path / "g.JOB.log"),
                        'echo "cards=${CUDA_VISIBLE_DEVICES-unset}"'], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    return [re.search(r"^cards=(.*)$", (tmp_path / f"g.{j}.log").read_text(), re.M).group(1) for j in range(1, 5)]


def test_run_pl_gpu_gives_every_job_its_own_card(tmp_path):
    # the cards nvidia-smi -L lists, one per job
    assert _job_cards(tmp_path, FAKE_NVIDIA_SMI, None, "--gpu", "1") == ["0", "1", "2", "3"]
    # the caller's CUDA_VISIBLE_DEVICES wins (a scheduler gave it these cards)
    assert _job_cards(tmp_path, FAKE_NVIDIA_SMI, "4,5,6,7", "--gpu", "1") == ["4", "5", "6", "7"]
    # more jobs than cards: round robin; two cards a job
    assert _job_cards(tmp_path, FAKE_NVIDIA_SMI, "2,3", "--gpu", "1") == ["2", "3", "2", "3"]
    assert _job_cards(tmp_path, FAKE_NVIDIA_SMI, None, "--gpu=2") == ["0,1", "2,3", "0,1", "2,3"]
    assert "# CUDA_VISIBLE_DEVICES=2,3" in (tmp_path / "g.2.log").read_text()  # the log says which


def test_run_pl_gpu_sets_nothing_without_cards_or_without_gpu(tmp_path):
    assert _job_cards(tmp_path, NO_DRIVER_NVIDIA_SMI, None, "--gpu", "1") == ["unset"] * 4
    assert _job_cards(tmp_path, FAKE_NVIDIA_SMI, None) == ["unset"] * 4  # no --gpu: the jobs are CPU jobs
    assert _job_cards(tmp_path, FAKE_NVIDIA_SMI, None, "--gpu", "0") == ["unset"] * 4
    r = run(UTILS / "run.pl", "--gpu", "one", tmp_path / "x.log", "true")
    assert r.returncode == 1 and "--gpu takes a number" in r.stderr


def test_run_pl_names_every_failed_job(tmp_path):
    r = run(UTILS / "run.pl", "JOB=1:4", tmp_path / "f.JOB.log", "test $((JOB % 2)) -eq 0 || exit 1")
    assert r.returncode == 1
    assert "2 / 4 failed (jobs 1 3)" in r.stderr and f"the end of {tmp_path}/f.1.log" in r.stderr


# ---------------------------------------------------------------- slurm.pl: the job script
def test_slurm_pl_dry_run_writes_the_job_script_and_maps_the_options(tmp_path):
    r = run(UTILS / "slurm.pl", "--dry-run", "--mem", "4G", "--gpu", "2", "--num-threads", "4", "--time", "2:00:00",
            "--max-jobs-run", "3", "JOB=1:5", "exp/log/decode.JOB.log", "python", "-m", "x", "--part", "JOB",
            "--name", "a b", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    command = r.stdout.split()
    assert command[:2] == ["sbatch", "--export=ALL"]
    for arg in ["--wait", "--array=1-5%3", "--job-name=decode", "--output=exp/log/q/decode.%a.out",
                "--mem-per-cpu=4G", "--gres=gpu:2", "--cpus-per-task=4", "--time=2:00:00"]:
        assert arg in command, (arg, command)
    assert command[-1] == "exp/log/q/decode.sh"
    script = (tmp_path / "exp/log/q/decode.sh").read_text()
    assert script.startswith("#!/usr/bin/env bash\n")
    assert f"cd {tmp_path}" in script
    assert "id=${SLURM_ARRAY_TASK_ID:?" in script and "log=${log//JOB/$id}; cmd=${cmd//JOB/$id}" in script
    # The job runs the command as run.pl would: an argument with a space is quoted.
    env = {"SLURM_ARRAY_TASK_ID": "4", "PATH": os.environ["PATH"]}
    (tmp_path / "x.py").write_text("import sys; print('args', sys.argv[1:])\n")
    script_py = script.replace("python -m x", "python3 x.py").replace(r"python\ -m\ x", r"python3\ x.py")
    (tmp_path / "job.sh").write_text(script_py)
    r = run("bash", tmp_path / "job.sh", env=env)
    assert r.returncode == 0, r.stderr
    log = (tmp_path / "exp/log/decode.4.log").read_text()
    assert "args ['--part', '4', '--name', 'a b']" in log and log.splitlines()[-1].startswith("# Ended (code 0)")


def test_slurm_pl_defaults_and_single_job(tmp_path):
    r = run(UTILS / "slurm.pl", "--dry-run", "log/one.log", "true", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    command = r.stdout.split()
    assert "--array=1-1" in command and "--job-name=one" in command
    assert not any(a.startswith(("--gres", "--mem", "--cpus")) for a in command)  # gpu=0, no mem: nothing
    assert "cmd=${cmd//" not in (tmp_path / "log/q/one.sh").read_text()


def test_slurm_pl_reads_the_recipe_conf_and_rejects_options_without_a_rule(tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf/slurm.conf").write_text(
        "# our cluster\ncommand sbatch --export=ALL --account=asr\noption mem=* --mem=$0\n"
        "default gpu=0\noption gpu=0 --partition=cpu\noption gpu=* --partition=gpu --gres=gpu:$0  # GPUs\n")
    r = run(UTILS / "slurm.pl", "--dry-run", "--mem", "8G", "JOB=1:2", "l/x.JOB.log", "true", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "--account=asr" in r.stdout and "--mem=8G" in r.stdout and "--partition=cpu" in r.stdout
    r = run(UTILS / "slurm.pl", "--dry-run", "--gpu", "1", "JOB=1:2", "l/x.JOB.log", "true", cwd=tmp_path)
    assert "--partition=gpu" in r.stdout and "--gres=gpu:1" in r.stdout
    r = run(UTILS / "slurm.pl", "--dry-run", "--time", "1:00", "JOB=1:2", "l/x.JOB.log", "true", cwd=tmp_path)
    assert r.returncode == 1 and "--time 1:00: conf/slurm.conf has no rule for it" in r.stderr
    (tmp_path / "bad.conf").write_text("command sbatch\noptoin mem=* --mem=$0\n")
    r = run(UTILS / "slurm.pl", "--config", tmp_path / "bad.conf", "--dry-run", "l/x.log", "true", cwd=tmp_path)
    assert r.returncode == 1 and f"{tmp_path}/bad.conf:2: unknown line" in r.stderr
    r = run(UTILS / "slurm.pl", "--config", tmp_path / "none.conf", "l/x.log", "true", cwd=tmp_path)
    assert r.returncode == 1 and "none.conf' does not exist" in r.stderr


def test_slurm_pl_bad_arguments(tmp_path):
    r = run(UTILS / "slurm.pl", "--dry-run", "JOB=1:2", "l/same.log", "true", cwd=tmp_path)
    assert r.returncode == 1 and "must contain 'JOB'" in r.stderr
    r = run(UTILS / "slurm.pl", "--dry-run", "JOB=3:2", "l/x.JOB.log", "true", cwd=tmp_path)
    assert r.returncode == 1 and "empty job range" in r.stderr
    r = run(UTILS / "slurm.pl", "--dry-run", "--max-jobs-run", "x", "l/x.log", "true", cwd=tmp_path)
    assert r.returncode == 1 and "--max-jobs-run takes a number" in r.stderr


# ---------------------------------------------------------------- slurm.pl: runs through a fake sbatch
def test_slurm_pl_runs_the_array_and_writes_a_log_per_job(tmp_path, fake_sbatch):
    env, args_file = fake_sbatch
    r = run(UTILS / "slurm.pl", "--mem", "2G", "JOB=1:3", "log/p.JOB.log", "echo", "part JOB of 3", "|", "tr", "a-z",
            "A-Z", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    for i in (1, 2, 3):
        log = (tmp_path / f"log/p.{i}.log").read_text()
        assert f"PART {i} OF 3" in log and "(SLURM job 4242_" in log and "# Ended (code 0)" in log
    assert "--mem-per-cpu=2G" in args_file.read_text().split()


def test_slurm_pl_fails_naming_the_failed_and_the_killed_jobs(tmp_path, fake_sbatch):
    env, _ = fake_sbatch
    (tmp_path / "log").mkdir()
    (tmp_path / "log/k.3.log").write_text("# Ended (code 0) at an earlier run\n")  # stale: must not count
    # Job 2 fails; job 3 is killed (its job script dies with it, as at a SLURM time limit).
    cmd = "case JOB in 2) echo boom; exit 4 ;; 3) echo killed; kill -9 $PPID ;; esac; echo fine"
    r = run(UTILS / "slurm.pl", "JOB=1:3", "log/k.JOB.log", cmd, cwd=tmp_path, env=env)
    assert r.returncode == 1
    assert "2 / 3 failed (jobs 2 3)" in r.stderr and "log/k.2.log" in r.stderr and "boom" in r.stderr
    assert "# Ended (code 4)" in (tmp_path / "log/k.2.log").read_text()
    assert "Ended" not in (tmp_path / "log/k.3.log").read_text()


def test_slurm_pl_reports_a_failed_submission(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text("#!/bin/sh\necho 'sbatch: error: invalid partition specified: gpu' >&2\nexit 1\n")
    (bin_dir / "sbatch").chmod(0o755)
    r = run(UTILS / "slurm.pl", "JOB=1:2", "log/s.JOB.log", "true", cwd=tmp_path,
            env={"PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert r.returncode == 1 and "sbatch failed (exit 1) and no job started" in r.stderr
    assert "invalid partition" in r.stderr


# ---------------------------------------------------------------- split_data.sh
def write(path: Path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


@pytest.fixture
def data(tmp_path):
    """5 speakers with 1, 4, 2, 2, 1 utterances, every kind of file."""
    d = tmp_path / "data"
    d.mkdir()
    counts = {"s1": 1, "s2": 4, "s3": 2, "s4": 2, "s5": 1}
    utts = [(f"{spk}-{i}", spk) for spk, n in counts.items() for i in range(n)]
    write(d / "utt2spk", [f"{u} {s}" for u, s in utts])
    write(d / "spk2utt", [f"{s} " + " ".join(u for u, s2 in utts if s2 == s) for s in counts])
    for name in ("wav.scp", "text", "utt2accent", "feats.scp", "utt2num_frames", "pinyin"):
        write(d / name, [f"{u} {name}-of-{u}" for u, _ in utts])
    write(d / "spk2gender", [f"{s} f" for s in counts])
    write(d / "accents.txt", ["Mandarin", "Beijing"])
    return d


def parts_of(split: Path, name: str) -> list[list[str]]:
    return [[line.split()[0] for line in (split / str(j) / name).read_text().splitlines()]
            for j in range(1, len([p for p in split.iterdir() if p.name.isdigit()]) + 1)]


def test_split_by_speaker_keeps_speakers_whole_and_every_file_consistent(data):
    r = run(UTILS / "split_data.sh", data, 3)
    assert r.returncode == 0, r.stderr
    split = data / "split3"
    utts = parts_of(split, "utt2spk")
    assert sum(utts, []) == [line.split()[0] for line in (data / "utt2spk").read_text().splitlines()]
    speakers = [{u.split("-")[0] for u in part} for part in utts]
    assert all(speakers) and not (speakers[0] & speakers[1]) and not (speakers[1] & speakers[2])
    assert [len(p) for p in utts] == [5, 2, 3]  # s1+s2, s3, s4+s5: as even as whole speakers allow
    for j, part in enumerate(utts, 1):
        for name in ("wav.scp", "text", "utt2accent", "feats.scp", "utt2num_frames", "pinyin"):
            assert (split / str(j) / name).read_text() == "".join(f"{u} {name}-of-{u}\n" for u in part)
        assert parts_of(split, "spk2gender")[j - 1] == sorted(speakers[j - 1])
        assert (split / str(j) / "accents.txt").read_text() == "Mandarin\nBeijing\n"
        spk2utt = (split / str(j) / "spk2utt").read_text().split()
        assert sorted(u for u in spk2utt if "-" in u) == part


def test_split_leaves_a_binary_ark_in_the_data_dir_alone(data):
    """A feature archive kept in the data dir begins with an utterance id like a table, but is not one."""
    first = (data / "utt2spk").read_text().split()[0]
    (data / "feats.ark").write_bytes(first.encode() + b" \x00BFM \x04\x02\x00\x00\x00\x04\x50\x00\x00\x00\xff\x01")
    r = run(UTILS / "split_data.sh", "--per-utt", data, 2)
    assert r.returncode == 0, r.stderr
    assert not list((data / "split2utt").glob("*/feats.ark"))
    assert (data / "split2utt" / "1" / "feats.scp").is_file()


def test_split_per_utt_and_too_many_parts(data):
    r = run(UTILS / "split_data.sh", "--per-utt", data, 4)
    assert r.returncode == 0, r.stderr
    utts = parts_of(data / "split4utt", "text")
    assert [len(p) for p in utts] == [3, 2, 3, 2]
    assert sum(utts, []) == [line.split()[0] for line in (data / "text").read_text().splitlines()]
    spk = parts_of(data / "split4utt", "spk2gender")
    assert spk[0] == ["s1", "s2"] and spk[1] == ["s2"]  # a speaker split by utterance is in both parts
    r = run(UTILS / "split_data.sh", data, 6)
    assert r.returncode == 1 and "only 5 speakers" in r.stderr and "--per-utt" in r.stderr
    r = run(UTILS / "split_data.sh", "--per-utt", data, 11)
    assert r.returncode == 1 and "only 10 utterances" in r.stderr
    r = run(UTILS / "split_data.sh", data, 0)
    assert r.returncode == 1 and "positive integer" in r.stderr


def test_split_is_reused_until_the_data_dir_changes_and_names_a_bad_line(data):
    assert run(UTILS / "split_data.sh", data, 2).returncode == 0
    marker = data / "split2" / "1" / "marker"
    marker.write_text("")
    assert run(UTILS / "split_data.sh", data, 2).returncode == 0 and marker.exists()  # reused
    stamp = (data / "split2" / ".done").stat().st_mtime
    os.utime(data / "text", (stamp + 5, stamp + 5))
    assert run(UTILS / "split_data.sh", data, 2).returncode == 0 and not marker.exists()  # redone
    with open(data / "pinyin", "a") as f:
        f.write("s9-0 stray\n")
    r = run(UTILS / "split_data.sh", data, 2)
    assert r.returncode == 1 and re.search(r"data/pinyin:11: utterance s9-0 is not in utt2spk", r.stderr)
    assert (data / "split2" / "1" / "text").is_file()  # the failed split left the old one in place


def test_a_split_waits_while_another_holds_the_data_dirs_lock(data):
    """Two stage-6 jobs split the same test set at once: the second must wait for the first (flock on
    utt2spk), not race it (one's rm -rf of the split met the other's mv into it)."""
    import fcntl
    import time

    with open(data / "utt2spk") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        proc = subprocess.Popen(["bash", str(UTILS / "split_data.sh"), "--per-utt", str(data), "2"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)
        assert proc.poll() is None, f"split_data.sh did not wait for the lock: {proc.communicate()}"
        assert not (data / "split2utt").exists()
        fcntl.flock(held, fcntl.LOCK_UN)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert (data / "split2utt" / ".done").is_file()


def test_splits_of_one_data_dir_side_by_side_all_succeed_and_leave_one_split(data):
    procs = [subprocess.Popen(["bash", str(UTILS / "split_data.sh"), "--per-utt", str(data), "3"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(6)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    assert all(rc == 0 for rc, _ in results), results
    assert sorted(p.name for p in data.iterdir() if p.name.startswith("split")) == ["split3utt"]  # no tmp left
    assert sum(parts_of(data / "split3utt", "utt2spk"), []) == [line.split()[0] for line in
                                                                (data / "utt2spk").read_text().splitlines()]
