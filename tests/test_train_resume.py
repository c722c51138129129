"""A training process killed with a real SIGKILL (not an exception: nothing after the kill runs, no
``finally``, no flush) resumes to exactly the weights of an uninterrupted run:
- killed while writing a checkpoint (half of the file on disk): atomic saving must leave the previous
  checkpoint (or the previous ``last.pt``) intact and no truncated file under a real name;
- killed between the two micro-batches of an accumulated step (optim.accum_grad=2), in an epoch whose
  last step has a single batch: resume must redo the whole step, not half of it.
"""

from __future__ import annotations

import signal

import pytest
import torch
from train_fixtures import Corpus, model_state, step_log, train_and_kill

from hdmole.bin import train
from hdmole.models.checkpoint import read_checkpoint as load_state
from hdmole.train.checkpoint import latest_checkpoint

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return Corpus(tmp_path_factory.mktemp("resume"))


def assert_same_final_weights(reference, resumed) -> None:
    want, got = model_state(reference / "last.pt"), model_state(resumed / "last.pt")
    assert want.keys() == got.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-5, atol=1e-7, msg=lambda m: f"{key}: {m}")
    # The log of the resumed run ends like the reference's: the last record of each step agrees.
    last = lambda exp: {r["step"]: r for r in step_log(exp)}  # noqa: E731 (a redone step's record comes last)
    assert [last(resumed)[s]["loss"] for s in sorted(last(resumed))] == pytest.approx(
        [last(reference)[s]["loss"] for s in sorted(last(reference))], rel=1e-5)


# Checkpoint writes of a run with checkpoint.every_steps=1 and a dev set: step 1 writes ckpt-1.pt (1),
# last.pt (2), best.pt (3); step 2 writes ckpt-2.pt (4), then overwrites last.pt (5).
@pytest.mark.parametrize("victim, kill_at, resumes_from", [("ckpt-2.pt", "save:4", 1), ("last.pt", "save:5", 2)])
def test_sigkill_while_writing_a_checkpoint_then_resume(corpus, tmp_path, victim, kill_at, resumes_from):
    config = corpus.config("sigkill", "hdmole")
    reference = tmp_path / "uninterrupted"
    assert train.main(["--config", str(config), "--exp-dir", str(reference)]) == 0

    exp = tmp_path / "killed"
    result = train_and_kill(config, exp, kill_at)
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    # Every file under a real name is whole; the old last.pt survived its interrupted overwrite.
    names = sorted(p.name for p in exp.glob("*.pt"))
    assert names == sorted(["ckpt-1.pt", "last.pt", "best.pt"] + (["ckpt-2.pt"] if victim == "last.pt" else []))
    for name in names:
        load_state(exp / name)
    assert load_state(exp / "last.pt")["step"] == 1
    # It did die inside the write: half a file under a temporary name.
    partial = list(exp.glob(f".{victim}.tmp*"))
    assert len(partial) == 1 and partial[0].stat().st_size > 0
    with pytest.raises(Exception):
        torch.load(partial[0], weights_only=False)
    assert latest_checkpoint(exp) == exp / f"ckpt-{resumes_from}.pt"

    assert train.main(["--config", str(config), "--exp-dir", str(exp)]) == 0
    assert f"resumed from {exp / f'ckpt-{resumes_from}.pt'}" in (exp / "train.log").read_text()
    assert load_state(exp / "last.pt")["step"] == 4
    assert_same_final_weights(reference, exp)


def test_sigkill_in_the_middle_of_an_accumulated_step_then_resume(corpus, tmp_path):
    # max_frames 350: 5 batches an epoch, so with accum_grad=2 the steps take batches (1, 2), (3, 4), (5) of
    # epoch 0, then (1, 2), (3, 4) of epoch 1. Training forwards 1-7 are steps 1-4; the kill comes at the
    # start of forward 9, after step 5's first micro-batch has been back-propagated.
    config = corpus.config("accum_kill", "hdmole", data={"max_frames": 350},
                           optim={"max_steps": 5, "accum_grad": 2})
    reference = tmp_path / "uninterrupted"
    assert train.main(["--config", str(config), "--exp-dir", str(reference)]) == 0
    state = load_state(reference / "ckpt-3.pt")
    assert (state["epoch"], state["batch_in_epoch"]) == (0, 5)  # step 3 was the epoch's single-batch step
    state = load_state(reference / "ckpt-5.pt")
    assert (state["epoch"], state["batch_in_epoch"]) == (1, 4)

    exp = tmp_path / "killed"
    result = train_and_kill(config, exp, "forward:9")
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    assert latest_checkpoint(exp) == exp / "ckpt-4.pt"
    assert train.main(["--config", str(config), "--exp-dir", str(exp)]) == 0
    assert "(step 4, epoch 1, batch 2)" in (exp / "train.log").read_text()
    assert_same_final_weights(reference, exp)
