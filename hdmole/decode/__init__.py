"""Batched greedy and beam search over the LLM's KV cache (see search.py for the design notes)."""

from hdmole.decode.search import beam_search, decode_batch, decode_batch_ids, greedy_search, hf_generate

__all__ = ["decode_batch", "decode_batch_ids", "greedy_search", "beam_search", "hf_generate"]
