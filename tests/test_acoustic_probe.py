"""egs/mini_accent/local/acoustic_probe.py, the development probe of acoustic evidence beside the tone router: the
pitch contour and the encoder output read at the tonal finals on the CTC best path, each final counted once."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "egs" / "mini_accent" / "local"))
spec = importlib.util.spec_from_file_location("acoustic_probe", ROOT / "egs" / "mini_accent" / "local" / "acoustic_probe.py")
probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe)


def pitch_track(log_f0: np.ndarray) -> np.ndarray:
    """[T, 3] voicing, log F0, delta, as hdmole.data.pitch lays them out."""
    return np.stack([np.ones_like(log_f0), log_f0, np.gradient(log_f0)], axis=1)


def test_a_rising_window_has_a_positive_slope_and_rise_and_a_cut_window_none():
    track = pitch_track(np.concatenate([np.zeros(8), np.linspace(-1.0, 1.0, 8), np.linspace(1.0, -1.0, 8)]))
    height, slope, rise = probe.contour_summary(track, 1, 8)  # fbank frames 8..15: the rise
    assert slope > 0 and rise > 0 and abs(height) < 1e-6
    assert probe.contour_summary(track, 2, 8)[2] < 0  # frames 16..23: the fall
    assert probe.contour_summary(track[:26], 3, 8) is None  # 2 frames left: no contour


def test_each_heard_final_counts_once_under_its_own_tone():
    tones = [0, 2, 4, 0]  # units: an initial, a tone-2 final, a tone-4 final, another initial; blank = 4
    blank = 4
    best = [blank, 0, 1, 1, blank, 3, 2, 1]  # finals at frames 2 (tone 2, repeated at 3), 6 (tone 4), 7 (tone 2)
    encoded = np.arange(8, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)  # frame f holds f
    rising = pitch_track(np.linspace(0.0, 1.0, 64))
    out = probe.utterance_evidence(best, tones, blank, rising, encoded, 8)
    per_tone = out["encoder_per_tone"].reshape(5, 2)
    np.testing.assert_allclose(per_tone[1], [4.5, 4.5])  # frames 2 and 7 (the repeat at 3 is the same final)
    np.testing.assert_allclose(per_tone[3], [6.0, 6.0])
    assert not per_tone[[0, 2, 4]].any()
    np.testing.assert_allclose(out["encoder"], [(2 + 6 + 7) / 3] * 2)
    contour = out["contour"].reshape(5, 3)
    assert contour[1, 1] > 0 and contour[3, 1] > 0 and not contour[[0, 2, 4]].any()  # summed where heard
    np.testing.assert_allclose(contour[1], probe.contour_summary(rising, 2, 8) + probe.contour_summary(rising, 7, 8))
