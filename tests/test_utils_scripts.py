"""The Kaldi-style shell helpers under utils/: behaviour on good and bad data dirs; tools/install.sh."""
import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

UTILS = Path(__file__).resolve().parent.parent / "utils"
ENV = {**os.environ, "LC_ALL": "C"}


def run(*args, cwd=None):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd, env=ENV)


def write(path: Path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


@pytest.fixture
def wav(tmp_path):
    path = tmp_path / "a.wav"
    subprocess.run(["sox", "-n", "-r", "16000", "-b", "16", str(path), "synth", "0.2", "sine", "440"], check=True)
    return path


@pytest.fixture
def datadir(tmp_path, wav):
    """A valid data dir: 3 utterances of 2 speakers, 2 accents, one wav.scp entry a pipe."""
    d = tmp_path / "data"
    d.mkdir()
    write(d / "wav.scp", [f"spkA-001 {wav}", f"spkA-002 {wav}", f"spkB-001 sox {wav} -t wav - |"])
    write(d / "text", ["spkA-001 你好", "spkA-002 世界", "spkB-001 中国"])
    write(d / "utt2spk", ["spkA-001 spkA", "spkA-002 spkA", "spkB-001 spkB"])
    write(d / "spk2utt", ["spkA spkA-001 spkA-002", "spkB spkB-001"])
    write(d / "utt2accent", ["spkA-001 Mandarin", "spkA-002 Mandarin", "spkB-001 Southwestern"])
    write(tmp_path / "accents.txt", ["Mandarin", "Southwestern"])
    return d


def validate(d, *opts):
    return run(UTILS / "validate_data_dir.sh", *opts, d)


# ---------------------------------------------------------------- validate_data_dir.sh
def test_validate_accepts_a_good_dir(datadir):
    r = validate(datadir, "--accents", datadir.parent / "accents.txt", "--check-audio", "true")
    assert r.returncode == 0, r.stderr
    assert "3 utterances, 2 speakers" in r.stdout


@pytest.mark.parametrize(
    "name, lines, expected",
    [
        ("text", ["spkA-002 世界", "spkA-001 你好", "spkB-001 中国"], "text line 2: not sorted"),
        ("text", ["spkA-001 你好", "spkA-002", "spkB-001 中国"], "text line 2: empty transcript for utterance spkA-002"),
        ("text", ["spkA-001 你好", "spkA-001 你好", "spkB-001 中国"], "text line 2: duplicate key spkA-001"),
        ("utt2accent", ["spkA-001 Mandarin", "spkB-001 Southwestern"], "utt2accent has no line for utterance spkA-002"),
        ("text", ["spkA-001 你好", "spkA-002 世界", "spkB-001 中国", "spkC-001 多"], "text line 4: utterance spkC-001 is not in"),
        ("spk2utt", ["spkA spkA-001", "spkB spkB-001"], "spk2utt line 1 does not agree"),
        ("utt2spk", ["spkA-001 spkA", "spkA-002 spkA", "spkB-001 spkX"], "does not start with its speaker id spkX"),
    ],
)
def test_validate_names_file_and_line(datadir, name, lines, expected):
    write(datadir / name, lines)
    r = validate(datadir)
    assert r.returncode != 0
    assert expected in r.stderr
    assert str(datadir / name) in r.stderr
    assert "Fix:" in r.stderr


def test_validate_missing_file(datadir):
    (datadir / "utt2accent").unlink()
    r = validate(datadir)
    assert r.returncode != 0 and "utt2accent is missing" in r.stderr
    assert validate(datadir, "--no-accent", "true").returncode == 0


def test_validate_unknown_accent(datadir, tmp_path):
    write(tmp_path / "only_mandarin.txt", ["Mandarin"])
    r = validate(datadir, "--accents", tmp_path / "only_mandarin.txt")
    assert r.returncode != 0
    assert "utt2accent line 3: unknown accent Southwestern" in r.stderr


def test_validate_missing_audio(datadir, wav):
    write(datadir / "wav.scp", [f"spkA-001 {wav}", "spkA-002 /nonexistent/x.wav", f"spkB-001 sox {wav} -t wav - |"])
    assert validate(datadir).returncode == 0  # audio is only checked on request
    r = validate(datadir, "--check-audio", "true")
    assert r.returncode != 0 and "wav.scp line 2: audio file /nonexistent/x.wav" in r.stderr
    write(datadir / "wav.scp", [f"spkA-001 {wav}", f"spkA-002 {wav}", "spkB-001 sox /nonexistent/y.wav -t wav - |"])
    r = validate(datadir, "--check-audio", "true")
    assert r.returncode != 0 and "wav.scp line 3: audio file /nonexistent/y.wav" in r.stderr


def test_validate_feats_when_required(datadir):
    assert validate(datadir, "--no-feats", "false").returncode != 0
    write(datadir / "feats.scp", ["spkA-001 f.ark:10", "spkA-002 f.ark:20"])
    r = validate(datadir)  # present feats.scp is checked even when not required
    assert r.returncode != 0 and "feats.scp has no line for utterance spkB-001" in r.stderr


# ---------------------------------------------------------------- parse_options.sh
@pytest.fixture
def script(tmp_path):
    path = tmp_path / "demo.sh"
    path.write_text(
        "#!/usr/bin/env bash\n"
        "stage=0\nstop_stage=100\nuse_gpu=false\nnj=4\n"
        'help_message="Usage: demo.sh [options] <dir>"\n'
        f". {UTILS}/parse_options.sh || exit 1\n"
        'echo "stage=$stage stop_stage=$stop_stage use_gpu=$use_gpu nj=$nj args=$*"\n'
    )
    path.chmod(0o755)
    return path


def test_parse_options_sets_variables(script):
    r = run(script, "--stop-stage", "3", "--use-gpu", "true", "--nj=2", "pos1", "--not-an-option")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "stage=0 stop_stage=3 use_gpu=true nj=2 args=pos1 --not-an-option"


def test_parse_options_config_file(script, tmp_path):
    (tmp_path / "c.conf").write_text("nj=16\nstage=2\n")
    r = run(script, "--config", tmp_path / "c.conf", "--stage", "5")
    assert r.stdout.strip() == "stage=5 stop_stage=100 use_gpu=false nj=16 args="


@pytest.mark.parametrize(
    "args, message",
    [
        (["--bogus", "1"], "unknown option --bogus"),
        (["--use-gpu", "yes"], "option --use-gpu takes true or false, not 'yes'"),
        (["--nj"], "option --nj needs a value"),
        (["--config", "/nonexistent.conf"], "config file '/nonexistent.conf' does not exist"),
    ],
)
def test_parse_options_errors(script, args, message):
    r = run(script, *args)
    assert r.returncode != 0
    assert message in r.stderr
    assert r.stdout == ""  # the script did not go on


def test_parse_options_help(script):
    r = run(script, "--help")
    assert r.returncode == 0
    assert "Usage: demo.sh" in r.stdout
    for line in ["--stage", "--stop-stage", "--use-gpu", "--nj"]:
        assert line in r.stdout
    assert "--help-message" not in r.stdout
    assert "stage=" not in r.stdout  # the script body did not run


# ---------------------------------------------------------------- fix / subset / combine
def test_fix_data_dir_drops_and_reports(datadir):
    write(datadir / "text", ["spkB-001 中国", "spkA-001 你好", "spkA-002", "spkC-001 多"])
    write(datadir / "utt2accent", ["spkA-001 Mandarin", "spkB-001 Southwestern", "spkA-002 Mandarin"])
    r = run(UTILS / "fix_data_dir.sh", datadir)
    assert r.returncode == 0, r.stderr
    assert "kept 2 of 4 utterances; dropped 2" in r.stdout
    assert "1 missing from wav.scp" in r.stdout and "empty transcript" in r.stdout
    assert (datadir / "text").read_text().splitlines() == ["spkA-001 你好", "spkB-001 中国"]
    assert (datadir / "spk2utt").read_text().splitlines() == ["spkA spkA-001", "spkB spkB-001"]
    assert "spkC-001 多" in (datadir / ".backup" / "text").read_text()  # nothing is lost
    assert validate(datadir).returncode == 0


def test_utt2spk_spk2utt_round_trip(datadir):
    r = run(UTILS / "utt2spk_to_spk2utt.pl", datadir / "utt2spk")
    assert r.stdout == (datadir / "spk2utt").read_text()
    back = subprocess.run([str(UTILS / "spk2utt_to_utt2spk.pl")], input=r.stdout, capture_output=True, text=True)
    assert back.stdout == (datadir / "utt2spk").read_text()


def test_subset_modes(datadir, tmp_path):
    r = run(UTILS / "subset_data_dir.sh", datadir, 2, tmp_path / "s")
    assert r.returncode == 0, r.stderr
    assert len((tmp_path / "s" / "utt2spk").read_text().splitlines()) == 2
    assert validate(tmp_path / "s").returncode == 0
    write(tmp_path / "spk.list", ["spkB"])
    run(UTILS / "subset_data_dir.sh", "--spk-list", tmp_path / "spk.list", datadir, tmp_path / "b")
    assert (tmp_path / "b" / "text").read_text() == "spkB-001 中国\n"
    run(UTILS / "subset_data_dir.sh", "--first", 1, datadir, tmp_path / "f")
    assert (tmp_path / "f" / "utt2accent").read_text() == "spkA-001 Mandarin\n"
    r = run(UTILS / "subset_data_dir.sh", datadir, 9, tmp_path / "too_many")
    assert r.returncode != 0 and "has only 3" in r.stderr


def test_combine_data(datadir, tmp_path):
    write(tmp_path / "a.list", ["spkA-001", "spkB-001"])
    write(tmp_path / "b.list", ["spkA-002"])
    run(UTILS / "subset_data_dir.sh", "--utt-list", tmp_path / "a.list", datadir, tmp_path / "a")
    run(UTILS / "subset_data_dir.sh", "--utt-list", tmp_path / "b.list", datadir, tmp_path / "b")
    r = run(UTILS / "combine_data.sh", tmp_path / "c", tmp_path / "a", tmp_path / "b")
    assert r.returncode == 0, r.stderr
    for name in ["wav.scp", "text", "utt2spk", "spk2utt", "utt2accent"]:
        assert (tmp_path / "c" / name).read_text() == (datadir / name).read_text()
    r = run(UTILS / "combine_data.sh", tmp_path / "dup", datadir, tmp_path / "a")
    assert r.returncode != 0 and "utterance spkA-001" in r.stderr and "unique" in r.stderr


def _with_side_files(d: Path) -> Path:
    """The data dir as recipes write it: a per-utterance file of their own (phones, the CTC targets), a
    per-speaker file and a whole-dir file (accents.txt)."""
    write(d / "phones", ["spkA-001 n i3 h ao3", "spkA-002 sh i4 j ie4", "spkB-001 zh ong1 g uo2"])
    write(d / "spk2gender", ["spkA f", "spkB m"])
    write(d / "accents.txt", ["Mandarin", "Southwestern"])
    return d


def test_subset_keeps_every_file_of_the_dir(datadir, tmp_path):
    _with_side_files(datadir)
    write(tmp_path / "spk.list", ["spkB"])
    r = run(UTILS / "subset_data_dir.sh", "--spk-list", tmp_path / "spk.list", datadir, tmp_path / "b")
    assert r.returncode == 0, r.stderr
    b = tmp_path / "b"
    assert (b / "phones").read_text() == "spkB-001 zh ong1 g uo2\n"  # the CTC targets are not silently lost
    assert (b / "spk2gender").read_text() == "spkB m\n"
    assert (b / "accents.txt").read_text() == (datadir / "accents.txt").read_text()
    assert (b / "spk2utt").read_text() == "spkB spkB-001\n"
    assert validate(b).returncode == 0


def test_combine_keeps_every_file_of_the_dirs(datadir, tmp_path):
    _with_side_files(datadir)
    write(tmp_path / "a.list", ["spkA-001", "spkB-001"])
    write(tmp_path / "b.list", ["spkA-002"])
    for name in "ab":
        run(UTILS / "subset_data_dir.sh", "--utt-list", tmp_path / f"{name}.list", datadir, tmp_path / name)
    r = run(UTILS / "combine_data.sh", tmp_path / "c", tmp_path / "a", tmp_path / "b")
    assert r.returncode == 0, r.stderr
    for name in ["phones", "spk2gender", "accents.txt", "spk2utt"]:  # spkA is in both sources: one line
        assert (tmp_path / "c" / name).read_text() == (datadir / name).read_text(), name
    write(tmp_path / "b" / "accents.txt", ["Mandarin", "JiangHuai"])
    write(tmp_path / "b" / "spk2gender", ["spkA m"])
    r = run(UTILS / "combine_data.sh", tmp_path / "d", tmp_path / "a", tmp_path / "b")
    assert r.returncode != 0 and "speaker spkA has two different lines" in r.stderr
    write(tmp_path / "b" / "spk2gender", ["spkA f"])
    r = run(UTILS / "combine_data.sh", tmp_path / "e", tmp_path / "a", tmp_path / "b")
    assert r.returncode == 0 and "accents.txt differ" in r.stderr and not (tmp_path / "e" / "accents.txt").exists()


# ---------------------------------------------------------------- run.pl
def test_run_pl_parallel_jobs_and_logs(tmp_path):
    r = run(UTILS / "run.pl", "--max-jobs-run", 2, "JOB=1:4", tmp_path / "log/x.JOB.log", "echo", "job", "JOB")
    assert r.returncode == 0, r.stderr
    for i in range(1, 5):
        log = (tmp_path / f"log/x.{i}.log").read_text()
        assert f"\njob {i}\n" in log and "# Ended (code 0)" in log


def test_run_pl_fails_loudly(tmp_path):
    r = run(UTILS / "run.pl", "JOB=1:3", tmp_path / "x.JOB.log", "test JOB -ne 2 || { echo boom JOB; exit 3; }")
    assert r.returncode == 1
    assert "1 / 3 failed" in r.stderr and "boom 2" in r.stderr
    assert "# Ended (code 3)" in (tmp_path / "x.2.log").read_text()
    assert "# Ended (code 0)" in (tmp_path / "x.3.log").read_text()


def test_run_pl_pipeline_and_bad_log_name(tmp_path):
    r = run(UTILS / "run.pl", "JOB=1:2", tmp_path / "p.JOB.log", "echo", "hello world", "|", "tr", "a-z", "A-Z")
    assert r.returncode == 0
    assert "HELLO WORLD" in (tmp_path / "p.2.log").read_text()
    r = run(UTILS / "run.pl", "JOB=1:2", tmp_path / "same.log", "true")
    assert r.returncode != 0 and "must contain 'JOB'" in r.stderr


# ---------------------------------------------------------------- tools/install.sh
def install_copy(root: Path, stamp_matches: bool) -> Path:
    """tools/install.sh, its pins and pyproject.toml copied under ``root``, with a stub venv whose python
    fails if it is ever run (so nothing can be installed, whatever the script decides) and whose stamp does
    or does not match the pins (the script's own formula: sha1 of the pins and pyproject.toml, + espnet)."""
    top = UTILS.parent
    (root / "tools" / "venv" / "bin").mkdir(parents=True)
    for name in ("tools/install.sh", "tools/requirements.txt", "pyproject.toml"):
        shutil.copy(top / name, root / name)
    python = root / "tools" / "venv" / "bin" / "python"
    python.write_text("#!/bin/sh\necho 'stub venv python: nothing may be installed here' >&2\nexit 1\n")
    python.chmod(0o755)
    script = (top / "tools" / "install.sh").read_text()
    espnet = re.search(r"^espnet_version=(\S+)$", script, re.M).group(1)
    kenlm = re.search(r"^kenlm_version=(\S+)$", script, re.M).group(1)
    digest = hashlib.sha1((top / "tools" / "requirements.txt").read_bytes() + (top / "pyproject.toml").read_bytes())
    stamp = f"{digest.hexdigest()}-espnet{espnet}-kenlm{kenlm}" if stamp_matches else "stale"
    lmplz = root / "tools" / "kenlm" / "bin" / "lmplz"  # a built KenLM is part of a complete install
    lmplz.parent.mkdir(parents=True)
    lmplz.write_text("#!/bin/sh\nexit 1\n")
    lmplz.chmod(0o755)
    (root / "tools" / "venv" / ".hdmole-installed").write_text(stamp + "\n")
    return root / "tools" / "install.sh"


def test_install_with_a_current_stamp_only_checks(tmp_path):
    """Hermetic: a copy of the script and a stub venv, never the real tools/venv (a stale stamp there
    would mean a network install in the middle of the suite)."""
    install = install_copy(tmp_path, stamp_matches=True)
    r = run(install)
    assert r.returncode == 0 and "is complete" in r.stdout, r.stderr
    assert not (tmp_path / "tools" / "install.log").exists()  # it did not start installing
    r = run(install, "--bogus")
    assert r.returncode == 2 and "unknown option '--bogus'" in r.stderr


def test_install_with_a_stale_stamp_reinstalls(tmp_path):
    install = install_copy(tmp_path, stamp_matches=False)
    r = run(install)
    # It went for pip (the stub python refused): the stamp is what makes a second run a no-op.
    assert r.returncode == 1 and "pip failed while installing pip" in r.stderr
    assert "stub venv python" in (tmp_path / "tools" / "install.log").read_text()


def test_install_names_missing_debian_packages(tmp_path):
    """Without sox (and without apt-get, so nothing is installed even as root) it stops and says what to install.
    (SLURM, KenLM's build tools and headers are there: tools/install.sh installed them before the tests run.)"""
    install = install_copy(tmp_path, stamp_matches=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "cat", "sha1sum", "cut", "id", "sed", "espeak-ng", "cmake", "g++",
                 "slurmctld", "slurmd", "sbatch"):
        (bin_dir / tool).symlink_to(shutil.which(tool, path=f"{os.environ['PATH']}:/usr/sbin:/sbin"))
    r = subprocess.run(["bash", str(install)], capture_output=True, text=True, env={**ENV, "PATH": str(bin_dir)})
    assert r.returncode == 1
    assert "missing Debian packages: sox. Install them with: sudo apt-get install sox" in r.stderr


def test_install_check_answers_without_installing(tmp_path):
    """--check (what ./run.sh and tools/run_tests.sh ask first): 0 for a complete install, 1 for a stale
    one, and never a pip or apt-get call (no install.log)."""
    install = install_copy(tmp_path, stamp_matches=True)
    r = run(install, "--check")
    assert r.returncode == 0 and r.stdout == "", r.stderr
    (tmp_path / "tools" / "venv" / ".hdmole-installed").write_text("stale\n")
    assert run(install, "--check").returncode == 1
    assert not (tmp_path / "tools" / "install.log").exists()
    r = run(install, "--check", "--force")
    assert r.returncode == 2 and "one option at most" in r.stderr


def test_install_removes_a_kenlm_link_not_what_it_points_to(tmp_path):
    """tools/kenlm linked to another KenLM (a shared install, as in a git worktree) of another version: the
    installer rebuilds here and removes the link only; the other install keeps every file."""
    install = install_copy(tmp_path / "repo", stamp_matches=False)
    python = tmp_path / "repo" / "tools" / "venv" / "bin" / "python"
    python.write_text("#!/bin/sh\nexit 0\n")  # every pip call "succeeds" and downloads nothing
    kenlm = tmp_path / "repo" / "tools" / "kenlm"
    shared = tmp_path / "shared_kenlm"
    kenlm.rename(shared)
    (shared / ".version").write_text("0.0.1\n")
    kenlm.symlink_to(shared)
    r = run(install)
    assert r.returncode != 0  # the stub downloaded no source to build from
    assert "is a link to" in r.stdout and "removing the link (not what it points to)" in r.stdout
    assert (shared / "bin" / "lmplz").is_file() and (shared / ".version").read_text() == "0.0.1\n"
    assert not kenlm.is_symlink()


def repo_copy(root: Path, stamp_matches: bool) -> Path:
    """install_copy plus the entry points (run.sh, tools/run_tests.sh, path.sh, utils/, mini_accent's
    run.sh and recipe_common.sh): the real files, in a copy whose installer can install nothing. utils/ is
    copied, not linked, so that nothing in the copy finds its way back to the real tools/install.sh."""
    top = UTILS.parent
    install_copy(root, stamp_matches)
    shutil.copytree(UTILS, root / "utils")
    for name in ("run.sh", "path.sh", "tools/run_tests.sh", "egs/TEMPLATE/recipe_common.sh",
                 "egs/mini_accent/run.sh"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(top / name, root / name)
    (root / "egs" / "mini_accent" / "utils").symlink_to("../../utils")
    (root / "egs" / "mini_accent" / "path.sh").symlink_to("../../path.sh")
    return root


@pytest.mark.parametrize("args, rc, says", [
    (["--help"], 0, "Usage: ./run.sh"),
    (["--stage", "abc"], 1, "--stage 'abc' is not a stage number"),
    (["--bogus", "1"], 1, "unknown option --bogus"),
    (["--seeds", "abc"], 1, "--seeds 'abc' is not a whole number of at least 1"),
    (["--seeds", "0"], 1, "--seeds '0' is not a whole number of at least 1"),
    (["--jobs", "0"], 1, "--jobs '0' is not a whole number"),
])
def test_run_sh_answers_help_and_bad_options_before_installing(tmp_path, args, rc, says):
    """./run.sh with a stale install: --help and bad options answer at once; the installer is not started."""
    root = repo_copy(tmp_path, stamp_matches=False)
    r = run(root / "run.sh", *args)
    assert r.returncode == rc and says in r.stdout + r.stderr, r.stdout + r.stderr
    assert not (root / "tools" / "install.log").exists()  # no pip, no apt-get


def test_run_sh_installs_after_good_options(tmp_path):
    root = repo_copy(tmp_path, stamp_matches=False)
    r = run(root / "run.sh", "--stage", "0", "--stop-stage", "0")
    assert r.returncode == 1 and "pip failed while installing pip" in r.stderr  # the stub venv refused
    assert "stub venv python" in (root / "tools" / "install.log").read_text()
    # run directly, the recipe installs nothing: path.sh names the installer instead
    r = run(root / "egs" / "mini_accent" / "run.sh", "--stage", "0", "--stop-stage", "0")
    assert r.returncode == 1 and "tools/venv is missing; run" in r.stderr


@pytest.mark.parametrize("stamp_matches", [True, False])
def test_run_tests_starts_the_installer_only_for_an_incomplete_install(tmp_path, stamp_matches):
    root = repo_copy(tmp_path, stamp_matches)
    # path.sh stand-in: a venv whose python only says what it was asked to run
    (root / "fakebin").mkdir()
    (root / "fakebin" / "python").write_text('#!/bin/sh\necho "would run: $*"\n')
    (root / "fakebin" / "python").chmod(0o755)
    (root / "path.sh").write_text('export PATH="$PWD/fakebin:$PATH"\n')
    r = run(root / "tools" / "run_tests.sh", "-x")
    installed = (root / "tools" / "install.log").exists()
    if stamp_matches:
        assert r.returncode == 0 and "would run: -m pytest tests -x" in r.stdout, r.stderr
        assert not installed and "is complete" not in r.stdout  # only the stamp was checked
    else:
        assert r.returncode == 1 and installed and "would run" not in r.stdout
