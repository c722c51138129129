"""The tone-channel accent router (``global_router.input: ctc_tones``): an accent as a channel on tones.

Mandarin dialect groups differ above all in their tones: each realises the historical tone categories with its
own contours, so a recogniser trained on standard Mandarin hears a syllable's tone replaced by another, the same
way throughout a group (one group's tone 2 heard as tone 3, say). This router scores what the CTC head hears,
syllable by syllable, as standard Mandarin sent through the domain's tone channel:

    P(heard syllable with base b and tone h | domain c) = sum over t of P_std(t | b) M_c[t, h]

``P_std(tone | base)`` is how often standard Mandarin says each syllable with each tone: counted when router
pre-training starts (``count_prior``) on its training transcripts in the CTC units (``data.ctc_text``: what the
speakers were reading, in its standard pronunciation, not what their accent made of it), then fixed and kept in
the checkpoint, so not a learned parameter. The channels ``M_c`` (D x 5 x 5 values, rows summing to 1 by a
softmax) are learned. A domain's
logit is the utterance's log-likelihood under its channel plus a linear layer on the counts of the heard units,
for the segmental changes (mergers, lost nasals) the channel does not see. A syllable is an initial unit and the
tonal final after it; a final with no initial before it is a syllable with an empty initial. Units are tonal
finals when they end in a tone digit 1-5 (``ong1``), initials otherwise.

Measured on mini_accent's dev_accent against the hashed unit + bigram router of the same stage (README.md of
the recipe, "Development measurements"): more accuracy with fewer learned parameters; counts rather than
frequencies, because a longer utterance is more evidence (the naive-Bayes form), which speaker pooling sums.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

TONES = 5  # Mandarin's four tones and the neutral tone (5), as tone-numbered pinyin writes them


def unit_tone(unit: str) -> int:
    """1-5 for a tonal final (``ong1``), 0 for any other unit (an initial, ``<unk>``)."""
    return int(unit[-1]) if len(unit) > 1 and unit[-1] in "12345" else 0


class SyllableIndex:
    """Which syllable base (initial, toneless final) and tone each pair of CTC units forms."""

    def __init__(self, units: Sequence[str]):
        self.vocab = len(units)
        self.tone = [unit_tone(u) for u in units]
        finals = sorted({u[:-1] for u, t in zip(units, self.tone) if t})
        initials = sorted({u for u, t in zip(units, self.tone) if not t})
        if not finals:
            raise ValueError("global_router.input: ctc_tones needs tonal CTC units (finals ending in a tone digit 1-5, "
                             "e.g. run.sh --ctc-text phones); this unit list has none")
        final_id, initial_id = {f: i for i, f in enumerate(finals)}, {u: i + 1 for i, u in enumerate(initials)}
        self.final = [final_id[u[:-1]] if t else -1 for u, t in zip(units, self.tone)]
        self.initial = [initial_id.get(u, 0) if not t else 0 for u, t in zip(units, self.tone)]
        self.num_finals, self.num_bases = len(finals), (len(initials) + 1) * len(finals)

    def syllables(self, ids: Sequence[int]) -> list[tuple[int, int]]:
        """(base index, tone index 0-4) of every syllable of a unit-id sequence (blanks already dropped)."""
        out, initial = [], 0
        for unit in ids:
            if self.tone[unit]:
                out.append((initial * self.num_finals + self.final[unit], self.tone[unit] - 1))
                initial = 0
            else:
                initial = self.initial[unit]
        return out


def tone_prior(text_path: str | Path, index: SyllableIndex, units: Sequence[str], smoothing: float = 0.5) -> Tensor:
    """[bases, 5] P_std(tone | base) counted on a Kaldi text table of standard CTC units (``utt unit ...``), add-
    ``smoothing`` per tone so that a base never seen in the text gets a uniform row. A unit not in the list is read
    as ``<unk>`` (id 0), as the CTC targets read it (the unit list leaves out the rarest units)."""
    path = Path(text_path)
    if not path.is_file():
        raise FileNotFoundError(f"the tone router's prior: {path} does not exist (the training data dir's data.ctc_text "
                                "file, the transcripts in the CTC units, e.g. data/train_accent/phones)")
    unit_id = {u: i for i, u in enumerate(units)}
    counts = torch.full((index.num_bases, TONES), float(smoothing))
    for line in path.read_text(encoding="utf-8").splitlines():
        for base, tone in index.syllables([unit_id.get(u, 0) for u in line.split()[1:]]):
            counts[base, tone] += 1
    if counts.sum() == smoothing * counts.numel():
        raise ValueError(f"the tone router's prior: {path} holds no syllable of the CTC units (tonal finals such as "
                         "ong1); data.ctc_text must name the transcripts in the CTC head's units (e.g. phones)")
    return counts / counts.sum(1, keepdim=True)


class ToneChannelRouter(nn.Module):
    """``forward(best [B, T] CTC best-path ids, lengths [B]) -> logits [B, num_domains]`` (docstring above).

    ``units``: the CTC unit list (blank is the id ``len(units)``). Learned: the channels (num_domains x 5 x 5)
    and Linear(len(units), num_domains) on the unit counts. The prior starts uniform until ``count_prior``.
    """

    def __init__(self, units: Sequence[str], num_domains: int, dropout: float = 0.1):
        super().__init__()
        self.index, self.unit_list = SyllableIndex(units), list(units)
        if num_domains < 2:
            raise ValueError(f"ToneChannelRouter needs num_domains >= 2, got {num_domains}")
        self.num_domains = num_domains
        # A buffer, not a parameter: counted, not learned; saved with the router so decoding needs no text.
        self.register_buffer("prior", torch.full((self.index.num_bases, TONES), 1.0 / TONES))
        # Every domain starts as standard Mandarin (tones heard as spoken) and learns how it differs.
        self.channel = nn.Parameter((torch.eye(TONES) * 3.0).repeat(num_domains, 1, 1))
        self.units = nn.Sequential(nn.Dropout(dropout), nn.Linear(len(units), num_domains))

    @torch.no_grad()
    def count_prior(self, text_path: str | Path) -> None:
        """Sets P_std(tone | base) from a Kaldi text table of standard transcripts in the CTC units."""
        self.prior.copy_(tone_prior(text_path, self.index, self.unit_list))

    @torch.no_grad()
    def heard_counts(self, best: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """([B, bases, 5] syllable counts, [B, units] unit counts) of the best paths (repeats merged, blanks
        dropped)."""
        blank = self.index.vocab
        syllable_counts = torch.zeros(best.size(0), self.index.num_bases, TONES, device=best.device)
        unit_counts = torch.zeros(best.size(0), blank, device=best.device)
        for b, (row, n) in enumerate(zip(best.tolist(), lengths.tolist())):
            ids = [u for i, u in enumerate(row[:n]) if u != blank and (i == 0 or u != row[i - 1])]
            for unit in ids:
                unit_counts[b, unit] += 1
            for base, tone in self.index.syllables(ids):
                syllable_counts[b, base, tone] += 1
        return syllable_counts, unit_counts

    def log_channel(self) -> Tensor:
        """[D, bases, 5] log P(heard base, tone | domain) up to the base's own probability (the same for every
        domain, so it cancels in the posterior)."""
        return torch.log(torch.einsum("kt,dth->dkh", self.prior, self.channel.softmax(-1)) + 1e-9)

    def forward(self, best: Tensor, lengths: Tensor) -> Tensor:
        syllable_counts, unit_counts = self.heard_counts(best, lengths)
        return torch.einsum("bkh,dkh->bd", syllable_counts, self.log_channel()) + self.units(unit_counts)
