"""The one error type for bad input data, so every stage can catch and report it the same way."""

from __future__ import annotations


class DataError(ValueError):
    """Bad input data: the message names the file, the line (where there is one), the problem and the fix."""


def where(path, line: int | None = None) -> str:
    """`path:line` (or just `path`) for error messages."""
    return f"{path}:{line}" if line is not None else f"{path}"
