"""The trainer's side of HDMoLE's thresholds: their own learning rate is warmed up like the rest and then kept
(never annealed to zero by the adapters' schedule), and the price on active experts (active_cost) is part of the
trained objective and of the log."""

from __future__ import annotations

import pytest
from train_fixtures import Corpus, step_log

from hdmole.bin import train
from hdmole.train.trainer import Trainer

pytestmark = pytest.mark.slow


def test_threshold_lr_is_constant_after_warmup_while_the_adapters_anneal_and_the_price_is_logged(tmp_path, monkeypatch):
    corpus = Corpus(tmp_path / "corpus")
    config = corpus.config(
        "thresholds", "hdmole",
        optim={"lr": 5e-3, "max_steps": 6, "warmup_steps": 2, "scheduler": "cosine", "threshold_lr": 0.05},
        adapter={"system": "hdmole", "config": {"rank": 4, "alpha": 8, "threshold_init": 0.3, "active_cost": 0.05}},
    )
    trainers = []
    original = Trainer.run
    monkeypatch.setattr(Trainer, "run", lambda self: trainers.append(self) or original(self))
    assert train.main(["--config", str(config), "--exp-dir", str(tmp_path / "exp")]) == 0
    trainer = trainers[0]
    groups = trainer.optimizer.param_groups
    assert [bool(g.get("thresholds")) for g in groups] == [False, True]
    assert all(name.endswith("hdmole_threshold_logit") for name, p in trainer.model.named_parameters()
               if any(p is q for q in groups[1]["params"]))
    adapters_lr, threshold_lr = trainer.scheduler.get_last_lr()
    assert adapters_lr < 1e-6  # the cosine schedule ends at 0
    assert threshold_lr == pytest.approx(0.05)  # the thresholds' does not
    assert trainer.scheduler.lr_lambdas[1](0) == pytest.approx(0.5)  # but it is warmed up like the rest
    records = step_log(tmp_path / "exp")
    assert records and all(r["loss_gate"] > 0 for r in records)
