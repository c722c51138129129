"""A Kaldi data dir: `wav.scp text utt2spk utt2accent` (+ `spk2utt`, `feats.scp`, `utt2num_frames`).

Conventions (docs/data_dirs.md): every file sorted with LC_ALL=C, unique ids, the same utterance ids in
every per-utterance file, utterance ids that start with their speaker id. `DataDir.load` checks all of it
and stops at the first problem with a DataError naming the file, the line and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hdmole.data.accents import AccentList
from hdmole.data.errors import DataError
from hdmole.data.fbank import FbankConfig
from hdmole.data.frontend import FRONTEND_FILE, read_frontend
from hdmole.data.table import KaldiTable, read_kaldi_table

REQUIRED_FILES = ("wav.scp", "text", "utt2spk", "utt2accent")
FIX_DATA_DIR = "fix the data preparation, or keep only the utterances present everywhere (utils/fix_data_dir.sh)"


def _check_same_ids(reference: KaldiTable, other: KaldiTable, what: str) -> None:
    """Every id of `reference` is in `other` and vice versa; name the first offender and its line."""
    for key in reference.entries:
        if key not in other:
            raise DataError(f"{reference.where(key)}: utterance {key!r} has no entry in {other.path} ({what}); {FIX_DATA_DIR}")
    for key in other.entries:
        if key not in reference:
            raise DataError(f"{other.where(key)}: utterance {key!r} is not in {reference.path}; {FIX_DATA_DIR}")


def read_utt2num_frames(path: str | Path) -> tuple[KaldiTable, dict[str, int]]:
    table = read_kaldi_table(path, value_name="frame count")
    frames = {}
    for key, value in table.entries.items():
        if not value.isdigit() or int(value) <= 0:
            raise DataError(f"{table.where(key)}: frame count {value!r} is not a positive integer; re-run compute_fbank")
        frames[key] = int(value)
    return table, frames


@dataclass
class DataDir:
    """A validated Kaldi data dir. Tables keep file order (= LC_ALL=C order) and line numbers."""

    path: Path
    wav_scp: KaldiTable
    text: KaldiTable
    utt2spk: KaldiTable
    utt2accent: KaldiTable
    accents: AccentList | None = None
    feats_scp: KaldiTable | None = None
    utt2num_frames: dict[str, int] | None = None
    frontend: FbankConfig | None = None  # a raw data dir: the loader computes features from wav.scp with it

    @classmethod
    def load(
        cls,
        path: str | Path,
        accents: AccentList | str | Path | None = None,
        *,
        require_feats: bool = False,
        ignore_feats: bool = False,
    ) -> "DataDir":
        """Read and validate the data dir at `path`.

        `accents` (an AccentList or the path of accents.txt) enables the unknown-accent check and
        `accent_index`. With `require_feats`, `feats.scp` and `utt2num_frames` must exist (run
        compute_fbank first); without it they are validated only when present. `ignore_feats` skips
        them entirely (compute_fbank uses it to replace stale features).
        """
        path = Path(path)
        if not path.is_dir():
            raise DataError(f"{path}: data dir not found; run the data preparation stage first")
        if accents is not None and not isinstance(accents, AccentList):
            accents = AccentList.load(accents)
        for name in REQUIRED_FILES:
            if not (path / name).is_file():
                raise DataError(
                    f"{path / name}: required file missing (a data dir needs {', '.join(REQUIRED_FILES)}); "
                    "create it in data preparation"
                )
        wav_scp = read_kaldi_table(path / "wav.scp", value_name="audio path or command")
        text = read_kaldi_table(path / "text", value_name="transcript")
        utt2spk = read_kaldi_table(path / "utt2spk", value_name="speaker id")
        utt2accent = read_kaldi_table(path / "utt2accent", value_name="accent")
        _check_same_ids(wav_scp, text, "its transcript")
        _check_same_ids(wav_scp, utt2spk, "its speaker")
        _check_same_ids(wav_scp, utt2accent, "its accent")
        for utt, speaker in utt2spk.entries.items():
            if not utt.startswith(speaker):
                raise DataError(
                    f"{utt2spk.where(utt)}: utterance id {utt!r} does not start with its speaker id {speaker!r}; "
                    "prefix utterance ids with the speaker id (Kaldi needs it so that sorting by utterance also sorts by speaker)"
                )
        if accents is not None:
            for utt, accent in utt2accent.entries.items():
                accents.index(accent, context=utt2accent.where(utt))
        if (path / "spk2utt").is_file():
            cls._check_spk2utt(path / "spk2utt", utt2spk)
        data = cls(path=path, wav_scp=wav_scp, text=text, utt2spk=utt2spk, utt2accent=utt2accent, accents=accents)
        has_feats = (path / "feats.scp").is_file() and not ignore_feats
        data.frontend = None if ignore_feats else read_frontend(path)
        if has_feats and data.frontend is not None:
            raise DataError(f"{path}: has both feats.scp (dumped features) and {FRONTEND_FILE} (raw audio); re-run "
                            "compute_fbank with the --feats-type you want (it removes the other)")
        if require_feats and not has_feats and data.frontend is None:
            raise DataError(f"{path / 'feats.scp'}: no features; run `python -m hdmole.bin.compute_fbank {path} <feat_dir>` "
                            "(or with --feats-type raw) first")
        if has_feats or data.frontend is not None:
            if has_feats:
                data.feats_scp = read_kaldi_table(path / "feats.scp", value_name="feature location")
                _check_same_ids(wav_scp, data.feats_scp, "its features")
            if not (path / "utt2num_frames").is_file():
                raise DataError(f"{path / 'utt2num_frames'}: missing next to {'feats.scp' if has_feats else FRONTEND_FILE}; "
                                "re-run compute_fbank")
            frames_table, data.utt2num_frames = read_utt2num_frames(path / "utt2num_frames")
            _check_same_ids(wav_scp, frames_table, "its frame count")
        return data

    @staticmethod
    def _check_spk2utt(spk2utt_path: Path, utt2spk: KaldiTable) -> None:
        spk2utt = read_kaldi_table(spk2utt_path, value_name="utterance list")
        seen = set()
        for speaker, utts in spk2utt.entries.items():
            for utt in utts.split():
                if utt2spk.entries.get(utt) != speaker:
                    raise DataError(
                        f"{spk2utt.where(speaker)}: utterance {utt!r} is listed under speaker {speaker!r} but utt2spk says "
                        f"{utt2spk.entries.get(utt)!r}; regenerate it with `utils/utt2spk_to_spk2utt.pl utt2spk > spk2utt`"
                    )
                seen.add(utt)
        missing = [utt for utt in utt2spk.entries if utt not in seen]
        if missing:
            raise DataError(
                f"{spk2utt_path}: utterance {missing[0]!r} ({utt2spk.where(missing[0])}) is missing; "
                "regenerate it with `utils/utt2spk_to_spk2utt.pl utt2spk > spk2utt`"
            )

    @property
    def utt_ids(self) -> list[str]:
        """Utterance ids in LC_ALL=C order."""
        return self.wav_scp.keys()

    def __len__(self) -> int:
        return len(self.wav_scp)

    def accent_index(self, utt_id: str) -> int:
        """Domain index of the utterance's accent (needs `accents`)."""
        if self.accents is None:
            raise ValueError("DataDir.load was called without an accent list; pass accents=... to get accent indices")
        return self.accents.index(self.utt2accent[utt_id], context=self.utt2accent.where(utt_id))
