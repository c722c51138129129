"""End to end on a tiny synthesized corpus: fbank -> lm -> base -> router -> adapt (every system) ->
decode -> score -> routing stats -> report, each stage writing what it should; plus a non-finite loss and
config errors. Resume after a real SIGKILL and DDP are tested on the trainer's own corpus
(test_train_resume.py, test_train_equivalence.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from report_fixtures import results_table
from speech_fixtures import make_corpus

from hdmole.bin import compute_cmvn, compute_fbank, decode, report, routing_stats, score, train, train_tokenizer

pytestmark = pytest.mark.slow  # the module's corpus and its lm/base/router stages: about a minute

MODEL = {
    "encoder": {"type": "conformer", "input_size": 80, "output_size": 32, "attention_heads": 2, "linear_units": 64,
                "num_blocks": 1, "input_layer": "conv2d"},
    "projector": {"stack": 2, "hidden": 48},
    "llm": {"type": "qwen2", "config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                                        "num_attention_heads": 2, "num_key_value_heads": 1}},
    "global_router": {"hidden": 16},
    "ctc_weight": 0.3,
    "accent_weight": 0.1,
    "prompt": "",
}
SYSTEMS = {
    "full_ft": {"adapter": {"system": "full_ft"}, "trainable": ["projector"]},
    "lora": {"adapter": {"system": "lora", "config": {"rank": 8}}},
    "mole_top1": {"adapter": {"system": "mole", "config": {"rank": 4, "gating": "topk", "top_k": 1}}},
    "hdmole": {"adapter": {"system": "hdmole", "config": {"rank": 4, "alpha": 8}}},
}


class Pipeline:
    def __init__(self, root: Path):
        self.root = root
        self.exp = root / "exp"
        self.accents = root / "accents.txt"

    def config(self, name: str, mode: str, **extra) -> Path:
        conf = {
            "mode": mode, "model": MODEL,
            "tokenizer": {"type": "sentencepiece", "model": str(self.root / "lang" / "char.model")},
            "data": {"train": str(self.root / "train"), "dev": str(self.root / "test"), "accents": str(self.accents),
                     "cmvn": str(self.root / "cmvn.json"), "max_frames": 2500},
            "optim": {"lr": 3e-3, "max_steps": 8, "warmup_steps": 2},
            "checkpoint": {"every_steps": 4}, "log_every": 2,
        }
        for key, value in extra.items():
            conf[key] = {**conf[key], **value} if isinstance(value, dict) and key in conf else value
        path = self.root / "conf" / f"{name}.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(yaml.safe_dump(conf, allow_unicode=True))
        return path

    def train(self, name: str, mode: str, **extra) -> Path:
        exp_dir = self.exp / name
        assert train.main(["--config", str(self.config(name, mode, **extra)), "--exp-dir", str(exp_dir)]) == 0
        return exp_dir

    def adapt(self, system: str, **extra) -> Path:
        init = [str(self.exp / "base" / "best.pt"), str(self.exp / "router" / "best.pt")]
        return self.train(system, "adapt", init=init, optim={"max_steps": 6}, **SYSTEMS[system], **extra)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Pipeline:
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("pipeline")
    dirs = make_corpus(root)
    for name, d in dirs.items():
        assert compute_fbank.main(["--nj", "1", str(d), str(root / "fbank" / name)]) == 0
    assert compute_cmvn.main([str(dirs["train"]), str(root / "cmvn.json")]) == 0
    assert train_tokenizer.main([str(dirs["train"]), str(root / "lang" / "char")]) == 0
    (root / "lm.txt").write_text("".join(line.split(" ", 1)[1] for line in (dirs["train"] / "text").open()))
    p = Pipeline(root)
    p.train("lm", "lm", data={"train": str(root / "lm.txt"), "dev": str(root / "lm.txt"), "max_frames": 300,
                              "lm_prefix": {"repeat_prob": 0.3}},  # the listening task (no lexicon: no homophones)
            optim={"max_steps": 12})
    p.train("base", "base", init=[str(p.exp / "lm" / "best.pt")], trainable=["encoder", "projector", "ctc", "llm"],
            optim={"max_steps": 12})
    p.train("router", "router", init=[str(p.exp / "base" / "best.pt")], checkpoint={"metric": "acc"})
    return p


def read_log(exp_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (exp_dir / "train_log.jsonl").read_text().splitlines()]


def test_stages_write_what_they_should(pipeline):
    for name in ("lm", "base", "router"):
        exp_dir = pipeline.exp / name
        for f in ("config.yaml", "cmd", "train.log", "train_log.jsonl", "train_summary.json", "best.pt", "last.pt"):
            assert (exp_dir / f).is_file(), f"{name}/{f}"
        assert "hdmole.bin.train" in (exp_dir / "cmd").read_text()
    losses = [e["loss"] for e in read_log(pipeline.exp / "lm") if "loss" in e]
    assert losses[-1] < losses[0]
    losses = [e["loss"] for e in read_log(pipeline.exp / "base") if "loss" in e]
    assert losses[-1] < losses[0], "the base ASR training loss should fall"
    lm_state = torch.load(pipeline.exp / "lm" / "best.pt", weights_only=False)["model"]
    assert lm_state and all(k.startswith("llm.") for k in lm_state)
    router_state = torch.load(pipeline.exp / "router" / "best.pt", weights_only=False)["model"]
    assert router_state and all(k.startswith("global_router.") for k in router_state)


def test_router_dev_numbers_are_those_of_the_saved_router(pipeline):
    """The accent-ID accuracy and loss the router stage reports (train_summary.json, the last validation)
    are recomputed from its last checkpoint on the dev set: per utterance, over the whole set."""
    from hdmole.data import build_dataloader
    from hdmole.models.checkpoint import load_model_for_inference

    exp = pipeline.exp / "router"
    summary = json.loads((exp / "train_summary.json").read_text())
    assert summary["steps"] == torch.load(exp / "last.pt", weights_only=False)["step"] == 8
    model = load_model_for_inference(exp / "config.yaml", [pipeline.exp / "base" / "best.pt", exp / "last.pt"],
                                     num_accents=2)
    loader = build_dataloader(pipeline.root / "test", pipeline.accents, max_frames=2500, shuffle=False, seed=0,
                              cmvn=pipeline.root / "cmvn.json")
    correct = total = 0
    loss = 0.0
    with torch.no_grad():
        for batch in loader:
            logits = model.route_logits(*model.encode(batch["feats"], batch["feat_lens"]))
            correct += int((logits.argmax(-1) == batch["accents"]).sum())
            loss += float(torch.nn.functional.cross_entropy(logits, batch["accents"], reduction="sum"))
            total += len(batch["utt_ids"])
    assert total == 24
    assert summary["dev"]["dev_acc"] == pytest.approx(correct / total, abs=1e-6)
    assert summary["dev"]["dev_loss"] == pytest.approx(loss / total, rel=1e-5)


def test_rerun_of_finished_stage_is_skipped(pipeline, capsys):
    config = pipeline.root / "conf" / "router.yaml"
    before = (pipeline.exp / "router" / "best.pt").stat().st_mtime_ns
    assert train.main(["--config", str(config), "--exp-dir", str(pipeline.exp / "router")]) == 0
    assert "already trained" in capsys.readouterr().out
    assert (pipeline.exp / "router" / "best.pt").stat().st_mtime_ns == before


@pytest.mark.parametrize("system", list(SYSTEMS))
def test_adapt_system_saves_only_what_it_trains(pipeline, system):
    exp_dir = pipeline.adapt(system)
    ckpt = torch.load(exp_dir / "best.pt", weights_only=False)
    keys = list(ckpt["model"])
    summary = json.loads((exp_dir / "train_summary.json").read_text())
    projector_size = sum(t.numel() for k, t in torch.load(pipeline.exp / "base" / "best.pt", weights_only=False)["model"].items()
                         if k.startswith("projector."))
    assert summary["full_ft_params"] == projector_size
    if system == "full_ft":
        assert keys and all(k.startswith(("projector.", "global_router.")) for k in keys)
        assert summary["trainable_params"] == projector_size
    else:
        assert all(".hdmole_" in k or k.startswith("global_router.") or "hdmole_" in k for k in keys), keys[:5]
        assert ckpt["adapter_config"] and ckpt["target_modules"] == ["projector.linear1", "projector.linear2"]
        assert 0 < summary["trainable_params"] < projector_size
    if system in ("mole_top1", "hdmole"):
        routing = [e["routing"] for e in read_log(exp_dir) if "routing" in e]
        assert routing and "projector.linear1" in routing[-1]
        if system == "mole_top1":
            assert routing[-1]["projector.linear1"]["mean_active_experts"] == pytest.approx(1.0)


def test_decode_score_routing_and_report(pipeline):
    for system in ("hdmole", "lora"):
        if not (pipeline.exp / system / "best.pt").exists():
            pipeline.adapt(system)
    test = pipeline.root / "test"
    num_utts = len((test / "text").read_text().splitlines())
    for system in ("base", "lora", "hdmole"):
        out = pipeline.exp / system / "decode_test"
        args = ["--config", str(pipeline.exp / system / "config.yaml"), "--checkpoint", str(pipeline.exp / "base" / "best.pt"),
                "--data", str(test), "--accents", str(pipeline.accents), "--out", str(out)]
        if system != "base":
            args += ["--adapter", str(pipeline.exp / system / "best.pt")]
        assert decode.main(args) == 0
        hyps = (out / "text").read_text().splitlines()
        assert len(hyps) == num_utts
        assert score.main(["--ref", str(test), "--hyp", str(out / "text"), "--out", str(out)]) == 0
        cer = json.loads((out / "cer.json").read_text())
        assert set(cer["per_accent"]) == {"Mandarin", "Dental"}
    assert routing_stats.main(["--config", str(pipeline.exp / "hdmole" / "config.yaml"),
                               "--checkpoint", str(pipeline.exp / "base" / "best.pt"),
                               "--checkpoint", str(pipeline.exp / "hdmole" / "best.pt"),
                               "--data", str(test), "--accents", str(pipeline.accents),
                               "--out", str(pipeline.exp / "hdmole" / "routing_test.json")]) == 0
    stats = json.loads((pipeline.exp / "hdmole" / "routing_test.json").read_text())
    assert set(stats["projector.linear1"]["by_domain"]) == {"Mandarin", "Dental"}
    out = pipeline.root / "RESULTS.md"
    assert report.main(["--exp-dir", str(pipeline.exp), "--systems", "base", "lora", "hdmole", "--std-set", "test",
                        "--accent-sets", "test", "--routing-set", "test", "--out", str(out)]) == 0
    table = results_table(out.read_text())
    assert list(table) == ["base", "lora", "hdmole"]
    for system in ("base", "lora", "hdmole"):  # every CER cell is the cer.json it comes from
        cer = json.loads((pipeline.exp / system / "decode_test" / "cer.json").read_text())["total"]["cer"]
        assert table[system]["test"] == table[system]["avg accent"] == f"{cer:.2f}"
    assert (pipeline.root / "routing_hdmole.png").stat().st_size > 1000
    assert (pipeline.root / "thresholds_hdmole.png").stat().st_size > 1000


def test_non_finite_loss_stops_with_checkpoint(pipeline, monkeypatch):
    from hdmole.train.trainer import Trainer

    original = Trainer.forward
    calls = {"n": 0}

    def nan_forward(self, net, batch, *args):
        out = original(self, net, batch, *args)
        if net.training:
            calls["n"] += 1
            if calls["n"] == 3:
                out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(Trainer, "forward", nan_forward)
    config = pipeline.config("nan", "adapt", init=[str(pipeline.exp / "base" / "best.pt"), str(pipeline.exp / "router" / "best.pt")],
                             **SYSTEMS["lora"])
    assert train.main(["--config", str(config), "--exp-dir", str(pipeline.exp / "nan")]) == 1
    log = (pipeline.exp / "nan" / "train.log").read_text()
    assert "non-finite loss" in log and "ckpt-2.pt" in log
    assert (pipeline.exp / "nan" / "ckpt-2.pt").is_file()


@pytest.mark.parametrize("change, message", [
    ({"optim": {"lrr": 1}}, "unknown key optim.lrr"),
    ({"adapter": {"system": "bogus"}}, "adapter.system must be one of"),
    ({"adapter": {"system": "hdmole", "config": {"rnak": 4}}}, "rnak"),
])
def test_config_errors_are_clear(pipeline, change, message, capsys, tmp_path):
    config = pipeline.config("bad", "adapt", init=[str(pipeline.exp / "base" / "best.pt")], **change)
    code = train.main(["--config", str(config), "--exp-dir", str(tmp_path / "bad")])
    assert code != 0
    log_file = tmp_path / "bad" / "train.log"
    said = capsys.readouterr().err + (log_file.read_text() if log_file.exists() else "")
    assert message in said
