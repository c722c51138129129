"""Reading KeSpeech v1.0 (the ASR task lists) into utterance records.

Layout read: ``<root>/Tasks/ASR/<part>/{wav.scp,text,utt2subdialect,utt2spk}`` for the parts
train_phase1, train_phase2, dev_phase1, dev_phase2 and test; wav.scp paths are relative to ``<root>``
(e.g. ``Audio/1000001/phase1/1000001_6e1fc2ab.wav``; absolute paths are kept). The four lists of a part
must name the same utterances; every subdialect must be one of KeSpeech's nine; every audio file must
exist. Any violation is a DataError naming the file, the line and the fix.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from hdmole.data.errors import DataError
from hdmole.data.prepare import Utterance, kaldi_utt_id
from hdmole.data.table import KaldiTable, read_kaldi_table
from hdmole.text.cleaning import TextCleaner

# accents.txt order: standard Mandarin first (domain 0), then the eight subdialects.
SUBDIALECTS = ("Mandarin", "Beijing", "Southwestern", "Zhongyuan", "Northeastern", "Lan-Yin", "Jiang-Huai",
               "Ji-Lu", "Jiao-Liao")
PARTS = ("train_phase1", "train_phase2", "dev_phase1", "dev_phase2", "test")
LISTS = {"wav.scp": "wav path", "text": "transcript", "utt2subdialect": "subdialect", "utt2spk": "speaker"}


def _read_lists(part_dir: Path) -> dict[str, KaldiTable]:
    tables = {}
    for name, value_name in LISTS.items():
        # The corpus' own lists need not be sorted (we sort what we write); a transcript may be empty
        # (such an utterance is dropped and counted, not an error).
        tables[name] = read_kaldi_table(part_dir / name, require_sorted=False, allow_empty_value=name == "text",
                                        value_name=value_name)
    wav = tables["wav.scp"]
    for name, table in tables.items():
        if name == "wav.scp":
            continue
        for key in table.keys():
            if key not in wav:
                raise DataError(
                    f"{table.where(key)}: utterance {key!r} has no line in {wav.path}; the lists of a part must name "
                    f"the same utterances: add its audio to wav.scp or remove the line from {name}"
                )
        for key in wav.keys():
            if key not in table:
                raise DataError(
                    f"{wav.where(key)}: utterance {key!r} has no line in {table.path}; add its {LISTS[name]} "
                    "there or remove the utterance from wav.scp"
                )
    return tables


def read_part(root: Path, part: str, cleaner: TextCleaner, dropped: Counter) -> list[Utterance]:
    """The kept utterances of one part; ``dropped[(part, subdialect, reason)]`` counts the others."""
    part_dir = root / "Tasks" / "ASR" / part
    if not part_dir.is_dir():
        raise DataError(f"{part_dir}: not found; --kespeech-root must be the KeSpeech v1.0 root (the directory "
                        "holding Tasks/ and Audio/), and the download must be complete")
    tables = _read_lists(part_dir)
    wav, text, subdialects, speakers = (tables[n] for n in LISTS)
    kept = []
    for key in tqdm(wav.keys(), desc=f"KeSpeech {part}", unit="utt", file=sys.stderr, mininterval=2.0):
        subdialect = subdialects[key]
        if subdialect not in SUBDIALECTS:
            raise DataError(f"{subdialects.where(key)}: unknown subdialect {subdialect!r} of utterance {key!r}; "
                            f"KeSpeech v1.0 has {', '.join(SUBDIALECTS)}: fix the line")
        path = Path(wav[key])
        path = path if path.is_absolute() else root / path
        if not path.is_file():
            raise DataError(f"{wav.where(key)}: audio file {path} of utterance {key!r} does not exist; check "
                            "--kespeech-root and that the corpus (Audio/) was unpacked completely")
        # Evaluation parts keep their noise-tagged utterances, the tag stripped (hdmole/text/cleaning.py says why).
        cleaned, reason = cleaner.clean(text[key], text.where(key), keep_noisy=not part.startswith("train"))
        if cleaned is None:
            dropped[(part, subdialect, reason)] += 1
            continue
        speaker = speakers[key]
        kept.append(Utterance(kaldi_utt_id(speaker, key), speaker, subdialect, cleaned, path.resolve(),
                              wav.where(key)))
    return kept


def kespeech_sets(root: Path, cleaner: TextCleaner, dropped: Counter) -> dict[str, list[Utterance]]:
    """``train_kespeech`` (train_phase1 + train_phase2), ``dev_kespeech`` (dev_phase1 + dev_phase2, the
    adaptation's validation set), ``dev_phase1`` and ``dev_phase2`` (the rows icefall reports) and one
    ``test_<Subdialect>`` per subdialect (all nine, Mandarin included: pooled, KeSpeech's whole test set)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: KeSpeech root not found; pass --kespeech-root (or set KESPEECH in db.sh)")
    parts = {part: read_part(root, part, cleaner, dropped) for part in PARTS}
    sets = {"train_kespeech": parts["train_phase1"] + parts["train_phase2"],
            "dev_kespeech": parts["dev_phase1"] + parts["dev_phase2"],
            "dev_phase1": parts["dev_phase1"], "dev_phase2": parts["dev_phase2"]}
    for subdialect in SUBDIALECTS:
        utts = [u for u in parts["test"] if u.accent == subdialect]
        if not utts:
            raise DataError(f"{root}/Tasks/ASR/test/utt2subdialect: no test utterance of {subdialect} is left "
                            "(none listed, or all dropped by the text cleaning); every subdialect needs a test set")
        sets[f"test_{subdialect}"] = utts
    return sets
