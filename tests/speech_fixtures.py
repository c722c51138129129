"""A tiny speech corpus made inside the tests: espeak-ng reads tone-numbered pinyin (its cmn voice
misreads characters), sox resamples to 16 kHz. Two "accents": standard, and one that merges the
retroflexes into dentals (zh/ch/sh -> z/c/s), so that the accent is audible."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pypinyin import Style, lazy_pinyin

SENTENCES = ["我们是中国人", "今天天气很好", "他说的是实话", "知识就是力量", "春天来了", "山上有树",
             "出租车很多", "城市生活", "学生上课", "时间不早了", "人民日报", "吃饭睡觉"]
ACCENTS = ["Mandarin", "Dental"]
SPEAKERS = {"Mandarin": [("m1", 40, 160), ("m2", 60, 175)], "Dental": [("d1", 45, 165), ("d2", 55, 170)]}


def to_pinyin(sentence: str, accent: str) -> str:
    syllables = lazy_pinyin(sentence, style=Style.TONE3, neutral_tone_with_five=True)
    if accent == "Dental":
        syllables = [s[0] + s[2:] if s[:2] in ("zh", "ch", "sh") else s for s in syllables]
    return " ".join(syllables)


def synthesize(pinyin: str, path: Path, pitch: int, speed: int) -> None:
    raw = path.with_suffix(".22k.wav")
    subprocess.run(["espeak-ng", "-v", "cmn-latn-pinyin", "-p", str(pitch), "-s", str(speed), "-w", str(raw), pinyin],
                   check=True, capture_output=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-b", "16", "-c", "1", str(path)], check=True, capture_output=True)
    raw.unlink()


def write_table(path: Path, rows) -> None:
    path.write_text("".join(f"{k} {v}\n" for k, v in sorted(rows, key=lambda r: r[0].encode())), encoding="utf-8")


def make_corpus(root: Path, sentences=SENTENCES) -> dict[str, Path]:
    """Data dirs ``train`` (both accents, every speaker) and ``test`` (one speaker per accent, the
    sentences of ``train``: a pipeline test, not a held-out evaluation) plus ``accents.txt``."""
    (root / "wavs").mkdir(parents=True, exist_ok=True)
    (root / "accents.txt").write_text("".join(a + "\n" for a in ACCENTS))
    sets = {"train": [], "test": []}
    for accent in ACCENTS:
        for index, (spk, pitch, speed) in enumerate(SPEAKERS[accent]):
            for j, sentence in enumerate(sentences):
                utt = f"{spk}-{j:03d}"
                wav = root / "wavs" / f"{utt}.wav"
                synthesize(to_pinyin(sentence, accent), wav, pitch, speed)
                sets["train"].append((utt, spk, sentence, accent, wav))
                if index == 0:
                    sets["test"].append((utt, spk, sentence, accent, wav))
    dirs = {}
    for name, rows in sets.items():
        d = root / name
        d.mkdir(exist_ok=True)
        write_table(d / "wav.scp", [(u, str(w)) for u, _, _, _, w in rows])
        write_table(d / "text", [(u, t) for u, _, t, _, _ in rows])
        write_table(d / "utt2spk", [(u, s) for u, s, _, _, _ in rows])
        write_table(d / "utt2accent", [(u, a) for u, _, _, a, _ in rows])
        speakers: dict[str, list[str]] = {}
        for u, s, _, _, _ in sorted(rows, key=lambda r: r[0].encode()):
            speakers.setdefault(s, []).append(u)
        write_table(d / "spk2utt", [(s, " ".join(us)) for s, us in speakers.items()])
        dirs[name] = d
    return dirs
