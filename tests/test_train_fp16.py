"""The float16 training path (``dtype: float16``: CUDA autocast in fp16 with loss scaling, for GPUs without
bf16) through the real trainer.

What a CPU can check, and what it cannot: the CPU has no fp16 autocast in this trainer (autocast is CUDA's
only, hdmole.models.precision), so these runs compute in float32 and test the loss-scaling *plumbing*: the
loss is scaled before backward, the gradients are unscaled before clipping (a tiny grad_clip makes clipping
act at every step, so clipping the scaled gradients would give other weights), the optimizer steps through
the scaler (a step with an overflowed gradient is skipped and the scale halved), and the scale is saved in
the checkpoints. Whether fp16 arithmetic itself converges needs a GPU (egs/kespeech/README.md).
"""

from __future__ import annotations

import pytest
import torch
from train_fixtures import Corpus, assert_same_training, model_state

from hdmole.bin import train
from hdmole.train.trainer import Trainer

pytestmark = pytest.mark.slow  # three short trainings of the tiny model


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return Corpus(tmp_path_factory.mktemp("fp16"), num_train=8, num_dev=2)


def _run(corpus, name, dtype, tmp_path, steps=3):
    config = corpus.config(name, "hdmole", dtype=dtype, optim={"max_steps": steps, "grad_clip": 1e-3})
    exp = tmp_path / name
    assert train.main(["--config", str(config), "--exp-dir", str(exp)]) == 0
    return exp


def test_loss_scaling_trains_as_float32_where_nothing_overflows(corpus, tmp_path):
    fp32 = _run(corpus, "fp32", "float32", tmp_path)
    fp16 = _run(corpus, "fp16", "float16", tmp_path)
    assert_same_training(fp32, fp16)
    scaler = torch.load(fp16 / "last.pt", weights_only=False)["scaler"]
    assert scaler["scale"] == 65536.0  # scaled all along, never backed off
    assert torch.load(fp32 / "last.pt", weights_only=False)["scaler"] == {}  # float32: no scaler


def test_a_step_whose_gradients_overflow_is_skipped_and_the_scale_halved(corpus, tmp_path, monkeypatch):
    real_step = Trainer.train_step

    def overflowing_step(self, window, record):
        result = real_step(self, window, record)
        if self.step == 0:  # the first step's gradient overflows (as fp16 gradients of a large scale do)
            self.params[0].grad.fill_(float("inf"))
        return result

    monkeypatch.setattr(Trainer, "train_step", overflowing_step)
    exp = _run(corpus, "overflow", "float16", tmp_path, steps=1)
    ckpt = torch.load(exp / "last.pt", weights_only=False)
    assert ckpt["scaler"]["scale"] == 32768.0
    init = model_state(corpus.base)
    for name, value in model_state(exp / "last.pt").items():
        if name in init:  # the router's weights: trained in adapt, unchanged by the skipped step
            torch.testing.assert_close(value, init[name], rtol=0, atol=0, msg=name)
