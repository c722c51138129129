"""Length buckets under a frames budget, DDP splits, collate/padding, SpecAugment and the dataset."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from hdmole.bin import compute_cmvn, compute_fbank, train_tokenizer
from hdmole.data import ASRCollate, ASRDataset, BucketBatchSampler, DataError, GlobalCMVN, SpecAugment, build_dataloader
from hdmole.data.batching import make_length_buckets
from hdmole.text import build_tokenizer
from test_data_fixtures import make_data_dir

LENGTHS = [50, 10, 30, 30, 200, 70, 20, 90, 60, 40, 45, 15]


def test_buckets_respect_budget_and_cover_everything():
    batches = make_length_buckets(LENGTHS, max_frames=120)
    assert sorted(i for b in batches for i in b) == list(range(len(LENGTHS)))
    for batch in batches:
        padded = max(LENGTHS[i] for i in batch) * len(batch)
        assert padded <= 120 or len(batch) == 1  # the 200-frame utterance goes alone
    assert [4] in batches
    # Sorted by length: consecutive batches never overlap in length range.
    spans = [(min(LENGTHS[i] for i in b), max(LENGTHS[i] for i in b)) for b in batches]
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    assert all(len(b) <= 2 for b in make_length_buckets(LENGTHS, max_frames=1000, max_batch_size=2))
    with pytest.raises(ValueError, match="max_frames must be positive"):
        make_length_buckets(LENGTHS, 0)


def test_sampler_shuffles_per_epoch_deterministically():
    sampler = BucketBatchSampler(LENGTHS, 120, shuffle=True, seed=3)
    epoch0 = list(sampler)
    assert list(BucketBatchSampler(LENGTHS, 120, shuffle=True, seed=3)) == epoch0
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    assert epoch1 != epoch0 and sorted(map(tuple, epoch1)) == sorted(map(tuple, epoch0))
    sampler.set_epoch(1, skip_batches=2)
    assert list(sampler) == epoch1[2:] and len(sampler) == len(epoch1) - 2
    ordered = list(BucketBatchSampler(LENGTHS, 120, shuffle=False))
    assert ordered == make_length_buckets(LENGTHS, 120)


@pytest.mark.parametrize("world_size", [2, 3, 5])
def test_ranks_get_equal_counts_and_cover_all_batches(world_size):
    samplers = [BucketBatchSampler(LENGTHS, 120, seed=7, rank=r, world_size=world_size) for r in range(world_size)]
    per_rank = [list(s) for s in samplers]
    assert len({len(b) for b in per_rank}) == 1 and all(len(s) == len(per_rank[0]) for s in samplers)
    seen = {tuple(b) for batches in per_rank for b in batches}
    assert seen == {tuple(b) for b in samplers[0].batches}
    total = len(samplers[0].batches)
    assert sum(len(b) for b in per_rank) == -(-total // world_size) * world_size
    dropped = [list(BucketBatchSampler(LENGTHS, 120, seed=7, rank=r, world_size=world_size, drop_last=True)) for r in range(world_size)]
    assert all(len(b) == total // world_size for b in dropped)
    with pytest.raises(ValueError, match="rank"):
        BucketBatchSampler(LENGTHS, 120, rank=world_size, world_size=world_size)


def test_collate_pads_and_tokenises():
    class CharTokenizer:  # a minimal Tokenizer: ids 1.. for characters, pad 0
        pad_id, bos_id, eos_id, vocab_size = 0, 1, 2, 100

        def encode(self, text):
            return [3 + ord(ch) % 90 for ch in text]

    items = [
        {"utt_id": "a", "feats": np.ones((3, 4), np.float32), "text": "你好", "accent": 1},
        {"utt_id": "b", "feats": np.full((5, 4), 2.0, np.float32), "text": "好", "accent": 0},
    ]
    batch = ASRCollate(CharTokenizer())(items)
    assert batch["utt_ids"] == ["a", "b"] and batch["texts"] == ["你好", "好"]
    assert batch["feats"].shape == (2, 5, 4) and batch["feats"].dtype == torch.float32
    assert batch["feats"][0, 3:].abs().sum() == 0 and batch["feats"][1].eq(2).all()
    assert batch["feat_lens"].tolist() == [3, 5] and batch["accents"].tolist() == [1, 0]
    assert batch["text_lens"].tolist() == [2, 1]
    assert batch["text_ids"][1].tolist() == [3 + ord("好") % 90, 0]
    assert "text_ids" not in ASRCollate()(items)


def test_specaugment_masks_within_limits():
    aug = SpecAugment(num_freq_masks=1, max_freq_width=10, num_time_masks=1, max_time_width=20, max_time_ratio=0.5)
    feats = torch.ones(100, 80)
    widths = []
    for seed in range(20):
        out = aug(feats, generator=torch.Generator().manual_seed(seed))
        bins = out.eq(0).all(dim=0).nonzero().flatten()
        frames = out.eq(0).all(dim=1).nonzero().flatten()
        # One contiguous band / span each, never wider than allowed; nothing else touched.
        for masked, limit in ((bins, 10), (frames, 20)):
            assert len(masked) <= limit and (len(masked) == 0 or masked[-1] - masked[0] + 1 == len(masked))
        assert out.eq(0).sum() == len(bins) * 100 + len(frames) * 80 - len(bins) * len(frames)
        widths.append((len(bins), len(frames)))
        assert torch.equal(out, aug(feats, generator=torch.Generator().manual_seed(seed)))
    assert feats.eq(1).all()  # input untouched
    assert max(w[0] for w in widths) > 5 and max(w[1] for w in widths) > 10
    short = SpecAugment(num_freq_masks=0, num_time_masks=3, max_time_width=40, max_time_ratio=0.1)
    assert short(torch.ones(30, 80)).eq(0).all(dim=1).sum() <= 9  # 3 masks of at most 10% of 30 frames
    assert SpecAugment.from_config(None) is None
    with pytest.raises(ValueError, match=r"unknown SpecAugment option\(s\) \['freq_masks'\]"):
        SpecAugment.from_config({"freq_masks": 2})


@pytest.fixture(scope="module")
def featurised(tmp_path_factory):
    root = tmp_path_factory.mktemp("feats")
    data = make_data_dir(root)
    assert compute_fbank.main([str(data), str(root / "fbank")]) == 0
    assert compute_cmvn.main([str(data), str(root / "cmvn.json")]) == 0
    assert train_tokenizer.main([str(data), str(root / "tok" / "char")]) == 0
    return root, data


def test_dataset_items(featurised):
    root, data = featurised
    dataset = ASRDataset(data, root / "accents.txt", cmvn=GlobalCMVN.load(root / "cmvn.json"))
    item = dataset[4]
    assert item["utt_id"] == "spkC-001" and item["text"] == "HELLO四川" and item["accent"] == 2
    assert item["feats"].shape == (dataset.num_frames[4], 80) and item["feats"].dtype == np.float32
    stacked = np.concatenate([dataset[i]["feats"] for i in range(len(dataset))])
    np.testing.assert_allclose(stacked.mean(axis=0), 0, atol=1e-3)  # CMVN applied
    assert pickle.loads(pickle.dumps(dataset))[0]["utt_id"] == "spkA-001"


def test_build_dataloader(featurised):
    root, data = featurised
    tok = {"type": "sentencepiece", "model": str(root / "tok" / "char.model")}
    loader = build_dataloader(data, root / "accents.txt", max_frames=100, shuffle=True, seed=0, tokenizer=tok,
                              cmvn=root / "cmvn.json", specaug={"num_time_masks": 1})
    batches = list(loader)
    assert sorted(u for b in batches for u in b["utt_ids"]) == sorted(ASRDataset(data, root / "accents.txt").utt_ids)
    tokenizer = build_tokenizer(tok)
    for batch in batches:
        assert batch["feats"].shape[0] * batch["feats"].shape[1] <= 100 or len(batch["utt_ids"]) == 1
        for row, length, text in zip(batch["text_ids"], batch["text_lens"], batch["texts"]):
            assert tokenizer.decode(row[:length].tolist()) == text
            assert row[length:].eq(tokenizer.pad_id).all()
    loader.batch_sampler.set_epoch(1)
    assert len(list(loader)) == len(batches)
    two_ranks = [build_dataloader(data, root / "accents.txt", max_frames=100, shuffle=True, seed=0, rank=r, world_size=2) for r in (0, 1)]
    assert len(two_ranks[0]) == len(two_ranks[1])


def test_dataset_bad_inputs(featurised, tmp_path):
    root, data = featurised
    with pytest.raises(DataError, match="unknown accent 'southwestern'"):
        ASRDataset(data, _accents(tmp_path, "mandarin\nnortheastern\n"))
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("wav.scp", "utt2spk", "utt2accent", "feats.scp", "utt2num_frames"):
        (copy / name).write_bytes((data / name).read_bytes())
    text = (data / "text").read_text(encoding="utf-8").replace("吃饭了吗", "。。！")
    (copy / "text").write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=r"text:4: transcript of 'spkB-002' is empty after normalisation"):
        ASRDataset(copy, root / "accents.txt")
    (copy / "text").write_text((data / "text").read_text(encoding="utf-8"), encoding="utf-8")
    frames = (data / "utt2num_frames").read_text().replace("spkA-001 ", "spkA-001 9")
    (copy / "utt2num_frames").write_text(frames)
    with pytest.raises(DataError, match="utt2num_frames says"):
        ASRDataset(copy, root / "accents.txt")[0]


def _accents(tmp_path, content):
    path = tmp_path / "accents.txt"
    path.write_text(content)
    return path
