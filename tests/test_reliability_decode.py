"""Reliability of decoding and scoring (docs/reliability.md): a finished decode is redone when what
produced it changed, an adapter of another system is refused, a bad checkpoint is one line, and an
empty or partial hypothesis file is not scored."""

from __future__ import annotations

import pytest
import torch

from reliability_fixtures import assert_one_line_error, make_features, save_checkpoints, train_config

from hdmole.bin import decode, score

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("rel_decode")
    setup = make_features(root)
    setup["ckpt"] = save_checkpoints(root / "exp", setup)
    setup["config"] = {mode: train_config(root / "exp" / mode / "config.yaml", "adapt" if mode != "base" else "base",
                                          setup, None if mode == "base" else mode)
                       for mode in ("base", "hdmole", "lora")}
    setup["root"] = root
    return setup


def decode_args(setup, config: str, *checkpoints, out=None, extra=()):
    out = out or setup["root"] / "out"
    args = ["--config", str(setup["config"][config]), "--data", str(setup["data"]), "--accents", str(setup["accents"]),
            "--out", str(out), "--batch-frames", "2000", "--max-len", "8", *extra]
    for i, path in enumerate(checkpoints):
        args += ["--checkpoint" if i == 0 else "--adapter", str(path)]
    return args


def mark_stale(out):
    """Replace the hypotheses by a marker: if they are still there after a run, the run skipped."""
    lines = (out / "text").read_text(encoding="utf-8").splitlines()
    (out / "text").write_text("".join(f"{line.split()[0]} STALE\n" for line in lines), encoding="utf-8")


def test_decode_redoes_an_output_whose_inputs_changed(setup, capsys):
    out = setup["root"] / "stale"
    ckpt = setup["ckpt"]
    args = decode_args(setup, "hdmole", ckpt["base"], ckpt["hdmole"], out=out)
    assert decode.main(args) == 0
    mark_stale(out)
    assert decode.main(args) == 0  # nothing changed: skipped
    assert "STALE" in (out / "text").read_text() and "skipping" in capsys.readouterr().err
    # A retrained system (a new adapter checkpoint at the same path): decoded again.
    state = torch.load(ckpt["hdmole"], weights_only=False)
    state["model"] = {k: v + 0.01 for k, v in state["model"].items()}
    torch.save(state, ckpt["hdmole"])
    assert decode.main(args) == 0
    assert "STALE" not in (out / "text").read_text()
    assert "checkpoints" in (out / "decode.log").read_text()
    # Another beam: decoded again.
    mark_stale(out)
    assert decode.main(args + ["--beam", "2"]) == 0
    assert "STALE" not in (out / "text").read_text()
    assert "beam 1 -> 2" in (out / "decode.log").read_text()
    # Only the speed changed (threads): skipped.
    mark_stale(out)
    assert decode.main(args + ["--beam", "2", "--threads", "1"]) == 0
    assert "STALE" in (out / "text").read_text()


@pytest.mark.parametrize("config, adapter", [("hdmole", "lora"), ("base", "lora"), ("hdmole", None)])
def test_decode_refuses_an_adapter_that_is_not_the_configs(setup, capsys, config, adapter):
    checkpoints = [setup["ckpt"]["base"]] + ([setup["ckpt"][adapter]] if adapter else [])
    out = setup["root"] / f"mismatch_{config}_{adapter}"
    code = decode.main(decode_args(setup, config, *checkpoints, out=out))
    assert_one_line_error(code, capsys.readouterr().err, setup["config"][config])
    assert not (out / "text").exists()


def test_decode_bad_checkpoints_are_one_line(setup, capsys):
    root, ckpt = setup["root"], setup["ckpt"]
    truncated = root / "cut_short.pt"
    truncated.write_bytes(ckpt["base"].read_bytes()[:5000])
    noise = root / "noise.pt"
    noise.write_bytes(bytes(range(256)) * 8)
    cases = [
        ("base", (truncated,), "truncated or not a torch checkpoint"),
        ("base", (noise,), "not a torch checkpoint"),
        ("base", (root / "missing.pt",), "does not exist"),
        ("hdmole", (ckpt["hdmole"],), "pass the base checkpoint first"),  # an adapter without its base
    ]
    for config, checkpoints, message in cases:
        code = decode.main(decode_args(setup, config, *checkpoints, out=root / f"bad_{checkpoints[0].stem}"))
        err = capsys.readouterr().err
        assert_one_line_error(code, err, checkpoints[0])
        assert message in err


# ---------------------------------------------------------------- score
@pytest.mark.parametrize("lines, message", [([], "is empty"), (["spkA-001 你好"], "has no line for 5 of the 6")])
def test_score_refuses_an_empty_or_partial_hypothesis_file(setup, tmp_path, caplog, lines, message):
    hyp = tmp_path / "hyp"
    hyp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    code = score.main(["--ref", str(setup["data"]), "--hyp", str(hyp), "--out", str(tmp_path / "out")])
    assert code == 1 and f"{hyp} {message}" in caplog.text and "--allow-missing" in caplog.text
    assert not (tmp_path / "out" / "cer").exists()
