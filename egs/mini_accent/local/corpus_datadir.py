"""Kaldi data dirs for the mini accent corpus: writing them, and checking the whole corpus.

Each dir holds `wav.scp text utt2spk spk2utt utt2accent utt2dur accents.txt`, plus three files of
this corpus: `pinyin` (the standard tone-numbered pinyin of the transcript), `phones` (the same split
into initials and tonal finals: the base model's CTC targets) and `spoken_pinyin` (what the synthesiser
was given, i.e. with the accent applied; for analysis only, a real corpus has no such file).
All files are sorted by key in byte order (LC_ALL=C); utterance ids are `<speaker>-<sentence id>`.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from corpus_synthesis import wav_duration
from pinyin_inventory import initial_final

from hdmole.data import write_kaldi_table


class CorpusError(RuntimeError):
    pass


@dataclass(frozen=True)
class Utterance:
    utt_id: str
    speaker: str
    accent: str
    sentence_id: str
    text: str
    pinyin: tuple[str, ...]
    spoken: tuple[str, ...]
    wav_path: Path


def write_data_dir(directory: Path, utterances: Sequence[Utterance], accent_list: Sequence[str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    ids = [u.utt_id for u in utterances]
    if len(set(ids)) != len(ids):
        raise CorpusError(f"{directory}: duplicate utterance ids in the plan (a bug in the corpus plan)")
    write_kaldi_table(directory / "wav.scp", ((u.utt_id, str(u.wav_path)) for u in utterances))
    write_kaldi_table(directory / "text", ((u.utt_id, u.text) for u in utterances))
    write_kaldi_table(directory / "utt2spk", ((u.utt_id, u.speaker) for u in utterances))
    write_kaldi_table(directory / "utt2accent", ((u.utt_id, u.accent) for u in utterances))
    write_kaldi_table(directory / "utt2dur", ((u.utt_id, f"{wav_duration(u.wav_path):.3f}") for u in utterances))
    write_kaldi_table(directory / "pinyin", ((u.utt_id, " ".join(u.pinyin)) for u in utterances))
    write_kaldi_table(directory / "phones", ((u.utt_id, " ".join(unit for syllable in u.pinyin
                                                                  for unit in initial_final(syllable)))
                                             for u in utterances))
    write_kaldi_table(directory / "spoken_pinyin", ((u.utt_id, " ".join(u.spoken)) for u in utterances))
    by_speaker: dict[str, list[str]] = {}
    for u in sorted(utterances, key=lambda u: u.utt_id):
        by_speaker.setdefault(u.speaker, []).append(u.utt_id)
    write_kaldi_table(directory / "spk2utt", ((spk, " ".join(utts)) for spk, utts in by_speaker.items()))
    (directory / "accents.txt").write_text("".join(f"{name}\n" for name in accent_list), encoding="utf-8")


def read_table(path: Path) -> list[tuple[str, str]]:
    if not path.is_file():
        raise CorpusError(f"{path}: missing; rerun make_corpus.py with --force")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        key, _, value = line.partition(" ")
        if not value:
            raise CorpusError(f"{path} line {number}: expected '<key> <value>', got {line!r}; rerun make_corpus.py with --force")
        rows.append((key, value))
    keys = [key for key, _ in rows]
    if keys != sorted(set(keys)):
        raise CorpusError(f"{path}: keys are not sorted and unique under LC_ALL=C; rerun make_corpus.py with --force")
    return rows


def check_data_dir(directory: Path, accent_list: Sequence[str], check_audio: bool = True) -> dict[str, str]:
    """Kaldi consistency of one dir; returns utt -> speaker. Raises CorpusError naming the file."""
    tables = {name: dict(read_table(directory / name)) for name in
              ("wav.scp", "text", "utt2spk", "utt2accent", "utt2dur", "pinyin", "phones", "spoken_pinyin")}
    utt2spk = tables["utt2spk"]
    for name, table in tables.items():
        if table.keys() != utt2spk.keys():
            raise CorpusError(f"{directory / name}: utterance ids differ from {directory / 'utt2spk'}; rerun with --force")
    spk2utt = {spk: utts.split() for spk, utts in read_table(directory / "spk2utt")}
    expected: dict[str, list[str]] = {}
    for utt, spk in sorted(utt2spk.items()):
        if not utt.startswith(spk + "-"):
            raise CorpusError(f"{directory / 'utt2spk'}: utterance {utt} does not start with its speaker id {spk}-")
        expected.setdefault(spk, []).append(utt)
    if spk2utt != expected:
        raise CorpusError(f"{directory / 'spk2utt'}: does not agree with utt2spk; rerun with --force")
    for utt, accent in tables["utt2accent"].items():
        if accent not in accent_list:
            raise CorpusError(f"{directory / 'utt2accent'}: utterance {utt} has accent {accent!r} not in accents.txt {list(accent_list)}")
    for utt, text in tables["text"].items():
        if len(text) != len(tables["pinyin"][utt].split()) or len(text) != len(tables["spoken_pinyin"][utt].split()):
            raise CorpusError(f"{directory}: utterance {utt}: text, pinyin and spoken_pinyin lengths differ")
    if check_audio:
        for utt, wav in tables["wav.scp"].items():
            wav_duration(Path(wav))  # raises on a missing, unreadable or wrongly formatted file
    return utt2spk


def sentence_of(utt_id: str) -> str:
    return utt_id.rsplit("-", 1)[1]


def check_corpus(out: Path, set_names: Sequence[str], accent_list: Sequence[str], check_audio: bool = True) -> None:
    """Every dir consistent; paired test sets share sentences and transcripts with test_std; test
    speakers never speak in a training or dev set; the shell validator agrees when it exists."""
    speakers: dict[str, set[str]] = {}
    texts: dict[str, dict[str, str]] = {}
    for name in set_names:
        utt2spk = check_data_dir(out / name, accent_list, check_audio)
        speakers[name] = set(utt2spk.values())
        texts[name] = {sentence_of(u): t for u, t in read_table(out / name / "text")}
    reference = texts.get("test_std")
    for name in set_names:
        if name.startswith("test_") and name != "test_std" and texts[name] != reference:
            raise CorpusError(f"{out / name / 'text'}: not paired with test_std (different sentences or transcripts)")
    held_out = set().union(*(speakers[n] for n in set_names if n.startswith("test_")))
    seen = set().union(*(speakers[n] for n in set_names if not n.startswith("test_")))
    if held_out & seen:
        raise CorpusError(f"test speakers also in training/dev sets: {sorted(held_out & seen)[:5]}")
    run_shell_validator(out, set_names)


def run_shell_validator(out: Path, set_names: Sequence[str]) -> bool:
    """Run utils/validate_data_dir.sh (Kaldi semantics, written for the whole project) on every set."""
    script = Path(__file__).resolve().parents[3] / "utils" / "validate_data_dir.sh"
    if not script.is_file() or shutil.which("bash") is None:
        return False
    for name in set_names:
        result = subprocess.run(["bash", str(script), "--accents", str(out / "accents.txt"), str(out / name)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise CorpusError(f"{script} {out / name} failed: {result.stderr.strip() or result.stdout.strip()}")
    return True
