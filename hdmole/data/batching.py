"""Length-bucketed batching under a padded-frames budget, DDP-aware, and the collate function.

Batches are formed once: utterances sorted by length, then filled greedily while
`longest * batch_size <= max_frames` (sorting keeps padding small). Each epoch only the batch *order* is
shuffled, from (seed, epoch), so every rank computes the same permutation without talking to the others
and a resumed run sees the same batches.
"""

from __future__ import annotations

import logging
import math
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from hdmole.data.specaug import SpecAugment

log = logging.getLogger(__name__)


def make_length_buckets(lengths: Sequence[int], max_frames: int, max_batch_size: int | None = None) -> list[list[int]]:
    """Index batches over `lengths` whose padded size (max length * size) stays <= max_frames.

    An utterance longer than `max_frames` on its own becomes a batch of one (with a warning) rather than
    being dropped silently.
    """
    if max_frames <= 0:
        raise ValueError(f"max_frames must be positive, got {max_frames}")
    order = sorted(range(len(lengths)), key=lambda index: (lengths[index], index))
    batches: list[list[int]] = []
    current: list[int] = []
    overlong = 0
    for index in order:
        length = lengths[index]
        full = max_batch_size is not None and len(current) >= max_batch_size
        if current and (full or length * (len(current) + 1) > max_frames):
            batches.append(current)
            current = []
        current.append(index)
        overlong += length > max_frames
    if current:
        batches.append(current)
    if overlong:
        log.warning("%d utterance(s) are longer than max_frames=%d; each forms a batch of one", overlong, max_frames)
    return batches


class BucketBatchSampler(Sampler[list[int]]):
    """Yields lists of dataset indices for this rank; every rank gets the same number of batches.

    With `world_size` > 1 the shuffled batch list is padded by repeating its first batches (or cut, with
    `drop_last`) to a multiple of world_size, and rank r takes batches r, r + world_size, ... Call
    `set_epoch(epoch)` before each epoch; `skip_batches` resumes mid-epoch.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        max_frames: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        max_batch_size: int | None = None,
        drop_last: bool = False,
    ):
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank} world_size={world_size}")
        self.batches = make_length_buckets(lengths, max_frames, max_batch_size)
        if not self.batches:
            raise ValueError("no utterances to batch")
        self.shuffle, self.seed, self.rank, self.world_size, self.drop_last = shuffle, seed, rank, world_size, drop_last
        total = len(self.batches)
        self.num_batches_per_rank = total // world_size if drop_last else math.ceil(total / world_size)
        if self.num_batches_per_rank == 0:
            raise ValueError(f"{total} batch(es) cannot give each of {world_size} ranks one with drop_last; lower max_frames")
        self.epoch = 0
        self.skip_batches = 0

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        """Select the epoch's batch order; skip the first `skip_batches` of this rank's batches (resume)."""
        self.epoch, self.skip_batches = epoch, skip_batches

    def epoch_batches(self) -> list[list[int]]:
        """All of this rank's batches for the current epoch (ignoring skip_batches)."""
        order = list(range(len(self.batches)))
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.batches)).tolist()
        needed = self.num_batches_per_rank * self.world_size
        while len(order) < needed:  # several passes only when there are fewer batches than ranks
            order += order[: needed - len(order)]
        order = order[:needed]
        return [self.batches[index] for index in order[self.rank :: self.world_size]]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.epoch_batches()[self.skip_batches :]

    def __len__(self) -> int:
        return max(0, self.num_batches_per_rank - self.skip_batches)


class ASRCollate:
    """Pad a list of dataset items into a batch dict (see `__call__`); optional SpecAugment and tokenizer."""

    def __init__(self, tokenizer=None, specaug: SpecAugment | None = None, ctc_tokenizer=None):
        self.tokenizer = tokenizer
        self.specaug = specaug
        self.ctc_tokenizer = ctc_tokenizer

    def __call__(self, items: list[dict]) -> dict:
        """{"utt_ids", "feats" [B,T,F] zero-padded, "feat_lens" [B], "texts", "accents" [B]
        (+ "text_ids" [B,L] padded with tokenizer.pad_id, "text_lens" [B] when a tokenizer is set; + "ctc_ids",
        "ctc_lens" from each item's "ctc_text" when a ctc_tokenizer is set)}."""
        feats = [torch.from_numpy(item["feats"]) for item in items]
        if self.specaug is not None:
            feats = [self.specaug(f) for f in feats]
        batch = {
            "utt_ids": [item["utt_id"] for item in items],
            "feats": torch.nn.utils.rnn.pad_sequence(feats, batch_first=True, padding_value=0.0),
            "feat_lens": torch.tensor([f.shape[0] for f in feats], dtype=torch.long),
            "texts": [item["text"] for item in items],
            "accents": torch.tensor([item["accent"] for item in items], dtype=torch.long),
        }
        if self.tokenizer is not None:
            ids = [torch.tensor(self.tokenizer.encode(item["text"]), dtype=torch.long) for item in items]
            batch["text_ids"] = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=self.tokenizer.pad_id)
            batch["text_lens"] = torch.tensor([len(i) for i in ids], dtype=torch.long)
        if self.ctc_tokenizer is not None:
            ids = [torch.tensor(self.ctc_tokenizer.encode(item["ctc_text"]), dtype=torch.long) for item in items]
            batch["ctc_ids"] = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=0)
            batch["ctc_lens"] = torch.tensor([len(i) for i in ids], dtype=torch.long)
        return batch
