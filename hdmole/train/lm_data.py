"""Text-only batches for the ``lm`` mode (pretraining a small from-scratch LLM on sentences).

One sentence a line; each becomes ``[bos] ids [eos]``. Batching reuses hdmole.data's length buckets
(tokens play the part of frames), so the LM stage shuffles, splits over DDP ranks and resumes
exactly like the speech stages.

With a ``NoisyPrefix`` (``data.lm_prefix`` in an lm config) each sentence also becomes a *listening*
example: ``[noisy copy] [bos] ids [eos]`` with the loss on ``ids [eos]`` only -- the layout of an ASR
example with the speech replaced by a corrupted copy of the text (tokens swapped for homophones from
a pronunciation lexicon, substituted, dropped, repeated like frames). A pre-trained LLM arrives able
to read and correct such a prefix; a small LLM pre-trained on plain text does not, and then cannot
learn to listen while it stays frozen (measured in egs/mini_accent). The prefix task teaches it on
all the LM text, which the few speech transcripts could never do without being memorised.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch

from hdmole.data.batching import BucketBatchSampler
from hdmole.data.errors import DataError
from hdmole.text.normalize import normalize_text
from hdmole.train.config import LMPrefixConfig


def read_homophones(lexicon: str | Path, tokenizer) -> tuple[dict[int, list[int]], dict[int, int]]:
    """From a Kaldi-style ``lexicon.txt`` (``word pron ...`` a line; a word's first line is its main
    reading): token id -> the ids sharing a pronunciation with it (itself included), and token id -> the
    canonical token of its main reading (the first word listed with that pronunciation). Words that are
    not one token are skipped."""
    lexicon = Path(lexicon)
    if not lexicon.is_file():
        raise DataError(f"{lexicon}: the lexicon does not exist. Fix: run the data stage that writes it, "
                        "or leave data.lm_prefix.lexicon empty (no homophone noise).")
    by_pron: dict[str, list[int]] = {}
    main_pron: dict[int, str] = {}
    with lexicon.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 2:
                raise DataError(f"{lexicon} line {lineno}: expected 'word pron ...', got {line.strip()!r}")
            ids = list(tokenizer.encode(fields[0]))
            if len(ids) == 1:
                pron = " ".join(fields[1:])
                members = by_pron.setdefault(pron, [])
                if ids[0] not in members:
                    members.append(ids[0])
                main_pron.setdefault(ids[0], pron)
    groups: dict[int, set[int]] = defaultdict(set)
    for members in by_pron.values():
        for token in members:
            groups[token].update(members)
    canonical = {token: by_pron[pron][0] for token, pron in main_pron.items()}
    return {token: sorted(members) for token, members in groups.items()}, canonical


@dataclass
class NoisyPrefix:
    """How the listening prefix corrupts a sentence, token by token (``options``: the probabilities)."""
    options: LMPrefixConfig
    homophones: dict[int, list[int]] | None = None
    canonical: dict[int, int] | None = None

    def corrupt(self, ids: list[int], vocabulary: list[int], rng: random.Random) -> list[int]:
        o = self.options
        out = []
        for token in ids:
            if rng.random() < o.delete_prob:
                continue
            if self.canonical and rng.random() < o.canonical_prob:
                token = self.canonical.get(token, token)
            elif self.homophones and rng.random() < o.homophone_prob:
                token = rng.choice(self.homophones.get(token, [token]))
            if rng.random() < o.substitute_prob:
                token = rng.choice(vocabulary)
            out.append(token)
            copies = 1
            while copies < 3 and rng.random() < o.repeat_prob:
                out.append(token)
                copies += 1
        return out or ids[:1]

    def expected_length(self, n: int) -> int:
        o = self.options
        return int(n * (1 - o.delete_prob) * (1 + o.repeat_prob + o.repeat_prob ** 2)) + 1


class TextLines(torch.utils.data.Dataset):
    def __init__(self, path: str | Path, tokenizer, max_len: int = 256, prefix: NoisyPrefix | None = None,
                 deterministic: bool = False):
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: the LM text file does not exist. Fix: run the data stage that writes it.")
        self.items: list[list[int]] = []
        bos = [tokenizer.bos_id] if tokenizer.bos_id is not None else []
        with path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                text = normalize_text(line)
                if not text:
                    continue
                ids = list(tokenizer.encode(text))[: max_len - 2]
                if not ids:
                    raise DataError(f"{path} line {lineno}: the tokenizer gives no tokens for {line.strip()!r}")
                self.items.append(bos + ids + [tokenizer.eos_id])
        if not self.items:
            raise DataError(f"{path}: no sentences. Fix: one sentence a line.")
        self.pad_id = tokenizer.pad_id
        self.prefix, self.deterministic = prefix, deterministic
        self.has_bos = bool(bos)
        self.vocabulary = sorted({t for x in self.items for t in x[len(bos):-1]})

    def __len__(self) -> int:
        return len(self.items)

    def lengths(self) -> list[int]:
        """Expected sequence lengths, for the token budget of a batch."""
        if self.prefix is None:
            return [len(x) for x in self.items]
        return [len(x) + self.prefix.expected_length(len(x) - 1 - self.has_bos) for x in self.items]

    def __getitem__(self, index: int) -> tuple[list[int], int]:
        """``(sequence, number of leading positions without loss)``."""
        item = self.items[index]
        if self.prefix is None:
            return item, 0
        # dev: the same corruption at every validation; train: a new one each time, from torch's RNG
        # (seeded by the trainer, like SpecAugment).
        rng = random.Random(index if self.deterministic else int(torch.randint(0, 2**31 - 1, ())))
        noisy = self.prefix.corrupt(item[self.has_bos:-1], self.vocabulary, rng)
        return noisy + item, len(noisy) + self.has_bos

    def collate(self, items: list[tuple[list[int], int]]) -> dict:
        width = max(len(x) for x, _ in items)
        ids = torch.full((len(items), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        no_loss = torch.zeros((len(items), width), dtype=torch.bool)
        for i, (x, skip) in enumerate(items):
            ids[i, : len(x)] = torch.tensor(x)
            mask[i, : len(x)] = 1
            no_loss[i, :skip] = True  # the prefix (and the bos that ends it) is input only
        labels = ids.masked_fill((mask == 0) | no_loss, -100)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def build_noisy_prefix(options: LMPrefixConfig | None, tokenizer) -> NoisyPrefix | None:
    """``data.lm_prefix`` of an lm config -> NoisyPrefix (None: plain LM pretraining)."""
    if options is None:
        return None
    prefix = NoisyPrefix(options)
    if options.lexicon:
        prefix.homophones, prefix.canonical = read_homophones(options.lexicon, tokenizer)
    return prefix


def build_text_loader(path, tokenizer, *, max_tokens: int, shuffle: bool, seed: int, rank: int = 0,
                      world_size: int = 1, prefix: NoisyPrefix | None = None) -> torch.utils.data.DataLoader:
    dataset = TextLines(path, tokenizer, prefix=prefix, deterministic=not shuffle)
    sampler = BucketBatchSampler(dataset.lengths(), max_tokens, shuffle=shuffle, seed=seed,
                                 rank=rank, world_size=world_size)
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=dataset.collate)


def lm_loss_counts(batch: dict) -> dict[str, int]:
    """The number of predicted tokens of a text batch (what its loss averages over); see LLMASR.loss_counts."""
    return {"tokens": int((batch["labels"][:, 1:] != -100).sum())}


class LossPositionsLM(torch.nn.Module):
    """The lm mode's trained network: a causal LLM whose output layer runs on the loss positions only.

    ``transformers``' ``ForCausalLM`` applies its LM head to every position (``logits_to_keep`` keeps the same
    positions in every row); a listening example's prefix, about 60% of its tokens, carries no loss, so that
    work was thrown away. The base and adapt stages already select their text positions the same way
    (LLMASR.forward). Measured on egs/mini_accent's LM stage: 0.83x the time of a step (0.77x the whole stage on
    an AVX2-only CPU), the same losses to four digits. A wrapper (no parameters of its own) so that DDP wraps it:
    the positions are chosen inside the forward DDP sees."""

    def __init__(self, llm: torch.nn.Module):
        super().__init__()
        self.llm = llm

    def forward(self, input_ids, attention_mask, labels):
        hidden = self.llm.base_model(input_ids=input_ids, attention_mask=attention_mask,
                                     use_cache=False).last_hidden_state
        gold = labels[:, 1:]  # position t predicts token t + 1
        valid = gold != -100
        logits = self.llm.get_output_embeddings()(hidden[:, :-1][valid]).float()
        return logits, gold[valid]


def lm_forward(net: torch.nn.Module, batch: dict, normalisers: dict | None = None) -> dict:
    """Causal-LM loss and next-token accuracy, in the same shape as LLMASR.forward's output (``objective``:
    the loss summed over this batch's tokens and divided by ``normalisers["tokens"]``, the step's count).
    ``net``: a LossPositionsLM (or its DDP wrapper)."""
    logits, gold = net(batch["input_ids"], batch["attention_mask"], batch["labels"])
    loss = torch.nn.functional.cross_entropy(logits, gold)
    with torch.no_grad():
        acc = (logits.argmax(-1) == gold).float().mean()
    n = int(gold.numel())
    objective = loss if normalisers is None else loss * (max(n, 1) / max(normalisers["tokens"], 1))
    return {"loss": loss, "objective": objective, "acc": acc, "num_tokens": n}
