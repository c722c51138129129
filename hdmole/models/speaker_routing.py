"""Speaker-level routing (an option beyond the paper, docs/method.md section 3.7): the global router's
posterior pooled over a speaker's utterances.

Accent belongs to the speaker, and a recipe knows the speaker (``utt2spk``), as Kaldi's per-speaker CMVN and
i-vectors use it. Each utterance is routed with the log-posteriors of the speaker's utterances summed, the
naive-Bayes combination of independent pieces of evidence (with balanced domains the prior cancels):
``log g_spk = sum_i log_softmax(logits_i)``, renormalised by the softmax that follows. With ``first_k`` > 0
only the speaker's first k utterances (utterance-id order) are pooled, and every utterance of the speaker is
routed with them: an enrolment, what an online system has once it has heard k utterances.

The pooled logits are computed in a pass over a whole data set before training or decoding (the router is
frozen from router pre-training on, so they are constants) and handed to the model as ``batch["route_logits"]``
(``LLMASR.routing_posterior``). Use it only when the speaker (or the session) is known at test time.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import torch

POOLINGS = ("utterance", "speaker")


def pool_by_speaker(logits: Mapping[str, torch.Tensor], utt2spk: Mapping[str, str],
                    first_k: int = 0) -> dict[str, torch.Tensor]:
    """{utt: the summed log-posteriors [D] of its speaker's (first ``first_k``, 0 = all) utterances}.

    ``logits``: the router's logits per utterance; every utterance needs a speaker in ``utt2spk``."""
    if first_k < 0:
        raise ValueError(f"first_k must be >= 0 (0 = every utterance of the speaker), got {first_k}")
    by_speaker: dict[str, list[str]] = {}
    for utt in sorted(logits):
        if utt not in utt2spk:
            raise ValueError(f"speaker-level routing: utterance {utt!r} has no speaker in utt2spk")
        by_speaker.setdefault(utt2spk[utt], []).append(utt)
    pooled = {}
    for utts in by_speaker.values():
        evidence = utts[:first_k] if first_k else utts
        total = torch.stack([torch.log_softmax(logits[u].float(), -1) for u in evidence]).sum(0)
        for utt in utts:
            pooled[utt] = total
    return pooled


@torch.no_grad()
def utterance_route_logits(model, batches: Iterable[dict], device) -> dict[str, torch.Tensor]:
    """{utt: the global router's logits [D]} over ``batches`` (each with ``utt_ids`` and either cached
    ``enc_out``/``enc_lens`` or ``feats``/``feat_lens``); runs the encoder (when not cached) and the router only."""
    out: dict[str, torch.Tensor] = {}
    for batch in batches:
        if "enc_out" in batch:
            enc_out, enc_lens = batch["enc_out"].to(device), batch["enc_lens"].to(device)
        else:
            enc_out, enc_lens = model.encode(batch["feats"].to(device), batch["feat_lens"].to(device))
        logits = model.route_logits(enc_out, enc_lens).float().cpu()
        for utt, row in zip(batch["utt_ids"], logits):
            out[utt] = row
    return out


def speaker_route_logits(model, loader, device, first_k: int = 0, attach=None) -> dict[str, torch.Tensor]:
    """The pooled logits of every utterance of ``loader``'s data set (a loader of hdmole.data.build_dataloader, in
    order, its dataset's ``data.utt2spk`` giving the speakers); ``attach(batch)`` may add cached encoder outputs."""
    batches = (attach(batch) if attach else batch for batch in loader)
    was_training = model.training
    model.eval()
    try:
        logits = utterance_route_logits(model, batches, device)
    finally:
        model.train(was_training)
    return pool_by_speaker(logits, loader.dataset.data.utt2spk.entries, first_k)


def attach_route_logits(batch: dict, pooled: Mapping[str, torch.Tensor], device=None) -> dict:
    """``batch`` with ``route_logits`` [B, D]: the pooled logits of its utterances."""
    missing = [u for u in batch["utt_ids"] if u not in pooled]
    if missing:
        raise ValueError(f"speaker-level routing: no pooled posterior for utterance {missing[0]!r} "
                         f"({len(missing)} missing); the pooling pass did not cover this data set")
    batch = dict(batch)
    rows = torch.stack([pooled[u] for u in batch["utt_ids"]])
    batch["route_logits"] = rows.to(device) if device is not None else rows
    return batch
