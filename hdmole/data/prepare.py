"""Writing the data dirs of a recipe's stage 0 (its data preparation, in ``egs/<corpus>/local``): the
utterance record, Kaldi's id rule, and all-or-nothing replacement of the previous dirs.

A corpus reader turns its corpus into ``Utterance`` records; ``write_data_dir`` writes
``wav.scp text utt2spk spk2utt utt2accent``, every file sorted by key in byte order (LC_ALL=C), as
docs/data_dirs.md and utils/validate_data_dir.sh want; the dirs go to a staging dir first and
``replace_data_dirs`` moves them into place at the end, so a failure leaves the previous ones intact.
egs/kespeech/local/prepare_data.py uses all of it (docs/adding_a_corpus.md).
"""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from hdmole.data.errors import DataError
from hdmole.data.table import byte_order_key, write_kaldi_table


@dataclass(frozen=True)
class Utterance:
    utt_id: str
    speaker: str
    accent: str
    text: str
    wav: Path
    origin: str  # file:line it came from, for error messages


def kaldi_utt_id(speaker: str, corpus_id: str) -> str:
    """Kaldi wants utterance ids to start with their speaker id (so that sorting utt2spk also sorts
    spk2utt). A corpus id that already does is kept; otherwise it becomes ``<speaker>-<corpus id>``
    (AISHELL-1: ``BAC009S0002W0122`` of speaker ``S0002`` -> ``S0002-BAC009S0002W0122``)."""
    return corpus_id if corpus_id.startswith(speaker) else f"{speaker}-{corpus_id}"


def check_unique(utterances: Sequence[Utterance], name: str) -> None:
    seen: dict[str, Utterance] = {}
    for utt in utterances:
        if utt.utt_id in seen:
            raise DataError(
                f"{name}: utterance id {utt.utt_id!r} occurs twice ({seen[utt.utt_id].origin} and {utt.origin}); "
                "the sets combined into one data dir must not share utterances: remove one of them"
            )
        seen[utt.utt_id] = utt


def write_data_dir(directory: str | Path, utterances: Sequence[Utterance]) -> None:
    directory = Path(directory)
    if not utterances:
        raise DataError(f"{directory}: no utterances left for this set; check the corpus paths and the cleaning log")
    check_unique(utterances, str(directory))
    directory.mkdir(parents=True, exist_ok=True)
    write_kaldi_table(directory / "wav.scp", ((u.utt_id, str(u.wav)) for u in utterances))
    write_kaldi_table(directory / "text", ((u.utt_id, u.text) for u in utterances))
    write_kaldi_table(directory / "utt2spk", ((u.utt_id, u.speaker) for u in utterances))
    write_kaldi_table(directory / "utt2accent", ((u.utt_id, u.accent) for u in utterances))
    by_speaker: dict[str, list[str]] = {}
    for utt in sorted(utterances, key=lambda u: byte_order_key(u.utt_id)):
        by_speaker.setdefault(utt.speaker, []).append(utt.utt_id)
    write_kaldi_table(directory / "spk2utt", ((spk, " ".join(ids)) for spk, ids in by_speaker.items()))


def accent_counts(utterances: Iterable[Utterance]) -> dict[str, int]:
    return dict(sorted(Counter(u.accent for u in utterances).items()))


def replace_data_dirs(staging: Path, out: Path, names: Sequence[str]) -> None:
    """Moves every finished dir (or file) ``names`` of ``staging`` into ``out``: a failure before this point
    leaves ``out`` as it was (nothing already written is lost). A dir of ``out`` with the same name is
    replaced whole, so keep the files stage 1 adds (feats.scp, utt2num_frames) in another copy of the dirs
    (as egs/kespeech does: data/whisper<bins>/<set>)."""
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        (staging / name).replace(target)
    shutil.rmtree(staging, ignore_errors=True)
