"""Reliability of training (docs/reliability.md): an exp dir is not resumed (or taken as finished) under
a config that trains differently, and bad values, missing or unreadable inputs and unusable exp dirs are
one line naming the file and the fix, with the traceback only in train.log (or with --verbose)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reliability_fixtures import assert_one_line_error, make_features, train_config

from hdmole.bin import train

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("rel_train")
    setup = make_features(root)
    setup["config"] = train_config(root / "conf" / "base.yaml", "base", setup)
    setup["root"] = root
    return setup


def run_train(setup, exp_dir, *overrides, extra=()):
    args = ["--config", str(setup["config"]), "--exp-dir", str(exp_dir), *extra]
    for item in overrides:
        args += ["--override", item]
    return train.main(args)


def test_resume_with_another_lr_is_an_error(setup, capsys):
    exp = setup["root"] / "exp" / "lr"
    assert run_train(setup, exp) == 0
    recorded = (exp / "config.yaml").read_bytes()
    # Finished: another lr is not "already trained".
    assert run_train(setup, exp, "optim.lr=2e-3") == 2
    err = capsys.readouterr().err
    assert "optim.lr: 0.001 -> 0.002" in err and str(exp / "config.yaml") in err and "fresh --exp-dir" in err
    # Killed after its checkpoints: not resumed with the new value either, and config.yaml is not rewritten.
    (exp / "train_summary.json").unlink()
    assert run_train(setup, exp, "optim.lr=2e-3") == 2
    assert "optim.lr: 0.001 -> 0.002" in capsys.readouterr().err
    assert (exp / "config.yaml").read_bytes() == recorded
    # What only changes the logging may differ: it resumes and finishes.
    assert run_train(setup, exp, "log_every=2") == 0
    assert (exp / "train_summary.json").is_file() and (exp / "config.yaml").read_bytes() == recorded


@pytest.mark.parametrize("override, message", [
    ("optim.lr=-1", "optim.lr must be > 0, got -1.0"),
    ("trainable=encoder", "trainable must be a list, e.g. trainable: [encoder], got 'encoder'"),
])
def test_bad_config_values_are_one_line(setup, capsys, override, message):
    code = run_train(setup, setup["root"] / "exp" / "bad_value", override)
    err = capsys.readouterr().err
    assert_one_line_error(code, err, setup["config"])
    assert message in err


def test_missing_and_unreadable_inputs_are_one_line(setup, capsys):
    root = setup["root"]
    noise = root / "noise.pt"
    noise.write_bytes(bytes(range(256)) * 8)
    cases = [
        ("data.train=/nonexistent/train", "/nonexistent/train", "data dir not found"),
        ("init=[/nonexistent/best.pt]", "/nonexistent/best.pt", "does not exist"),
        (f"init=[{noise}]", noise, "re-run the stage that writes it"),
        ("tokenizer={type: sentencepiece, model: /nonexistent/char.model}", "/nonexistent/char.model", "not found"),
    ]
    for i, (override, named, message) in enumerate(cases):
        code = run_train(setup, root / "exp" / f"missing{i}", override)
        err = capsys.readouterr().err
        assert_one_line_error(code, err, named)
        assert message in err and "resume from an older" not in err
    # A checkpoint to resume from that is cut short: delete it and resume from an older one.
    killed = root / "exp" / "killed"
    killed.mkdir(parents=True)
    (killed / "ckpt-1.pt").write_bytes(b"PK\x03\x04" + bytes(60))
    code = run_train(setup, killed)
    err = capsys.readouterr().err
    assert_one_line_error(code, err, killed / "ckpt-1.pt")
    assert "resume from an older ckpt-*.pt" in err
    # The traceback is in train.log, and on stderr with --verbose.
    assert "Traceback" in (root / "exp" / "missing2" / "train.log").read_text()
    assert run_train(setup, root / "exp" / "verbose", f"init=[{noise}]", extra=["--verbose"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_unusable_exp_dirs_are_one_line(setup, capsys):
    (setup["root"] / "a_file").write_text("")
    for exp in (setup["root"] / "a_file" / "exp", Path("/sys/hdmole_cannot_write/exp")):
        code = run_train(setup, exp)
        err = capsys.readouterr().err
        assert_one_line_error(code, err, exp)
        assert "choose another --exp-dir" in err


@pytest.mark.slow
def test_command_line_error_has_no_traceback(setup, tmp_path):
    """The real command: one ERROR line on stderr, exit status 1."""
    noise = tmp_path / "noise.pt"
    noise.write_bytes(b"\x00" * 100)
    run = subprocess.run([sys.executable, "-m", "hdmole.bin.train", "--config", str(setup["config"]),
                          "--exp-dir", str(tmp_path / "exp"), "--override", f"init=[{noise}]"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert_one_line_error(run.returncode, run.stderr, noise)
    assert [line for line in run.stderr.splitlines() if " ERROR " in line] == [run.stderr.strip().splitlines()[-1]]
