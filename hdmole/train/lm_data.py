"""Text-only batches for the ``lm`` mode (pretraining a small from-scratch LLM on sentences).

One sentence a line; each becomes ``[bos] ids [eos]``. Batching reuses hdmole.data's length buckets
(tokens play the part of frames), so the LM stage shuffles, splits over DDP ranks and resumes
exactly like the speech stages.
"""

from __future__ import annotations

from pathlib import Path

import torch

from hdmole.data.batching import BucketBatchSampler
from hdmole.data.errors import DataError
from hdmole.text.normalize import normalize_text


class TextLines(torch.utils.data.Dataset):
    def __init__(self, path: str | Path, tokenizer, max_len: int = 256):
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

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> list[int]:
        return self.items[index]

    def collate(self, items: list[list[int]]) -> dict:
        width = max(len(x) for x in items)
        ids = torch.full((len(items), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for i, x in enumerate(items):
            ids[i, : len(x)] = torch.tensor(x)
            mask[i, : len(x)] = 1
        labels = ids.masked_fill(mask == 0, -100)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def build_text_loader(path, tokenizer, *, max_tokens: int, shuffle: bool, seed: int, rank: int = 0,
                      world_size: int = 1) -> torch.utils.data.DataLoader:
    dataset = TextLines(path, tokenizer)
    sampler = BucketBatchSampler([len(x) for x in dataset.items], max_tokens, shuffle=shuffle, seed=seed,
                                 rank=rank, world_size=world_size)
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=dataset.collate)


def lm_forward(llm, batch: dict) -> dict:
    """Causal-LM loss and next-token accuracy, in the same shape as LLMASR.forward's output."""
    out = llm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"],
              use_cache=False)
    with torch.no_grad():
        pred = out.logits[:, :-1].argmax(-1)
        gold = batch["labels"][:, 1:]
        valid = gold != -100
        acc = (pred[valid] == gold[valid]).float().mean()
    return {"loss": out.loss, "acc": acc, "num_tokens": int(valid.sum())}
