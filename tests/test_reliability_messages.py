"""Probe rows of docs/reliability.md that used to end in a traceback or a message that did not help: a
checkpoint that does not fit the model (every entry point that loads one), compute_cmvn's failures, model
sizes the libraries reject, a wav.scp pipe cut short, GBK text for the tokenizer, and the advice after a
non-finite loss (it must work with the exp-dir guard)."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import torch

from reliability_fixtures import MODEL, assert_one_line_error, make_features, save_checkpoints, train_config

from hdmole.bin import compute_cmvn, compute_fbank, decode, eval_router, routing_stats, train, train_tokenizer

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("rel_messages")
    setup = make_features(root)
    setup["root"] = root
    setup["ckpt"] = save_checkpoints(root / "exp", setup)
    setup["config"] = train_config(root / "exp" / "base" / "config.yaml", "base", setup)
    # a base checkpoint of another model config (a wider encoder) and an accent list one accent short
    from hdmole.models.build import build_model
    from hdmole.text.tokenizer import build_tokenizer

    other = copy.deepcopy(MODEL)
    other["encoder"]["output_size"] = 48
    model = build_model(other, build_tokenizer(setup["tokenizer"]), num_accents=3)
    setup["other"] = root / "other.pt"
    torch.save({"model": model.state_dict(), "mode": "base", "system": "base"}, setup["other"])
    names = setup["accents"].read_text(encoding="utf-8").split()
    setup["short_accents"] = root / "accents_short.txt"
    setup["short_accents"].write_text("".join(f"{n}\n" for n in names[:2]), encoding="utf-8")
    return setup


# ---------------------------------------------------------------- checkpoints that do not fit
def loaders(setup, checkpoint, accents):
    common = ["--config", str(setup["config"]), "--checkpoint", str(checkpoint), "--accents", str(accents),
              "--data", str(setup["data"])]
    root = setup["root"]
    return {
        "decode": lambda: decode.main([*common, "--out", str(root / "out_decode"), "--max-len", "2"]),
        "eval_router": lambda: eval_router.main([*common, "--out", str(root / "out_router")]),
        "routing_stats": lambda: routing_stats.main([*common, "--out", str(root / "out_routing.json")]),
    }


@pytest.mark.parametrize("entry", ["decode", "eval_router", "routing_stats"])
def test_a_checkpoint_of_another_model_config_is_one_line(setup, capfd, entry):
    code = loaders(setup, setup["other"], setup["accents"])[entry]()
    err = capfd.readouterr().err
    assert_one_line_error(code, err, setup["other"])
    assert "does not fit the model built from the config: tensor encoder." in err and "size mismatch" not in err
    assert "Fix: use the model config and accents.txt it was made with" in err


@pytest.mark.parametrize("entry", ["decode", "eval_router", "routing_stats"])
def test_an_accent_list_shorter_than_the_model_is_one_line(setup, capfd, entry):
    code = loaders(setup, setup["ckpt"]["base"], setup["short_accents"])[entry]()
    err = capfd.readouterr().err
    assert_one_line_error(code, err)
    assert "size mismatch" not in err
    assert "does not fit the model built from the config: tensor global_router." in err  # its output: one per accent
    assert "is [3, 16] there but [2, 16] here" in err and "another accent list" in err


def test_an_init_checkpoint_of_another_model_config_is_one_line(setup, capsys):
    config = train_config(setup["root"] / "conf" / "init_other.yaml", "base", setup, init=[str(setup["other"])])
    code = train.main(["--config", str(config), "--exp-dir", str(setup["root"] / "exp" / "init_other")])
    err = capsys.readouterr().err
    assert code == 1 and f"init checkpoint {setup['other']} does not fit" in err and "Traceback" not in err


# ---------------------------------------------------------------- compute_cmvn
def test_compute_cmvn_failures_are_one_line(setup, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(setup["data"], data)
    lines = (data / "feats.scp").read_text().splitlines()
    utt, location = lines[0].split()
    lines[0] = f"{utt} {location.rsplit(':', 1)[0]}:99999999"  # an offset past the end of the ark
    (data / "feats.scp").write_text("\n".join(lines) + "\n")
    code = compute_cmvn.main([str(data), str(tmp_path / "cmvn.json")])
    err = capsys.readouterr().err
    assert_one_line_error(code, err, data / "feats.scp")
    assert code == 1 and not (tmp_path / "cmvn.json").exists()
    assert compute_cmvn.main([str(data), str(tmp_path / "cmvn.json"), "--verbose"]) == 1
    assert "Traceback" in capsys.readouterr().err
    (tmp_path / "a_file").write_text("")
    for unusable in (tmp_path / "a_file" / "cmvn.json", Path("/sys/hdmole_cannot_write/cmvn.json")):
        code = compute_cmvn.main([str(setup["data"]), str(unusable)])
        assert_one_line_error(code, capsys.readouterr().err, unusable.parent)


# ---------------------------------------------------------------- model sizes
@pytest.mark.parametrize("override, message", [
    ("model.llm.config.hidden_size=big", "llm.config.hidden_size must be a whole number >= 1, got 'big'"),
    ("model.encoder.attention_heads=3", "encoder.output_size (32) must be a multiple of encoder.attention_heads (3)"),
    ("model.encoder.output_size=-4", "encoder.output_size must be a whole number >= 1, got -4"),
])
def test_model_sizes_the_libraries_reject_are_named(setup, capsys, override, message):
    code = train.main(["--config", str(setup["config"]), "--exp-dir", str(setup["root"] / "exp" / "sizes"),
                       "--override", override])
    err = capsys.readouterr().err
    assert_one_line_error(code, err, setup["config"])
    assert message in err and "math domain error" not in err


# ---------------------------------------------------------------- audio, text
def test_a_wav_scp_pipe_cut_short_is_rejected(setup, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(setup["data"], data, ignore=shutil.ignore_patterns("feats.scp", "utt2num_frames"))
    lines = (data / "wav.scp").read_text().splitlines()
    utt, wav = lines[0].split()
    lines[0] = f"{utt} sox {wav} -t wav - | head -c 2000 |"
    (data / "wav.scp").write_text("\n".join(lines) + "\n")
    code = compute_fbank.main([str(data), str(tmp_path / "fbank")])
    err = capsys.readouterr().err
    assert code == 1 and "is truncated: header says" in err and "the pipe wrote" in err and "Traceback" not in err
    # the same audio streamed whole through a pipe is fine
    lines[0] = f"{utt} sox {wav} -t wav - |"
    (data / "wav.scp").write_text("\n".join(lines) + "\n")
    assert compute_fbank.main([str(data), str(tmp_path / "fbank")]) == 0


def test_train_tokenizer_on_gbk_text_names_the_line_and_iconv(tmp_path, capsys):
    text = tmp_path / "lm.txt"
    text.write_bytes("你好\n".encode("utf-8") + "世界\n".encode("gbk"))
    assert train_tokenizer.main([str(text), str(tmp_path / "char")]) == 1
    err = capsys.readouterr().err
    assert f"{text}:2: not valid UTF-8" in err and "iconv -f GBK -t UTF-8" in err and "Traceback" not in err


# ---------------------------------------------------------------- non-finite loss
def test_non_finite_loss_advice_works_with_the_exp_dir_guard(setup, monkeypatch, capsys):
    from hdmole.train.trainer import Trainer

    original = Trainer.forward
    calls = {"n": 0}

    def nan_forward(self, net, batch, *args):
        out = original(self, net, batch, *args)
        if net.training:
            calls["n"] += 1
            if calls["n"] == 2:
                out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(Trainer, "forward", nan_forward)
    exp = setup["root"] / "exp" / "nan"
    assert train.main(["--config", str(setup["config"]), "--exp-dir", str(exp)]) == 1
    err = capsys.readouterr().err
    assert "non-finite loss" in err and "fresh --exp-dir with a lower optim.lr" in err
    monkeypatch.setattr(Trainer, "forward", original)
    # It does not advise what the guard refuses: a lower lr in this exp dir (a fresh one trains as any new run).
    assert train.main(["--config", str(setup["config"]), "--exp-dir", str(exp), "--override", "optim.lr=5e-4"]) == 2
    assert "fresh --exp-dir" in capsys.readouterr().err

