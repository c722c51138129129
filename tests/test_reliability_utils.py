"""Reliability of the shell tools (docs/reliability.md): utils/fix_data_dir.sh never loses data,
utils/validate_data_dir.sh follows Kaldi (any white space, UTF-8 only, bare flags) and sees invisible
BOMs and CRs, and the recipes' run.sh reject a bad --stage before they record or write anything."""
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UTILS = ROOT / "utils"
ENV = {**os.environ, "LC_ALL": "C"}
FILES = ("wav.scp", "text", "utt2spk", "spk2utt", "utt2accent")


def run(*args, cwd=None):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd, env=ENV)


def write(path: Path, lines, sep=" ", end="\n", encoding="utf-8"):
    path.write_bytes("".join(line.replace(" ", sep, 1) + end for line in lines).encode(encoding))


def snapshot(d: Path) -> dict:
    return {f: (d / f).read_bytes() for f in FILES if (d / f).exists()}


@pytest.fixture
def datadir(tmp_path):
    """A valid data dir of 3 utterances, 2 speakers (audio is not read by these tools)."""
    d = tmp_path / "data"
    d.mkdir()
    write(d / "wav.scp", ["spkA-001 /w/a.wav", "spkA-002 /w/b.wav", "spkB-001 /w/c.wav"])
    write(d / "text", ["spkA-001 你好", "spkA-002 世界", "spkB-001 中国"])
    write(d / "utt2spk", ["spkA-001 spkA", "spkA-002 spkA", "spkB-001 spkB"])
    write(d / "spk2utt", ["spkA spkA-001 spkA-002", "spkB spkB-001"])
    write(d / "utt2accent", ["spkA-001 Mandarin", "spkA-002 Mandarin", "spkB-001 Southwestern"])
    return d


def validate(d, *opts):
    return run(UTILS / "validate_data_dir.sh", *opts, d)


def fix(d):
    return run(UTILS / "fix_data_dir.sh", d)


# ---------------------------------------------------------------- any white space, never lose data
def test_tab_separated_dir_is_valid_and_fix_keeps_every_line(datadir):
    for name, lines in (("wav.scp", ["spkA-001 /w/a.wav", "spkA-002 /w/b.wav", "spkB-001 /w/c.wav"]),
                        ("spk2utt", ["spkA spkA-001\tspkA-002", "spkB spkB-001"])):
        write(datadir / name, lines, sep="\t")
    before = snapshot(datadir)
    assert validate(datadir).returncode == 0
    r = fix(datadir)
    assert r.returncode == 0, r.stderr
    assert snapshot(datadir) == before  # already sorted and complete: nothing rewritten
    write(datadir / "wav.scp", ["spkB-001 /w/c.wav", "spkA-001 /w/a.wav", "spkA-002 /w/b.wav"], sep="\t")
    r = fix(datadir)
    assert r.returncode == 0 and "kept all 3 utterances" in r.stdout, r.stdout + r.stderr
    assert (datadir / "wav.scp").read_text().splitlines() == ["spkA-001\t/w/a.wav", "spkA-002\t/w/b.wav", "spkB-001\t/w/c.wav"]
    assert validate(datadir).returncode == 0


def test_fix_twice_keeps_the_first_backup(datadir):
    write(datadir / "text", ["spkB-001 中国", "spkA-001 你好", "spkA-002 世界"])
    originals = snapshot(datadir)
    assert fix(datadir).returncode == 0
    assert snapshot(datadir / ".backup") == originals
    assert fix(datadir).returncode == 0  # nothing left to fix: no new backup, nothing overwritten
    write(datadir / "utt2accent", ["spkB-001 Southwestern", "spkA-001 Mandarin", "spkA-002 Mandarin"])
    second = snapshot(datadir)
    r = fix(datadir)
    assert r.returncode == 0 and ".backup.2" in r.stdout
    assert snapshot(datadir / ".backup") == originals
    assert snapshot(datadir / ".backup.2") == second


def test_fix_with_nothing_left_changes_nothing(datadir):
    write(datadir / "text", ["x-001 你好"])
    before = snapshot(datadir)
    r = fix(datadir)
    assert r.returncode != 0 and "nothing was changed" in r.stderr
    assert snapshot(datadir) == before and not (datadir / ".backup").exists()


def test_fix_refuses_two_different_transcripts_of_one_id(datadir):
    write(datadir / "text", ["spkA-001 你好", "spkA-002 世界", "spkB-001 中国", "spkA-001 您好"])
    before = snapshot(datadir)
    r = fix(datadir)
    assert r.returncode != 0
    assert f"{datadir}/text lines 1 and 4: id spkA-001 has two different values" in r.stderr
    assert "kept all" not in r.stdout
    assert snapshot(datadir) == before
    # The same line twice is only a repeat: dropped, and said.
    write(datadir / "text", ["spkA-001 你好", "spkA-002 世界", "spkB-001 中国", "spkA-001 你好"])
    r = fix(datadir)
    assert r.returncode == 0 and "1 repeated identical line(s) of text" in r.stdout
    assert (datadir / "text").read_text().splitlines() == ["spkA-001 你好", "spkA-002 世界", "spkB-001 中国"]


# ---------------------------------------------------------------- encodings: BOM, CRLF, GBK
def test_bom_is_reported_and_fixed_without_losing_the_first_utterance(datadir):
    (datadir / "text").write_bytes(b"\xef\xbb\xbf" + (datadir / "text").read_bytes())
    r = validate(datadir)
    assert r.returncode != 0 and f"{datadir}/text line 1: starts with a UTF-8 byte-order mark" in r.stderr
    r = fix(datadir)
    assert r.returncode == 0 and "kept all 3 utterances" in r.stdout, r.stdout + r.stderr
    assert (datadir / "text").read_text().splitlines()[0] == "spkA-001 你好"
    assert validate(datadir).returncode == 0


def test_crlf_is_named_and_fixed(datadir):
    for name in FILES:
        (datadir / name).write_bytes((datadir / name).read_bytes().replace(b"\n", b"\r\n"))
    r = validate(datadir)
    assert r.returncode != 0
    assert "line 1: contains a carriage return (Windows CRLF line ends" in r.stderr and "\r" not in r.stderr
    r = fix(datadir)
    assert r.returncode == 0, r.stderr
    assert validate(datadir).returncode == 0  # the fixer's success is real
    assert b"\r" not in (datadir / "text").read_bytes()
    assert b"\r\n" in (datadir / ".backup" / "text").read_bytes()


def test_non_utf8_text_is_rejected_by_validator_and_fixer(datadir):
    write(datadir / "text", ["spkA-001 你好", "spkA-002 世界", "spkB-001 中国"], encoding="gbk")
    r = validate(datadir)
    assert r.returncode != 0 and f"{datadir}/text line 1: not valid UTF-8" in r.stderr and "iconv" in r.stderr
    before = snapshot(datadir)
    r = fix(datadir)
    assert r.returncode != 0 and "not valid UTF-8" in r.stderr
    assert snapshot(datadir) == before


# ---------------------------------------------------------------- Kaldi's bare flags, messages
def test_bare_flags_as_in_kaldi(datadir):
    assert validate(datadir, "--no-feats").returncode == 0
    r = validate(datadir, "--no-feats", "false")  # the value form still works
    assert r.returncode != 0 and "feats.scp is missing" in r.stderr
    (datadir / "text").unlink()
    assert validate(datadir, "--no-text").returncode == 0
    (datadir / "wav.scp").unlink()
    assert validate(datadir, "--no-text", "--no-wav", "--no-feats").returncode == 0


def test_missing_file_points_to_the_docs(datadir):
    (datadir / "utt2accent").unlink()
    r = validate(datadir)
    assert r.returncode != 0 and "README.md" in r.stderr and "DESIGN.md" not in r.stderr


# ---------------------------------------------------------------- run.sh stage arguments
@pytest.mark.parametrize("recipe", ["mini_accent", "kespeech"])
@pytest.mark.parametrize("args, message", [
    (["--stage", "abc"], "--stage 'abc' is not a stage number"),
    (["--stage", "5", "--stop-stage", "3"], "--stage 5 comes after --stop-stage 3"),
])
def test_run_sh_rejects_bad_stages_before_recording(tmp_path, recipe, args, message):
    exp = tmp_path / "exp"
    r = run(ROOT / "egs" / recipe / "run.sh", *args, "--exp-dir", exp)
    assert r.returncode != 0
    assert message in r.stderr and "integer expression" not in r.stderr
    assert not exp.exists()  # nothing written, nothing appended to run_commands.txt


# ---------------------------------------------------------------- probe rows: data helpers
def test_subset_with_no_known_utterance_leaves_an_existing_dest_as_it_was(tmp_path, datadir):
    dest = tmp_path / "dest"
    r = run(UTILS / "subset_data_dir.sh", "--first", "2", datadir, dest)
    assert r.returncode == 0, r.stderr
    before = snapshot(dest)
    write(tmp_path / "list", ["nobody-001", "nobody-002"])
    r = run(UTILS / "subset_data_dir.sh", "--utt-list", tmp_path / "list", datadir, dest)
    assert r.returncode == 1 and "is empty" in r.stderr and "was not changed" in r.stderr
    assert snapshot(dest) == before and len(before["utt2spk"].splitlines()) == 2
    assert sorted(p.name for p in dest.iterdir()) == sorted(before)  # no leftover id list either


@pytest.mark.parametrize("lines, message", [
    ([], "is empty"),
    (["Mandarin", "Mandarin", "Southwestern"], "line 2: accent Mandarin is listed twice"),
    (["Mandarin", "South western", "Southwestern"], "line 2: expected exactly one accent name"),
    (["Mandarin", "", "Southwestern"], "line 2: expected exactly one accent name"),
])
def test_validate_rejects_a_bad_accent_list(tmp_path, datadir, lines, message):
    """The line order is the domain index: a blank, doubled or two-word line would shift or merge domains."""
    write(tmp_path / "accents.txt", lines)
    r = validate(datadir, "--accents", tmp_path / "accents.txt")
    assert r.returncode == 1 and message in r.stderr, r.stdout + r.stderr
    write(tmp_path / "accents.txt", ["Mandarin", "Southwestern"])
    assert validate(datadir, "--accents", tmp_path / "accents.txt").returncode == 0


@pytest.mark.parametrize("script, name", [("utt2spk_to_spk2utt.pl", "utt2spk"), ("spk2utt_to_utt2spk.pl", "spk2utt")])
def test_speaker_maps_answer_help_and_a_missing_input(tmp_path, datadir, script, name):
    r = subprocess.run([str(UTILS / script), "--help"], capture_output=True, text=True, input="x y\n", timeout=10)
    assert r.returncode == 0 and r.stdout.startswith(f"Usage: {script}")  # the usage, not stdin converted
    r = run(UTILS / script, tmp_path / "missing")
    assert r.returncode == 1 and r.stdout == ""
    assert f"cannot read {name} file '{tmp_path / 'missing'}'" in r.stderr
    r = run(UTILS / script, datadir / name)
    assert r.returncode == 0 and r.stdout.split() and r.stderr == ""


def test_fix_blames_the_bad_utt2spk_line(datadir):
    write(datadir / "utt2spk", ["spkA-001 spkA", "spkA-002 spkA extra", "spkB-001 spkB"])
    before = snapshot(datadir)
    r = fix(datadir)
    assert r.returncode == 1 and f"{datadir}/utt2spk line 2: expected" in r.stderr, r.stderr
    assert "stdin" not in r.stderr and snapshot(datadir) == before


@pytest.mark.parametrize("absent", [["wav.scp"], ["utt2accent"], ["wav.scp", "utt2accent"]])
def test_fix_names_the_files_it_cannot_make(datadir, absent):
    for name in absent:
        (datadir / name).unlink()
    r = fix(datadir)
    assert r.returncode == 1, r.stdout
    assert f"{datadir} has no {' '.join(absent)}, which fix_data_dir.sh cannot make" in r.stderr


# ---------------------------------------------------------------- probe rows: job runners
def test_run_pl_rejects_a_job_range_that_is_no_range(tmp_path):
    r = run(UTILS / "run.pl", "JOB=1:abc", tmp_path / "x.JOB.log", "true")
    assert r.returncode == 1 and "'JOB=1:abc' is not a job range" in r.stderr
    assert list(tmp_path.iterdir()) == []  # no log named after it, nothing run


@pytest.mark.parametrize("option, value, message", [
    ("--mem", "abc", "--mem 'abc' is not a memory size"),
    ("--gpu", "-1", "--gpu '-1' is not a number of GPUs"),
    ("--time", "xyz", "--time 'xyz' is not a SLURM time limit"),
    ("--num-threads", "0", "--num-threads '0' is not a number of threads"),
])
def test_slurm_pl_checks_resource_options(tmp_path, option, value, message):
    r = run(UTILS / "slurm.pl", "--dry-run", option, value, "JOB=1:2", tmp_path / "x.JOB.log", "true")
    assert r.returncode == 1 and message in r.stderr, r.stdout + r.stderr
    r = run(UTILS / "slurm.pl", "--dry-run", "--mem", "4G", "--gpu", "1", "--time", "1-04:00:00",
            "--num-threads", "2", "JOB=1:2", tmp_path / "x.JOB.log", "true")
    assert r.returncode == 0 and "--mem-per-cpu=4G" in r.stdout and "--time=1-04:00:00" in r.stdout, r.stderr
