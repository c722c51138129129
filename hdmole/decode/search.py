"""Batched greedy and beam search over the LLM's KV cache, starting from ``[prompt ; speech ; (bos)]``.

Why our own loop and not ``transformers``' ``generate(inputs_embeds=...)`` (measured by
``python -m hdmole.bin.bench_decode`` on the mini model, 2 CPU cores; figures in docs/model.md): both run
the same cached forward passes, but ``generate`` adds per-step logits processors, stopping criteria and
cache bookkeeping (a larger share of the step time the smaller the model), and supports only one
``max_new_tokens`` for the whole batch, whereas we bound each utterance by its own speech length and drop
nothing. ``hf_generate`` keeps the ``generate`` path for comparison.

Layout: rows are left-padded, so every row's next token goes into the same column; position ids continue
from each row's own prefix length (``cumsum(mask) - 1``), which makes a batched decode equal to decoding
each utterance alone. Beam search runs B * beam rows (beams of utterance b are rows b*beam .. b*beam+beam-1)
and reorders the cache with ``Cache.reorder_cache``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

DEFAULT_MAX_LEN = 200
DEFAULT_MAX_LEN_RATIO = 1.0


def token_limits(speech_lens: torch.Tensor, max_len: int | None, max_len_ratio: float) -> list[int]:
    """Most new tokens per utterance: ``ceil(max_len_ratio * speech embeddings) + 2``, capped at max_len.

    One token per speech embedding (subsampling x stack x 10 ms: 80-160 ms for the mini models) is above
    Mandarin's ~4-5 characters per second, so the default ratio only stops runaway repetitions.
    """
    cap = DEFAULT_MAX_LEN if max_len is None else max_len
    return [max(1, min(cap, math.ceil(max_len_ratio * int(n)) + 2)) for n in speech_lens]


def _llm_step(llm, ids, mask, positions, cache):
    # transformers 5.24 renamed past_key_values to cache (the old name warns and goes in 5.40).
    out = llm(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True)
    return out.logits[:, -1], out.cache


def _prefill(model, enc_out, enc_lens, probs):
    with model.routing(probs):
        speech, speech_lens = model.project(enc_out, enc_lens)
        embeds, mask, positions = model.decoding_prefix(speech, speech_lens)
    return embeds, mask, positions, speech_lens


def greedy_search(model, enc_out, enc_lens, probs=None, max_len=None, max_len_ratio=DEFAULT_MAX_LEN_RATIO):
    """Token ids (without eos) per utterance."""
    llm, eos = model.llm, model.eos_id
    embeds, mask, positions, speech_lens = _prefill(model, enc_out, enc_lens, probs)
    limits = torch.tensor(token_limits(speech_lens, max_len, max_len_ratio), device=embeds.device)
    b = embeds.size(0)
    with model.routing(probs):
        out = llm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True,
                  logits_to_keep=1)
        logits, cache = out.logits[:, -1], out.cache
        finished = torch.zeros(b, dtype=torch.bool, device=embeds.device)
        tokens = []
        next_pos = positions[:, -1:] + 1
        for step in range(int(limits.max())):
            nxt = logits.argmax(-1)
            nxt = torch.where(finished, torch.full_like(nxt, eos), nxt)
            tokens.append(nxt)
            finished |= (nxt == eos) | (step + 1 >= limits)
            if bool(finished.all()):
                break
            mask = torch.cat([mask, mask.new_ones(b, 1)], dim=1)
            logits, cache = _llm_step(llm, nxt[:, None], mask, next_pos, cache)
            next_pos = next_pos + 1
    seqs = torch.stack(tokens, dim=1).tolist() if tokens else [[] for _ in range(b)]
    return [_strip(s, eos, int(n)) for s, n in zip(seqs, limits.tolist())]


def _strip(seq: list[int], eos: int, limit: int) -> list[int]:
    seq = seq[:limit]
    return seq[: seq.index(eos)] if eos in seq else seq


@dataclass(frozen=True)
class Fusion:
    """Shallow fusion of an n-gram LM (hdmole.decode.ngram.NgramLM) into beam search."""

    lm: object
    weight: float = 0.3
    pre_beam: int = 8


def _ngram_scores(lm, states, cand_tok, row_scores, done, beam):
    """n-gram log-probabilities [rows, pre_beam] of each row's candidate tokens, and the states after them.

    Rows that cannot extend (a finished utterance, a beam still at -inf) are not scored. A Python loop:
    KenLM's queries are C++ calls of about a microsecond; the LLM step dominates (docs/model.md)."""
    rows, width = cand_tok.shape
    out = torch.zeros(rows, width)
    next_states: list = [None] * rows
    live = (row_scores > float("-inf")).tolist()
    for row, tokens in enumerate(cand_tok.tolist()):
        if done[row // beam] or not live[row]:
            continue
        scored = [lm.score(states[row], tok) for tok in tokens]
        out[row] = torch.tensor([logp for logp, _ in scored])
        next_states[row] = [state for _, state in scored]
    return out, next_states


def beam_search(model, enc_out, enc_lens, probs=None, beam=4, max_len=None,
                max_len_ratio=DEFAULT_MAX_LEN_RATIO, length_norm=True, fusion: "Fusion | None" = None):
    """Token ids (without eos) of the best hypothesis per utterance.

    A hypothesis ends at eos (counted only when that ending ranks among the ``beam`` best candidates of the
    step); an utterance stops once it holds ``beam`` ended hypotheses or reaches its token limit (then the
    live beams count as ended). Scores are summed log-probabilities, divided by the
    number of tokens including eos when ``length_norm`` (otherwise short hypotheses win too often).

    ``fusion`` (shallow fusion with an n-gram LM): each live hypothesis extends only its ``pre_beam`` most
    probable tokens under the LLM (ESPnet's pre-beam for partial scorers), each scored
    ``log P_llm + weight * log P_ngram``; weight 0 (or no fusion) is the plain search.
    """
    llm, eos = model.llm, model.eos_id
    embeds, mask, positions, speech_lens = _prefill(model, enc_out, enc_lens, probs)
    limits = token_limits(speech_lens, max_len, max_len_ratio)
    b, dev = embeds.size(0), embeds.device
    with model.routing(probs):
        out = llm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True,
                  logits_to_keep=1)
    cache = out.cache
    cache.batch_repeat_interleave(beam)
    logits = out.logits[:, -1].repeat_interleave(beam, 0)
    mask = mask.repeat_interleave(beam, 0)
    next_pos = positions[:, -1:].repeat_interleave(beam, 0) + 1
    scores = torch.full((b, beam), float("-inf"), device=dev)
    scores[:, 0] = 0.0  # all beams start identical: keep one so the first step does not pick duplicates
    tokens = torch.zeros(b * beam, 0, dtype=torch.long, device=dev)
    ended: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]
    done = [False] * b
    row_probs = None if probs is None else probs.repeat_interleave(beam, 0)

    def final_score(score: float, n_tokens: int) -> float:
        return score / n_tokens if length_norm else score

    use_lm = fusion is not None and fusion.weight != 0.0
    lm_states = [fusion.lm.begin() for _ in range(b * beam)] if use_lm else None
    for step in range(max(limits)):
        logp = logits.float().log_softmax(-1)
        if use_lm:  # candidates: each row's pre-beam tokens, scored with the n-gram added
            cand_logp, cand_tok = logp.topk(min(fusion.pre_beam, logp.size(-1)), dim=-1)
            lm_logp, lm_next = _ngram_scores(fusion.lm, lm_states, cand_tok, scores.view(-1), done, beam)
            cand_logp = cand_logp + fusion.weight * lm_logp.to(dev)
        else:
            cand_logp, cand_tok, lm_next = logp, None, None
        width = cand_logp.size(-1)
        cand = (scores[..., None] + cand_logp.view(b, beam, width)).view(b, beam * width)
        top_scores, top_idx = cand.topk(2 * beam, dim=-1)
        new_scores = torch.full((b, beam), float("-inf"), device=dev)
        new_src = torch.arange(beam, device=dev).repeat(b, 1)
        new_tok = torch.full((b, beam), eos, dtype=torch.long, device=dev)
        new_states = list(lm_states) if use_lm else None
        hist = tokens.tolist()
        cand_tok_rows = cand_tok.tolist() if use_lm else None
        for i in range(b):
            if done[i]:
                continue
            kept = 0
            for rank, (s, idx) in enumerate(zip(top_scores[i].tolist(), top_idx[i].tolist())):
                if s == float("-inf"):
                    break
                src, col = divmod(idx, width)
                tok = cand_tok_rows[i * beam + src][col] if use_lm else col
                if tok == eos:
                    if rank >= beam:
                        # An ending outside the best `beam` candidates would not have held a beam (as in
                        # transformers' beam search): counting it lets weak beams that end early stop the
                        # search before a strong live one ends, which n-gram fusion makes common.
                        continue
                    hyp = hist[i * beam + src]
                    ended[i].append((final_score(s, len(hyp) + 1), hyp))
                    continue
                new_scores[i, kept], new_src[i, kept], new_tok[i, kept] = s, src, tok
                if use_lm:
                    new_states[i * beam + kept] = lm_next[i * beam + src][col]
                kept += 1
                if kept == beam:
                    break
            if len(ended[i]) >= beam or step + 1 >= limits[i]:
                done[i] = True
                if len(ended[i]) < beam:  # token limit: the live beams end here
                    for k in range(kept):
                        hyp = hist[i * beam + int(new_src[i, k])] + [int(new_tok[i, k])]
                        ended[i].append((final_score(float(new_scores[i, k]), len(hyp)), hyp))
        if all(done):
            break
        rows = (torch.arange(b, device=dev)[:, None] * beam + new_src).view(-1)
        tokens = torch.cat([tokens[rows], new_tok.view(-1, 1)], dim=1)
        cache.reorder_cache(rows)
        scores = new_scores
        lm_states = new_states
        mask = torch.cat([mask, mask.new_ones(b * beam, 1)], dim=1)
        with model.routing(row_probs):
            logits, cache = _llm_step(llm, new_tok.view(-1, 1), mask, next_pos, cache)
        next_pos = next_pos + 1
    return [max(hyps, key=lambda h: h[0])[1] if hyps else [] for hyps in ended]


def _batch_encoder_output(model, batch: dict):
    dev = next(model.parameters()).device
    if "enc_out" in batch:
        return batch["enc_out"].to(dev), batch["enc_lens"].to(dev)
    return model.encode(batch["feats"].to(dev), batch["feat_lens"].to(dev))


@torch.no_grad()
def decode_batch_ids(model, batch: dict, beam: int = 1, max_len: int | None = None,
                     max_len_ratio: float = DEFAULT_MAX_LEN_RATIO, length_norm: bool = True,
                     fusion: Fusion | None = None) -> list[list[int]]:
    """Hypothesis token ids (no eos) for a batch (``feats, feat_lens`` or cached ``enc_out, enc_lens``)."""
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    model.eval()
    enc_out, enc_lens = _batch_encoder_output(model, batch)
    probs = model.routing_posterior(enc_out, enc_lens, batch.get("accents"), batch.get("route_logits"))
    if beam == 1 and (fusion is None or fusion.weight == 0.0):
        return greedy_search(model, enc_out, enc_lens, probs, max_len, max_len_ratio)
    return beam_search(model, enc_out, enc_lens, probs, beam, max_len, max_len_ratio, length_norm, fusion)


def decode_batch(model, batch: dict, tokenizer, beam: int = 1, max_len: int | None = None,
                 max_len_ratio: float = DEFAULT_MAX_LEN_RATIO, length_norm: bool = True,
                 fusion: Fusion | None = None) -> list[str]:
    """Hypothesis texts for a batch, in batch order."""
    ids = decode_batch_ids(model, batch, beam, max_len, max_len_ratio, length_norm, fusion)
    return [tokenizer.decode(x) for x in ids]


@torch.no_grad()
def hf_generate(model, batch: dict, beam: int = 1, max_len: int | None = None,
                max_len_ratio: float = DEFAULT_MAX_LEN_RATIO) -> list[list[int]]:
    """The same search through ``model.llm.generate(inputs_embeds=...)`` (kept for the benchmark).

    ``generate`` takes one ``max_new_tokens`` for the batch: we give it the largest per-utterance limit and
    cut each hypothesis to its own limit afterwards. Its length penalty divides by the length excluding
    eos where ours includes it, so beam results can differ on near-ties.
    """
    model.eval()
    enc_out, enc_lens = _batch_encoder_output(model, batch)
    probs = model.routing_posterior(enc_out, enc_lens, batch.get("accents"), batch.get("route_logits"))
    embeds, mask, _, speech_lens = _prefill(model, enc_out, enc_lens, probs)
    limits = token_limits(speech_lens, max_len, max_len_ratio)
    pad = model.llm.config.pad_token_id if model.llm.config.pad_token_id is not None else model.eos_id
    with model.routing(None if probs is None else probs.repeat_interleave(beam, 0)):
        out = model.llm.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=max(limits),
                                 do_sample=False, num_beams=beam, eos_token_id=model.eos_id,
                                 pad_token_id=pad, **({"early_stopping": True, "length_penalty": 1.0} if beam > 1 else {}))
    return [_strip(seq, model.eos_id, n) for seq, n in zip(out.tolist(), limits)]


__all__ = ["Fusion", "decode_batch", "decode_batch_ids", "greedy_search", "beam_search", "hf_generate", "token_limits"]
