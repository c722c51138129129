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

With ``norm_vars`` the log F0 is z-scored within the utterance instead (and its delta is the delta of that): the
normalisation of tone research (Rose 1987, "Considerations in the normalisation of the fundamental frequency of
linguistic tone"), the pitch features' ``--norm-vars`` as Kaldi's apply-cmvn has one. Voices differ in how far their
tones move, not only in their register: in mini_accent the log-F0 spread of an utterance differs more than 4x
between espeak-ng voices, and the test voice whose accent the base model loses (Alex at -p 70) has one of the
narrowest. The statistics are robust because the tracker's octave jumps near the pitch floor inflate a standard
deviation up to 10x in low voices (the recipe README, "Pitch range normalised per utterance"): the centre is the
median of the voiced frames' log F0, the spread 1.4826 x their median absolute deviation (the standard deviation
for a normal distribution), and values beyond +-4 spreads (octave jumps) are clipped. Only the utterance itself is
used: no speaker label needed.

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
MIN_LOG_F0_SPREAD = 0.02
MAD_TO_STD = 1.4826  # the median absolute deviation of a normal distribution times this is its standard deviation
MAX_ABS_Z = 4.0  # normalised log F0 beyond this many spreads is a tracking error (an octave jump), not a tone


def pitch_features(samples: np.ndarray, sample_rate: int, num_frames: int, frame_shift_ms: float = 10.0,
                   frame_length_ms: float = 25.0, norm_vars: bool = False) -> np.ndarray:
    """[num_frames, 3] float32 pitch features of mono ``samples`` in [-1, 1); ``norm_vars``: log F0 and its delta
    in units of the utterance's own log-F0 spread, robustly estimated (module docstring)."""
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
    if norm_vars:
        log_f0 = robust_z_score(log_f0, voiced_log_f0)
        out[:, 1] = log_f0
    else:
        out[:, 1] = log_f0 - voiced_log_f0.mean()
    out[:, 2] = np.gradient(log_f0) if num_frames > 1 else 0.0
    return out


def robust_z_score(track: np.ndarray, voiced: np.ndarray) -> np.ndarray:
    """``track`` in units of the spread of ``voiced`` (the voiced frames' log F0) around their median: 1.4826 x
    the median absolute deviation, at least MIN_LOG_F0_SPREAD; clipped to +-MAX_ABS_Z (module docstring)."""
    centre = float(np.median(voiced))
    spread = max(MAD_TO_STD * float(np.median(np.abs(voiced - centre))), MIN_LOG_F0_SPREAD)
    return np.clip((track - centre) / spread, -MAX_ABS_Z, MAX_ABS_Z)


__all__ = ["pitch_features", "robust_z_score", "PITCH_DIM"]
