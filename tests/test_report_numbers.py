"""RESULTS.md's numbers recomputed from the files they come from: each CER cell from the reference and
hypothesis texts (an edit distance written here, through hdmole.bin.score's cer.json), the average accent
CER as the mean of the accent sets' CERs (not the source set's, not pooled over characters), and "% of
full FT (total)" from the trainable and full-fine-tuning sizes in train_summary.json."""

from __future__ import annotations

import json
from pathlib import Path

from report_fixtures import results_table

from hdmole.bin import report, score

ACCENT_SETS = ["test_A", "test_B"]
STD_SET = "test_std"
REFS = {  # (utt_id, accent) -> reference; sets of different sizes so that pooling and averaging differ
    "test_std": {"s1-001": "今天天气很好", "s1-002": "我们是中国人"},
    "test_A": {"a1-001": "学生上课"},
    "test_B": {"b1-001": "知识就是力量", "b1-002": "春天来了", "b1-003": "山上有树"},
}
HYPS = {  # system -> set -> utt -> hypothesis
    "base": {"test_std": {"s1-001": "今天天气很好", "s1-002": "我们是国人"},
             "test_A": {"a1-001": "学上课了"},
             "test_B": {"b1-001": "知识是力量", "b1-002": "春天来", "b1-003": "山有书"}},
    "full_ft": {"test_std": {"s1-001": "今天天气很好", "s1-002": "我们是中国人"},
                "test_A": {"a1-001": "学生上课"},
                "test_B": {"b1-001": "知识就是力量", "b1-002": "春来了", "b1-003": "山上有树"}},
    "hdmole": {"test_std": {"s1-001": "今天天气好", "s1-002": "我们是中国人"},
               "test_A": {"a1-001": "学生课"},
               "test_B": {"b1-001": "知识就是力量", "b1-002": "春天来了", "b1-003": "山上又树"}},
}
SUMMARIES = {
    "base": {"mode": "base", "trainable_params": 5000, "train_seconds": 99.0},
    "full_ft": {"mode": "adapt", "trainable_params": 4096, "full_ft_params": 4096, "train_seconds": 30.0},
    "hdmole": {"mode": "adapt", "trainable_params": 393, "full_ft_params": 4096, "train_seconds": 41.0},
}


def edit_distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def cer(refs: dict[str, str], hyps: dict[str, str]) -> float:
    return 100.0 * sum(edit_distance(refs[u], hyps[u]) for u in refs) / sum(len(r) for r in refs.values())


def write_text(path: Path, rows: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{u} {t}\n" for u, t in sorted(rows.items())), encoding="utf-8")


def _scored_exp(tmp_path) -> Path:
    exp = tmp_path / "exp"
    for system, sets in HYPS.items():
        (exp / system).mkdir(parents=True)
        (exp / system / "train_summary.json").write_text(json.dumps(SUMMARIES[system]))
        for test_set, hyps in sets.items():
            write_text(tmp_path / "data" / test_set / "text", REFS[test_set])
            out = exp / system / f"decode_{test_set}"
            write_text(out / "text", hyps)
            assert score.main(["--ref", str(tmp_path / "data" / test_set / "text"), "--hyp", str(out / "text"),
                               "--out", str(out)]) == 0
    return exp


def test_results_table_numbers_are_recomputed_from_their_source_files(tmp_path):
    exp = _scored_exp(tmp_path)
    results = tmp_path / "RESULTS.md"
    assert report.main(["--exp-dir", str(exp), "--systems", *HYPS, "--std-set", STD_SET, "--accent-sets",
                        *ACCENT_SETS, "--out", str(results)]) == 0
    table = results_table(results.read_text(encoding="utf-8"))
    assert list(table) == list(HYPS)

    for system, sets in HYPS.items():
        row = table[system]
        cers = {s: cer(REFS[s], sets[s]) for s in sets}
        for test_set in ACCENT_SETS:
            assert row[test_set.removeprefix("test_")] == f"{cers[test_set]:.2f}", (system, test_set)
        assert row["std (source)"] == f"{cers[STD_SET]:.2f}"
        average = sum(cers[s] for s in ACCENT_SETS) / len(ACCENT_SETS)
        assert row["avg accent"] == f"{average:.2f}", system
        pooled = cer({u: r for s in ACCENT_SETS for u, r in REFS[s].items()},
                     {u: h for s in ACCENT_SETS for u, h in sets[s].items()})
        if system != "full_ft":  # the average is per set, not pooled over characters (they differ here)
            assert f"{pooled:.2f}" != row["avg accent"]
        summary = SUMMARIES[system]
        if summary["mode"] == "adapt":
            assert row["stage-5 params"] == row["total learned"] == f"{summary['trainable_params']:,}"
            assert row["% of full FT (total)"] == f"{100.0 * summary['trainable_params'] / summary['full_ft_params']:.1f}"
            assert row["train time (s)"] == f"{summary['train_seconds']:.0f}"
        else:  # the base model adapts nothing
            assert (row["total learned"], row["% of full FT (total)"], row["train time (s)"]) == ("0", "–", "–")
    assert table["hdmole"]["% of full FT (total)"] == "9.6"  # 393 / 4096 (no router in these summaries)


def test_micro_and_macro_averages_and_a_pooled_column(tmp_path):
    """--micro-average: the accent CER pooled over the accent sets' characters beside their mean; --pooled: a
    column of several sets as one (KeSpeech's whole test set from its per-subdialect sets, each utterance
    decoded once); --extra-sets: columns in no average (dev sets)."""
    exp = _scored_exp(tmp_path)
    results = tmp_path / "RESULTS.md"
    assert report.main(["--exp-dir", str(exp), "--systems", *HYPS, "--std-set", STD_SET, "--accent-sets",
                        *ACCENT_SETS, "--out", str(results), "--micro-average", "--pooled",
                        f"all={STD_SET},{','.join(ACCENT_SETS)}", "--extra-sets", "test_A"]) == 0
    table = results_table(results.read_text(encoding="utf-8"))
    for system, sets in HYPS.items():
        row = table[system]
        cers = {s: cer(REFS[s], sets[s]) for s in sets}
        assert row["avg accent (macro)"] == f"{sum(cers[s] for s in ACCENT_SETS) / len(ACCENT_SETS):.2f}"
        micro = cer({u: r for s in ACCENT_SETS for u, r in REFS[s].items()},
                    {u: h for s in ACCENT_SETS for u, h in sets[s].items()})
        assert row["avg accent (micro)"] == f"{micro:.2f}", system
        everything = cer({u: r for s in REFS for u, r in REFS[s].items()}, {u: h for s in sets for u, h in sets[s].items()})
        assert row["all"] == f"{everything:.2f}", system
        assert row["A"] == f"{cers['test_A']:.2f}"


def test_resample_speakers_adds_an_interval_column_and_needs_utt2spk(tmp_path, capsys):
    """--resample-speakers: the intervals table gets a speaker-inclusive column; without the test sets' utt2spk
    the report stops before writing anything and says what to pass."""
    exp = _scored_exp(tmp_path)
    results = tmp_path / "RESULTS.md"
    args = ["--exp-dir", str(exp), "--systems", *HYPS, "--std-set", STD_SET, "--accent-sets", *ACCENT_SETS,
            "--out", str(results), "--bootstrap", "50", "--resample-speakers"]
    assert report.main(args) == 1
    assert "--resample-speakers needs" in capsys.readouterr().err and not results.exists()
    for test_set, refs in REFS.items():
        (tmp_path / "data" / test_set / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in refs))
    assert report.main([*args, "--data-dir", str(tmp_path / "data")]) == 0
    text = results.read_text(encoding="utf-8")
    assert "95% interval, sentences + seeds | 95% interval, + speakers |" in text
    assert "| hdmole − full_ft | avg accent |" in text
