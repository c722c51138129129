"""The accent list (`accents.txt`): one accent name per line; the line order is the domain index.

Every stage (router training, adaptation, decoding, scoring, the report) loads the same file, so
domain index d always means the same accent.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Iterator, Sequence

from hdmole.data.errors import DataError, where

log = logging.getLogger("hdmole.data")


class AccentList:
    """An ordered list of accent names; `index(name)` is the domain index used by the routers."""

    def __init__(self, names: Sequence[str], source: str | Path | None = None):
        self.source = str(source) if source is not None else "<accent list>"
        seen: dict[str, int] = {}
        for position, name in enumerate(names):
            if not name or any(ch.isspace() for ch in name):
                raise DataError(f"{self.source}: accent name {name!r} is empty or contains whitespace; use one token per accent")
            if name in seen:
                raise DataError(
                    f"{self.source}: accent {name!r} is listed twice (entries {seen[name] + 1} and {position + 1}); remove one"
                )
            seen[name] = position
        if not seen:
            raise DataError(f"{self.source}: no accents listed; write one accent name per line")
        self._index = seen
        self.names: tuple[str, ...] = tuple(names)

    @classmethod
    def load(cls, path: str | Path) -> "AccentList":
        """Read `accents.txt` (UTF-8, one name per line, no blank lines)."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: accent list not found; write one accent name per line (order = domain index)")
        names = []
        for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            name = line.strip()
            if not name or " " in name or "\t" in name:
                raise DataError(f"{where(path, line_number)}: expected exactly one accent name, got {line!r}")
            names.append(name)
        return cls(names, source=path)

    def save(self, path: str | Path) -> None:
        Path(path).write_text("".join(f"{name}\n" for name in self.names), encoding="utf-8")

    def index(self, name: str, *, context: str | None = None) -> int:
        """Domain index of `name`; DataError naming `context` (e.g. `utt2accent:12`) when it is unknown."""
        try:
            return self._index[name]
        except KeyError:
            prefix = f"{context}: " if context else ""
            raise DataError(
                f"{prefix}unknown accent {name!r}; known accents ({self.source}): {', '.join(self.names)}. "
                "Fix the accent name or add it to the accent list (its line number becomes its domain index)"
            ) from None

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __repr__(self) -> str:
        return f"AccentList({list(self.names)!r})"


def domain_counts(data_dir: str | Path, accents: AccentList) -> Counter:
    """Utterances per accent name in ``data_dir/utt2accent`` (every name checked against ``accents``)."""
    from hdmole.data.table import read_kaldi_table

    table = read_kaldi_table(Path(data_dir) / "utt2accent", value_name="accent")
    for key, name in table.entries.items():
        accents.index(name, context=table.where(key))
    return Counter(table.entries.values())


def check_domain_coverage(train: str | Path, dev: str | Path | None, accents: AccentList, phase: str) -> None:
    """Router pre-training and adaptation learn one domain per line of ``accents.txt``: a domain without
    training utterances is an error (the router would never predict it; for the source domain, line 1, HDMoLE
    could never keep the base model for it), one without dev utterances a warning (the checkpoint is chosen
    without it)."""
    for data_dir, required in ((train, True), (dev, False)):
        if not data_dir:
            continue
        counts = domain_counts(data_dir, accents)
        missing = [(index, name) for index, name in enumerate(accents.names) if not counts[name]]
        if not missing:
            continue
        names = ", ".join(f"{name} (line {index + 1}{', the source domain' if index == 0 else ''})"
                          for index, name in missing)
        message = (f"{Path(data_dir) / 'utt2accent'}: {phase}: no {'training' if required else 'dev'} utterance of "
                   f"{names} of {accents.source}")
        fix = (f"Fix: add utterances of {' and '.join(name for _, name in missing)} to {data_dir} in the recipe's "
               "stage 0 (the target sets hold every domain of accents.txt, the source domain too: "
               "docs/adding_a_corpus.md)")
        if any(index > 0 for index, _ in missing):
            fix += f", or remove an accent the corpus lacks from {accents.source}"
        if not required:
            log.warning("%s: the dev figures that choose the checkpoint leave it out. %s", message, fix)
            continue
        why = "the router could never predict it"
        if missing[0][0] == 0:
            why += ", so HDMoLE could never keep the base model for the source domain"
        raise DataError(f"{message}: {why}. {fix}")
