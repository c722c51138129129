"""The corpus plan: which speaker says which sentence in which data set, decided before any audio.

Everything is drawn from `seed`, so the same config always gives the same plan (a killed run
resumes by synthesising only the missing wavs).

Sets:
- `train_std`: standard Mandarin, Mandarin training speakers, one utterance per training sentence.
- `train_accent`: every accent's training speakers on their own training sentences, plus
  `train_accent_std` Mandarin utterances, so adaptation also sees the source domain: said by their own
  `std_adapt` speakers on their own sentences (unheard by the base model, like the accents), or, with
  `std_adapt: 0`, taken from `train_std` (the same files).
- `dev_std` / `dev_accent`: dev sentences; every accent says the same `dev_accent_per_accent` ones, and
  `dev_accent` also holds `dev_std`'s utterances of them (the same files), so it covers both domains.
- `test_std` and one `test_<accent>` per accent: the SAME test sentences, each set spoken by its
  own held-out speakers (paired test sets).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from accent_rules import STANDARD, SpeakerAccent, apply_accent, draw_speaker_accent
from corpus_datadir import Utterance
from corpus_sentences import SentenceSplit
from corpus_synthesis import Voice, voice_grid
from pinyin_inventory import text_to_tone3

ROLES = ("train", "dev", "test")


@dataclass(frozen=True)
class Speaker:
    speaker_id: str
    role: str
    voice: Voice
    accent: SpeakerAccent


def held_out_voices(variants: Sequence[str], pitches: Sequence[int], rates: Sequence[int], seed: str,
                    counts: Sequence[int]) -> list[list[Voice]]:
    """Voices for the domains of one held-out role (``counts[d]`` speakers for domain d), spread evenly over
    the variants: speaker k of domain d uses variant ``(offset_d + k) mod V``, where ``offset_d`` is the
    number of speakers handed out before it, and each variant's (pitch, rate) pairs are taken without
    replacement in a seeded order. So every domain hears every variant equally often when its count is a
    multiple of V, and no variant reads most of one set (as two speakers of one variant in a set of four
    did when speakers were drawn from one shuffled grid: one voice then decided much of that set's CER)."""
    # Each variant's own seeded order, so that the speakers of a set do not share one (pitch, rate).
    per_variant = {variant: voice_grid([variant], pitches, rates, f"{seed}:{variant}") for variant in variants}
    taken = dict.fromkeys(variants, 0)
    result, offset = [], 0
    for count in counts:
        voices = []
        for k in range(count):
            variant = variants[(offset + k) % len(variants)]
            if taken[variant] == len(per_variant[variant]):
                raise ValueError(f"config speakers: the held-out variant {variant!r} has only "
                                 f"{len(per_variant[variant])} (pitch, rate) combinations for its speakers; add "
                                 "pitches, rates or variants, or ask for fewer speakers")
            voices.append(per_variant[variant][taken[variant]])
            taken[variant] += 1
        result.append(voices)
        offset += count
    return result


def allocate_speakers(accent_list: list[str], config: Mapping[str, Any], seed: int) -> dict[tuple[str, str], list[Speaker]]:
    """(accent, role) -> speakers. Every speaker is a distinct (variant, pitch, rate). Test speakers use the
    espeak-ng variants of ``voices.test_variants`` and dev speakers those of ``voices.dev_variants``, variants
    that no training speaker (and no speaker of the other held-out role) uses: a held-out voice condition, not
    only a held-out pitch and rate, the same for dev as for test, so that what dev chooses is chosen under the
    condition test measures. Held-out speakers are spread evenly over their variants (``held_out_voices``).
    The other speakers are taken without replacement from one shuffled grid over ``voices.variants``; without
    ``dev_variants`` (or ``test_variants``) that role draws from it too."""
    voices_cfg, counts = config["voices"], config["speakers"]
    held_out = {role: list(voices_cfg.get(f"{role}_variants") or []) for role in ("test", "dev")}
    lists = {"variants": list(voices_cfg["variants"]), "test_variants": held_out["test"],
             "dev_variants": held_out["dev"]}
    for first, second in itertools.combinations(lists, 2):
        shared = sorted(set(lists[first]) & set(lists[second]))
        if shared:
            raise ValueError(f"config voices: {shared} are in both {first} and {second}; a held-out voice must be one "
                             "no speaker of another role uses: remove them from one of the two lists")
    wanted = {(accent, role): int(counts[f"{'std' if accent == STANDARD else 'accent'}_{role}"])
              for accent in accent_list for role in ROLES}
    for (accent, role), count in wanted.items():
        if count < 1:
            raise ValueError(f"config speakers: need at least one {role} speaker for {accent}")
    adapt_std = int(counts.get("std_adapt", 0))
    rng = random.Random(f"{seed}:speaker-accents")
    grid = voice_grid(voices_cfg["variants"], voices_cfg["pitches"], voices_cfg["rates"], seed)
    position = 0

    def from_grid(count: int, role: str) -> list[Voice]:
        nonlocal position
        if position + count > len(grid):
            raise ValueError(f"config speakers: the {role} speakers need more (variant, pitch, rate) combinations "
                             f"than the voices give ({len(grid)}); add voice variants, pitches or rates, or ask "
                             "for fewer speakers")
        position += count
        return grid[position - count:position]

    speakers: dict[tuple[str, str], list[Speaker]] = {}
    for role in ("test", "dev", "train"):  # test first: the held-out voices do not depend on train sizes
        if held_out.get(role):
            chosen = held_out_voices(held_out[role], voices_cfg["pitches"], voices_cfg["rates"], f"{seed}:{role}",
                                     [wanted[accent, role] for accent in accent_list])
        else:
            chosen = [from_grid(wanted[accent, role], role) for accent in accent_list]
        for accent, voices in zip(accent_list, chosen):
            speakers[accent, role] = [Speaker(f"{accent}-{voice.tag}", role, voice, draw_speaker_accent(accent, rng))
                                      for voice in voices]
    # Mandarin speakers of the adaptation set only (last, so the other speakers do not depend on them).
    if position + adapt_std > len(grid):
        raise ValueError(f"config speakers: std_adapt={adapt_std} needs more voices than are left "
                         f"({len(grid) - position}); add voice variants, pitches or rates, or ask for fewer speakers")
    speakers[STANDARD, "adapt"] = [Speaker(f"{STANDARD}-{voice.tag}", "adapt", voice, draw_speaker_accent(STANDARD, rng))
                                   for voice in grid[position:position + adapt_std]]
    return speakers


class Planner:
    def __init__(self, id_to_text: dict[str, str], wav_dir: Path, seed: int):
        self.id_to_text = id_to_text
        self.wav_dir = wav_dir
        self.seed = seed
        self._pinyin: dict[str, tuple[str, ...]] = {}

    def pinyin(self, sentence_id: str) -> tuple[str, ...]:
        if sentence_id not in self._pinyin:
            self._pinyin[sentence_id] = tuple(text_to_tone3(self.id_to_text[sentence_id]))
        return self._pinyin[sentence_id]

    def utterances(self, sentence_ids: list[str], speakers: list[Speaker]) -> list[Utterance]:
        """Sentence i is said by speaker i mod n (speakers in their seeded order)."""
        result = []
        for index, sentence_id in enumerate(sentence_ids):
            speaker = speakers[index % len(speakers)]
            utt_id = f"{speaker.speaker_id}-{sentence_id}"
            standard = self.pinyin(sentence_id)
            spoken = tuple(apply_accent(standard, speaker.accent, random.Random(f"{self.seed}:{utt_id}")))
            result.append(Utterance(utt_id, speaker.speaker_id, speaker.accent.accent, sentence_id,
                                    self.id_to_text[sentence_id], standard, spoken,
                                    self.wav_dir / speaker.speaker_id / f"{utt_id}.wav"))
        return result


def _take(pool: list[str], start: int, count: int, what: str) -> list[str]:
    if start + count > len(pool):
        raise ValueError(f"config sizes: {what} needs sentences {start}..{start + count} but the split has {len(pool)}; "
                         "lower the sizes or raise num_chars / max_chars")
    return pool[start:start + count]


def plan_sets(split: SentenceSplit, id_to_text: dict[str, str], accent_list: list[str], config: Mapping[str, Any],
              wav_dir: Path) -> tuple[dict[str, list[Utterance]], dict[tuple[str, str], list[Speaker]]]:
    seed = int(config["seed"])
    sizes = config["sizes"]
    speakers = allocate_speakers(accent_list, config, seed)
    planner = Planner(id_to_text, wav_dir, seed)
    accents = [a for a in accent_list if a != STANDARD]
    sets: dict[str, list[Utterance]] = {}

    n_train_std = int(sizes["train_std"])
    sets["train_std"] = planner.utterances(_take(split.train, 0, n_train_std, "train_std"), speakers[STANDARD, "train"])
    per_accent = int(sizes["train_accent_per_accent"])
    n_std = int(sizes["train_accent_std"])
    train_accent = []
    for index, accent in enumerate(accents):
        sentence_ids = _take(split.train, n_train_std + index * per_accent, per_accent, f"train_accent ({accent})")
        train_accent += planner.utterances(sentence_ids, speakers[accent, "train"])
    if speakers[STANDARD, "adapt"]:
        # Mandarin the base model never heard (own sentences, own voices), like the accented part: a router
        # trained on base-training utterances would learn "heard well = Mandarin" and miss unseen Mandarin.
        start = n_train_std + len(accents) * per_accent
        sentence_ids = _take(split.train, start, n_std, "train_accent (Mandarin)")
        train_accent = planner.utterances(sentence_ids, speakers[STANDARD, "adapt"]) + train_accent
    else:
        train_accent = list(sets["train_std"][:n_std]) + train_accent
    sets["train_accent"] = train_accent

    sets["dev_std"] = planner.utterances(_take(split.dev, 0, int(sizes["dev_std"]), "dev_std"), speakers[STANDARD, "dev"])
    dev_ids = _take(split.dev, 0, int(sizes["dev_accent_per_accent"]), "dev_accent")
    # Mandarin too (dev_std's utterances of the same sentences, the same files): checkpoints of the router and
    # of every adapted system are chosen on both domains, so a system that forgets Mandarin is not preferred.
    dev_std_of = {u.sentence_id: u for u in sets["dev_std"]}
    missing = [i for i in dev_ids if i not in dev_std_of]
    if missing:
        raise ValueError(f"config sizes: dev_accent_per_accent={len(dev_ids)} exceeds dev_std={len(sets['dev_std'])}; "
                         "dev_accent's Mandarin part comes from dev_std")
    sets["dev_accent"] = [dev_std_of[i] for i in dev_ids] + [
        u for accent in accents for u in planner.utterances(dev_ids, speakers[accent, "dev"])]

    test_ids = _take(split.test, 0, int(sizes["test"]), "test")
    sets["test_std"] = planner.utterances(test_ids, speakers[STANDARD, "test"])
    for accent in accents:
        sets[f"test_{accent}"] = planner.utterances(test_ids, speakers[accent, "test"])
    return sets, speakers


def unique_utterances(sets: Mapping[str, list[Utterance]]) -> list[Utterance]:
    """Each utterance once (train_accent reuses train_std files)."""
    seen: dict[str, Utterance] = {}
    for utterances in sets.values():
        for utterance in utterances:
            seen.setdefault(utterance.utt_id, utterance)
    return list(seen.values())
