"""A character n-gram language model (KenLM) for shallow fusion in beam search.

The model is an ARPA file (or a KenLM binary) over *characters*: its training text is the LM text
normalised as the transcripts are (hdmole.text.normalize_text) with one character a word, built by
``python -m hdmole.bin.train_ngram`` with KenLM's ``lmplz`` (modified Kneser-Ney), as ESPnet, WeNet
and icefall recipes build theirs. KenLM answers queries: ``kenlm.Model.BaseScore`` from a state.

Tokens are mapped to characters through the tokenizer, so the same scorer serves a character
sentencepiece model (one token = one character) and a BPE tokenizer (a token = several characters,
scored one after the other). A token the LM cannot spell -- one that normalises to nothing (punctuation,
pad, unk), or a byte-level BPE fragment of a character (it decodes to U+FFFD) -- gets the LM's
probability of ``<unk>`` in that context and leaves the state as it was: scoring it 0 (probability 1)
would make every such token free under fusion. End of sentence is KenLM's ``</s>``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from hdmole.text.normalize import normalize_text

LOG10_TO_LN = math.log(10.0)
_REPLACEMENT = "\ufffd"


class NgramLM:
    """``begin()`` gives the sentence-start state; ``score(state, token_id)`` and ``score_end(state)`` give
    (natural-log probability, next state). States are KenLM's, immutable once written."""

    def __init__(self, path: str | Path, tokenizer):
        try:
            import kenlm
        except ImportError as error:  # installed by tools/install.sh
            raise ImportError(f"n-gram fusion needs the kenlm Python module ({error}); run tools/install.sh") from None
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: n-gram LM not found; build it with `python -m hdmole.bin.train_ngram`")
        self._kenlm = kenlm
        try:
            self.model = kenlm.Model(str(path))
        except (OSError, RuntimeError) as error:
            raise ValueError(f"{path}: not a KenLM-readable ARPA or binary model ({error})") from None
        self.path, self.order = path, self.model.order
        self.eos_id = tokenizer.eos_id
        special = {tokenizer.bos_id, tokenizer.pad_id}
        # token id -> the characters the LM scores for it (computed once: decode is slow per call)
        self._chars: list[tuple[str, ...]] = []
        for token_id in range(tokenizer.vocab_size):
            text = "" if token_id in special else tokenizer.decode([token_id])
            self._chars.append(() if _REPLACEMENT in text else tuple(normalize_text(text)))

    def begin(self):
        state = self._kenlm.State()
        self.model.BeginSentenceWrite(state)
        return state

    def _advance(self, state, word: str) -> tuple[float, object]:
        out = self._kenlm.State()
        return self.model.BaseScore(state, word, out) * LOG10_TO_LN, out

    def score(self, state, token_id: int) -> tuple[float, object]:
        """ln P(token's characters | state) and the state after them (eos: the end of sentence)."""
        if token_id == self.eos_id:
            return self.score_end(state)
        chars = self._chars[token_id]
        if not chars:
            return self._advance(state, "<unk>")[0], state
        total = 0.0
        for char in chars:
            logp, state = self._advance(state, char)
            total += logp
        return total, state

    def score_end(self, state) -> tuple[float, object]:
        return self._advance(state, "</s>")

    def sentence_score(self, token_ids: Sequence[int]) -> float:
        """ln P of a whole token sequence followed by the end of sentence (for tests and diagnostics)."""
        state, total = self.begin(), 0.0
        for token_id in token_ids:
            logp, state = self.score(state, int(token_id))
            total += logp
        return total + self.score_end(state)[0]


__all__ = ["NgramLM", "LOG10_TO_LN"]
