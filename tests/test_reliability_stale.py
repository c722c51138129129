"""Contract 2 of docs/reliability.md, "nothing stale is taken as finished", for the stages that skip work
besides features and decoding: training (its init checkpoints and data, by content), the CMVN, the
tokenizer and the CTC unit list (hdmole.files' inputs record), and a re-decode that is killed (no earlier
model's hypotheses left for score to report)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from reliability_fixtures import make_features, save_checkpoints, train_config

from hdmole.bin import compute_cmvn, compute_fbank, decode, score, train, train_tokenizer
from hdmole.data.cmvn import GlobalCMVN
from hdmole.data.errors import DataError

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("rel_stale")
    setup = make_features(root)
    setup["root"] = root
    return setup


def fresh_copy(setup, name):
    """A copy of the data dir (its feats.scp still points at the shared arks), to change without harm."""
    data = setup["root"] / name
    shutil.copytree(setup["data"], data)
    return data


# ---------------------------------------------------------------- training
def test_train_refuses_an_exp_dir_whose_init_checkpoint_was_replaced(setup, capsys):
    root = setup["root"]
    init = save_checkpoints(root / "init", setup)["base"]
    config = train_config(root / "conf" / "init.yaml", "base", setup, init=[str(init)])
    exp = root / "exp" / "init"
    args = ["--config", str(config), "--exp-dir", str(exp)]
    assert train.main(args) == 0
    assert train.main(args) == 0 and "already trained" in capsys.readouterr().out
    save_checkpoints(root / "init", setup, seed=1)  # another base model at the same path
    assert train.main(args) == 2
    err = capsys.readouterr().err
    assert "was trained from other inputs: init changed" in err and "fresh --exp-dir" in err
    assert "train_inputs.json" in err


def test_train_refuses_an_exp_dir_whose_training_data_changed(setup, capsys):
    root = setup["root"]
    data = fresh_copy(setup, "train_changed")
    config = train_config(root / "conf" / "data.yaml", "base", {**setup, "data": data})
    exp = root / "exp" / "data"
    args = ["--config", str(config), "--exp-dir", str(exp)]
    assert train.main(args) == 0
    # every transcript changed, same path, same utterances
    text = data / "text"
    text.write_text("".join(f"{line.split()[0]} 你好\n" for line in text.read_text(encoding="utf-8").splitlines()),
                    encoding="utf-8")
    assert train.main(args) == 2
    assert "data.train" in capsys.readouterr().err
    # a killed run (checkpoints, no summary) is not resumed on the changed data either
    (exp / "train_summary.json").unlink()
    assert train.main(args) == 2


def test_new_features_leave_the_text_only_lm_stage_valid_but_not_the_base(setup, capsys):
    """The LM stage trains on text: a CMVN remade for new features (run.sh --pitch-norm-vars) must not make
    stage 2 refuse its exp dir, while the base stage, which reads the features, still must. Also an LM exp dir
    whose record was written when the CMVN was still recorded."""
    import json

    root = setup["root"]
    cmvn = root / "lm_cmvn" / "cmvn.json"
    assert compute_cmvn.main([str(setup["data"]), str(cmvn)]) == 0
    text = root / "lm_text.txt"
    text.write_text("".join(line.split(maxsplit=1)[1] + "\n" for line in
                            (setup["data"] / "text").read_text(encoding="utf-8").splitlines()), encoding="utf-8")
    lm = train_config(root / "conf" / "lm_cmvn.yaml", "lm", setup,
                      data={"train": str(text), "dev": str(text), "cmvn": str(cmvn), "max_frames": 400})
    base = train_config(root / "conf" / "base_cmvn.yaml", "base", setup)
    base_args = ["--config", str(base), "--exp-dir", str(root / "exp" / "base_cmvn"), "--override",
                 f"data.cmvn={cmvn}"]
    lm_exp = root / "exp" / "lm_cmvn"
    lm_args = ["--config", str(lm), "--exp-dir", str(lm_exp)]
    assert train.main(lm_args) == 0 and train.main(base_args) == 0
    assert "data.cmvn" not in json.loads((lm_exp / "train_inputs.json").read_text())
    cmvn.write_text(cmvn.read_text().replace('"count"', '"count" ', 1))  # another CMVN at the same path
    capsys.readouterr()
    assert train.main(lm_args) == 0 and "already trained" in capsys.readouterr().out
    assert train.main(base_args) == 2 and "data.cmvn changed" in capsys.readouterr().err
    record = json.loads((lm_exp / "train_inputs.json").read_text())
    record["data.cmvn"] = "an older CMVN"  # as the LM stage recorded it before
    (lm_exp / "train_inputs.json").write_text(json.dumps(record))
    assert train.main(lm_args) == 0 and "already trained" in capsys.readouterr().out


# ---------------------------------------------------------------- CMVN
def test_cmvn_is_recomputed_when_the_training_features_change(setup, capsys):
    root = setup["root"]
    data = fresh_copy(setup, "cmvn_data")
    out = root / "dump" / "cmvn.json"
    assert compute_cmvn.main([str(data), str(out)]) == 0
    assert (root / "dump" / "cmvn_inputs.json").is_file()
    made = out.stat().st_mtime_ns
    assert compute_cmvn.main([str(data), str(out)]) == 0 and out.stat().st_mtime_ns == made  # same: skipped
    assert "skipping" in capsys.readouterr().err
    # --pitch toggled: the features are re-extracted (83 dims), so the CMVN must follow
    assert compute_fbank.main(["--pitch", str(data), str(root / "fbank_pitch")]) == 0
    stale = GlobalCMVN.load(out)  # the 80-dim one: a stage given it names it (with the fix)
    with pytest.raises(DataError, match=f"CMVN statistics of {out} have dim 80.*compute_cmvn"):
        stale.apply(np.zeros((2, 83), dtype=np.float32))
    assert compute_cmvn.main([str(data), str(out)]) == 0
    assert '"dim": 83' in out.read_text()


# ---------------------------------------------------------------- tokenizer, CTC units
def test_tokenizer_and_unit_list_are_made_again_from_new_text(setup, tmp_path):
    text = tmp_path / "lm.txt"
    text.write_text("你好\n世界\n", encoding="utf-8")
    prefix = tmp_path / "lang" / "char"
    assert train_tokenizer.main([str(text), str(prefix)]) == 0
    model = prefix.with_suffix(".model")
    made = model.stat().st_mtime_ns
    assert train_tokenizer.main([str(text), str(prefix)]) == 0 and model.stat().st_mtime_ns == made  # skipped
    text.write_text("你好\n世界\n新字\n", encoding="utf-8")  # new characters: not to be mapped to <unk>
    assert train_tokenizer.main([str(text), str(prefix)]) == 0
    from hdmole.text.tokenizer import build_tokenizer

    tok = build_tokenizer({"type": "sentencepiece", "model": str(model)})
    assert 1 not in tok.encode("新字")  # unk id is 1
    # the CTC unit list, from a data dir's phones file
    data = fresh_copy(setup, "units_data")
    (data / "phones").write_text("".join(f"{line.split()[0]} a1 b2\n" for line in
                                         (data / "text").read_text(encoding="utf-8").splitlines()), encoding="utf-8")
    units = tmp_path / "lang" / "phones"
    args = ["--model-type", "units", "--text-file", "phones", str(data), str(units)]
    assert train_tokenizer.main(args) == 0
    assert "c3" not in units.with_suffix(".units").read_text().split()
    (data / "phones").write_text((data / "phones").read_text().replace("b2", "c3"), encoding="utf-8")
    assert train_tokenizer.main(args) == 0
    assert "c3" in units.with_suffix(".units").read_text().split()


# ---------------------------------------------------------------- decoding
def test_a_killed_redecode_leaves_no_earlier_hypotheses(setup, monkeypatch, capsys):
    root = setup["root"]
    ckpt = save_checkpoints(root / "dec", setup)
    config = train_config(root / "dec" / "config.yaml", "base", setup)
    out = root / "dec" / "decode_test"
    args = ["--config", str(config), "--checkpoint", str(ckpt["base"]), "--data", str(setup["data"]),
            "--accents", str(setup["accents"]), "--out", str(out), "--batch-frames", "2000", "--max-len", "4"]
    assert decode.main(args) == 0 and (out / "text").is_file()

    def killed(job):
        raise KeyboardInterrupt  # the kill arrives in the middle of the new decode

    monkeypatch.setattr(decode, "decode_shard", killed)
    with pytest.raises(KeyboardInterrupt):
        decode.main([*args, "--beam", "2"])  # another beam: decoded again, and killed
    assert not (out / "text").exists() and not (out / "decode_inputs.json").exists()
    capsys.readouterr()
    code = score.main(["--ref", str(setup["data"]), "--hyp", str(out / "text"), "--accents", str(setup["accents"]),
                       "--out", str(out)])
    assert code == 1 and "decode" in capsys.readouterr().err  # not a CER of the earlier model
