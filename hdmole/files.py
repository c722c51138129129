"""Atomic file writes: a kill at any moment leaves either the old file or the new one, never half of one.

A stage that finds its output file takes it as finished, so a truncated file would be silently taken as
a result; every writer of a stage output goes through here. The temporary file is a hidden sibling
(same directory, so the rename is atomic) whose name carries the process id, so several processes
(DDP ranks, parallel jobs) never write into the same temporary file.
"""

from __future__ import annotations

import contextlib
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
