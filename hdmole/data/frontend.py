"""The speech front end, shared by feature dumps (hdmole.bin.compute_fbank) and raw-audio data dirs.

Two ways to feed a model (ESPnet's `feats_type`): **fbank** dumps features into arks once (`feats.scp`);
**raw** keeps `wav.scp` (files, Kaldi pipes, kaldiio ark offsets) and the data loader computes the same
features per utterance (`hdmole.data.dataset.ASRDataset`), with the options a raw data dir records in
`frontend.json` (written by `compute_fbank --feats-type raw` with `utt2num_frames`). The same function,
`features_of`, makes both, so a raw data dir's features equal the dumped ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hdmole.data.errors import DataError
from hdmole.data.fbank import FbankConfig, compute_fbank
from hdmole.files import atomic_write_text

FRONTEND_FILE = "frontend.json"
WHISPER_MAX_FRAMES = 3000  # 30 s at 10 ms: the most a pre-trained Whisper encoder has positions for


def whisper_log_mel(waveform: np.ndarray, sample_rate: int = 16000, num_mel_bins: int = 80) -> np.ndarray:
    """Whisper's own log-mel (``WhisperFeatureExtractor``: 80 or 128 bins, clamped to 8 dB below the
    utterance maximum, scaled by (x + 4) / 4), with ``padding="longest"``: no 30 s padding is added
    (the Whisper encoder runs on the true length). [T, num_mel_bins], 10 ms hop, like Kaldi fbank."""
    if sample_rate != 16000:
        raise ValueError(f"Whisper features need 16 kHz audio, got {sample_rate} Hz; resample first (e.g. sox)")
    extractor = _whisper_extractor(num_mel_bins)
    wav = np.asarray(waveform, dtype=np.float32)
    if np.abs(wav).max(initial=0.0) > 1.0:  # int16-scaled samples -> [-1, 1], as Whisper was trained on
        wav = wav / 32768.0
    feats = extractor(wav, sampling_rate=16000, padding="longest", return_tensors="np")["input_features"][0]
    return feats.T.astype(np.float32)


_EXTRACTORS: dict = {}


def _whisper_extractor(num_mel_bins: int):
    # Built once per process: its mel filter bank costs more than the features of a short utterance.
    if num_mel_bins not in _EXTRACTORS:
        from transformers import WhisperFeatureExtractor

        _EXTRACTORS[num_mel_bins] = WhisperFeatureExtractor(feature_size=num_mel_bins, sampling_rate=16000)
    return _EXTRACTORS[num_mel_bins]


def check_length(num_samples: int, config: FbankConfig) -> int:
    """The number of frames of an utterance of `num_samples` samples; a DataError when it has none, or (Whisper)
    when it is longer than Whisper's window: WhisperFeatureExtractor would silently truncate it to 30 s."""
    if config.feature_type == "whisper" and num_samples > WHISPER_MAX_FRAMES * config.sample_rate // 100:
        raise DataError(
            f"audio of {num_samples / config.sample_rate:.1f} s is longer than Whisper's 30 s window; remove or "
            "segment the utterance (e.g. utils/subset_data_dir.sh / utils/fix_data_dir.sh)"
        )
    frames = num_frames(num_samples, config)
    if frames == 0:
        raise DataError(f"audio of {num_samples} samples is shorter than one {config.frame_length_ms:g} ms frame; "
                        "remove the utterance")
    return frames


def features_of(samples: np.ndarray, config: FbankConfig) -> np.ndarray:
    """[T, num_mel_bins (+3 with pitch)] features of one utterance, of the configured type."""
    if config.feature_type == "fbank":
        return compute_fbank(samples, config)
    check_length(len(samples), config)
    return whisper_log_mel(samples, config.sample_rate, config.num_mel_bins)


def num_frames(num_samples: int, config: FbankConfig) -> int:
    """The number of frames `features_of` gives for `num_samples` samples, without computing them (what a raw
    data dir's utt2num_frames holds, for batching by length)."""
    shift = int(config.sample_rate * config.frame_shift_ms / 1000)
    if config.feature_type == "whisper":
        return num_samples // shift  # centred STFT frames (1 + n // hop), Whisper drops the last one
    window = int(config.sample_rate * config.frame_length_ms / 1000)
    if config.snip_edges:
        return 0 if num_samples < window else 1 + (num_samples - window) // shift
    return (num_samples + shift // 2) // shift


def write_frontend(data_dir: Path, config: FbankConfig, audio: str) -> None:
    """Marks `data_dir` as raw: its features are computed from wav.scp with `config` (written last)."""
    atomic_write_text(data_dir / FRONTEND_FILE, json.dumps({**config.as_dict(), "audio": audio}, indent=1) + "\n")


def read_frontend(data_dir: str | Path) -> FbankConfig | None:
    """The front end of a raw data dir (None when it has no frontend.json)."""
    path = Path(data_dir) / FRONTEND_FILE
    if not path.is_file():
        return None
    try:
        options = json.loads(path.read_text(encoding="utf-8"))
        options.pop("audio", None)
        return FbankConfig(**options)
    except (ValueError, TypeError) as error:
        raise DataError(f"{path}: not a front-end record ({error}); re-run `python -m hdmole.bin.compute_fbank "
                        f"--feats-type raw {data_dir} <log dir>`") from None
