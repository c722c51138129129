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


def test_the_speaker_table_lists_the_worst_routed_speaker_first_with_its_pooled_choice():
    import torch

    names = ["Mandarin", "Beijing", "Tianjin"]
    logits = {"a1": torch.tensor([3.0, 0.0, 0.0]), "a2": torch.tensor([2.0, 0.0, 0.0]),
              "a3": torch.tensor([0.0, 0.0, 0.5]), "b1": torch.tensor([0.0, 1.0, 0.0]),
              "b2": torch.tensor([0.0, 2.0, 0.0]), "c1": torch.tensor([0.0, 3.0, 0.0]),
              "d1": torch.tensor([0.0, 0.2, 0.0]), "d2": torch.tensor([0.0, 0.2, 0.0]),
              "d3": torch.tensor([0.0, 0.0, 6.0])}
    truths = {"a1": 0, "a2": 0, "a3": 0, "b1": 1, "b2": 1, "c1": 2, "d1": 2, "d2": 2, "d3": 2}
    utt2spk = {u: u[0].upper() for u in logits}
    lines = eval_router.speaker_table(logits, truths, utt2spk, names).splitlines()
    assert lines[0].startswith("#")
    # C: its only utterance misrouted. D: two of three utterances lean weakly to Beijing (the most routed domain),
    # the third is sure of Tianjin, and the pooled log-posteriors choose Tianjin. A: its last utterance leans to
    # Tianjin, the pooled choice is Mandarin. B: all right.
    assert lines[1:] == ["C Tianjin 1 0 0.0% Beijing Beijing",
                         "D Tianjin 3 1 33.3% Beijing Tianjin",
                         "A Mandarin 3 2 66.7% Mandarin Mandarin",
                         "B Beijing 2 2 100.0% Beijing Beijing"]


def test_a_speaker_with_two_true_domains_gets_a_row_per_domain_with_the_speakers_pooled_choice():
    import torch

    logits = {"a1": torch.tensor([1.0, 0.0]), "a2": torch.tensor([0.0, 1.0]), "a3": torch.tensor([0.0, 3.0])}
    table = eval_router.speaker_table(logits, {"a1": 0, "a2": 1, "a3": 1}, {u: "A" for u in logits},
                                      ["Mandarin", "Beijing"])
    assert table.splitlines()[1:] == ["A Mandarin 1 1 100.0% Mandarin Beijing", "A Beijing 2 2 100.0% Beijing Beijing"]
