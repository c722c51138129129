"""Kaldi data dirs, audio, fbank features, CMVN, the ASR dataset and length-bucketed batching.

Names that need torch (dataset, batching, SpecAugment) are imported lazily, so feature extraction
(and its worker processes) never pays for importing torch.
"""

from hdmole.data.accents import AccentList
from hdmole.data.audio import read_wav
from hdmole.data.cmvn import GlobalCMVN
from hdmole.data.datadir import DataDir
from hdmole.data.errors import DataError
from hdmole.data.fbank import FbankConfig, compute_fbank
from hdmole.data.table import KaldiTable, read_kaldi_table, write_kaldi_table

_LAZY = {
    "ASRDataset": "hdmole.data.dataset",
    "build_dataloader": "hdmole.data.dataset",
    "BucketBatchSampler": "hdmole.data.batching",
    "ASRCollate": "hdmole.data.batching",
    "SpecAugment": "hdmole.data.specaug",
}

__all__ = [
    "AccentList", "DataDir", "DataError", "FbankConfig", "GlobalCMVN", "KaldiTable",
    "compute_fbank", "read_kaldi_table", "read_wav", "write_kaldi_table", *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hdmole.data' has no attribute {name!r}")
