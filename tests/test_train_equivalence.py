"""Several processes, or gradient accumulation, train the same model as one process on the concatenated
batches: same loss and gradient norm at every step and the same weights after a few AdamW steps, for an
adapter system (HDMoLE, with the global router trained on the per-utterance accent loss) and for full
fine-tuning of the projector.

Three runs of the real trainer see the same utterances at every step:
  ddp     torchrun, 2 processes (gloo): rank r takes batches r, r + 2, ... of the epoch's order;
  accum   1 process, optim.accum_grad=2 over that same order: batches (0, 1), (2, 3), ...;
  concat  1 process whose every batch is rank 0's batch and rank 1's batch together (one padded batch).
The ranks' (and micro-batches') batches hold different numbers of tokens and utterances (checked), so a
trainer that averaged per-batch means instead of normalising over the whole step would fail here.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from train_fixtures import SYSTEMS, Corpus, assert_same_training, step_log, train_ddp

from hdmole.bin import train
from hdmole.data import build_dataloader
from hdmole.train.trainer import Trainer

pytestmark = pytest.mark.slow
STEPS = 3  # within the first epoch (8 batches: 4 pairs), where neither the ranks nor the pairs are padded


class ConcatenatedRanks:
    """Batch sampler yielding, at each step, the indices of both ranks' batches of a 2-process run."""

    def __init__(self, samplers):
        self.samplers = samplers

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        for s in self.samplers:
            s.set_epoch(epoch, skip_batches)

    def __iter__(self):
        for parts in zip(*self.samplers):
            yield [i for part in parts for i in part]

    def __len__(self) -> int:
        return min(len(s) for s in self.samplers)


def dev_records(exp_dir) -> list[dict]:
    lines = (exp_dir / "train_log.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "dev_loss" in r]


def rank_loaders(trainer: Trainer, world: int = 2) -> list[DataLoader]:
    c = trainer.config
    return [build_dataloader(c.data.train, trainer.accents, max_frames=c.data.max_frames, shuffle=True, seed=c.seed,
                             tokenizer=trainer.tokenizer, cmvn=c.data.cmvn, rank=r, world_size=world)
            for r in range(world)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return Corpus(tmp_path_factory.mktemp("equivalence"))


@pytest.fixture(scope="module")
def concat_runs(corpus, tmp_path_factory):
    """The reference: one process, both ranks' batches concatenated (Trainer._loaders replaced)."""
    original = Trainer._loaders
    seen: dict[str, list] = {}

    def concatenated_loaders(self):
        single, dev = original(self)
        per_rank = rank_loaders(self)
        seen["pairs"] = list(zip(*(ld.batch_sampler.epoch_batches() for ld in per_rank)))
        loader = DataLoader(single.dataset, batch_sampler=ConcatenatedRanks([ld.batch_sampler for ld in per_rank]),
                            collate_fn=single.collate_fn)
        return loader, dev

    out = {}
    mp = pytest.MonkeyPatch()
    mp.setattr(Trainer, "_loaders", concatenated_loaders)
    try:
        for system in SYSTEMS:
            exp = tmp_path_factory.mktemp(f"concat_{system}")
            config = corpus.config(f"concat_{system}", system, optim={"max_steps": STEPS})
            assert train.main(["--config", str(config), "--exp-dir", str(exp)]) == 0
            out[system] = exp
    finally:
        mp.undo()
    out["pairs"] = seen["pairs"][:STEPS]
    return out


def test_the_ranks_batches_differ_in_tokens_and_utterances(corpus, concat_runs):
    """Otherwise a mean of per-rank means would equal the global mean and the comparison would prove little."""
    from hdmole.text.tokenizer import build_tokenizer

    tokenizer = build_tokenizer(corpus.tokenizer)
    texts = [line.split(" ", 1)[1] for line in (corpus.train / "text").read_text().splitlines()]  # dataset order
    tokens = lambda batch: sum(len(tokenizer.encode(texts[i])) + 1 for i in batch)  # noqa: E731 (text + eos)
    pairs = concat_runs["pairs"]
    assert len(pairs) == STEPS
    assert all(tokens(a) != tokens(b) for a, b in pairs)
    assert any(len(a) != len(b) for a, b in pairs)


@pytest.mark.parametrize("system", list(SYSTEMS))
def test_two_process_ddp_equals_one_process_on_the_concatenated_batches(corpus, concat_runs, system, tmp_path):
    config = corpus.config(f"ddp_{system}", system, optim={"max_steps": STEPS})
    result = train_ddp(config, tmp_path / "ddp")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "parameters agree across 2 ranks" in (tmp_path / "ddp" / "train.log").read_text()
    assert_same_training(concat_runs[system], tmp_path / "ddp")
    # Validation: each rank its share of the dev batches, the sums all-reduced = one process on the whole set.
    dev = [dev_records(concat_runs[system]), dev_records(tmp_path / "ddp")]
    assert [r["step"] for r in dev[1]] == [r["step"] for r in dev[0]] == list(range(1, STEPS + 1))
    for key in ("dev_loss", "dev_acc"):
        np.testing.assert_allclose([r[key] for r in dev[1]], [r[key] for r in dev[0]], rtol=1e-5, err_msg=key)


@pytest.mark.parametrize("system", list(SYSTEMS))
def test_gradient_accumulation_equals_one_process_on_the_concatenated_batches(corpus, concat_runs, system, tmp_path):
    config = corpus.config(f"accum_{system}", system, optim={"max_steps": STEPS, "accum_grad": 2})
    assert train.main(["--config", str(config), "--exp-dir", str(tmp_path / "accum")]) == 0
    assert_same_training(concat_runs[system], tmp_path / "accum")
    # Half the steps of an unaccumulated run over the same batches: the optimizer stepped once per pair.
    assert torch.load(tmp_path / "accum" / "last.pt", weights_only=False)["batch_in_epoch"] == 2 * STEPS


def test_a_global_batch_trains_the_same_on_one_process_or_two(corpus, tmp_path):
    """optim.global_batches: 2 is accum_grad 2 on one process and 1 on two (torchrun): the same steps, the same
    learning rate at each (a warmup in optimizer steps), the same weights."""
    optim = {"max_steps": STEPS, "global_batches": 2, "scheduler": "linear", "warmup_steps": 2}
    config = corpus.config("global_batches", "hdmole", optim=optim)
    assert train.main(["--config", str(config), "--exp-dir", str(tmp_path / "one")]) == 0
    result = train_ddp(config, tmp_path / "two")
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_training(tmp_path / "one", tmp_path / "two")
    lrs = [[r["lr"] for r in step_log(tmp_path / run)] for run in ("one", "two")]
    assert lrs[0] == lrs[1] and len(lrs[0]) == STEPS and lrs[0][0] < lrs[0][1]  # warming up, in optimizer steps
    summaries = [json.loads((tmp_path / run / "train_summary.json").read_text()) for run in ("one", "two")]
    assert [(s["world_size"], s["accum_grad"]) for s in summaries] == [(1, 2), (2, 1)]
