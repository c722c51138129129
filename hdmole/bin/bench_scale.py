"""Real-scale figures for egs/kespeech on one GPU: training steps/s and peak memory of each stage, decoding RTF.

    python -m hdmole.bin.bench_scale --device cuda                       # model_small and model_large
    python -m hdmole.bin.bench_scale --device cuda --models small --batch 16 --seconds 4
    python -m hdmole.bin.bench_scale --device cpu --models tiny          # a smoke run of the same code path
    python -m hdmole.bin.bench_scale --device cuda --models large --pretrained-dir /models   # real weights
    torchrun --nproc_per_node 8 -m hdmole.bin.bench_scale --models large --stages adapt      # 1 -> 8 GPU scaling
    python -m hdmole.bin.bench_scale --loader data/whisper128/train_kespeech --accents data/accents.txt \
        --num-workers 8                                                  # the data loader alone: audio s per s

By default every measurement runs at the recipe's two batch shapes (``--shapes``): its typical batch (the
training config's ``data.max_frames``, 200 s per GPU, filled with 5 s utterances: 40 x 5 s) and its longest
bucket (30 s utterances: 6 x 30 s), which sets the peak memory.

Builds the recipe's models at their real shapes with RANDOM weights (transformers' Whisper and Qwen2 built from
configs with the published models' dimensions: nothing is downloaded), sets each stage up as training does
(egs/kespeech/conf/{base,router,adapt}.yaml loaded by hdmole.train.config, the adapt stage as the hdmole
system, hdmole.train.setup.prepare_model: frozen encoder and LLM, bf16 LLM and autocast), and times
forward + backward + AdamW steps on synthetic batches of real shapes (``--batch`` utterances of ``--seconds``
of audio, ``--chars-per-second`` text tokens per second). Decoding times greedy and beam search through
hdmole.decode.search; a random model rarely emits eos, so every hypothesis runs to the recipe's length limit
for ``--chars-per-second`` (the work of a trained model's hypotheses). The timings are real, the outputs are not.
Prints one line per measurement and writes them to ``--out`` (JSON) when given.

``--pretrained-dir DIR`` loads the real weights through the recipe's loading path (``from_pretrained`` with the
configs' load dtypes) from ``DIR/<name>`` (e.g. ``DIR/whisper-large-v3``, ``DIR/Qwen2-7B``). Under ``torchrun``
each training stage is timed twice: by rank 0 alone (the others wait), then by every rank with DDP on its own
batch; the report gives the N-process throughput relative to N x the single process's (scaling efficiency).
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


def model_conf(size: str, pretrained_dir: Path | None = None) -> dict:
    """The recipe's model config for ``size``: with ``pretrained_dir`` the pre-trained parts are loaded from
    ``pretrained_dir/<the hub name's last part>``, otherwise they are replaced by their configs (random
    weights). Either way in the recipe's load dtypes."""
    conf = yaml.safe_load((RECIPE_CONF / MODEL_FILE[size]).read_text())
    if pretrained_dir is not None:
        for part in ("encoder", "llm"):
            conf[part]["name_or_path"] = str(Path(pretrained_dir) / conf[part]["name_or_path"].rsplit("/", 1)[-1])
        return conf
    conf["encoder"] = {"type": "whisper", "config": dict(WHISPER[size]), "dtype": conf["encoder"].get("dtype", "float32")}
    conf["llm"] = {"type": "qwen2", "dtype": conf["llm"].get("dtype", "bfloat16"),
                   "config": {**QWEN2[size], "max_position_embeddings": 4096, "rope_theta": 1e6}}
    return conf


def _mel_bins_and_vocab(model) -> tuple[int, int]:
    return model.encoder.input_size, model.llm.get_input_embeddings().num_embeddings


def recipe_shapes(max_frames: int) -> list[tuple[int, float]]:
    """(utterances, seconds) of the recipe's typical batch (5 s utterances) and of its longest bucket (30 s)."""
    return [(max(1, max_frames // 500), 5.0), (max(1, max_frames // 3000), 30.0)]


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


def synthetic_batch(args, shape: tuple[int, float], mel_bins: int, vocab: int, device: torch.device,
                    g: torch.Generator) -> dict:
    batch, seconds = shape
    frames = int(seconds * 100)
    tokens = max(1, round(seconds * args.chars_per_second))
    return {
        "feats": torch.randn(batch, frames, mel_bins, generator=g).to(device),
        "feat_lens": torch.full((batch,), frames, dtype=torch.long, device=device),
        "text_ids": torch.randint(2, vocab, (batch, tokens), generator=g).to(device),
        "text_lens": torch.full((batch,), tokens, dtype=torch.long, device=device),
        "accents": torch.randint(0, NUM_ACCENTS, (batch,), generator=g).to(device),
    }


def _shape_name(shape: tuple[int, float]) -> str:
    return f"{shape[0]} x {shape[1]:g} s"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def _vocab_size(conf: dict) -> int:
    if "config" in conf["llm"]:
        return conf["llm"]["config"]["vocab_size"]
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(conf["llm"]["name_or_path"]).vocab_size


def _build(conf: dict, device: torch.device):
    from hdmole.models.build import build_model

    torch.manual_seed(0)
    tokenizer = _IdTokenizer(_vocab_size(conf))
    with torch.device(device):  # random init where the model runs: a 7B model initialised on CPU takes minutes
        return build_model(conf, tokenizer, num_accents=NUM_ACCENTS), tokenizer


def _time_steps(model, batch: dict, stage: str, optimizer, args, device: torch.device, precision: str) -> float:
    """The median seconds of one training step (forward, backward, AdamW) of ``model`` on ``batch``."""
    from hdmole.models.precision import autocast

    times = []
    for step in range(args.warmup + args.steps):
        _sync(device)
        start = time.perf_counter()
        with autocast(device, precision):
            out = model(batch, compute_asr=stage != "router")
        out["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _sync(device)
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def bench_training(size: str, stage: str, args, device: torch.device, work: Path, world: int = 1) -> list[dict]:
    """One result per batch shape. With ``world`` > 1 (torchrun): rank 0 alone first, then every rank (DDP)."""
    import torch.distributed as dist

    from hdmole.train.setup import prepare_model

    conf = model_conf(size, args.pretrained_dir)
    config = stage_config(stage, conf, work)
    model, tokenizer = _build(conf, device)
    info = prepare_model(model, config, NUM_ACCENTS)
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    ddp = None
    mel_bins, vocab = _mel_bins_and_vocab(model)
    rank = dist.get_rank() if world > 1 else 0
    shapes = args.shape_list or recipe_shapes(config.data.max_frames)
    batches = [synthetic_batch(args, shape, mel_bins, vocab, device, torch.Generator().manual_seed(rank))
               for shape in shapes]
    results = []
    for shape, batch in zip(shapes, batches):  # one process (rank 0 alone under torchrun; the others wait)
        _reset_peak(device)
        single = _time_steps(model, batch, stage, optimizer, args, device, config.dtype) if rank == 0 else None
        results.append({"model": size, "what": f"train {stage}", "trainable_params": info["trainable_params"],
                        "total_params": info["total_params"], "batch": _shape_name(shape), "s_per_step": single,
                        "steps_per_s": 1.0 / single if single else None, "peak_gib": _peak_gib(device),
                        "dtype": config.dtype})
    if world > 1:  # then every rank on its own batch, gradients all-reduced (wrapped only now: DDP's hooks
        # would wait for the other ranks in the single-process steps)
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        for result, batch in zip(results, batches):
            many = _time_steps(ddp, batch, stage, optimizer, args, device, config.dtype)
            single = result["s_per_step"]
            # N ranks do N batches in `many` seconds, one process one batch in `single`: efficiency single / many
            result.update(processes=world, s_per_step_ddp=many, scaling_efficiency=single / many if single else None)
    del model, optimizer, params, ddp
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return results


def bench_decoding(size: str, args, device: torch.device) -> list[dict]:
    from hdmole.decode.search import decode_batch_ids
    from hdmole.models.precision import autocast

    conf = model_conf(size, args.pretrained_dir)
    model, tokenizer = _build(conf, device)
    model.to(device).eval()
    mel_bins, vocab = _mel_bins_and_vocab(model)
    stack = conf.get("projector", {}).get("stack", 1)
    ratio = args.chars_per_second / (50.0 / stack)  # hypothesis tokens per speech embedding (Whisper: 50 Hz)
    precision = yaml.safe_load((RECIPE_CONF / "adapt.yaml").read_text()).get("dtype", "float32")  # as decode.py
    results = []
    for shape in args.shape_list or [(max(1, args.decode_batch_frames // 500), 5.0)]:
        g = torch.Generator().manual_seed(1)
        batch = synthetic_batch(args, shape, mel_bins, vocab, device, g)
        audio = shape[0] * shape[1]
        for beam in args.beams:
            _reset_peak(device)
            best, tokens = float("inf"), 0
            with torch.no_grad(), autocast(device, precision):
                for _ in range(1 + args.decode_repeats):  # the first run warms up kernels and caches
                    _sync(device)
                    start = time.perf_counter()
                    hyps = decode_batch_ids(model, batch, beam=beam, max_len_ratio=ratio)
                    _sync(device)
                    best = min(best, time.perf_counter() - start)
                    tokens = sum(len(h) for h in hyps)
            results.append({"model": size, "what": f"decode beam {beam}", "batch": _shape_name(shape),
                            "seconds": best, "rtf": best / audio, "tokens": tokens, "peak_gib": _peak_gib(device)})
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return results


def bench_loader(args) -> dict:
    """The training data loader alone (raw audio -> features in its workers, bucketing, padding): batches,
    utterances and seconds of audio it delivers per wall second, over ``--loader-batches`` batches."""
    from hdmole.data import AccentList, build_dataloader

    loader = build_dataloader(args.loader, AccentList.load(args.accents), max_frames=args.loader_max_frames,
                              shuffle=True, seed=0, num_workers=args.num_workers)
    loader.batch_sampler.set_epoch(0)
    batches = utterances = frames = 0
    start = time.perf_counter()
    for batch in loader:
        batches += 1
        utterances += len(batch["utt_ids"])
        frames += int(batch["feat_lens"].sum())
        if batches >= args.loader_batches:
            break
    seconds = time.perf_counter() - start
    return {"what": "loader", "data": str(args.loader), "num_workers": args.num_workers, "batches": batches,
            "utterances": utterances, "seconds": seconds, "audio_s_per_s": frames / 100.0 / max(seconds, 1e-9),
            "batches_per_s": batches / max(seconds, 1e-9)}


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m hdmole.bin.bench_scale", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--models", nargs="+", default=["small", "large"], choices=sorted(WHISPER))
    p.add_argument("--stages", nargs="+", default=["base", "router", "adapt"], choices=["base", "router", "adapt"])
    p.add_argument("--shapes", nargs="+", default=None, metavar="BxS",
                   help="batch shapes, utterances x seconds (e.g. 40x5 6x30); default: the recipe's typical batch and "
                        "its longest bucket at data.max_frames (training) and --decode-batch-frames (decoding)")
    p.add_argument("--batch", type=int, default=None, help="one shape: utterances per batch (default 16 with --seconds)")
    p.add_argument("--seconds", type=float, default=None, help="one shape: audio per utterance (default 5)")
    p.add_argument("--decode-batch-frames", type=int, default=20000, help="the recipe's decoding batch (its default)")
    p.add_argument("--pretrained-dir", type=Path, default=None,
                   help="load the real weights from DIR/whisper-... and DIR/Qwen2-... (from_pretrained) instead of "
                        "random ones")
    p.add_argument("--chars-per-second", type=float, default=4.0, help="transcript tokens per audio second")
    p.add_argument("--warmup", type=int, default=2, help="untimed training steps first")
    p.add_argument("--steps", type=int, default=5, help="timed training steps (the median is reported)")
    p.add_argument("--beams", type=int, nargs="+", default=[1, 4])
    p.add_argument("--decode-repeats", type=int, default=1, help="timed decoding runs (the best is reported)")
    p.add_argument("--loader", type=Path, default=None,
                   help="measure only the data loader on this data dir (raw or dumped features), with --accents")
    p.add_argument("--accents", type=Path, default=None, help="accents.txt of --loader's data dir")
    p.add_argument("--num-workers", type=int, default=4, help="--loader: loader worker processes")
    p.add_argument("--loader-batches", type=int, default=200, help="--loader: batches to time")
    p.add_argument("--loader-max-frames", type=int, default=20000, help="--loader: the batch (data.max_frames)")
    p.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = p.parse_args(argv)
    if args.loader is not None and args.accents is None:
        p.error("--loader needs --accents (the accents.txt of its data dir)")
    args.shape_list = None
    if args.shapes:
        try:
            args.shape_list = [(int(b), float(sec)) for b, sec in (shape.lower().split("x") for shape in args.shapes)]
        except ValueError:
            p.error(f"--shapes {' '.join(args.shapes)}: expected utterances x seconds, e.g. 40x5 6x30")
    elif args.batch is not None or args.seconds is not None:
        args.shape_list = [(args.batch or 16, args.seconds or 5.0)]
    return args


def _line(r: dict) -> str:
    peak = f"{r['peak_gib']:.1f} GiB" if r.get("peak_gib") is not None else "-"
    if "rtf" in r:
        return f"{r['model']:<6} {r['what']:<14} {r['batch']:<10} {r['seconds']:8.2f} s  RTF {r['rtf']:.4f}  peak {peak}"
    line = (f"{r['model']:<6} {r['what']:<14} {r['batch']:<10} {r['s_per_step']:8.3f} s/step ({r['steps_per_s']:.2f} "
            f"steps/s)  trainable {r['trainable_params']:,} of {r['total_params']:,}  peak {peak}")
    if "processes" in r:
        line += (f"  | {r['processes']} processes: {r['s_per_step_ddp']:.3f} s/step, scaling 1 -> {r['processes']}: "
                 f"{r['scaling_efficiency']:.0%} efficient ({r['processes'] * r['scaling_efficiency']:.2f}x the throughput)")
    return line


def main(argv=None) -> int:
    import os

    import torch.distributed as dist

    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.loader is not None:
        result = bench_loader(args)
        print(f"loader {result['data']}: {result['num_workers']} workers, {result['batches']} batches "
              f"({result['utterances']} utterances) in {result['seconds']:.1f} s: {result['audio_s_per_s']:.0f} s of "
              f"audio per s, {result['batches_per_s']:.2f} batches/s", flush=True)
        if args.out:
            args.out.write_text(json.dumps({"results": [result]}, indent=1))
        return 0
    world, local_rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("hdmole.bin.bench_scale: --device cuda but no GPU is visible; use --device cpu --models tiny for a "
              "smoke run", file=sys.stderr)
        return 1
    if world > 1:  # torchrun: one process per GPU
        if device.type == "cuda":
            device = torch.device(f"cuda:{local_rank}")
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    main_rank = not dist.is_initialized() or dist.get_rank() == 0
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    weights = f"weights from {args.pretrained_dir}" if args.pretrained_dir else "random weights, real shapes"
    if main_rank:
        print(f"hdmole.bin.bench_scale on {world} x {name}, torch {torch.__version__}; {weights}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.models:
            for stage in args.stages:
                for r in bench_training(size, stage, args, device, Path(tmp), world):
                    results.append(r)
                    if main_rank:
                        print(_line(r), flush=True)
            if main_rank:  # decoding is one process's (a decoding job per GPU: hdmole.bin.decode)
                for r in bench_decoding(size, args, device):
                    results.append(r)
                    print(_line(r), flush=True)
            if world > 1:
                dist.barrier()
    if args.out and main_rank:
        args.out.write_text(json.dumps({"device": name, "processes": world, "torch": torch.__version__,
                                        "weights": str(args.pretrained_dir or "random"), "results": results}, indent=1))
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
