"""The threshold's operating curve (hdmole.bin.threshold_curve) on a tiny trained HDMoLE system, its errors,
and its RESULTS.md table (hdmole.report.threshold)."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from train_fixtures import Corpus

from hdmole.bin import threshold_curve, train
from hdmole.report.sections import active_experts_section
from hdmole.report.threshold import threshold_curve_section

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("curve")
    corpus = Corpus(root)
    exp = root / "exp" / "hdmole"
    config = corpus.config("hdmole", "hdmole", optim={"max_steps": 3})
    assert train.main(["--config", str(config), "--exp-dir", str(exp)]) == 0
    state = torch.load(exp / "best.pt", weights_only=False)["model"]
    learned = {name.removesuffix(".hdmole_threshold_logit"): torch.sigmoid(t).item()
               for name, t in state.items() if name.endswith("hdmole_threshold_logit")}
    return corpus, exp, learned


def test_the_curve_forces_each_layer_and_all_of_them(trained):
    corpus, exp, learned = trained
    assert sorted(learned) == ["projector.linear1", "projector.linear2"]
    # the grid holds each layer's own learned tau: forcing it there must give the learned point back
    grid = sorted({0.0, 0.9, *learned.values()})
    assert threshold_curve.main(["--exp-dir", str(exp), "--taus", ",".join(repr(t) for t in grid)]) == 0
    curve = json.loads((exp / "threshold_curve.json").read_text())
    assert curve["layers"] == sorted(learned) and curve["taus"] == grid
    assert curve["data"] == str(corpus.dev)  # the config's dev set by default
    for layer, tau in learned.items():
        assert curve["learned"]["thresholds"][layer] == pytest.approx(tau, rel=1e-6)
        at_learned = next(p for p in curve["per_layer"][layer] if p["tau"] == tau)
        assert at_learned["loss"] == pytest.approx(curve["learned"]["loss"], rel=1e-6)
        assert at_learned["mean_active_experts"] == pytest.approx(curve["learned"]["mean_active_experts"][layer])
    everything = curve["all_layers"]
    experts = len(corpus.accents.read_text().split())
    for layer in learned:  # tau = 0: every expert active; active experts never rise with tau
        active = [p["mean_active_experts"][layer] for p in everything]
        assert active[0] == pytest.approx(experts)
        assert all(a >= b - 1e-9 for a, b in zip(active, active[1:])) and active[-1] < active[0]
    assert everything[0]["loss"] != everything[-1]["loss"]  # forcing tau changes the model
    assert (exp / "threshold_curve.png").stat().st_size > 1000


def fake_adapter(tmp_path, gating: str):
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "config.yaml").write_text(yaml.safe_dump({"init": [str(tmp_path / "base.pt")]}))
    torch.save({"model": {}, "adapter_config": {"num_domains": 2, "gating": gating, "top_k": 1},
                "target_modules": ["projector.linear1"]}, exp / "best.pt")
    return exp


def test_a_system_without_threshold_is_a_one_line_error_or_skipped(tmp_path, capsys):
    exp = fake_adapter(tmp_path, "topk")
    assert threshold_curve.main(["--exp-dir", str(exp)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no dynamic threshold" in err[0] and "--if-thresholded" in err[0]
    assert threshold_curve.main(["--exp-dir", str(exp), "--if-thresholded"]) == 0
    assert "nothing written" in capsys.readouterr().out
    assert not (exp / "threshold_curve.json").exists()


@pytest.mark.parametrize("taus, message", [("0,abc", "comma-separated numbers"), ("0,1.2", "in [0, 1)")])
def test_a_bad_grid_is_a_one_line_error(tmp_path, capsys, taus, message):
    exp = fake_adapter(tmp_path, "threshold")
    assert threshold_curve.main(["--exp-dir", str(exp), "--taus", taus]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_the_report_says_whether_each_learned_tau_is_within_one_percent_of_the_best(tmp_path):
    """Layer a: best forced loss 1.000, learned 1.005 (within 1%). Layer b: best 0.990, learned 1.005 (1.5% worse)."""
    grid = [0.0, 0.1, 0.2, 0.3]
    curve = {"taus": grid, "layers": ["a", "b"],
             "learned": {"loss": 1.005, "thresholds": {"a": 0.12, "b": 0.01}, "mean_active_experts": {"a": 1.5, "b": 3.9}},
             "all_layers": [{"tau": t, "loss": 1.1, "mean_active_experts": {"a": 2, "b": 2}} for t in grid],
             "per_layer": {"a": [{"tau": t, "loss": v, "mean_active_experts": 2} for t, v in zip(grid, [1.2, 1.0, 1.009, 1.3])],
                           "b": [{"tau": t, "loss": v, "mean_active_experts": 2} for t, v in zip(grid, [1.1, 0.99, 1.2, 0.995])]}}
    (tmp_path / "hdmole").mkdir()
    (tmp_path / "hdmole" / "threshold_curve.json").write_text(json.dumps(curve))
    table, curves = threshold_curve_section(tmp_path, ["lora", "hdmole"])
    assert list(curves) == ["hdmole"]
    rows = {line.split("|")[2].strip(): [c.strip() for c in line.split("|")[1:-1]]
            for line in table.splitlines()[2:]}
    assert rows["a"][3:] == ["1.50", "1.0050", "0.10", "1.0000", "0.10-0.20", "yes"]
    assert rows["b"][3:] == ["3.90", "1.0050", "0.10", "0.9900", "0.10, 0.30", "**no**"]


def test_active_experts_per_layer_and_domain_of_every_threshold_system(tmp_path):
    def cell(active):
        return {"mean_active_experts": active, "mean_weight_per_expert": [0.5, 0.3, 0.2]}

    for system, gating, tau in (("hdmole", "threshold", 0.15), ("hdmole_no_global", "threshold", 0.05),
                                ("hdmole_no_threshold", "topk", None)):
        (tmp_path / system).mkdir()
        (tmp_path / system / "train_summary.json").write_text(json.dumps({"adapter_config": {"gating": gating}}))
        stats = {"_accents": ["Mandarin", "Wu"],
                 "projector.linear1": {**cell(2.5), "threshold": tau, "by_domain": {"Mandarin": cell(1.25), "Wu": cell(2.75)}}}
        (tmp_path / system / "routing_test_all.json").write_text(json.dumps(stats))
    table = active_experts_section(tmp_path, ["lora", "hdmole", "hdmole_no_global", "hdmole_no_threshold"], "test_all")
    lines = table.splitlines()
    assert lines[0] == "| system | layer | experts | tau | all | Mandarin | Wu |"
    assert lines[2:] == ["| hdmole | projector.linear1 | 3 | 0.150 | 2.50 | 1.25 | 2.75 |",
                         "| hdmole_no_global | projector.linear1 | 3 | 0.050 | 2.50 | 1.25 | 2.75 |"]
