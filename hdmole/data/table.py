"""Reading and writing Kaldi "table" text files (`<key> <value>` per line): wav.scp, text, utt2spk, utt2accent, ...

Kaldi's own tools want these files sorted by key in byte order (LC_ALL=C) with unique keys; a file that is
not breaks `join`-style merges silently in shell scripts, so we check it here and say how to fix it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from hdmole.data.errors import DataError, where
from hdmole.files import atomic_write_text

SORT_FIX = "sort it with `LC_ALL=C sort -k1,1 -u` (or run utils/fix_data_dir.sh)"


@dataclass
class KaldiTable:
    """The entries of one Kaldi table file, in file order, with the line each key came from."""

    path: Path
    entries: dict[str, str] = field(default_factory=dict)
    line_numbers: dict[str, int] = field(default_factory=dict)

    def where(self, key: str) -> str:
        """`path:line` of `key`, for error messages."""
        return where(self.path, self.line_numbers.get(key))

    def keys(self) -> list[str]:
        return list(self.entries)

    def __getitem__(self, key: str) -> str:
        return self.entries[key]

    def __contains__(self, key: object) -> bool:
        return key in self.entries

    def __len__(self) -> int:
        return len(self.entries)


def byte_order_key(key: str) -> bytes:
    """The sort key LC_ALL=C uses: the UTF-8 bytes."""
    return key.encode("utf-8")


def _check_invisible(path: Path, line_number: int, line: str) -> None:
    """A byte-order mark or a carriage return is invisible but becomes part of an id or a value; the shell
    tools (utils/validate_data_dir.sh, awk, sort) see it too, so rejecting it keeps Python and them agreeing."""
    if line_number == 1 and line.startswith("\ufeff"):
        raise DataError(
            f"{where(path, line_number)}: starts with a UTF-8 byte-order mark; remove it "
            f"(utils/fix_data_dir.sh <data-dir> does, or `sed -i '1s/^\\xEF\\xBB\\xBF//' {path}`)"
        )
    if "\r" in line:
        raise DataError(
            f"{where(path, line_number)}: contains a carriage return (Windows CRLF line ends); convert the file "
            f"(utils/fix_data_dir.sh <data-dir> does, or `sed -i 's/\\r$//' {path}`)"
        )


def read_kaldi_table(
    path: str | Path,
    *,
    require_sorted: bool = True,
    allow_empty_value: bool = False,
    value_name: str = "value",
) -> KaldiTable:
    """Read `<key> <value>` lines (value = rest of line, stripped) into a KaldiTable.

    Raises DataError (naming path and line) for a missing file, undecodable bytes, a byte-order mark or a
    carriage return (CRLF line ends), a blank or malformed line, an empty value (unless
    `allow_empty_value`), a duplicate key, or keys out of LC_ALL=C order (when `require_sorted`).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; create it (see the data preparation stage of the recipe)")
    table = KaldiTable(path=path)
    previous_key: str | None = None
    with open(path, "rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\n")
            except UnicodeDecodeError as error:
                raise DataError(
                    f"{where(path, line_number)}: not valid UTF-8 ({error.reason}); re-encode the file as UTF-8 "
                    "(e.g. `iconv -f GBK -t UTF-8`)"
                ) from None
            _check_invisible(path, line_number, line)
            if not line.strip() or line[0].isspace():
                raise DataError(
                    f"{where(path, line_number)}: malformed line {line!r}: expected `<id> <{value_name}>` with the id "
                    "at the start of the line; remove blank lines and leading whitespace"
                )
            parts = line.split(maxsplit=1)
            key = parts[0]
            value = parts[1].strip() if len(parts) > 1 else ""
            if not value and not allow_empty_value:
                raise DataError(
                    f"{where(path, line_number)}: id {key!r} has an empty {value_name}; "
                    f"give it a {value_name} or remove the utterance from the data dir (utils/fix_data_dir.sh)"
                )
            if key in table.entries:
                raise DataError(
                    f"{where(path, line_number)}: duplicate id {key!r} (first at line {table.line_numbers[key]}); "
                    "ids must be unique: remove the duplicate"
                )
            if require_sorted and previous_key is not None and byte_order_key(key) < byte_order_key(previous_key):
                raise DataError(
                    f"{where(path, line_number)}: not sorted: id {key!r} comes after {previous_key!r}; {SORT_FIX}"
                )
            table.entries[key] = value
            table.line_numbers[key] = line_number
            previous_key = key
    return table


def write_kaldi_table(path: str | Path, rows: Iterable[tuple[str, str]]) -> None:
    """Write `<key> <value>` lines sorted by key in LC_ALL=C byte order (what `read_kaldi_table`, Kaldi's
    tools and utils/validate_data_dir.sh want), atomically. A key that is empty or holds whitespace, a
    value with a line break, or a duplicate key is a DataError naming the file: the table could not be
    read back as written."""
    path = Path(path)
    rows = sorted(rows, key=lambda row: byte_order_key(row[0]))
    for (key, value), previous in zip(rows, [None, *rows]):
        if not key or any(ch.isspace() for ch in key):
            raise DataError(f"{path}: key {key!r} is empty or contains whitespace; ids are single tokens")
        if "\n" in value or "\r" in value:
            raise DataError(f"{path}: the value of {key!r} contains a line break; a table holds one line per key")
        if previous is not None and previous[0] == key:
            raise DataError(f"{path}: key {key!r} occurs twice; a table holds one line per key")
    # An empty value (an empty hypothesis) is the key alone, as Kaldi writes it: no trailing space.
    atomic_write_text(path, "".join((f"{key} {value}" if value else key) + "\n" for key, value in rows))
