"""Caching the frozen encoder's outputs for the router and adapt stages.

From router pre-training on, the speech encoder is frozen (and in eval mode, no SpecAugment), so its output for an
utterance never changes: running it once per utterance instead of once per step made adaptation
steps about 4x cheaper in a prototype on this project's 2-core machine. The cache lives in memory
(the mini corpus' encoder outputs are a few hundred MB at most); on a GPU with a large encoder, turn it
off with ``data.cache_encoder: false``.
"""

from __future__ import annotations

import logging

import torch
from tqdm import tqdm

log = logging.getLogger(__name__)


class EncoderCache:
    def __init__(self):
        self.outputs: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def fill(self, model, loader, device, desc: str, show_progress: bool = True) -> None:
        was_training = model.encoder.training
        model.encoder.eval()
        for batch in tqdm(loader, desc=f"encoding {desc} (cache)", disable=not show_progress, leave=False):
            missing = [i for i, u in enumerate(batch["utt_ids"]) if u not in self.outputs]
            if not missing:
                continue
            enc_out, enc_lens = model.encode(batch["feats"].to(device), batch["feat_lens"].to(device))
            for i in missing:
                self.outputs[batch["utt_ids"][i]] = enc_out[i, : int(enc_lens[i])].detach().cpu()
        model.encoder.train(was_training)
        log.info("encoder cache: %d utterances (%s)", len(self.outputs), desc)

    def attach(self, batch: dict, device) -> dict:
        """Adds ``enc_out [B, T', d]`` (zero padded) and ``enc_lens`` for the batch's utterances."""
        outs = [self.outputs[u] for u in batch["utt_ids"]]
        lens = torch.tensor([o.size(0) for o in outs], dtype=torch.long)
        padded = outs[0].new_zeros(len(outs), int(lens.max()), outs[0].size(1))
        for i, o in enumerate(outs):
            padded[i, : o.size(0)] = o
        batch = dict(batch)
        batch["enc_out"], batch["enc_lens"] = padded.to(device), lens.to(device)
        return batch
