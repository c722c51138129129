"""The frozen encoder's outputs kept on disk (data.encoder_cache_dir): the recipe's adaptation systems, seeds and
source gates share one encoding. A training that loads the cache trains exactly as one that encodes; the file
belongs to one encoder, data set and batching, and anything else is encoded anew."""

from __future__ import annotations

import json

import pytest
import torch
from train_fixtures import Corpus, model_state

from hdmole.bin import train

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return Corpus(tmp_path_factory.mktemp("encoder_cache"), num_train=6, num_dev=2)


def adapt(corpus, name, exp, cache_dir, **data):
    config = corpus.config(name, "hdmole", data={"encoder_cache_dir": str(cache_dir), **data},
                           optim={"max_steps": 3}, checkpoint={"every_steps": 3, "keep_last": 1})
    assert train.main(["--config", str(config), "--exp-dir", str(exp)]) == 0
    return (exp / "train.log").read_text()


def test_a_loaded_cache_trains_as_an_encoded_one_and_belongs_to_its_encoder_and_batching(corpus, tmp_path):
    cache_dir = tmp_path / "encoder_cache"
    first = adapt(corpus, "first", tmp_path / "first", cache_dir)
    files = list(cache_dir.glob("*.pt"))
    assert len(files) == 1 and "saved 8 utterances" in first  # 6 train + 2 dev
    outputs = torch.load(files[0], weights_only=True)
    assert sorted(outputs) == sorted(line.split()[0] for d in (corpus.train, corpus.dev)
                                     for line in (d / "text").read_text().splitlines())
    second = adapt(corpus, "second", tmp_path / "second", cache_dir)
    assert "loaded 8 utterances" in second and list(cache_dir.glob("*.pt")) == files
    a, b = model_state(tmp_path / "first" / "last.pt"), model_state(tmp_path / "second" / "last.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    dev = [json.loads(line) for line in (tmp_path / "first" / "train_log.jsonl").read_text().splitlines()]
    dev2 = [json.loads(line) for line in (tmp_path / "second" / "train_log.jsonl").read_text().splitlines()]
    assert [r.get("dev_loss") for r in dev] == [r.get("dev_loss") for r in dev2]
    # another batching: a file of its own (the outputs' last bits can depend on the padding)
    third = adapt(corpus, "third", tmp_path / "third", cache_dir, max_frames=120)
    assert "saved 8 utterances" in third and len(list(cache_dir.glob("*.pt"))) == 2
    # another encoder (a retrained base model): not the old file
    state = torch.load(corpus.base, weights_only=False)
    key = next(k for k in state["model"] if k.startswith("encoder.") and state["model"][k].is_floating_point())
    state["model"][key] = state["model"][key] + 0.01
    other_base = tmp_path / "other_base.pt"
    torch.save(state, other_base)
    config = corpus.config("fourth", "hdmole", init=[str(other_base)], data={"encoder_cache_dir": str(cache_dir)},
                           optim={"max_steps": 1}, checkpoint={"every_steps": 1, "keep_last": 1})
    assert train.main(["--config", str(config), "--exp-dir", str(tmp_path / "fourth")]) == 0
    assert "saved 8 utterances" in (tmp_path / "fourth" / "train.log").read_text()
    assert len(list(cache_dir.glob("*.pt"))) == 3
