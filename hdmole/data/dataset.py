"""The ASR dataset over a Kaldi data dir with features, and `build_dataloader` for the trainers."""

from __future__ import annotations

from pathlib import Path

import kaldiio
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from hdmole.data.accents import AccentList
from hdmole.data.batching import ASRCollate, BucketBatchSampler
from hdmole.data.cmvn import GlobalCMVN
from hdmole.data.datadir import DataDir
from hdmole.data.audio import read_wav
from hdmole.data.errors import DataError
from hdmole.data.frontend import features_of
from hdmole.data.specaug import SpecAugment
from hdmole.data.table import read_kaldi_table
from hdmole.text.normalize import normalize_text


class ASRDataset(Dataset):
    """Items `{"utt_id", "feats": float32 [T, F], "text": str, "accent": int}` in LC_ALL=C utterance order.

    Transcripts are normalised with hdmole.text.normalize_text (unless `normalize=False`); one that is
    empty after normalisation is a DataError naming its line. `cmvn` (GlobalCMVN) is applied to features.
    Features come from feats.scp, or, in a raw data dir (frontend.json, `compute_fbank --feats-type raw`), are
    computed from wav.scp here, in the loader's worker processes (`data.num_workers`).
    """

    def __init__(self, data_dir: str | Path, accents: AccentList | str | Path, *, cmvn: GlobalCMVN | None = None,
                 normalize: bool = True, ctc_text: str | None = None):
        self.data = DataDir.load(data_dir, accents, require_feats=True)
        self.accents = self.data.accents
        self.cmvn = cmvn
        self.utt_ids = self.data.utt_ids
        self.num_frames = [self.data.utt2num_frames[utt] for utt in self.utt_ids]
        self.accent_ids = [self.data.accent_index(utt) for utt in self.utt_ids]
        self.texts = []
        for utt in self.utt_ids:
            text = normalize_text(self.data.text[utt]) if normalize else self.data.text[utt]
            if not text:
                raise DataError(
                    f"{self.data.text.where(utt)}: transcript of {utt!r} is empty after normalisation "
                    f"({self.data.text[utt]!r}); fix the transcript or remove the utterance"
                )
            self.texts.append(text)
        # Optional CTC targets from another data-dir file (e.g. `pinyin`: the tonal syllables said), as written.
        self.ctc_texts = None
        if ctc_text:
            table = read_kaldi_table(Path(data_dir) / ctc_text, value_name=f"{ctc_text} units")
            missing = [utt for utt in self.utt_ids if utt not in table.entries]
            if missing:
                raise DataError(f"{table.path}: no entry for {missing[0]!r} ({len(missing)} utterances missing); "
                                f"data.ctc_text needs a {ctc_text} line for every utterance")
            self.ctc_texts = [table.entries[utt] for utt in self.utt_ids]
        self._reader = None  # opened lazily, in the process that reads (DataLoader workers)

    def __len__(self) -> int:
        return len(self.utt_ids)

    def read_feats(self, index: int) -> np.ndarray:
        if self.data.frontend is not None:
            return self.compute_feats(index)
        utt = self.utt_ids[index]
        if self._reader is None:
            self._reader = kaldiio.load_scp(str(self.data.feats_scp.path))
        try:
            feats = np.asarray(self._reader[utt], dtype=np.float32)
        except (OSError, ValueError) as error:
            raise DataError(
                f"{self.data.feats_scp.where(utt)}: cannot read the features of {utt!r} ({error}); re-run compute_fbank --force"
            ) from None
        if feats.ndim != 2 or feats.shape[0] != self.num_frames[index]:
            raise DataError(
                f"{self.data.feats_scp.where(utt)}: features of {utt!r} have shape {feats.shape} but utt2num_frames says "
                f"{self.num_frames[index]} frames; re-run compute_fbank --force"
            )
        return feats

    def compute_feats(self, index: int) -> np.ndarray:
        """A raw data dir (frontend.json): the features of wav.scp's audio, as compute_fbank would dump them."""
        utt, config = self.utt_ids[index], self.data.frontend
        where = self.data.wav_scp.where(utt)
        try:
            samples, _ = read_wav(self.data.wav_scp[utt], expected_sample_rate=config.sample_rate)
            feats = features_of(samples, config)
        except DataError as error:
            raise DataError(f"{where}: utterance {utt!r}: {error}") from None
        if feats.shape[0] != self.num_frames[index]:
            raise DataError(f"{where}: the audio of {utt!r} gives {feats.shape[0]} frames but utt2num_frames says "
                            f"{self.num_frames[index]}: the audio changed; re-run compute_fbank --feats-type raw --force")
        return feats

    def __getitem__(self, index: int) -> dict:
        feats = self.read_feats(index)
        if self.cmvn is not None:
            feats = self.cmvn.apply(feats)
        item = {"utt_id": self.utt_ids[index], "feats": feats, "text": self.texts[index], "accent": self.accent_ids[index]}
        if self.ctc_texts is not None:
            item["ctc_text"] = self.ctc_texts[index]
        return item


def build_dataloader(
    data_dir: str | Path,
    accents: AccentList | str | Path,
    *,
    max_frames: int,
    shuffle: bool,
    seed: int,
    tokenizer=None,
    cmvn: GlobalCMVN | str | Path | None = None,
    specaug: SpecAugment | dict | None = None,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
    max_batch_size: int | None = None,
    drop_last: bool = False,
    normalize: bool = True,
    ctc_text: str | None = None,
    ctc_tokenizer=None,
) -> DataLoader:
    """A DataLoader of padded batches (see ASRCollate) from length buckets (see BucketBatchSampler).

    `tokenizer` is a Tokenizer or a build_tokenizer config dict; `cmvn` a GlobalCMVN or its JSON path;
    `specaug` a SpecAugment or its option dict (training only: pass None for dev/test). `ctc_text` names a
    data-dir file of CTC targets (e.g. `pinyin`) and `ctc_tokenizer` (a Tokenizer or config dict) maps them to
    `ctc_ids`, `ctc_lens`; without them CTC uses the transcript's tokens. Call
    `loader.batch_sampler.set_epoch(epoch)` before each epoch.
    """
    if isinstance(tokenizer, dict):
        from hdmole.text.tokenizer import build_tokenizer

        tokenizer = build_tokenizer(tokenizer)
    if cmvn is not None and not isinstance(cmvn, GlobalCMVN):
        cmvn = GlobalCMVN.load(cmvn)
    if isinstance(specaug, dict):
        specaug = SpecAugment.from_config(specaug)
    if isinstance(ctc_tokenizer, dict):
        from hdmole.text.tokenizer import build_tokenizer

        ctc_tokenizer = build_tokenizer(ctc_tokenizer)
    if bool(ctc_text) != (ctc_tokenizer is not None):
        raise ValueError("build_dataloader: ctc_text and ctc_tokenizer go together (the file of units and their list)")
    dataset = ASRDataset(data_dir, accents, cmvn=cmvn, normalize=normalize, ctc_text=ctc_text)
    sampler = BucketBatchSampler(
        dataset.num_frames, max_frames, shuffle=shuffle, seed=seed, rank=rank, world_size=world_size,
        max_batch_size=max_batch_size, drop_last=drop_last,
    )
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=ASRCollate(tokenizer, specaug, ctc_tokenizer),
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(seed),  # seeds the workers' torch RNG (SpecAugment) reproducibly
    )
