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
import re
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

    @classmethod
    def from_tag(cls, tag: str) -> "Voice":
        """The voice of a ``tag`` (a speaker id is ``<accent>-<tag>``)."""
        match = re.fullmatch(r"(.+)p(\d+)s(\d+)", tag)
        if match is None:
            raise SynthesisError(f"{tag!r} is not a voice tag (<variant or def>p<pitch>s<rate>, e.g. m3p50s170)")
        variant = "" if match.group(1) == "def" else match.group(1)
        return cls(variant, int(match.group(2)), int(match.group(3)))

    @property
    def name(self) -> str:
        """espeak-ng's voice name: the pinyin voice with the variant."""
        return f"{VOICE}+{self.variant}" if self.variant else VOICE

    def espeak_args(self) -> list[str]:
        return ["-v", self.name, "-p", str(self.pitch), "-s", str(self.rate)]


def check_tools() -> None:
    """espeak-ng with the pinyin voice and sox must be installed."""
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise SynthesisError(f"`{tool}` not found on PATH; install it (Debian: apt-get install espeak-ng sox)")
    voices = subprocess.run(["espeak-ng", "--voices=cmn"], capture_output=True, text=True, check=True).stdout
    if VOICE not in voices:
        raise SynthesisError(f"espeak-ng has no `{VOICE}` voice (espeak-ng --voices=cmn lists: {voices.strip()}); install espeak-ng >= 1.50")


def voice_grid(variants: Sequence[str], pitches: Sequence[int], rates: Sequence[int], seed: int | str) -> list[Voice]:
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


BACKENDS = ("auto", "library", "programs")


def resolve_backend(backend: str) -> str:
    """``auto``: the libraries (synthesis_engine: the same wavs in about two thirds of the time) when both load, else the programs."""
    import synthesis_engine

    if backend not in BACKENDS:
        raise SynthesisError(f"unknown synthesis backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "library" if synthesis_engine.available() else "programs"
    if backend == "library" and not synthesis_engine.available():
        raise SynthesisError(f"{synthesis_engine.ESPEAK_LIB} or {synthesis_engine.SOX_LIB} does not load; install the "
                             "Debian packages espeak-ng and sox, or use --synthesis programs")
    return backend


def run_jobs(jobs: Iterable[Job], nj: int, desc: str = "synthesis", backend: str = "auto") -> tuple[int, int]:
    """Synthesise every job whose wav does not exist yet, nj at a time. Returns (synthesised, skipped).

    ``backend`` (``BACKENDS``): ``programs`` runs espeak-ng | sox per utterance (``synthesize``), nj threads
    each waiting for one pipeline (the work happens in the child processes, so threads suffice and nothing is
    pickled); ``library`` runs nj worker processes of synthesis_engine, whose wavs are byte-identical.
    """
    jobs = list(jobs)
    todo = [job for job in jobs if not job.wav_path.is_file()]
    skipped = len(jobs) - len(todo)
    if nj < 1:
        raise SynthesisError(f"--nj must be >= 1, got {nj}")
    if resolve_backend(backend) == "library":
        _run_in_workers(todo, nj, desc)
        return len(todo), skipped
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


def _run_in_workers(todo: list[Job], nj: int, desc: str) -> None:
    import multiprocessing

    if not todo:
        return
    # spawn, not fork: a worker forks once per utterance itself, and must not inherit the parent's threads.
    with multiprocessing.get_context("spawn").Pool(nj, initializer=_start_engine) as pool:
        for _ in tqdm(pool.imap_unordered(_synthesise_in_worker, todo, chunksize=8), total=len(todo), desc=desc,
                      unit="utt"):
            pass


_ENGINE = None  # the worker process's synthesis_engine.Engine


def _start_engine() -> None:
    global _ENGINE
    import synthesis_engine

    _ENGINE = synthesis_engine.Engine(VOICE, SAMPLE_RATE)


def _synthesise_in_worker(job: Job) -> str:
    """As ``synthesize``: a temporary name, renamed when whole; an error names the utterance, voice and text."""
    tmp_path = job.wav_path.with_name(job.wav_path.name + ".tmp.wav")
    voice = job.voice
    try:
        _ENGINE.synthesise(job.pinyin, voice.name, voice.rate, voice.pitch, tmp_path)
    except RuntimeError as error:
        tmp_path.unlink(missing_ok=True)
        raise SynthesisError(f"synthesis of {job.wav_path.name} failed (voice {voice.tag}, text {job.pinyin!r}): {error}") from None
    os.replace(tmp_path, job.wav_path)
    return job.utt_id
