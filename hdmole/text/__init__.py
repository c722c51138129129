"""Tokenisers and Chinese text normalisation."""

from hdmole.text.normalize import normalize_text, split_characters
from hdmole.text.tokenizer import HFTokenizer, SentencePieceTokenizer, Tokenizer, build_tokenizer

__all__ = ["HFTokenizer", "SentencePieceTokenizer", "Tokenizer", "build_tokenizer", "normalize_text", "split_characters"]
