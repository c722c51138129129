"""best.pt is the checkpoint of the best dev evaluation (lowest loss, or highest accuracy), not the last one:
a real training run whose dev results are scripted, so that the best step is known and is not the last."""

from __future__ import annotations

import json

import pytest
import torch
from train_fixtures import Corpus, model_state

from hdmole.bin import train
from hdmole.train.trainer import Trainer

torch.set_num_threads(1)

# One dev evaluation per step (checkpoint.every_steps = 1): the best loss is at step 2, the best accuracy at
# step 3, and neither is at the last step (5), where both are middling.
DEV = [{"dev_loss": 3.0, "dev_acc": 0.10}, {"dev_loss": 1.5, "dev_acc": 0.30}, {"dev_loss": 2.0, "dev_acc": 0.60},
       {"dev_loss": 2.6, "dev_acc": 0.20}, {"dev_loss": 2.2, "dev_acc": 0.40}]
BEST_STEP = {"loss": 2, "acc": 3}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return Corpus(tmp_path_factory.mktemp("best"), num_train=6, num_dev=2)


@pytest.mark.parametrize("metric", list(BEST_STEP))
def test_best_checkpoint_is_the_best_dev_step_not_the_last(corpus, tmp_path, monkeypatch, metric):
    scripted = iter(DEV)
    monkeypatch.setattr(Trainer, "validate", lambda self: dict(next(scripted)))
    config = corpus.config(f"best_{metric}", "full_ft", optim={"max_steps": len(DEV)},
                           checkpoint={"every_steps": 1, "keep_last": 100, "metric": metric})
    exp = tmp_path / metric
    assert train.main(["--config", str(config), "--exp-dir", str(exp)]) == 0
    dev_log = [r for r in map(json.loads, (exp / "train_log.jsonl").read_text().splitlines()) if "dev_loss" in r]
    assert [r["step"] for r in dev_log] == [1, 2, 3, 4, 5]  # every scripted evaluation was logged
    best = torch.load(exp / "best.pt", map_location="cpu", weights_only=False)
    assert best["step"] == BEST_STEP[metric] != len(DEV)
    assert best["dev"] == DEV[BEST_STEP[metric] - 1]
    # the weights of that step, which training then changed
    best_weights, at_step = model_state(exp / "best.pt"), model_state(exp / f"ckpt-{BEST_STEP[metric]}.pt")
    last = model_state(exp / "last.pt")
    assert best_weights.keys() == at_step.keys()
    assert all(torch.equal(best_weights[k], at_step[k]) for k in at_step)
    assert any(not torch.equal(best_weights[k], last[k]) for k in last)
