"""egs/mini_accent/local/router_probe.py, the development probes behind the router's input design: heard units read
as syllables, transcript-to-heard alignment that pairs a tone with the tone heard in its place, and the classifiers
scored as the recipe scores routers (speaker pooling included)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("router_probe", ROOT / "egs" / "mini_accent" / "local" / "router_probe.py")
probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe)


def test_heard_units_read_as_syllables():
    assert probe.syllables("zh ong1 g uo2 er2 h".split()) == ["zhong1", "guo2", "er2", "h"]
    assert probe.syllables("b p a1".split()) == ["b", "pa1"]  # an initial with no final after it stands alone


def test_alignment_pairs_a_tone_with_the_tone_heard_in_its_place():
    pairs = probe.align("zh ong1 g uo2".split(), "z ong4 g uo2 a1".split())
    assert pairs == [("zh", "z"), ("ong1", "ong4"), ("g", "g"), ("uo2", "uo2"), ("", "a1")]
    unit_id = {u: i for i, u in enumerate(["<unk>", "zh", "z", "ong1", "ong4", "g", "uo2", "a1"])}
    x = probe.tone_pairs([["zh", "ong1", "g", "uo2"]], [["z", "ong4", "g", "uo2", "a1"]], unit_id, buckets=8)
    assert x.shape == (1, 36 + 8)
    assert x[0, 1 * 6 + 4] == 1 and x[0, 2 * 6 + 2] == 1 and x[0, :36].sum() == 2  # 1 heard as 4, 2 as 2
    assert x[0, 36:].sum() == 2  # two substitutions: zh -> z, ong1 -> ong4


def test_naive_bayes_and_scores_with_speaker_pooling():
    x = np.array([[5, 0], [4, 1], [0, 5], [1, 4]], np.float32)
    y = np.array([0, 0, 1, 1])
    scorer, size = probe.naive_bayes(x, y)
    assert size == 2 * 2 + 2
    split = object.__new__(probe.Split)
    split.y, split.spk = np.array([0, 0, 1, 1]), ["a", "a", "b", "b"]
    # one utterance of speaker a wrong on its own, right when pooled with a confident one
    log_posterior = np.log(np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7]]))
    row = probe.scores("x", log_posterior, split)
    assert row.startswith("75.0% | 50.0% |") and row.endswith("100.0% (2/2)")
    assert scorer(x).argmax(1).tolist() == [0, 0, 1, 1]
