"""What the CTC head hears, as features for the global accent router (``global_router.input: ctc_ngrams``).

An accent is which sounds occur and in which order (with initial + tonal-final units a bigram is a whole
syllable); a linear classifier on the relative frequencies of the heard units and unit bigrams is phonotactic
language identification (PRLM) trained discriminatively. With V units there are V^2 bigrams: 24,180 features x
5 domains is a router half the size of mini_accent's projector. ``buckets`` hashes the bigrams into a fixed
number of features instead (the hashing trick of Vowpal Wabbit / scikit-learn's FeatureHasher: colliding
bigrams share a weight), so the router's size no longer grows with V^2; ``order: 1`` keeps the units only.
"""

from __future__ import annotations

import torch

# A multiplier of Knuth's multiplicative hashing, to spread the bigram ids a*V+b over the buckets.
_HASH = 2654435761


def ngram_feature_size(vocab: int, order: int = 2, buckets: int = 0) -> int:
    if order not in (1, 2):
        raise ValueError(f"global_router.ngram_order must be 1 or 2, got {order}")
    if buckets < 0:
        raise ValueError(f"global_router.ngram_buckets must be >= 0 (0: every bigram its own feature), got {buckets}")
    if order == 1:
        return vocab
    return vocab + (buckets if buckets else vocab * vocab)


def bigram_feature(first: torch.Tensor, second: torch.Tensor, vocab: int, buckets: int) -> torch.Tensor:
    """The feature index (from ``vocab`` on) of the bigrams (first, second)."""
    pair = first * vocab + second
    if not buckets:
        return vocab + pair
    return vocab + (pair * _HASH) % (2 ** 32) % buckets


@torch.no_grad()
def heard_ngram_features(best: torch.Tensor, lengths: torch.Tensor, vocab: int, order: int = 2,
                         buckets: int = 0) -> torch.Tensor:
    """[B, F] relative frequencies of the units on each best path ``best`` [B, T] (CTC ids, ``vocab`` = blank;
    repeats merged, blanks dropped) and, with ``order`` 2, of their bigrams: each count / the number of units."""
    valid = torch.arange(best.size(1), device=best.device)[None, :] < lengths[:, None]
    new = torch.ones_like(valid)
    new[:, 1:] = best[:, 1:] != best[:, :-1]
    keep = valid & new & (best != vocab)
    out = torch.zeros(best.size(0), ngram_feature_size(vocab, order, buckets), device=best.device)
    for b in range(best.size(0)):
        units = best[b][keep[b]]
        if units.numel() == 0:
            continue
        out[b].index_add_(0, units, torch.ones_like(units, dtype=out.dtype))
        if order == 2 and units.numel() > 1:
            pairs = bigram_feature(units[:-1], units[1:], vocab, buckets)
            out[b].index_add_(0, pairs, torch.ones_like(pairs, dtype=out.dtype))
        out[b] /= units.numel()
    return out
