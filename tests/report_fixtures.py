"""Shared helpers for the report tests (no tests here): reading RESULTS.md's comparison table back."""

from __future__ import annotations


def results_table(markdown: str) -> dict[str, dict[str, str]]:
    """The comparison table of a RESULTS.md (hdmole.bin.report) as {system: {column: cell}}."""
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    start = next(i for i, line in enumerate(lines) if line.startswith("| system |"))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = {}
    for line in lines[start + 2 :]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) != len(header):
            break  # the next table (wall time per stage)
        rows[cells[0]] = dict(zip(header, cells))
    return rows
