"""Real-scale figures for egs/kespeech on one GPU: training steps/s and peak memory of each stage, decoding RTF.

    python -m hdmole.bin.bench_scale --device cuda                       # model_small and model_large
    python -m hdmole.bin.bench_scale --device cuda --models small --batch 16 --seconds 4
    python -m hdmole.bin.bench_scale --device cpu --models tiny          # a smoke run of the same code path

Builds the recipe's models at their real shapes with RANDOM weights (transformers' Whisper and Qwen2 built from
configs with the published models' dimensions: nothing is downloaded), sets each stage up as training does
(egs/kespeech/conf/{base,router,adapt}.yaml loaded by hdmole.train.config, the adapt stage as the hdmole
system, hdmole.train.setup.prepare_model: frozen encoder and LLM, bf16 LLM and autocast), and times
forward + backward + AdamW steps on synthetic batches of real shapes (``--batch`` utterances of ``--seconds``
of audio, ``--chars-per-second`` text tokens per second). Decoding times greedy and beam search through
hdmole.decode.search; a random model rarely emits eos, so every hypothesis runs to the recipe's length limit
for ``--chars-per-second`` (the work of a trained model's hypotheses). The timings are real, the outputs are not.
Prints one line per measurement and writes them to ``--out`` (JSON) when given.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

log = logging.getLogger("hdmole.bench_scale")
RECIPE_CONF = Path(__file__).resolve().parents[2] / "egs" / "kespeech" / "conf"
NUM_ACCENTS = 9  # egs/kespeech: Mandarin + 8 subdialects

# The published models' dimensions (their config.json on the Hugging Face hub), for building them from configs.
WHISPER = {
    "small": {"d_model": 768, "encoder_layers": 12, "encoder_attention_heads": 12, "encoder_ffn_dim": 3072,
              "num_mel_bins": 80, "max_source_positions": 1500},
    "large": {"d_model": 1280, "encoder_layers": 32, "encoder_attention_heads": 20, "encoder_ffn_dim": 5120,
              "num_mel_bins": 128, "max_source_positions": 1500},
    "tiny": {"d_model": 64, "encoder_layers": 2, "encoder_attention_heads": 2, "encoder_ffn_dim": 128,
             "num_mel_bins": 80, "max_source_positions": 1500},
}
QWEN2 = {  # Qwen2-0.5B (tied embeddings) and Qwen2-7B
    "small": {"vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
              "num_attention_heads": 14, "num_key_value_heads": 2, "tie_word_embeddings": True},
    "large": {"vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
              "num_attention_heads": 28, "num_key_value_heads": 4, "tie_word_embeddings": False},
    "tiny": {"vocab_size": 1000, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
             "num_attention_heads": 2, "num_key_value_heads": 1, "tie_word_embeddings": True},
}
MODEL_FILE = {"small": "model_small.yaml", "large": "model_large.yaml", "tiny": "model_small.yaml"}


class _IdTokenizer:
    """What building the model needs of a tokenizer: the vocabulary size and the special ids."""

    def __init__(self, vocab_size: int):
        self.vocab_size, self.pad_id, self.bos_id, self.eos_id = vocab_size, 0, 2, 1

    def encode(self, text: str) -> list[int]:
        return [3 + ord(c) % (self.vocab_size - 3) for c in text]


def model_conf(size: str) -> dict:
    """The recipe's model config for ``size`` with the pre-trained parts replaced by their configs."""
    conf = yaml.safe_load((RECIPE_CONF / MODEL_FILE[size]).read_text())
    conf["encoder"] = {"type": "whisper", "config": dict(WHISPER[size])}
    conf["llm"] = {"type": "qwen2", "dtype": conf["llm"].get("dtype", "bfloat16"),
                   "config": {**QWEN2[size], "max_position_embeddings": 4096, "rope_theta": 1e6}}
    return conf


def stage_config(stage: str, conf: dict, work: Path):
    """The recipe's training config of ``stage`` (base | router | adapt), as hdmole.bin.train loads it."""
    from hdmole.train.config import load_train_config

    model_file = work / "model.yaml"
    model_file.write_text(yaml.safe_dump(conf))
    accents = work / "accents.txt"
    accents.write_text("".join(f"accent{i}\n" for i in range(NUM_ACCENTS)))
    overrides = [f"model={model_file}", "data.train=data/unused", f"data.accents={accents}"]
    if stage == "adapt":
        overrides.append("system=hdmole")
    config, _ = load_train_config(RECIPE_CONF / f"{stage}.yaml", overrides)
    return config


def synthetic_batch(args, mel_bins: int, vocab: int, device: torch.device, g: torch.Generator) -> dict:
    frames = int(args.seconds * 100)
    tokens = max(1, round(args.seconds * args.chars_per_second))
    return {
        "feats": torch.randn(args.batch, frames, mel_bins, generator=g).to(device),
        "feat_lens": torch.full((args.batch,), frames, dtype=torch.long, device=device),
        "text_ids": torch.randint(2, vocab, (args.batch, tokens), generator=g).to(device),
        "text_lens": torch.full((args.batch,), tokens, dtype=torch.long, device=device),
        "accents": torch.randint(0, NUM_ACCENTS, (args.batch,), generator=g).to(device),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def bench_training(size: str, stage: str, args, device: torch.device, work: Path) -> dict:
    from hdmole.models.llm_asr import build_model
    from hdmole.train.setup import prepare_model

    conf = model_conf(size)
    config = stage_config(stage, conf, work)
    torch.manual_seed(0)
    tokenizer = _IdTokenizer(conf["llm"]["config"]["vocab_size"])
    with torch.device(device):  # random init where the model runs: a 7B model initialised on CPU takes minutes
        model = build_model(conf, tokenizer, num_accents=NUM_ACCENTS)
    info = prepare_model(model, config, NUM_ACCENTS)
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    g = torch.Generator().manual_seed(0)
    batch = synthetic_batch(args, conf["encoder"]["config"]["num_mel_bins"], tokenizer.vocab_size, device, g)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    _reset_peak(device)
    times = []
    for step in range(args.warmup + args.steps):
        _sync(device)
        start = time.perf_counter()
        with autocast:
            out = model(batch, compute_asr=stage != "router")
        out["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _sync(device)
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    seconds = sorted(times)[len(times) // 2]
    result = {"model": size, "what": f"train {stage}", "trainable_params": info["trainable_params"],
              "total_params": info["total_params"], "batch": f"{args.batch} x {args.seconds:g} s",
              "s_per_step": seconds, "steps_per_s": 1.0 / seconds, "peak_gib": _peak_gib(device)}
    del model, optimizer, params, out
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def bench_decoding(size: str, args, device: torch.device) -> list[dict]:
    from hdmole.decode.search import decode_batch_ids
    from hdmole.models.llm_asr import build_model

    conf = model_conf(size)
    tokenizer = _IdTokenizer(conf["llm"]["config"]["vocab_size"])
    torch.manual_seed(0)
    with torch.device(device):
        model = build_model(conf, tokenizer, num_accents=NUM_ACCENTS)
    model.to(device).eval()
    g = torch.Generator().manual_seed(1)
    batch = synthetic_batch(args, conf["encoder"]["config"]["num_mel_bins"], tokenizer.vocab_size, device, g)
    audio = args.batch * args.seconds
    stack = conf.get("projector", {}).get("stack", 1)
    ratio = args.chars_per_second / (50.0 / stack)  # hypothesis tokens per speech embedding (Whisper: 50 Hz)
    results = []
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    for beam in args.beams:
        _reset_peak(device)
        best, tokens = float("inf"), 0
        with torch.no_grad(), autocast:
            for _ in range(1 + args.decode_repeats):  # the first run warms up kernels and caches
                _sync(device)
                start = time.perf_counter()
                hyps = decode_batch_ids(model, batch, beam=beam, max_len_ratio=ratio)
                _sync(device)
                best = min(best, time.perf_counter() - start)
                tokens = sum(len(h) for h in hyps)
        results.append({"model": size, "what": f"decode beam {beam}", "batch": f"{args.batch} x {args.seconds:g} s",
                        "seconds": best, "rtf": best / audio, "tokens": tokens, "peak_gib": _peak_gib(device)})
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return results


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m hdmole.bin.bench_scale", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--models", nargs="+", default=["small", "large"], choices=sorted(WHISPER))
    p.add_argument("--stages", nargs="+", default=["base", "router", "adapt"], choices=["base", "router", "adapt"])
    p.add_argument("--batch", type=int, default=16, help="utterances per training/decoding batch")
    p.add_argument("--seconds", type=float, default=5.0, help="audio per utterance (KeSpeech: about 3-6 s)")
    p.add_argument("--chars-per-second", type=float, default=4.0, help="transcript tokens per audio second")
    p.add_argument("--warmup", type=int, default=2, help="untimed training steps first")
    p.add_argument("--steps", type=int, default=5, help="timed training steps (the median is reported)")
    p.add_argument("--beams", type=int, nargs="+", default=[1, 4])
    p.add_argument("--decode-repeats", type=int, default=1, help="timed decoding runs (the best is reported)")
    p.add_argument("--out", type=Path, help="also write the results as JSON here")
    return p.parse_args(argv)


def _line(r: dict) -> str:
    peak = f"{r['peak_gib']:.1f} GiB" if r.get("peak_gib") is not None else "-"
    if "rtf" in r:
        return f"{r['model']:<6} {r['what']:<14} {r['batch']:<10} {r['seconds']:8.2f} s  RTF {r['rtf']:.4f}  peak {peak}"
    return (f"{r['model']:<6} {r['what']:<14} {r['batch']:<10} {r['s_per_step']:8.3f} s/step ({r['steps_per_s']:.2f} "
            f"steps/s)  trainable {r['trainable_params']:,} of {r['total_params']:,}  peak {peak}")


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("hdmole.bin.bench_scale: --device cuda but no GPU is visible; use --device cpu --models tiny for a "
              "smoke run", file=sys.stderr)
        return 1
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"hdmole.bin.bench_scale on {name}, torch {torch.__version__}; random weights, real shapes")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.models:
            for stage in args.stages:
                results.append(bench_training(size, stage, args, device, Path(tmp)))
                print(_line(results[-1]), flush=True)
            for r in bench_decoding(size, args, device):
                results.append(r)
                print(_line(r), flush=True)
    if args.out:
        args.out.write_text(json.dumps({"device": name, "torch": torch.__version__, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
