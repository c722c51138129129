"""The router's logits file (hdmole.bin.eval_router) and egs/mini_accent/local/router_evidence.py, which pools k
utterances of a speaker to estimate what a k-times-longer utterance would be routed as."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from hdmole.bin.eval_router import read_logits, write_logits

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("router_evidence",
                                              ROOT / "egs" / "mini_accent" / "local" / "router_evidence.py")
evidence = importlib.util.module_from_spec(spec)
spec.loader.exec_module(evidence)


def test_logits_are_written_and_read_back_in_key_order(tmp_path):
    logits = {"b": torch.tensor([0.5, -1.25]), "a": torch.tensor([1e-7, 3.0])}
    write_logits(tmp_path / "x.logits", logits)
    assert (tmp_path / "x.logits").read_text().splitlines() == ["a 1e-07 3", "b 0.5 -1.25"]
    back = read_logits(tmp_path / "x.logits")
    assert list(back) == ["a", "b"] and all(torch.allclose(back[u], logits[u]) for u in logits)


@pytest.mark.parametrize("bad", ["c 1.0 oops", "c 1.0"])
def test_a_malformed_logits_line_names_the_file_and_line(tmp_path, bad):
    (tmp_path / "x.logits").write_text(f"a 1.0 2.0\nb 0.0 1.0\n{bad}\n")
    with pytest.raises(ValueError, match=r"x\.logits:3: expected"):
        read_logits(tmp_path / "x.logits")


def test_windows_pool_the_next_utterances_of_the_same_speaker_cyclically():
    logits = {f"s-{i}": torch.tensor([float(i), 0.0]) for i in range(3)}
    logits["t-0"] = torch.tensor([0.0, 2.0])
    utt2spk = {u: u[0] for u in logits}
    log_post = {u: torch.log_softmax(v, -1) for u, v in logits.items()}
    pooled = evidence.pool_windows(logits, utt2spk, 2)
    assert torch.allclose(pooled["s-0"], log_post["s-0"] + log_post["s-1"])
    assert torch.allclose(pooled["s-2"], log_post["s-2"] + log_post["s-0"])  # wraps around
    assert torch.allclose(pooled["t-0"], log_post["t-0"])  # a one-utterance speaker keeps its own
    assert all(torch.allclose(evidence.pool_windows(logits, utt2spk, 1)[u], log_post[u]) for u in logits)
    with pytest.raises(ValueError, match="k must be"):
        evidence.pool_windows(logits, utt2spk, 0)


def test_pooling_turns_weak_consistent_evidence_into_right_routes():
    # Speaker A (Mandarin, domain 0): two utterances lean weakly the wrong way, two strongly the right way.
    logits = {"A-1": torch.tensor([0.0, 0.3]), "A-2": torch.tensor([0.0, 0.3]),
              "A-3": torch.tensor([2.0, 0.0]), "A-4": torch.tensor([2.0, 0.0])}
    truths, utt2spk = {u: 0 for u in logits}, {u: "A" for u in logits}
    chars = {"A-1": 4, "A-2": 6, "A-3": 8, "A-4": 10}
    one = evidence.evidence_row(logits, truths, utt2spk, chars, 1)
    two = evidence.evidence_row(logits, truths, utt2spk, chars, 2)
    assert one["accuracy"] == one["source_recall"] == 0.5 and one["chars"] == 7.0
    assert two["accuracy"] == 0.75 and two["chars"] == 14.0  # A-1 + A-2 stays wrong, the rest right


def test_the_script_prints_a_row_per_k_and_refuses_logits_of_another_data_dir(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "accents.txt").write_text("Mandarin\nBeijing\n")
    (data / "utt2spk").write_text("a-1 a\na-2 a\nb-1 b\n")
    (data / "utt2accent").write_text("a-1 Mandarin\na-2 Mandarin\nb-1 Beijing\n")
    (data / "text").write_text("a-1 你好\na-2 你好吗\nb-1 北京\n")
    write_logits(tmp_path / "r.logits", {"a-1": torch.tensor([1.0, 0.0]), "a-2": torch.tensor([0.0, 0.5]),
                                        "b-1": torch.tensor([0.0, 1.0])})
    assert evidence.main(["--logits", str(tmp_path / "r.logits"), "--data", str(data), "--k", "1", "2"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[-2:] == ["| 1 | 2.3 | 66.7% | 50.0% |", "| 2 | 4.0 | 100.0% | 100.0% |"]
    write_logits(tmp_path / "other.logits", {"z-1": torch.tensor([1.0, 0.0])})
    assert evidence.main(["--logits", str(tmp_path / "other.logits"), "--data", str(data)]) == 1
    assert "'z-1'" in capsys.readouterr().err
    assert evidence.main(["--logits", str(tmp_path / "none.logits"), "--data", str(data)]) == 1
    assert "none.logits not found; write it with python -m hdmole.bin.eval_router" in capsys.readouterr().err
