"""Assemble the LLM input ``[prompt ; speech ; (bos) ; text]`` for a batch of utterances.

Every utterance has its own speech length S_i and text length L_i, so the segments cannot simply be
concatenated along time. Both layouts below are built with one ``torch.gather`` over the concatenation of
the padded segments (no Python loop over the batch):

* training: right padding, one contiguous sequence per row starting at position 0, so position ids are
  ``arange(N)`` for every row and the attention mask is ``j < N_i``; the labels (text + eos) are the last
  L_i + 1 positions of each row's sequence;
* decoding: left padding of ``[prompt ; speech ; (bos)]``, so that every row's next token is appended at
  the same column; position ids are ``cumsum(mask) - 1``.
"""

from __future__ import annotations

import torch

IGNORE_ID = -100


def _lengths_mask(lens: torch.Tensor, length: int) -> torch.Tensor:
    return torch.arange(length, device=lens.device)[None, :] < lens[:, None]


def _gather_time(src: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return torch.gather(src, 1, index[..., None].expand(-1, -1, src.size(-1)))


def assemble_training_inputs(
    prompt_emb: torch.Tensor,
    speech: torch.Tensor,
    speech_lens: torch.Tensor,
    text_emb: torch.Tensor,
    text_in_lens: torch.Tensor,
    targets: torch.Tensor,
    target_lens: torch.Tensor,
):
    """Right-padded ``[prompt ; speech ; text_in]`` and labels aligned to the positions that predict them.

    Args:
        prompt_emb: [P, d] (P may be 0).
        speech: [B, S, d], valid for ``speech_lens``.
        text_emb: [B, Lt, d] embeddings of the text *inputs* (``[bos] + text`` or ``text``), valid for
            ``text_in_lens``.
        targets: [B, Lg] ids to predict (``text + [eos]``), valid for ``target_lens``; the label of
            target k sits at the input position whose output predicts it (no shift needed downstream).
    Returns:
        embeds [B, N, d], attention_mask [B, N] (long), position_ids [B, N], labels [B, N] (IGNORE_ID
        where no loss is taken).
    """
    b, s_max, d = speech.shape
    p = prompt_emb.size(0)
    lt = text_emb.size(1)
    seq_lens = p + speech_lens + text_in_lens
    n = int(seq_lens.max())
    src = torch.cat([prompt_emb[None].expand(b, p, d).to(speech.dtype), speech, text_emb.to(speech.dtype)], dim=1)
    j = torch.arange(n, device=speech.device)[None, :].expand(b, n)
    text_start = (p + speech_lens)[:, None]
    index = torch.where(j < text_start, j, p + s_max + (j - text_start))
    mask = j < seq_lens[:, None]
    index = torch.where(mask, index, torch.zeros_like(index)).clamp(max=p + s_max + lt - 1)
    embeds = _gather_time(src, index)
    # The last target_lens positions of each row carry the labels.
    label_start = (seq_lens - target_lens)[:, None]
    k = j - label_start
    has_label = (k >= 0) & mask
    labels = torch.gather(targets, 1, k.clamp(min=0, max=targets.size(1) - 1))
    labels = torch.where(has_label, labels, torch.full_like(labels, IGNORE_ID))
    position_ids = torch.arange(n, device=speech.device)[None, :].expand(b, n)
    return embeds, mask.long(), position_ids, labels


def assemble_prefix(prompt_emb: torch.Tensor, speech: torch.Tensor, speech_lens: torch.Tensor, bos_emb):
    """Left-padded ``[prompt ; speech ; (bos)]`` for decoding.

    Args:
        bos_emb: [d] or None.
    Returns:
        embeds [B, N, d], attention_mask [B, N] (long), position_ids [B, N].
    """
    b, s_max, d = speech.shape
    p = prompt_emb.size(0)
    parts = [prompt_emb[None].expand(b, p, d).to(speech.dtype), speech]
    nb = 0
    if bos_emb is not None:
        parts.append(bos_emb.to(speech.dtype).view(1, 1, d).expand(b, 1, d))
        nb = 1
    src = torch.cat(parts, dim=1)
    seq_lens = p + speech_lens + nb
    n = int(seq_lens.max())
    j = torch.arange(n, device=speech.device)[None, :].expand(b, n)
    offset = (n - seq_lens)[:, None]
    k = j - offset  # position inside the row's own sequence
    mask = k >= 0
    index = torch.where(k < p + speech_lens[:, None], k, p + s_max + (k - p - speech_lens[:, None]))
    index = torch.where(mask, index, torch.zeros_like(index))
    embeds = _gather_time(src, index)
    position_ids = k.clamp(min=0)
    return embeds, mask.long(), position_ids


__all__ = ["IGNORE_ID", "assemble_training_inputs", "assemble_prefix"]
