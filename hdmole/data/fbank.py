"""Kaldi-compatible log-mel filterbank features (kaldi-native-fbank), shared by compute_fbank and on-the-fly use.

`FbankConfig.feature_type` also records which extractor compute_fbank used: ``fbank`` (this module) or
``whisper`` (Whisper's own log-mel, ``hdmole.models.features.whisper_log_mel``, for a pre-trained Whisper
encoder; only ``sample_rate`` and ``num_mel_bins`` apply to it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from hdmole.data.errors import DataError


FEATURE_TYPES = ("fbank", "whisper")
WHISPER_MEL_BINS = (80, 128)  # large-v3 uses 128 bins, every other Whisper 80


@dataclass(frozen=True)
class FbankConfig:
    """Kaldi `compute-fbank-feats` options. dither defaults to 0 (Kaldi: 1) so features are reproducible."""

    sample_rate: int = 16000
    num_mel_bins: int = 80
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    dither: float = 0.0
    low_freq: float = 20.0
    high_freq: float = 0.0  # <= 0 means Nyquist + high_freq, as in Kaldi
    snip_edges: bool = True
    feature_type: str = "fbank"  # fbank | whisper (see the module docstring)
    pitch: bool = False  # fbank only: append 3 pitch features (hdmole.data.pitch), Kaldi's fbank+pitch
    pitch_norm_vars: bool = False  # with pitch: log F0 and its delta divided by the utterance's log-F0 spread

    def __post_init__(self) -> None:
        if self.feature_type not in FEATURE_TYPES:
            raise ValueError(f"feature_type must be one of {', '.join(FEATURE_TYPES)}, not {self.feature_type!r}")
        if self.pitch and self.feature_type != "fbank":
            raise ValueError("pitch features go with fbank features only (a pre-trained Whisper encoder takes its own log-mel)")
        if self.pitch_norm_vars and not self.pitch:
            raise ValueError("pitch_norm_vars normalises the pitch features: it needs pitch (--pitch) as well")
        if self.feature_type == "whisper":
            if self.sample_rate != 16000:
                raise ValueError(f"whisper features need 16 kHz audio, not {self.sample_rate} Hz; resample (e.g. sox) first")
            if self.num_mel_bins not in WHISPER_MEL_BINS:
                raise ValueError(f"whisper features have 80 (large-v2, small, ...) or 128 (large-v3) mel bins, "
                                 f"not {self.num_mel_bins}; use the encoder's num_mel_bins")

    def to_options(self):
        # Imported where used: tools that only build models (hdmole.bin.bench_scale on a GPU machine without
        # the feature extractor) import hdmole.data too.
        import kaldi_native_fbank as knf

        options = knf.FbankOptions()
        options.frame_opts.samp_freq = float(self.sample_rate)
        options.frame_opts.frame_length_ms = self.frame_length_ms
        options.frame_opts.frame_shift_ms = self.frame_shift_ms
        options.frame_opts.dither = self.dither
        options.frame_opts.snip_edges = self.snip_edges
        options.mel_opts.num_bins = self.num_mel_bins
        options.mel_opts.low_freq = self.low_freq
        options.mel_opts.high_freq = self.high_freq
        return options

    def as_dict(self) -> dict:
        options = asdict(self)
        if not self.pitch_norm_vars:
            # Left out when off, as it was before the option existed: features stamped by earlier versions
            # (fbank_config.json, frontend.json) still match and are not extracted again.
            del options["pitch_norm_vars"]
        return options


def compute_fbank(samples: np.ndarray, config: FbankConfig = FbankConfig()) -> np.ndarray:
    """Log-mel fbank [T, num_mel_bins] float32 of mono `samples` in [-1, 1) at `config.sample_rate` (+ 3 pitch
    features with `config.pitch`).

    Samples are scaled by 32768 first because Kaldi computes features on raw 16-bit sample values; with the
    same options the output matches Kaldi's compute-fbank-feats. Raises DataError when the audio is shorter
    than one frame.
    """
    import kaldi_native_fbank as knf

    extractor = knf.OnlineFbank(config.to_options())
    extractor.accept_waveform(float(config.sample_rate), np.ascontiguousarray(samples, dtype=np.float32) * 32768.0)
    extractor.input_finished()
    num_frames = extractor.num_frames_ready
    if num_frames == 0:
        raise DataError(
            f"audio of {len(samples)} samples is shorter than one {config.frame_length_ms} ms frame; remove the utterance"
        )
    feats = np.stack([extractor.get_frame(index) for index in range(num_frames)]).astype(np.float32, copy=False)
    if config.pitch:
        from hdmole.data.pitch import pitch_features

        feats = np.concatenate([feats, pitch_features(samples, config.sample_rate, num_frames, config.frame_shift_ms,
                                                      config.frame_length_ms, config.pitch_norm_vars)], axis=1)
    return feats
