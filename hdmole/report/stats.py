"""Confidence intervals for differences in CER between two systems that include the spread over training seeds.

A two-level paired bootstrap (Bisani and Ney 2004 for the test-set level; the seed level as in the
"hierarchical bootstrap" of multi-seed deep-learning comparisons). Each replicate

1. resamples the seeds of each system with replacement (a system with one seed, e.g. the base model,
   keeps it): the system's per-utterance errors are the mean over the drawn seeds;
2. resamples the test items of each test set with replacement. An item is a *sentence*: the utterances of
   a set that read it (one in mini_accent) go in or out together. Test sets that hold exactly the same
   sentences (mini_accent's five test sets read the same 600) are *paired*: one draw of sentence ids is
   used in every one of them, so that a sentence that is hard everywhere is drawn everywhere at once.
   Sets that share no sentences (KeSpeech) are resampled independently;
3. recomputes each set's CER (total errors / total reference characters of the drawn items), averages
   the CERs over the sets asked for, each set weighted equally whatever its size (the table's
   *avg accent*), and takes the difference of the two systems.

The percentile interval of those differences at the requested confidence is returned with the
difference on the full sets (the seed means). By default speakers are NOT resampled: the interval says how
the difference varies over sentences and training seeds for these test speakers, not over the population
of speakers. With ``speaker_of``, each replicate also resamples each set's speakers with replacement (sets
with the same speakers share one draw), crossed with the sentences: an utterance counts (times its
sentence was drawn) x (times its speaker was drawn). That is Owen's pigeonhole bootstrap for two crossed
random factors (Owen 2007, Ann. Appl. Stat. 1(2)), mildly conservative by construction; a test set has few
speakers (mini_accent: 8), so this interval is the honest one for "other speakers of these voices".
Written here rather than taken from a library: scipy.stats.bootstrap and the ASR scoring tools resample
one level (items) only; none pairs sets, seeds and crossed speakers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

UttErrors = dict[str, tuple[float, int]]  # utt id -> (errors, reference characters)
# (test set, utterance id) -> the item it belongs to (its sentence id)
ItemOf = Callable[[str, str], str]
# (test set, utterance id) -> its speaker
SpeakerOf = Callable[[str, str], str]


def read_utt_errors(path: Path) -> UttErrors:
    """``utt_errors`` as written by hdmole.bin.score: ``<utt> <errors> <ref_chars>`` per line."""
    out: UttErrors = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3:
            raise ValueError(f"{path}:{number}: expected '<utt> <errors> <ref_chars>', got {line!r}; "
                             "re-run hdmole.bin.score")
        out[fields[0]] = (float(fields[1]), int(fields[2]))
    return out


def sentence_id(utt: str, speaker: str | None = None) -> str:
    """The sentence an utterance reads: what follows ``<speaker>-`` in its id (Kaldi ids start with the
    speaker; mini_accent's are ``<accent>-<voice>-<sentence id>``), else the last '-' field."""
    if speaker and utt.startswith(speaker + "-"):
        return utt[len(speaker) + 1:]
    return utt.rsplit("-", 1)[-1]


def by_utterance(test_set: str, utt: str) -> str:
    """Every utterance its own item (no two sets paired): the classical one-level bootstrap's unit."""
    return f"{test_set}\t{utt}"


@dataclass
class Interval:
    difference: float  # on the full test sets, CER points (a - b), each system averaged over its seeds
    low: float
    high: float
    confidence: float  # the coverage the percentiles were taken at, e.g. 0.95
    paired: list[list[str]] = field(default_factory=list)  # the groups of sets resampled jointly (2 or more)
    speakers_resampled: bool = False

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        return f"{self.difference:+.2f} [{self.low:+.2f}, {self.high:+.2f}] ({100 * self.confidence:g}%)"


class _Set:
    """One test set in cell form: a cell is a (sentence item, speaker) pair, one utterance in mini_accent; per
    system, errors summed per cell [seeds, cells]; reference characters per cell [cells]; which item and which
    speaker each cell belongs to. Without ``speaker_of`` every utterance has the same speaker and a cell is an
    item."""

    def __init__(self, name: str, a: list[UttErrors], b: list[UttErrors], item_of: ItemOf,
                 speaker_of: SpeakerOf | None = None) -> None:
        utts = sorted(a[0])
        for runs, which in ((a, "first"), (b, "second")):
            if any(sorted(run) != utts for run in runs):
                raise ValueError(f"test set {name}: the {which} system's seeds and the other system were not "
                                 "scored on the same utterances")
        keys = [(item_of(name, u), speaker_of(name, u) if speaker_of else "") for u in utts]
        self.items = sorted({item for item, _ in keys})
        self.speakers = sorted({speaker for _, speaker in keys})
        cells = sorted(set(keys))
        column = {k: i for i, k in enumerate(cells)}
        index = np.array([column[k] for k in keys])
        item_column = {k: i for i, k in enumerate(self.items)}
        speaker_column = {k: i for i, k in enumerate(self.speakers)}
        self.cell_item = np.array([item_column[item] for item, _ in cells])
        self.cell_speaker = np.array([speaker_column[speaker] for _, speaker in cells])
        self.ref = np.bincount(index, weights=[a[0][u][1] for u in utts], minlength=len(cells))
        self.item_ref = np.bincount(self.cell_item, weights=self.ref, minlength=len(self.items))
        self.err = [np.stack([np.bincount(index, weights=[run[u][0] for u in utts], minlength=len(cells))
                              for run in runs]) for runs in (a, b)]

    def cer_difference(self, seed_weights: list[np.ndarray], counts: np.ndarray) -> np.ndarray:
        """Per replicate: CER(a) - CER(b) on the drawn cells. ``seed_weights`` per system [R, seeds] (rows sum
        to 1), ``counts`` [R, cells] (how often each cell was drawn)."""
        ref = np.maximum(counts @ self.ref, 1.0)
        a, b = (((w @ e) * counts).sum(axis=1) for w, e in zip(seed_weights, self.err))
        return 100.0 * (a - b) / ref


def _draw_counts(rng: np.random.Generator, n: int, replicates: int) -> np.ndarray:
    """[replicates, n]: how often each of n things is drawn in n draws with replacement."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=replicates).astype(float)


def bootstrap_difference(a: dict[str, list[UttErrors]], b: dict[str, list[UttErrors]], sets: list[str],
                         item_of: ItemOf = by_utterance, replicates: int = 2000, seed: int = 0,
                         confidence: float = 0.95, chunk: int = 250,
                         speaker_of: SpeakerOf | None = None) -> Interval:
    """CER(a) - CER(b) averaged over ``sets`` (each set's CER counts once), with its two-level bootstrap
    interval (see the module docstring); three-level, speakers too, when ``speaker_of`` is given.

    ``a``, ``b``: per test set, one ``UttErrors`` per seed of the system (the same seeds' order in every
    set). ``item_of(set, utt)``: the sentence an utterance reads; sets with the same sentences are
    resampled jointly. ``speaker_of(set, utt)``: its speaker, to resample speakers as well.
    ``chunk``: replicates computed at once (memory: chunk x utterances floats).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    data = {name: _Set(name, a[name], b[name], item_of, speaker_of) for name in sets}
    seeds = [len(a[sets[0]]), len(b[sets[0]])]
    if any(len(a[n]) != seeds[0] or len(b[n]) != seeds[1] for n in sets):
        raise ValueError("a system has a different number of seeds on different test sets")
    full_weights = [np.full((1, n), 1.0 / n) for n in seeds]
    full = float(np.mean([s.cer_difference(full_weights, np.ones((1, len(s.ref))))[0] for s in data.values()]))
    # Paired sets: those holding the same items, of the same lengths (the same sentences, not merely ids that
    # happen to coincide), share one draw per replicate; likewise sets read by the same speakers.
    groups: dict[tuple, list[str]] = {}
    speaker_groups: dict[tuple, list[str]] = {}
    for name, s in data.items():
        groups.setdefault((tuple(s.items), tuple(s.item_ref)), []).append(name)
        speaker_groups.setdefault(tuple(s.speakers), []).append(name)
    rng = np.random.default_rng(seed)
    diffs = []
    for start in range(0, replicates, chunk):
        size = min(chunk, replicates - start)
        # the draws in this order, speakers last, so that intervals without speakers stay as they were
        weights = [_draw_counts(rng, n, size) / n for n in seeds]
        item_counts = {name: counts for (items, _), names in groups.items()
                       for counts in [_draw_counts(rng, len(items), size)] for name in names}
        speaker_counts = {name: counts for speakers, names in speaker_groups.items()
                          for counts in [_draw_counts(rng, len(speakers), size)] for name in names
                          } if speaker_of else {}
        total = np.zeros(size)
        for name, s in data.items():
            counts = item_counts[name][:, s.cell_item]
            if speaker_of:
                counts = counts * speaker_counts[name][:, s.cell_speaker]
            total += s.cer_difference(weights, counts)
        diffs.append(total / len(sets))
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(np.concatenate(diffs), [tail, 100.0 - tail])
    return Interval(full, float(low), float(high), confidence, [g for g in groups.values() if len(g) > 1],
                    speaker_of is not None)


__all__ = ["Interval", "ItemOf", "SpeakerOf", "UttErrors", "bootstrap_difference", "by_utterance", "read_utt_errors",
           "sentence_id"]
