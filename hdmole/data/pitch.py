"""Pitch features for tonal languages, appended to the fbank frames (Kaldi's fbank+pitch for Mandarin).

Mandarin tones are pitch contours, and an accent moves them (a dialect's tone values mapped onto
Mandarin's). Log-mel filterbanks carry pitch only in the fine structure of their lowest bins, which a
small encoder learns to read slowly; Kaldi's Mandarin recipes (AISHELL, HKUST) therefore append pitch
features. Kaldi's own extractor is not on PyPI; the F0 track comes from Praat's autocorrelation method
(``praat-parselmouth``, Boersma 1993), then three features per 10 ms frame follow Kaldi's
``process-kaldi-pitch-feats``:

1. probability of voicing: Praat's pitch strength (0 where unvoiced),
2. log F0, interpolated linearly through unvoiced stretches, minus the utterance mean (tone is a contour
   relative to the speaker's register: a speaker-independent feature),
3. its delta (difference over +-1 frame, halved).

Frame ``k`` is the fbank frame ``k`` (centre ``(k * shift + length / 2)`` with Kaldi's ``snip_edges``);
the track is sampled there.
"""

from __future__ import annotations

import numpy as np

PITCH_DIM = 3
PITCH_FLOOR_HZ = 60.0
PITCH_CEILING_HZ = 500.0


def pitch_features(samples: np.ndarray, sample_rate: int, num_frames: int, frame_shift_ms: float = 10.0,
                   frame_length_ms: float = 25.0) -> np.ndarray:
    """[num_frames, 3] float32 pitch features of mono ``samples`` in [-1, 1)."""
    import parselmouth

    sound = parselmouth.Sound(np.asarray(samples, dtype=np.float64), sampling_frequency=float(sample_rate))
    pitch = sound.to_pitch_ac(time_step=frame_shift_ms / 1000.0, pitch_floor=PITCH_FLOOR_HZ,
                              pitch_ceiling=PITCH_CEILING_HZ)
    track = pitch.selected_array
    f0, strength = track["frequency"], track["strength"]
    times = pitch.xs()
    centres = (np.arange(num_frames) * frame_shift_ms + frame_length_ms / 2.0) / 1000.0
    voiced = f0 > 0
    out = np.zeros((num_frames, PITCH_DIM), dtype=np.float32)
    if len(times) == 0 or not voiced.any():  # silence or noise: no tone to describe
        return out
    log_f0 = np.interp(centres, times[voiced], np.log(f0[voiced]))  # flat beyond the first/last voiced frame
    out[:, 0] = np.interp(centres, times, np.where(voiced, strength, 0.0))
    out[:, 1] = log_f0 - np.log(f0[voiced]).mean()
    out[:, 2] = np.gradient(log_f0) if num_frames > 1 else 0.0
    return out


__all__ = ["pitch_features", "PITCH_DIM"]
