"""Atomic file writes: a kill at any moment leaves either the old file or the new one, never half of one;
and the record of the inputs that made an output (below).

A stage that finds its output file takes it as finished, so a truncated file would be silently taken as
a result; every writer of a stage output goes through here. The temporary file is a hidden sibling
(same directory, so the rename is atomic) whose name carries the process id, so several processes
(DDP ranks, parallel jobs) never write into the same temporary file.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path to write to; renamed to ``path`` when the block ends without an error,
    removed when it raises. For writers that want a path (``torch.save``, ``np.save``, ...)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


# ------------------------------------------------------------------ what produced an output
# A stage that skips finished work records, next to its output, the versions of the inputs that made it,
# and redoes the work (or refuses) when they differ: a file replaced at the same path is not "finished".
# One mechanism for every stage (features, CMVN, tokenizer, unit list, training, decoding).
HASH_LIMIT = 256 << 20  # bigger files (a 7B LLM's checkpoint) are recorded by path, size and mtime


@functools.lru_cache(maxsize=None)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    """Cached per file version: several stages or data sets share the same checkpoints."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_version(path, hash_limit: int = HASH_LIMIT) -> dict:
    """The version of one file: its sha256, or (above ``hash_limit`` bytes) its path, size and mtime."""
    path = Path(path)
    if not path.is_file():
        return {"missing": str(path)}
    stat = path.stat()
    if stat.st_size > hash_limit:
        return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return {"sha256": _sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)}


def feats_version(feats_scp) -> dict:
    """feats.scp by content and the arks it points into by size and mtime: re-extracted features keep
    feats.scp's text but replace its arks."""
    feats_scp = Path(feats_scp)
    arks = set()
    if feats_scp.is_file():
        arks = {line.split(maxsplit=1)[1].rsplit(":", 1)[0] for line in feats_scp.read_text(encoding="utf-8").splitlines()
                if len(line.split(maxsplit=1)) == 2}
    return {"scp": file_version(feats_scp), "arks": [file_version(a, hash_limit=0) for a in sorted(arks)]}


# The files of a data dir that a training or CMVN reads (the others, utt2spk and spk2utt, change nothing).
DATA_DIR_FILES = ("text", "utt2accent", "wav.scp", "utt2num_frames", "frontend.json")


def data_version(path, extra_files=()) -> dict:
    """A text file's version, or a data dir's: its files (and ``extra_files``, e.g. a CTC ``phones``
    file) by content, its features as feats_version."""
    path = Path(path)
    if not path.is_dir():
        return file_version(path)
    version = {name: file_version(path / name) for name in (*DATA_DIR_FILES, *extra_files) if (path / name).is_file()}
    if (path / "feats.scp").is_file():
        version["feats.scp"] = feats_version(path / "feats.scp")
    return version


def inputs_record_path(output) -> Path:
    """Where the record of ``output``'s inputs lives: ``<dir>/<stem>_inputs.json`` (cmvn.json ->
    cmvn_inputs.json, char.model -> char_inputs.json)."""
    output = Path(output)
    return output.with_name(output.stem + "_inputs.json")


def read_inputs_record(path) -> dict | None:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def normalised(record: dict) -> dict:
    """``record`` as it reads back from JSON (tuples become lists, keys strings)."""
    return json.loads(json.dumps(record, sort_keys=True, default=str))


def changed_inputs(old: dict | None, new: dict) -> list[str]:
    """The top-level keys whose recorded version differs (every key when there is no record)."""
    new = normalised(new)
    if old is None:
        return sorted(new)
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def write_inputs_record(path, record: dict) -> None:
    atomic_write_text(path, json.dumps(normalised(record), indent=1, sort_keys=True) + "\n")
