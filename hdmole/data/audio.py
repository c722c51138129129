"""Reading the audio a wav.scp entry points at: a WAV path, or a Kaldi pipe command ending in `|`.

We use the standard library's `wave` module (soundfile is not part of the environment). It reads
16-bit PCM, which is what Kaldi-style corpora (AISHELL-1, KeSpeech, sox output) use; anything else
gets a clear error and a sox command to convert it.
"""

from __future__ import annotations

import io
import re
import subprocess
import wave
from pathlib import Path

import numpy as np

from hdmole.data.errors import DataError

CONVERT_FIX = "convert it to 16-bit mono PCM WAV, e.g. `sox in.wav -r {rate} -c 1 -b 16 -e signed-integer out.wav`"


PLACEHOLDER_BYTES = 0x7FFFF000  # the data size a streaming WAV writer puts in the header (sox's; larger ones too)


def is_pipe(entry: str) -> bool:
    """A Kaldi wav.scp value `cmd args |`: run cmd, read WAV bytes from its stdout."""
    return entry.rstrip().endswith("|")


def _read_pipe(command: str) -> bytes:
    # shell=True because Kaldi pipe entries are shell command lines (pipes, redirections) by definition.
    result = subprocess.run(command, shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if result.returncode != 0:
        message = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise DataError(
            f"pipe command {command!r} failed with exit status {result.returncode}"
            f"{': ' + message[-1] if message else ''}; check the command and the files it reads"
        )
    if not result.stdout:
        raise DataError(f"pipe command {command!r} wrote nothing on stdout; it must write a WAV file (e.g. `sox ... -t wav - |`)")
    return result.stdout


def resampling_entry(entry: str, rate: int) -> str:
    """A wav.scp value that reads `entry` resampled to `rate` Hz: a file goes through sox; a pipe gets
    a sox stage appended to its command (its own trailing `|` becomes the pipe into sox)."""
    resample = f"-r {rate} -t wav - |"
    if is_pipe(entry):
        return f"{entry.rstrip()[:-1].strip()} | sox -t wav - {resample}"
    return f"sox {entry} {resample}"


# A Kaldi/ESPnet wav.scp value pointing into an ark of audio (`wav-copy`, espnet's format_wav_scp.py with
# --audio-format wav.ark): `<ark path>:<byte offset>`, read with kaldiio.
ARK_OFFSET = re.compile(r"^\S+\.ark:\d+$")


def _read_ark_wav(entry: str, expected_sample_rate: int | None) -> tuple[np.ndarray, int]:
    import kaldiio

    try:
        loaded = kaldiio.load_mat(entry)
    except (OSError, ValueError, EOFError) as error:
        raise DataError(f"audio {entry!r}: cannot read it from its ark ({error}); fix the offset in wav.scp or re-create the ark") from None
    if not isinstance(loaded, tuple):
        raise DataError(f"audio {entry!r} is a feature matrix, not audio; wav.scp must point at audio (feats.scp holds features)")
    rate, samples = loaded
    samples = np.asarray(samples)
    if samples.ndim != 1:
        raise DataError(f"audio {entry!r} has {samples.shape[1]} channels, expected mono; {CONVERT_FIX.format(rate=rate)}")
    if expected_sample_rate is not None and rate != expected_sample_rate:
        raise DataError(f"audio {entry!r} has sample rate {rate} Hz, expected {expected_sample_rate} Hz; resample the ark "
                        "or pass the matching --sample-rate")
    if samples.dtype != np.int16:
        raise DataError(f"audio {entry!r} holds {samples.dtype} samples, not 16-bit PCM; re-create the ark from 16-bit audio")
    return samples.astype(np.float32) / 32768.0, rate


def read_wav(path_or_cmd: str | Path, expected_sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Read 16-bit PCM mono audio; return (float32 samples scaled to [-1, 1), sample rate).

    `path_or_cmd` is a file path or a Kaldi pipe command ending in `|` (run through the shell, its stdout
    read as WAV). Raises DataError for a missing file, a failing command, a corrupt or truncated file, a
    format other than 16-bit PCM, more than one channel, or a sample rate other than `expected_sample_rate`.
    """
    entry = str(path_or_cmd).strip()
    if ARK_OFFSET.match(entry) and not Path(entry).is_file():
        return _read_ark_wav(entry, expected_sample_rate)
    from_pipe = is_pipe(entry)
    if from_pipe:
        source = _read_pipe(entry.rstrip()[:-1].strip())
        handle: io.BytesIO | str = io.BytesIO(source)
    else:
        if not Path(entry).is_file():
            raise DataError(f"audio file {entry!r} not found; fix the path in wav.scp or restore the file")
        handle = entry
    try:
        with wave.open(handle, "rb") as reader:
            channels, width, rate, frames = reader.getnchannels(), reader.getsampwidth(), reader.getframerate(), reader.getnframes()
            data = reader.readframes(frames)
    except wave.Error as error:
        # wave raises e.g. "unknown format: 3" for float WAV and "file does not start with RIFF id" for junk.
        fix = CONVERT_FIX.format(rate=expected_sample_rate or 16000)
        raise DataError(f"audio {entry!r} is not a readable 16-bit PCM WAV ({error}); {fix}") from None
    except (EOFError, OSError) as error:
        raise DataError(f"audio {entry!r} is corrupt or truncated ({error or type(error).__name__}); re-create or re-download it") from None
    fix = CONVERT_FIX.format(rate=expected_sample_rate or rate)
    if width != 2:
        raise DataError(f"audio {entry!r} has {8 * width}-bit samples, not 16-bit PCM; {fix}")
    if channels != 1:
        raise DataError(f"audio {entry!r} has {channels} channels, expected mono; {fix}")
    if expected_sample_rate is not None and rate != expected_sample_rate:
        raise DataError(
            f"audio {entry!r} has sample rate {rate} Hz, expected {expected_sample_rate} Hz; resample it "
            f"(e.g. the wav.scp entry `{resampling_entry(entry, expected_sample_rate)}`) or pass the matching --sample-rate"
        )
    # A pipe writer that does not know the length (streaming sox) puts a placeholder in the header (sox:
    # 0x7ffff000 bytes; others 0 or 0xffffffff); any other length in a pipe's header is as binding as a file's.
    known_length = not from_pipe or 0 < frames * width * channels < PLACEHOLDER_BYTES
    if known_length and len(data) < frames * width:
        what = "the pipe wrote" if from_pipe else "file holds"
        fix = "the command was cut short or reads a truncated file; fix it" if from_pipe else "re-create it"
        raise DataError(f"audio {entry!r} is truncated: header says {frames} samples, {what} {len(data) // width}; {fix}")
    if len(data) % width:
        data = data[: len(data) - len(data) % width]
    samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    return samples, rate
