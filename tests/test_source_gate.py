"""The source gate chosen on dev (hdmole.bin.choose_source_gate, recipe stage 5) and its operating curve in the
report; the gate's arithmetic is in tests/test_nn_source_path.py."""

from __future__ import annotations

import json

import pytest

from hdmole.bin import choose_source_gate
from hdmole.report.sections import source_gate_points, source_gate_table
from hdmole.train.config import adapter_config_for, load_train_config


def write_gate(root, gate, best):
    (root / f"g{gate}").mkdir(parents=True)
    (root / f"g{gate}" / "train_summary.json").write_text(json.dumps({"best": best}))


def test_the_gate_with_the_lowest_dev_loss_is_chosen_and_its_overrides_printed(tmp_path, capsys):
    for gate, best in (("0", 1.30), ("1.5", 1.21), ("hard", 1.25)):
        write_gate(tmp_path, gate, best)
    assert choose_source_gate.main(["--exp-dir", str(tmp_path), "0", "1.5", "hard"]) == 0
    chosen = json.loads((tmp_path / "chosen.json").read_text())
    assert chosen["gate"] == "1.5" and chosen["source_gate_bias"] == 1.5 and chosen["source_gate_hard"] is False
    assert capsys.readouterr().out.split() == ["adapter_defaults.mixture.source_gate_bias=1.5",
                                               "adapter_defaults.mixture.source_gate_hard=false"]
    assert choose_source_gate.main(["--overrides-for", "hard"]) == 0
    assert "adapter_defaults.mixture.source_gate_hard=true" in capsys.readouterr().out


def test_a_missing_or_bad_gate_is_a_one_line_error(tmp_path, capsys):
    write_gate(tmp_path, "0", 1.3)
    assert choose_source_gate.main(["--exp-dir", str(tmp_path), "0", "2"]) == 1
    assert "g2/train_summary.json is missing" in capsys.readouterr().err
    with pytest.raises(ValueError, match="neither a number"):
        choose_source_gate.gate_settings("soft")


@pytest.mark.parametrize("system, gated", [("hdmole", True), ("hdmole_no_source", False), ("mole_top2", False)])
def test_the_chosen_overrides_reach_every_system_with_a_source_path_and_no_other(tmp_path, system, gated):
    """The same overrides are given to every system of stage 5: systems without a source path ignore them."""
    accents = tmp_path / "accents.txt"
    accents.write_text("Mandarin\nA\nB\nC\nD\n")  # mini_accent's 5 domains (its LoRA size follows them)
    from pathlib import Path

    conf = Path(__file__).resolve().parent.parent / "egs" / "mini_accent" / "conf" / "adapt.yaml"
    config, _ = load_train_config(conf, [f"system={system}", "data.train=data/x", f"data.accents={accents}",
                                         "adapter_defaults.mixture.source_gate_bias=1.5",
                                         "adapter_defaults.mixture.source_gate_hard=true"])
    adapter = adapter_config_for(config, 5)
    assert (adapter.source_gate_bias, adapter.source_gate_hard) == ((1.5, True) if gated else (0.0, False))


def test_the_report_marks_the_dev_chosen_gate_on_the_operating_curve(tmp_path):
    def cer(path, value):
        path.mkdir(parents=True)
        (path / "cer.json").write_text(json.dumps({"total": {"cer": value}}))

    cer(tmp_path / "base" / "decode_test_std", 7.0)
    for gate, (std, accent) in {"0": (9.0, 30.0), "2": (7.5, 31.0)}.items():
        cer(tmp_path / "gate" / f"g{gate}" / "decode_test_std", std)
        cer(tmp_path / "gate" / f"g{gate}" / "decode_test_a", accent)
    (tmp_path / "gate" / "chosen.json").write_text(json.dumps({"gate": "2", "dev_loss": {"0": 1.3, "2": 1.2}}))
    points = source_gate_points(tmp_path, ["0", "2"], "test_std", ["test_a"])
    assert [(p["gate"], p["std_change"], p["accent"], p["chosen"]) for p in points] == [
        ("0", 2.0, 30.0, False), ("2", 0.5, 31.0, True)]
    assert "| 2 (chosen on dev) | 1.2000 | +0.50 | 31.00 |" in source_gate_table(points)
