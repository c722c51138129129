"""Pitch features (hdmole.data.pitch) on signals whose F0 is known, and fbank+pitch through compute_fbank."""

from __future__ import annotations

import numpy as np
import pytest

from hdmole.data.fbank import FbankConfig, compute_fbank
from hdmole.data.pitch import pitch_features

SR = 16000


def harmonic_tone(f0: np.ndarray) -> np.ndarray:
    """A voiced-like signal (5 harmonics) following the per-sample F0 track ``f0`` (Hz)."""
    phase = 2 * np.pi * np.cumsum(f0) / SR
    return 0.3 * sum(np.sin(k * phase) / k for k in range(1, 6)).astype(np.float32)


def frames_of(samples: np.ndarray) -> int:
    return 1 + (len(samples) - 400) // 160  # Kaldi's snip_edges framing, 25 ms / 10 ms


def test_a_rising_tone_rises_and_a_level_tone_is_flat():
    n = SR  # one second
    rising = harmonic_tone(np.linspace(120.0, 240.0, n))  # an octave up: log F0 rises by ln 2
    feats = pitch_features(rising, SR, frames_of(rising))
    voiced = feats[:, 0] > 0.5
    assert voiced[10:-10].all()
    middle = feats[10:-10]
    assert np.all(np.diff(middle[:, 1]) > -1e-3)  # log F0 does not fall
    assert middle[-1, 1] - middle[0, 1] == pytest.approx(np.log(2) * (len(middle) - 1) / frames_of(rising), abs=0.05)
    assert np.all(middle[:, 2] > 0)  # positive delta all along
    level = harmonic_tone(np.full(n, 150.0))
    flat = pitch_features(level, SR, frames_of(level))
    assert np.abs(flat[10:-10, 1]).max() < 0.01 and np.abs(flat[10:-10, 2]).max() < 0.005


def test_the_register_is_normalised_away():
    """The same contour an octave higher gives the same normalised log F0: tone, not the speaker's pitch."""
    contour = np.linspace(100.0, 160.0, SR)
    low, high = harmonic_tone(contour), harmonic_tone(2 * contour)
    a, b = pitch_features(low, SR, frames_of(low)), pitch_features(high, SR, frames_of(high))
    assert np.abs(a[10:-10, 1] - b[10:-10, 1]).max() < 0.02


def test_silence_gives_zeros_of_the_right_shape():
    silence = np.zeros(SR // 2, dtype=np.float32)
    feats = pitch_features(silence, SR, frames_of(silence))
    assert feats.shape == (frames_of(silence), 3) and not feats.any()


def test_fbank_with_pitch_appends_three_columns_to_the_same_frames():
    tone = harmonic_tone(np.full(SR // 2, 200.0))
    plain = compute_fbank(tone, FbankConfig())
    both = compute_fbank(tone, FbankConfig(pitch=True))
    assert both.shape == (plain.shape[0], plain.shape[1] + 3)
    np.testing.assert_array_equal(both[:, :80], plain)
    with pytest.raises(ValueError, match="fbank features only"):
        FbankConfig(pitch=True, feature_type="whisper")
