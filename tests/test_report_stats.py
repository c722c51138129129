"""The seed-inclusive two-level bootstrap (hdmole.report.stats) on hand-made per-utterance errors, its
section in RESULTS.md (hdmole.report.sections), and score's files feeding it."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from hdmole.bin import score
from hdmole.report.sections import comparisons, interval_section
from hdmole.report.stats import bootstrap_difference, by_utterance, read_utt_errors, sentence_id


def errors(seed: int, n: int = 300, rate: float = 0.2, prefix: str = "spk-") -> dict:
    rng = random.Random(seed)
    out = {}
    for i in range(n):
        ref = rng.randint(4, 12)
        out[f"{prefix}s{i:03d}"] = (float(sum(rng.random() < rate for _ in range(ref))), ref)
    return out


def with_extra(base: dict, extra: float, every: int = 1) -> dict:
    return {u: (e + (extra if i % every == 0 else 0), r) for i, (u, (e, r)) in enumerate(sorted(base.items()))}


def one_seed(sets: dict) -> dict:
    return {name: [e] for name, e in sets.items()}


def test_identical_systems_give_zero_difference_and_an_interval_around_zero():
    a = one_seed({"s1": errors(1), "s2": errors(2)})
    interval = bootstrap_difference(a, a, ["s1", "s2"])
    assert interval.difference == 0.0 and interval.low == 0.0 and interval.high == 0.0
    # several seeds, drawn independently for the two (identical) systems: exactly 0 on the full sets,
    # an interval of some width around it
    seeds = {"s1": [errors(1), errors(11), errors(21)], "s2": [errors(2), errors(12), errors(22)]}
    interval = bootstrap_difference(seeds, seeds, ["s1", "s2"])
    assert interval.difference == 0.0
    assert interval.low < 0 < interval.high and not interval.excludes_zero


def test_known_extra_errors_give_the_exact_difference_and_an_interval_excluding_zero():
    base = {"s1": errors(1), "s2": errors(2)}
    worse = {name: with_extra(e, 1, every=3) for name, e in base.items()}  # one more error in every third utt
    interval = bootstrap_difference(one_seed(worse), one_seed(base), ["s1", "s2"])
    expected = sum(100.0 * sum(1 for i, _ in enumerate(sorted(e)) if i % 3 == 0) / sum(r for _, r in e.values())
                   for e in base.values()) / 2
    assert interval.difference == pytest.approx(expected)
    assert interval.low > 0 and interval.low < interval.difference < interval.high
    reverse = bootstrap_difference(one_seed(base), one_seed(worse), ["s1", "s2"])
    assert reverse.difference == pytest.approx(-expected) and reverse.high < 0


def test_seed_noise_widens_the_interval():
    """Three seeds that disagree (each adds errors to other utterances) against their mean as one run: the
    same point difference, a wider interval when the seeds are resampled."""
    base = errors(1)
    runs = [with_extra(base, 3.0 * k, every=4) for k in range(3)]  # seed k: 3k more errors on every 4th utt
    mean = {u: (sum(r[u][0] for r in runs) / 3, base[u][1]) for u in base}
    reference = {"s": [base]}
    seeded = bootstrap_difference({"s": runs}, reference, ["s"], seed=4)
    averaged = bootstrap_difference({"s": [mean]}, reference, ["s"], seed=4)
    assert seeded.difference == pytest.approx(averaged.difference)
    assert seeded.high - seeded.low > 1.5 * (averaged.high - averaged.low)


def test_the_interval_is_taken_at_the_confidence_asked_for():
    base = {"s": errors(1)}
    worse = {"s": with_extra(base["s"], 1, every=3)}
    wide = bootstrap_difference(one_seed(worse), one_seed(base), ["s"], confidence=0.99)
    narrow = bootstrap_difference(one_seed(worse), one_seed(base), ["s"], confidence=0.8)
    assert (wide.confidence, narrow.confidence) == (0.99, 0.8)
    assert wide.low < narrow.low < narrow.high < wide.high
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_difference(one_seed(worse), one_seed(base), ["s"], confidence=95)


def test_sets_of_uneven_sizes_count_equally():
    """10 items 10 points worse in s1, 1000 items equal in s2: every replicate averages to exactly 5 points;
    weighting the sets by their size would give under 0.1."""
    small = {f"x-s{i}": (0.0, 10) for i in range(10)}
    large = {f"y-t{i}": (2.0, 10) for i in range(1000)}
    a = {"s1": [{u: (1.0, r) for u, (_, r) in small.items()}], "s2": [large]}
    b = {"s1": [small], "s2": [large]}
    interval = bootstrap_difference(a, b, ["s1", "s2"])
    assert interval.difference == pytest.approx(5.0)
    assert interval.low == pytest.approx(5.0) and interval.high == pytest.approx(5.0)


def test_paired_sets_are_resampled_with_the_same_sentence_ids():
    """a is worse than b by k errors on sentence k in s1 and better by as much in s2 (same sentences, other
    speakers). Drawn jointly, the two cancel in every replicate; drawn independently they would not."""
    sentences = [f"s{i:03d}" for i in range(200)]
    ref = {s: 8 for s in sentences}
    b1 = {f"A-v1-{s}": (2.0, ref[s]) for s in sentences}
    b2 = {f"B-v2-{s}": (2.0, ref[s]) for s in sentences}
    a1 = {u: (e + (i % 5), r) for i, (u, (e, r)) in enumerate(sorted(b1.items()))}
    a2 = {u: (e - (i % 5), r) for i, (u, (e, r)) in enumerate(sorted(b2.items()))}
    a, b = one_seed({"s1": a1, "s2": a2}), one_seed({"s1": b1, "s2": b2})
    joint = bootstrap_difference(a, b, ["s1", "s2"], item_of=lambda _, utt: sentence_id(utt))
    assert joint.paired == [["s1", "s2"]]
    assert joint.difference == pytest.approx(0.0, abs=1e-9)
    assert joint.low == pytest.approx(0.0, abs=1e-9) and joint.high == pytest.approx(0.0, abs=1e-9)
    apart = bootstrap_difference(a, b, ["s1", "s2"], item_of=by_utterance)
    assert apart.paired == [] and apart.high - apart.low > 0.5


def test_sentence_ids_follow_the_speaker_id():
    assert sentence_id("Southwestern-m3-s0042", "Southwestern-m3") == "s0042"
    assert sentence_id("Southwestern-m3-s0042") == "s0042"
    assert sentence_id("S0002-BAC009S0002W0122", "S0002") == "BAC009S0002W0122"


def test_systems_on_different_utterances_are_refused():
    a = one_seed({"s": errors(1)})
    b = one_seed({"s": dict(list(errors(1).items())[:-1])})
    with pytest.raises(ValueError, match="same utterances"):
        bootstrap_difference(a, b, ["s"])


def write_errors(directory: Path, rows: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "utt_errors").write_text("".join(f"{u} {e:g} {r}\n" for u, (e, r) in sorted(rows.items())))


def test_the_section_prints_its_level_and_keeps_the_source_set_out_of_the_accent_average(tmp_path):
    """full_ft is 50 points worse than hdmole on the standard set and 1 error worse per accent utterance: the
    avg-accent difference must be the accent sets' alone."""
    sentences = [f"s{i:03d}" for i in range(60)]
    sets = {"test_std": "Mandarin-v1", "test_A": "A-v2", "test_B": "B-v3"}
    exp = tmp_path / "exp"
    for system, extra_std, extra_accent in (("base", 0, 3), ("full_ft", 5, 1), ("hdmole", 0, 0)):
        for name, speaker in sets.items():
            extra = extra_std if name == "test_std" else extra_accent
            write_errors(exp / system / f"decode_{name}", {f"{speaker}-{s}": (1.0 + extra, 10) for s in sentences})
            (tmp_path / "data" / name).mkdir(parents=True, exist_ok=True)
            (tmp_path / "data" / name / "utt2spk").write_text("".join(f"{speaker}-{s} {speaker}\n" for s in sentences))
        (exp / system / "train_summary.json").write_text(json.dumps({"mode": "adapt"}))
    text = interval_section(exp, ["base", "full_ft", "hdmole"], "test_std", ["test_A", "test_B"], replicates=200,
                            confidence=0.9, data_dir=tmp_path / "data")
    assert "| 90% interval |" in text and "95%" not in text and "with 90% two-level" in text
    assert "Speakers are not resampled" in text and "jointly (one draw of sentence ids for all): test_A, test_B." in text
    rows = {line.split("|")[1].strip() + "/" + line.split("|")[2].strip(): line.split("|")[3].strip()
            for line in text.splitlines() if "−" in line}
    assert rows["hdmole − full_ft/avg accent"] == "-10.00"  # 1 error in 10 characters: the accents only
    assert rows["full_ft − base/test_std"] == "+50.00"


def test_comparisons_name_the_attributions_of_present_systems_only():
    systems = ["base", "full_ft", "lora", "mole_top2", "hdmole_no_threshold", "hdmole", "hdmole_oracle", "hdmole_spk"]
    pairs = comparisons(systems)
    assert ("hdmole", "lora", "accent") in pairs and ("hdmole", "lora", "std") in pairs
    assert ("hdmole", "hdmole_no_threshold", "accent") in pairs
    assert ("hdmole_spk", "hdmole_oracle", "std") in pairs and ("hdmole_spk", "hdmole_oracle", "accent") in pairs
    assert not any("hdmole_dense" in p or "hdmole_global_only" in p for p in pairs)  # not run here
    assert ("base", "full_ft", "accent") not in pairs and ("hdmole_oracle", "full_ft", "accent") in pairs
    assert all(s in systems and r in systems for s, r, _ in pairs)


def test_utt_errors_written_by_score_feed_the_bootstrap(tmp_path):
    refs = {"a1": "今天天气很好", "a2": "我们去公园", "a3": "你好"}
    hyps = {"a1": "今天天汽很好", "a2": "我们去公", "a3": "你好"}
    summary, per_utt = score.score_texts(refs, hyps)
    score.write_outputs(tmp_path, summary, per_utt)
    table = read_utt_errors(tmp_path / "utt_errors")
    assert table == {"a1": (1.0, 6), "a2": (1.0, 5), "a3": (0.0, 2)}
    assert sum(e for e, _ in table.values()) == summary["total"]["errors"]


def speaker_sets(extra_of_speaker: dict[str, float], sets=("s1",), speakers=8, sentences=400) -> tuple[dict, dict]:
    """a and b on ``sets``, each read by ``speakers`` speakers v0..v7 (sentence k by speaker k mod 8), 8
    characters and 2 errors per utterance in b; a has ``extra_of_speaker[v]`` more errors on speaker v's."""
    a, b = {}, {}
    for name in sets:
        rows = {f"v{k % speakers}-s{k:03d}": f"v{k % speakers}" for k in range(sentences)}
        b[name] = [{u: (2.0, 8) for u in rows}]
        a[name] = [{u: (2.0 + extra_of_speaker.get(spk, 0.0), 8) for u, spk in rows.items()}]
    return a, b


def speaker_of_id(_set: str, utt: str) -> str:
    return utt.split("-")[0]


def test_a_difference_carried_by_one_speaker_is_noise_once_speakers_are_resampled():
    """a is 2 errors worse on every utterance of one speaker of eight: over sentences alone that is a sure
    difference; drawing 8 speakers leaves that one out in about a third of the replicates ((7/8)^8), so
    the interval reaches 0."""
    a, b = speaker_sets({"v3": 2.0})
    item_of = lambda _, utt: sentence_id(utt)  # noqa: E731
    sentences_only = bootstrap_difference(a, b, ["s1"], item_of, replicates=1000)
    with_speakers = bootstrap_difference(a, b, ["s1"], item_of, replicates=1000, speaker_of=speaker_of_id)
    assert sentences_only.difference == with_speakers.difference == pytest.approx(100 * 2 / 8 / 8)
    assert sentences_only.excludes_zero and not sentences_only.speakers_resampled
    assert with_speakers.speakers_resampled and not with_speakers.excludes_zero
    assert with_speakers.low == pytest.approx(0.0)
    assert with_speakers.high - with_speakers.low > 2 * (sentences_only.high - sentences_only.low)


def test_a_difference_every_speaker_shares_is_not_widened_by_drawing_speakers():
    """One more error on every utterance (8 characters each): 12.5 points in every replicate, whichever
    sentences and speakers are drawn."""
    a, b = speaker_sets({f"v{k}": 1.0 for k in range(8)})
    interval = bootstrap_difference(a, b, ["s1"], lambda _, u: sentence_id(u), replicates=300,
                                    speaker_of=speaker_of_id)
    assert (interval.difference, interval.low, interval.high) == pytest.approx((12.5, 12.5, 12.5))


def test_sets_read_by_the_same_speakers_share_the_speaker_draw():
    """a is worse on speaker v3 in s1 and better by as much on v3 in s2 (same sentences, same speakers): one
    draw of speakers for both, so the two cancel in every replicate; drawn apart they would not."""
    a, b = speaker_sets({"v3": 2.0}, sets=("s1", "s2"))
    a["s2"] = [{u: (e - (4.0 if u.startswith("v3-") else 0.0), r) for u, (e, r) in a["s2"][0].items()}]
    item_of = lambda _, utt: sentence_id(utt)  # noqa: E731
    joint = bootstrap_difference(a, b, ["s1", "s2"], item_of, replicates=300, speaker_of=speaker_of_id)
    assert (joint.low, joint.high) == pytest.approx((0.0, 0.0), abs=1e-9)
    apart = bootstrap_difference(a, b, ["s1", "s2"], item_of, replicates=300,
                                 speaker_of=lambda name, utt: f"{name}:{speaker_of_id(name, utt)}")
    assert apart.high - apart.low > 1.0


def test_the_section_resamples_speakers_from_utt2spk_and_refuses_a_set_without_one(tmp_path):
    exp, data = tmp_path / "exp", tmp_path / "data"
    a, b = speaker_sets({"v3": 2.0}, sets=("test_std", "test_A"))
    for system, runs in (("base", b), ("full_ft", b), ("hdmole", a)):
        for name, (rows,) in runs.items():
            write_errors(exp / system / f"decode_{name}", rows)
        (exp / system / "train_summary.json").write_text(json.dumps({"mode": "adapt"}))
    for name, (rows,) in a.items():
        (data / name).mkdir(parents=True, exist_ok=True)
        (data / name / "utt2spk").write_text("".join(f"{u} {speaker_of_id(name, u)}\n" for u in rows))
    text = interval_section(exp, ["base", "full_ft", "hdmole"], "test_std", ["test_A"], replicates=400,
                            data_dir=data, resample_speakers=True)
    assert "95% interval, sentences + seeds | 95% interval, + speakers |" in text
    assert "(8 per set)" in text and "Speakers are not resampled" not in text
    row = next(line for line in text.splitlines() if line.startswith("| hdmole − full_ft"))
    sentences_only, with_speakers, verdict = (cell.strip() for cell in row.split("|")[4:7])
    assert sentences_only.startswith("[+") and with_speakers.startswith("[+0.00") and verdict == "within noise"
    lines = (data / "test_A" / "utt2spk").read_text().splitlines(keepends=True)
    (data / "test_A" / "utt2spk").write_text("".join([*lines, lines[0]]))  # an utterance listed twice
    with pytest.raises(ValueError, match=rf"test_A/utt2spk:{len(lines) + 1}: duplicate id"):
        interval_section(exp, ["base", "full_ft", "hdmole"], "test_std", ["test_A"], replicates=50,
                         data_dir=data, resample_speakers=True)
    (data / "test_A" / "utt2spk").unlink()
    with pytest.raises(ValueError, match=r"test_A/utt2spk.*--resample-speakers"):
        interval_section(exp, ["base", "full_ft", "hdmole"], "test_std", ["test_A"], replicates=50,
                         data_dir=data, resample_speakers=True)
    assert "Speakers are not resampled" in interval_section(exp, ["base", "full_ft", "hdmole"], "test_std", ["test_A"],
                                                             replicates=50, data_dir=data)
