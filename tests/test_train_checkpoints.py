"""What the trainer writes is what decoding uses: an adapter checkpoint written by a real training run,
reloaded the way hdmole.bin.decode reloads it (base checkpoint + adapter checkpoint), gives bit-identical
logits to the model the trainer held in memory, and the decode CLI writes that model's hypotheses. And the
encoder cache (router/adapt stages) is an optimisation only: training with it gives the weights of
training without it."""

from __future__ import annotations

import pytest
import torch
from train_fixtures import Corpus, assert_same_training

from hdmole.bin import decode, train
from hdmole.data import build_dataloader
from hdmole.decode.search import _prefill, decode_batch
from hdmole.models.checkpoint import load_model_for_inference
from hdmole.text.tokenizer import build_tokenizer
from hdmole.train.trainer import Trainer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return Corpus(tmp_path_factory.mktemp("checkpoints"))


def train_keeping_the_trainer(config, exp_dir, monkeypatch) -> Trainer:
    """hdmole.bin.train.main (which writes the exp dir's config.yaml), returning its Trainer object."""
    trainers = []
    original = Trainer.run

    def run_and_keep(self):
        trainers.append(self)
        return original(self)

    monkeypatch.setattr(Trainer, "run", run_and_keep)
    assert train.main(["--config", str(config), "--exp-dir", str(exp_dir)]) == 0
    monkeypatch.setattr(Trainer, "run", original)
    return trainers[0]


@torch.no_grad()
def prefix_logits(model, batch: dict) -> torch.Tensor:
    """The LLM's logits over the decoding prefix [speech ; bos] of every utterance (global routing included)."""
    model.eval()
    enc_out, enc_lens = model.encode(batch["feats"], batch["feat_lens"])
    probs = model.route(enc_out, enc_lens)
    embeds, mask, positions, _ = _prefill(model, enc_out, enc_lens, probs)
    with model.routing(probs):
        return model.llm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions).logits


def test_trainer_written_adapter_checkpoint_reloaded_for_decoding_gives_identical_logits(corpus, tmp_path, monkeypatch):
    # A base model that rarely predicts eos (its output row zeroed: logit 0, usually below the best of the
    # others), so that the hypotheses compared below are not all empty.
    tokenizer = build_tokenizer(corpus.tokenizer)
    base = torch.load(corpus.base, weights_only=False)
    base["model"]["llm.lm_head.weight"][tokenizer.eos_id] = 0.0
    torch.save(base, tmp_path / "base.pt")
    exp = tmp_path / "hdmole"
    trainer = train_keeping_the_trainer(corpus.config("reload", "hdmole", init=[str(tmp_path / "base.pt")]), exp,
                                        monkeypatch)
    loader = build_dataloader(corpus.dev, corpus.accents, max_frames=20000, shuffle=False, seed=0, tokenizer=tokenizer)
    batch = next(iter(loader))
    assert len(batch["utt_ids"]) == 4  # the whole dev set in one batch

    reloaded = load_model_for_inference(exp / "config.yaml", [tmp_path / "base.pt", exp / "last.pt"], num_accents=2)
    trained = prefix_logits(trainer.model, batch)
    assert torch.equal(prefix_logits(reloaded, batch), trained)
    # The adapters (and the router fine-tuned with them) did change the model: the check is not base == base.
    base_only = load_model_for_inference(exp / "config.yaml", [tmp_path / "base.pt"], num_accents=2)
    assert (prefix_logits(base_only, batch) - trained).abs().max() > 1e-3

    # The decode CLI (the recipe's decoding stage) loads the same files and writes the trainer's hypotheses.
    out = tmp_path / "decode_dev"
    assert decode.main(["--config", str(exp / "config.yaml"), "--checkpoint", str(tmp_path / "base.pt"), "--adapter",
                        str(exp / "last.pt"), "--data", str(corpus.dev), "--accents", str(corpus.accents),
                        "--out", str(out), "--beam", "2", "--threads", "1"]) == 0
    hyps = dict((line.split(" ", 1) + [""])[:2] for line in (out / "text").read_text().splitlines())
    expected = decode_batch(trainer.model.eval(), batch, tokenizer, beam=2)
    assert [hyps[u] for u in batch["utt_ids"]] == [" ".join(h.split()) for h in expected]
    assert sum(map(bool, expected)) >= 2  # hypotheses with tokens in them: a comparison of something


def test_training_with_the_encoder_cache_gives_the_weights_of_training_without_it(corpus, tmp_path):
    for name, cache in (("cached", True), ("uncached", False)):
        config = corpus.config(name, "hdmole", data={"cache_encoder": cache})
        assert train.main(["--config", str(config), "--exp-dir", str(tmp_path / name)]) == 0
    log = (tmp_path / "cached" / "train.log").read_text()
    assert "encoder cache: 18 utterances (train set)" in log  # the cache was really used
    assert "encoder cache" not in (tmp_path / "uncached" / "train.log").read_text()
    assert_same_training(tmp_path / "uncached", tmp_path / "cached", rtol=1e-4, atol=1e-5)
