"""Reading AISHELL-1 into utterance records (standard Mandarin: the source domain).

Layout read: ``<root>/data_aishell/wav/{train,dev,test}/<SPK>/<utt>.wav`` and
``<root>/data_aishell/transcript/aishell_transcript_v0.8.txt`` (``<utt> <words separated by spaces>``).
The utterance is the file stem, the speaker its parent dir; the Kaldi id is ``<SPK>-<stem>`` (ids must
start with the speaker, see hdmole.data.prepare.kaldi_utt_id). Utterances without a transcript are dropped and
counted (AISHELL-1 ships some), transcripts without audio are ignored (one file covers all three sets).
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from hdmole.data.errors import DataError
from hdmole.data.prepare import Utterance, kaldi_utt_id
from hdmole.data.table import read_kaldi_table
from hdmole.text.cleaning import TextCleaner

SETS = {"train": "train_aishell", "dev": "dev_aishell", "test": "test_aishell"}
TRANSCRIPT = Path("data_aishell") / "transcript" / "aishell_transcript_v0.8.txt"


def aishell_sets(root: Path, cleaner: TextCleaner, dropped: Counter) -> dict[str, list[Utterance]]:
    root = Path(root)
    transcript_path = root / TRANSCRIPT
    if not transcript_path.is_file():
        raise DataError(f"{transcript_path}: not found; --aishell-root must be the directory holding data_aishell/ "
                        "(unpack data_aishell.tgz there, and wav/*.tar.gz inside data_aishell/wav/)")
    transcripts = read_kaldi_table(transcript_path, require_sorted=False, allow_empty_value=True,
                                   value_name="transcript")
    sets = {}
    for split, name in SETS.items():
        split_dir = root / "data_aishell" / "wav" / split
        if not split_dir.is_dir():
            raise DataError(f"{split_dir}: not found; unpack the speaker archives of data_aishell/wav/ "
                            "(for f in *.tar.gz; do tar xzf $f; done)")
        wavs = sorted(split_dir.glob("*/*.wav"))
        if not wavs:
            raise DataError(f"{split_dir}: no <speaker>/<utterance>.wav files; unpack the speaker archives there")
        kept = []
        for wav in tqdm(wavs, desc=f"AISHELL-1 {split}", unit="utt", file=sys.stderr, mininterval=2.0):
            stem, speaker = wav.stem, wav.parent.name
            if stem not in transcripts:
                dropped[(name, "Mandarin", "no transcript")] += 1
                continue
            cleaned, reason = cleaner.clean(transcripts[stem], transcripts.where(stem))
            if cleaned is None:
                dropped[(name, "Mandarin", reason)] += 1
                continue
            kept.append(Utterance(kaldi_utt_id(speaker, stem), speaker, "Mandarin", cleaned, wav.resolve(), str(wav)))
        sets[name] = kept
    return sets
