"""Paired bootstrap intervals (hdmole.report.stats) on hand-made per-utterance errors, and from score's files."""

from __future__ import annotations

import random

import pytest

from hdmole.bin import score
from hdmole.report.stats import mean_utt_errors, paired_bootstrap, read_utt_errors


def errors(seed: int, n: int = 300, rate: float = 0.2) -> dict:
    rng = random.Random(seed)
    out = {}
    for i in range(n):
        ref = rng.randint(4, 12)
        out[f"u{i:03d}"] = (float(sum(rng.random() < rate for _ in range(ref))), ref)
    return out


def with_extra(base: dict, extra: int, every: int = 1) -> dict:
    return {u: (e + (extra if i % every == 0 else 0), r) for i, (u, (e, r)) in enumerate(sorted(base.items()))}


def test_identical_systems_give_zero_difference_and_an_interval_around_zero():
    a = {"s1": errors(1), "s2": errors(2)}
    interval = paired_bootstrap(a, a, ["s1", "s2"])
    assert interval.difference == 0.0 and interval.low == 0.0 and interval.high == 0.0
    assert not interval.excludes_zero


def test_differences_that_cancel_out_give_zero_and_an_interval_straddling_zero():
    """b has one more error than a on half the utterances and one fewer on the other half: the difference on
    the whole set is 0, but per-utterance differences vary, so the interval has width and holds 0 inside."""
    a = {"s": {u: (e + 1, r) for u, (e, r) in errors(1).items()}}
    b = {"s": {u: (e + (1 if i % 2 else -1), r) for i, (u, (e, r)) in enumerate(sorted(a["s"].items()))}}
    b["s"] = {u: (e, a["s"][u][1]) for u, (e, _) in b["s"].items()}
    interval = paired_bootstrap(a, b, ["s"], seed=3)
    assert interval.difference == pytest.approx(0.0, abs=1e-9)
    assert interval.low < 0 < interval.high and interval.high - interval.low > 0.2


def test_known_extra_errors_give_the_exact_difference_and_an_interval_excluding_zero():
    base = {"s1": errors(1), "s2": errors(2)}
    worse = {name: with_extra(e, 1, every=3) for name, e in base.items()}  # one more error in every third utt
    interval = paired_bootstrap(worse, base, ["s1", "s2"])
    expected = sum(100.0 * sum(1 for i, _ in enumerate(sorted(e)) if i % 3 == 0) / sum(r for _, r in e.values())
                   for e in base.values()) / 2
    assert interval.difference == pytest.approx(expected)
    assert interval.excludes_zero and interval.low > 0
    assert interval.low < interval.difference < interval.high
    reverse = paired_bootstrap(base, worse, ["s1", "s2"])
    assert reverse.difference == pytest.approx(-expected) and reverse.high < 0


def test_systems_on_different_utterances_are_refused():
    a = {"s": errors(1)}
    b = {"s": dict(list(errors(1).items())[:-1])}
    with pytest.raises(ValueError, match="same utterances"):
        paired_bootstrap(a, b, ["s"])


def test_utt_errors_written_by_score_feed_the_bootstrap(tmp_path):
    refs = {"a1": "今天天气很好", "a2": "我们去公园", "a3": "你好"}
    hyps = {"a1": "今天天汽很好", "a2": "我们去公", "a3": "你好"}
    summary, per_utt = score.score_texts(refs, hyps)
    score.write_outputs(tmp_path, summary, per_utt)
    table = read_utt_errors(tmp_path / "utt_errors")
    assert table == {"a1": (1.0, 6), "a2": (1.0, 5), "a3": (0.0, 2)}
    assert sum(e for e, _ in table.values()) == summary["total"]["errors"]
    assert mean_utt_errors([table, {u: (e + 2, r) for u, (e, r) in table.items()}])["a1"] == (2.0, 6)
