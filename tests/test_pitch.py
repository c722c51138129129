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


def log_linear_tone(start_hz: float, end_hz: float) -> np.ndarray:
    """One second whose log F0 moves linearly from ``start_hz`` to ``end_hz``."""
    return harmonic_tone(start_hz * (end_hz / start_hz) ** np.linspace(0.0, 1.0, SR))


def test_norm_vars_gives_a_narrow_and_a_wide_voice_the_same_contour():
    """The same rise over a fifth and over an octave: apart without norm_vars, the same with it (z-scored log F0)."""
    narrow, wide = log_linear_tone(150.0, 225.0), log_linear_tone(150.0, 300.0)
    n = frames_of(narrow)
    plain = [pitch_features(x, SR, n)[10:-10] for x in (narrow, wide)]
    assert np.abs(plain[1][:, 1]).max() > 1.5 * np.abs(plain[0][:, 1]).max()  # the octave moves further
    whole = [pitch_features(x, SR, n, norm_vars=True) for x in (narrow, wide)]
    z = whole[0][:, 1]
    assert 1.4826 * np.median(np.abs(z - np.median(z))) == pytest.approx(1.0, abs=0.05)  # in units of its spread
    normed = [w[10:-10] for w in whole]
    np.testing.assert_allclose(normed[0][:, 1:], normed[1][:, 1:], atol=0.05)
    # the delta is the delta of the normalised log F0 (divided by the same spread), so it too is the same
    for w in whole:
        np.testing.assert_allclose(w[10:-10, 2], np.gradient(w[:, 1])[10:-10], rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(normed[0][:, 2], normed[1][:, 2], rtol=0.05)
    np.testing.assert_array_equal(normed[0][:, 0], plain[0][:, 0])  # voicing untouched


def test_the_robust_z_score_ignores_octave_jumps_and_clips_them():
    """Pitch trackers halve or double F0 near their floor: jumped stretches must neither squash the contour (divided
    by a standard deviation, its range would shrink to 0.49 of the clean one here) nor come out as the track's
    largest values."""
    from hdmole.data.pitch import robust_z_score

    contour = np.log(120.0) + np.linspace(0.0, np.log(1.5), 200)  # a rise over a fifth, 2 s of voiced frames
    jumped = contour.copy()
    jumped[40:50] -= np.log(2.0)  # an octave down for 100 ms, twice
    jumped[140:150] -= np.log(2.0)
    clean, bumpy = robust_z_score(contour, contour), robust_z_score(jumped, jumped)
    assert 1.4826 * np.median(np.abs(clean - np.median(clean))) == pytest.approx(1.0, abs=1e-6)
    kept = np.ones(200, bool)
    kept[40:50] = kept[140:150] = False
    # the rest of the contour keeps its shape and most of its range (10% of the frames jumped shift the median and
    # the median absolute deviation a little: 0.83 of the clean range)
    assert np.ptp(bumpy[kept]) / np.ptp(clean[kept]) > 0.8
    ratio = np.ptp(bumpy[kept]) / np.ptp(clean[kept])
    np.testing.assert_allclose(np.diff(bumpy[kept][:30]), np.diff(clean[kept][:30]) * ratio, rtol=1e-6)
    assert bumpy[~kept].max() < -3.0 and bumpy.min() == -4.0  # the jumps stay far off the contour, clipped at -4
    level = robust_z_score(np.full(50, np.log(150.0)) + 1e-4 * np.sin(np.arange(50.0)), np.full(50, np.log(150.0)))
    assert np.abs(level).max() < 0.01  # a monotone: the spread's floor keeps the wobble small


def test_norm_vars_leaves_a_level_tone_level():
    """A monotone utterance's spread is ~0: the floor keeps its wobbles small instead of scaling them up to tones."""
    level = harmonic_tone(np.full(SR, 150.0))
    feats = pitch_features(level, SR, frames_of(level), norm_vars=True)
    assert np.abs(feats[10:-10, 1]).max() < 0.5 and np.isfinite(feats).all()


def test_fbank_config_pitch_norm_vars_needs_pitch_and_is_stamped_only_when_on():
    with pytest.raises(ValueError, match="needs pitch"):
        FbankConfig(pitch_norm_vars=True)
    assert "pitch_norm_vars" not in FbankConfig(pitch=True).as_dict()  # the stamps of earlier features still match
    assert FbankConfig(pitch=True, pitch_norm_vars=True).as_dict()["pitch_norm_vars"] is True
    tone = log_linear_tone(150.0, 300.0)
    plain = compute_fbank(tone, FbankConfig(pitch=True))
    normed = compute_fbank(tone, FbankConfig(pitch=True, pitch_norm_vars=True))
    np.testing.assert_array_equal(plain[:, :81], normed[:, :81])  # fbank and voicing: the same
    assert not np.allclose(plain[:, 81:], normed[:, 81:])


def test_compute_fbank_recomputes_when_pitch_norm_vars_is_toggled(tmp_path):
    import json
    import wave

    import kaldiio

    from hdmole.bin import compute_fbank as cli
    from test_data_fixtures import UTTERANCES, make_data_dir

    data, feat_dir = make_data_dir(tmp_path), tmp_path / "fbank"
    for utt, *_, seconds in UTTERANCES:  # the fixture's sines are level: give every utterance a rising pitch
        with wave.open(str(tmp_path / "wavs" / f"{utt}.wav"), "wb") as writer:
            writer.setnchannels(1), writer.setsampwidth(2), writer.setframerate(SR)
            glide = harmonic_tone(np.linspace(120.0, 240.0, int(seconds * SR)))
            writer.writeframes((glide * 32767).astype("<i2").tobytes())
    assert cli.main(["--pitch", str(data), str(feat_dir)]) == 0
    plain = dict(kaldiio.load_scp(str(data / "feats.scp")))
    assert cli.main(["--pitch", "--pitch-norm-vars", str(data), str(feat_dir)]) == 0
    normed = dict(kaldiio.load_scp(str(data / "feats.scp")))
    assert normed.keys() == plain.keys()
    assert any(not np.allclose(plain[u][:, 81:], normed[u][:, 81:]) for u in plain)
    assert all(np.array_equal(plain[u][:, :81], normed[u][:, :81]) for u in plain)
    assert json.loads((feat_dir / "fbank_config.json").read_text())["pitch_norm_vars"] is True
