"""Whisper's own log-mel features, for the real recipe with a pre-trained Whisper encoder.

A pre-trained Whisper expects the log-mel of ``WhisperFeatureExtractor`` (80 or 128 bins, clamped to
8 dB below the utterance maximum, scaled by (x + 4) / 4), not Kaldi fbank. This wraps the transformers
extractor with ``padding="longest"`` so that no 30 s padding is added (``WhisperSpeechEncoder`` runs on
the true length). Output is [T, num_mel_bins], 10 ms hop, like the Kaldi fbank the rest of the code uses.
"""

from __future__ import annotations

import numpy as np


def whisper_log_mel(waveform: np.ndarray, sample_rate: int = 16000, num_mel_bins: int = 80) -> np.ndarray:
    from transformers import WhisperFeatureExtractor

    if sample_rate != 16000:
        raise ValueError(f"Whisper features need 16 kHz audio, got {sample_rate} Hz; resample first (e.g. sox)")
    extractor = WhisperFeatureExtractor(feature_size=num_mel_bins, sampling_rate=16000)
    wav = np.asarray(waveform, dtype=np.float32)
    if np.abs(wav).max(initial=0.0) > 1.0:  # int16-scaled samples -> [-1, 1], as Whisper was trained on
        wav = wav / 32768.0
    feats = extractor(wav, sampling_rate=16000, padding="longest", return_tensors="np")["input_features"][0]
    return feats.T.astype(np.float32)
