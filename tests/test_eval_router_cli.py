"""hdmole.bin.eval_router's answers to bad input: one line naming the file, exit 1, no traceback (its
confusion matrices on a trained router are checked end to end in test_mini_accent_recipe.py)."""

from __future__ import annotations

from hdmole.bin import eval_router


def test_a_missing_config_is_one_line_naming_it(tmp_path, capfd):
    accents = tmp_path / "accents.txt"
    accents.write_text("Mandarin\nBeijing\n")
    code = eval_router.main(["--config", str(tmp_path / "nope.yaml"), "--checkpoint", str(tmp_path / "x.pt"),
                             "--accents", str(accents), "--data", str(tmp_path), "--out", str(tmp_path / "out")])
    err = capfd.readouterr().err
    assert code == 1 and "nope.yaml does not exist" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing half written
