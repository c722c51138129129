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

With ``norm_vars`` the log F0 is also divided by its standard deviation over the utterance's voiced frames (and
so is its delta): the z-scored log F0 of tone research (Rose 1987, "Considerations in the normalisation of the
fundamental frequency of linguistic tone"), the pitch features' ``--norm-vars`` as Kaldi's apply-cmvn has one.
Voices differ in how far their tones move, not only in their register: in mini_accent the utterance's log-F0
spread differs 4x between espeak-ng voices, and the held-out voices the base model hears worst have the narrowest
(the recipe README, "Pitch range normalised per utterance"). Only the utterance itself is used, so an utterance
needs no speaker label to be normalised.

Frame ``k`` is the fbank frame ``k`` (centre ``(k * shift + length / 2)`` with Kaldi's ``snip_edges``);
the track is sampled there.
"""

from __future__ import annotations

import numpy as np

PITCH_DIM = 3
PITCH_FLOOR_HZ = 60.0
PITCH_CEILING_HZ = 500.0
# The smallest log-F0 spread norm_vars divides by (natural log; a semitone is 0.058): a monotone utterance keeps
# its small wobbles small instead of having them blown up to the size of tones.
MIN_LOG_F0_STD = 0.02


def pitch_features(samples: np.ndarray, sample_rate: int, num_frames: int, frame_shift_ms: float = 10.0,
                   frame_length_ms: float = 25.0, norm_vars: bool = False) -> np.ndarray:
    """[num_frames, 3] float32 pitch features of mono ``samples`` in [-1, 1); ``norm_vars``: log F0 and its delta
    in units of the utterance's log-F0 standard deviation (module docstring)."""
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
    voiced_log_f0 = np.log(f0[voiced])
    scale = max(float(voiced_log_f0.std()), MIN_LOG_F0_STD) if norm_vars else 1.0
    out[:, 1] = (log_f0 - voiced_log_f0.mean()) / scale
    out[:, 2] = np.gradient(log_f0) / scale if num_frames > 1 else 0.0
    return out


__all__ = ["pitch_features", "PITCH_DIM"]
