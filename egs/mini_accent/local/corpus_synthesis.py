"""Speech synthesis: tone-numbered pinyin -> espeak-ng (`cmn-latn-pinyin`) -> sox -> 16 kHz 16-bit mono wav.

A speaker is a fixed (voice variant, pitch, rate) combination of espeak-ng; speakers are drawn
without replacement from the grid, so no two speakers (and in particular no test and training
speaker) share a combination.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import random
import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from tqdm import tqdm

VOICE = "cmn-latn-pinyin"
SAMPLE_RATE = 16000


class SynthesisError(RuntimeError):
    pass


@dataclass(frozen=True)
class Voice:
    variant: str  # espeak-ng voice variant (`m3`, `f2`, ... or "" for the default voice)
    pitch: int  # espeak-ng -p (0-99)
    rate: int  # espeak-ng -s (words per minute)

    @property
    def tag(self) -> str:
        return f"{self.variant or 'def'}p{self.pitch}s{self.rate}"

    def espeak_args(self) -> list[str]:
        voice = f"{VOICE}+{self.variant}" if self.variant else VOICE
        return ["-v", voice, "-p", str(self.pitch), "-s", str(self.rate)]


def check_tools() -> None:
    """espeak-ng with the pinyin voice and sox must be installed."""
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise SynthesisError(f"`{tool}` not found on PATH; install it (Debian: apt-get install espeak-ng sox)")
    voices = subprocess.run(["espeak-ng", "--voices=cmn"], capture_output=True, text=True, check=True).stdout
    if VOICE not in voices:
        raise SynthesisError(f"espeak-ng has no `{VOICE}` voice (espeak-ng --voices=cmn lists: {voices.strip()}); install espeak-ng >= 1.50")


def voice_grid(variants: Sequence[str], pitches: Sequence[int], rates: Sequence[int], seed: int) -> list[Voice]:
    """Every combination, in a seeded order (speakers are taken from the front)."""
    grid = [Voice(v, p, r) for v, p, r in itertools.product(variants, pitches, rates)]
    random.Random(seed).shuffle(grid)
    return grid


def synthesize(pinyin: str, voice: Voice, wav_path: Path) -> None:
    """Write `wav_path` (16 kHz, 16-bit, mono). Written to a temporary name first and renamed, so a
    killed run never leaves a truncated wav that a rerun would take as finished."""
    tmp_path = wav_path.with_name(wav_path.name + ".tmp.wav")
    espeak = subprocess.Popen(["espeak-ng", *voice.espeak_args(), "--stdout", pinyin], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    # -D: no dither, so the same text and voice always give the same samples (reproducible corpus).
    sox = subprocess.run(["sox", "-D", "-t", "wav", "-", "-r", str(SAMPLE_RATE), "-b", "16", "-c", "1", "-e", "signed-integer",
                          str(tmp_path)], stdin=espeak.stdout, capture_output=True)
    espeak.stdout.close()
    espeak_err = espeak.stderr.read().decode(errors="replace")
    espeak.stderr.close()
    if espeak.wait() != 0 or sox.returncode != 0:
        tmp_path.unlink(missing_ok=True)
        raise SynthesisError(f"synthesis of {wav_path.name} failed (voice {voice.tag}, text {pinyin!r}): "
                             f"espeak-ng: {espeak_err.strip()} sox: {sox.stderr.decode(errors='replace').strip()}")
    os.replace(tmp_path, wav_path)


def wav_duration(path: Path) -> float:
    """Seconds of audio; raises SynthesisError unless the file is 16 kHz 16-bit mono PCM."""
    try:
        with wave.open(str(path), "rb") as handle:
            if (handle.getframerate(), handle.getsampwidth(), handle.getnchannels()) != (SAMPLE_RATE, 2, 1):
                raise SynthesisError(f"{path}: expected 16 kHz 16-bit mono, got {handle.getframerate()} Hz, "
                                     f"{8 * handle.getsampwidth()}-bit, {handle.getnchannels()} channels; rerun with --force")
            return handle.getnframes() / SAMPLE_RATE
    except (wave.Error, EOFError) as error:
        raise SynthesisError(f"{path}: not a readable wav ({error}); delete it and rerun") from error


@dataclass(frozen=True)
class Job:
    utt_id: str
    pinyin: str
    voice: Voice
    wav_path: Path


def run_jobs(jobs: Iterable[Job], nj: int, desc: str = "synthesis") -> tuple[int, int]:
    """Synthesise every job whose wav does not exist yet, nj at a time. Returns (synthesised, skipped).

    Threads rather than processes: the work happens in the espeak-ng/sox child processes, a thread
    only waits for them, so nj threads keep nj synthesis pipelines busy without pickling anything.
    """
    jobs = list(jobs)
    todo = [job for job in jobs if not job.wav_path.is_file()]
    skipped = len(jobs) - len(todo)
    if nj < 1:
        raise SynthesisError(f"--nj must be >= 1, got {nj}")
    with concurrent.futures.ThreadPoolExecutor(max_workers=nj) as pool:
        futures = [pool.submit(synthesize, job.pinyin, job.voice, job.wav_path) for job in todo]
        try:
            for future in tqdm(concurrent.futures.as_completed(futures), total=len(futures), desc=desc, unit="utt"):
                future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return len(todo), skipped
