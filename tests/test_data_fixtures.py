"""Tiny synthetic wavs and Kaldi data dirs for the data/text/score tests (made here, nothing downloaded)."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from hdmole.data import AccentList, DataDir

ACCENTS = ["mandarin", "northeastern", "southwestern"]

# (utt_id, speaker, transcript, accent, seconds)
UTTERANCES = [
    ("spkA-001", "spkA", "你好，世界！", "mandarin", 0.30),
    ("spkA-002", "spkA", "今天天气很好", "mandarin", 0.55),
    ("spkB-001", "spkB", "我爱北京", "northeastern", 0.42),
    ("spkB-002", "spkB", "吃饭了吗", "northeastern", 0.80),
    ("spkC-001", "spkC", "Ｈello 四川", "southwestern", 0.25),
    ("spkC-002", "spkC", "火锅很辣", "southwestern", 0.63),
]


def make_wav(path: Path, seconds: float, rate: int = 16000, freq: float = 440.0, sampwidth: int = 2, channels: int = 1) -> Path:
    """A sine tone written with the stdlib wave module."""
    t = np.arange(int(seconds * rate)) / rate
    signal = 0.3 * np.sin(2 * np.pi * freq * t)
    if sampwidth == 2:
        frames = (signal * 32767).astype("<i2")
    else:
        frames = ((signal * 127) + 128).astype(np.uint8)
    frames = np.repeat(frames[:, None], channels, axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(sampwidth)
        writer.setframerate(rate)
        writer.writeframes(frames.tobytes())
    return path


def write_table(path: Path, rows: list[tuple[str, str]]) -> None:
    path.write_text("".join(f"{key} {value}\n" for key, value in rows), encoding="utf-8")


def make_data_dir(root: Path, utterances=UTTERANCES, name: str = "train") -> Path:
    """A valid data dir (sorted files, wavs under root/wavs) plus root/accents.txt."""
    data = root / name
    data.mkdir(parents=True, exist_ok=True)
    utterances = sorted(utterances, key=lambda u: u[0].encode())
    wavs = []
    for index, (utt, _, _, _, seconds) in enumerate(utterances):
        wavs.append((utt, str(make_wav(root / "wavs" / f"{utt}.wav", seconds, freq=300.0 + 150 * index))))
    write_table(data / "wav.scp", wavs)
    write_table(data / "text", [(u[0], u[2]) for u in utterances])
    write_table(data / "utt2spk", [(u[0], u[1]) for u in utterances])
    write_table(data / "utt2accent", [(u[0], u[3]) for u in utterances])
    speakers: dict[str, list[str]] = {}
    for u in utterances:
        speakers.setdefault(u[1], []).append(u[0])
    write_table(data / "spk2utt", [(spk, " ".join(utts)) for spk, utts in sorted(speakers.items())])
    AccentList(ACCENTS).save(root / "accents.txt")
    return data


def test_fixture_data_dir_is_valid(tmp_path):
    data = DataDir.load(make_data_dir(tmp_path), tmp_path / "accents.txt")
    assert data.utt_ids == sorted(u[0] for u in UTTERANCES)
    assert [data.accent_index(u) for u in data.utt_ids] == [0, 0, 1, 1, 2, 2]
