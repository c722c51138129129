"""Benchmark HDMoLELinear against peft LoRA of the same total rank and against a per-expert loop.

    python -m hdmole.bin.bench_layer                      # the issue's shapes: 6400->2048->3584, 8 x 150
    python -m hdmole.bin.bench_layer --batch 2 --tokens 100 --repeats 3

Times forward + backward (base frozen everywhere) of a projector-like nn.Sequential(Linear, ReLU, Linear)
adapted three ways, measured side by side in interleaved rounds (so background load hits all three
alike; torch.utils.benchmark times one statement at a time, hence the hand-written loop), and prints
median times and the ratios HDMoLE / peft (target <= 1.2) and loop / HDMoLE (target >= 2), for the
whole step and for the adapter share alone (step time minus that of the frozen base model, which is
run with a trainable scale after each linear so that it backpropagates exactly as far as the adapters).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import statistics
import time

import torch
from torch import nn
from tqdm import tqdm

from hdmole.nn import HDMoLEConfig, HDMoLELinear, global_routing, inject, mark_trainable, reference_forward

log = logging.getLogger("hdmole.bench_layer")


class _LoopLinear(nn.Module):
    """Runs an HDMoLELinear through the naive per-expert loop (same parameters, same routing)."""

    def __init__(self, layer: HDMoLELinear) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return reference_forward(self.layer, x)


class _TrainableScale(nn.Module):
    """x * s with a trainable scalar s = 1: makes the frozen base model backpropagate to each linear's
    output exactly as the adapted models must, so its time is the base share of theirs."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


def parse_shapes(text: str) -> list[tuple[int, int]]:
    try:
        pairs = [tuple(int(v) for v in item.split("x")) for item in text.split(",")]
    except ValueError:
        raise SystemExit(f"--shapes: expected e.g. 6400x2048,2048x3584, got {text!r}") from None
    for (_, d_out), (d_in, _) in zip(pairs, pairs[1:]):
        if d_out != d_in:
            raise SystemExit(f"--shapes: consecutive layers must chain (d_out {d_out} != next d_in {d_in})")
    return pairs


def build_models(args: argparse.Namespace, device: torch.device) -> dict[str, nn.Module]:
    from peft import LoraConfig, get_peft_model

    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(parse_shapes(args.shapes)):
        layers += [nn.Linear(d_in, d_out), nn.ReLU()] if i < len(parse_shapes(args.shapes)) - 1 else [nn.Linear(d_in, d_out)]
    base = nn.Sequential(*layers).to(device)
    targets = [str(i) for i, m in enumerate(base) if isinstance(m, nn.Linear)]

    config = HDMoLEConfig(rank=args.rank, alpha=2 * args.rank, num_domains=args.experts, experts_per_domain=1,
                          routing="hierarchical", combine="product", gating="threshold")
    hdmole = copy.deepcopy(base)
    inject(hdmole, config, targets)
    mark_trainable(hdmole)
    with torch.no_grad():  # non-zero B so every path does its real work
        for name, param in hdmole.named_parameters():
            if name.endswith("hdmole_lora_B"):
                param.normal_(std=0.01)

    loop = copy.deepcopy(hdmole)
    for name in targets:
        setattr(loop, name, _LoopLinear(getattr(loop, name)))

    total_rank = args.experts * args.rank
    lora_config = LoraConfig(r=total_rank, lora_alpha=2 * total_rank, lora_dropout=0.0, target_modules=targets)
    peft_model = get_peft_model(copy.deepcopy(base), lora_config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.01)
    reference = nn.Sequential(*[
        nn.Sequential(m, _TrainableScale()) if isinstance(m, nn.Linear) else m for m in copy.deepcopy(base)
    ])
    reference.requires_grad_(False)
    for module in reference.modules():
        if isinstance(module, _TrainableScale):
            module.scale.requires_grad_(True)
    return {"base": reference, "hdmole": hdmole, "peft_lora": peft_model, "loop": loop}


def time_step(model: nn.Module, x: torch.Tensor, g: torch.Tensor, device: torch.device) -> float:
    model.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    context = global_routing(model, g) if any(isinstance(m, HDMoLELinear) for m in model.modules()) else None
    if context is not None:
        with context:
            out = model(x)
    else:
        out = model(x)
    out.float().square().mean().backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8, help="utterances per batch (default 8)")
    parser.add_argument("--tokens", type=int, default=150, help="tokens per utterance (default 150)")
    parser.add_argument("--shapes", default="6400x2048,2048x3584",
                        help="chained linear shapes d_in x d_out (default: projector-like 1280*5->2048->3584)")
    parser.add_argument("--experts", type=int, default=8, help="E, one per domain (default 8)")
    parser.add_argument("--rank", type=int, default=16, help="r per expert (default 16); peft gets E*r")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a shared CPU, OpenMP threads spin-wait on each other "
                        "and swamp the timings; 0 leaves torch's default)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--log", help="log file (default: log to stderr only)")
    args = parser.parse_args(argv)

    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if args.log:
        handlers.append(logging.FileHandler(args.log))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", handlers=handlers)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    models = build_models(args, device)
    d_in = parse_shapes(args.shapes)[0][0]
    x = torch.randn(args.batch, args.tokens, d_in, device=device)
    g = torch.softmax(2 * torch.randn(args.batch, args.experts, device=device), dim=-1)
    log.info("shapes %s, batch %d x %d tokens, E=%d r=%d (peft rank %d), threads %d, device %s",
             args.shapes, args.batch, args.tokens, args.experts, args.rank, args.experts * args.rank,
             torch.get_num_threads(), device)

    times: dict[str, list[float]] = {name: [] for name in models}
    for round_index in tqdm(range(args.warmup + args.repeats), desc="rounds"):
        for name, model in models.items():
            seconds = time_step(model, x, g, device)
            if round_index >= args.warmup:
                times[name].append(seconds)

    median = {name: statistics.median(values) for name, values in times.items()}
    trainable = {name: sum(p.numel() for p in m.parameters() if p.requires_grad) for name, m in models.items()}
    # adapter share: the time each system adds on top of the frozen base's forward + backward
    extra = {name: max(median[name] - median["base"], 1e-9) for name in models if name != "base"}
    figures = {
        "median_seconds": median,
        "adapter_seconds": extra,
        "trainable_parameters": trainable,
        "hdmole_over_peft": median["hdmole"] / median["peft_lora"],
        "loop_over_hdmole": median["loop"] / median["hdmole"],
        "hdmole_over_peft_adapter_only": extra["hdmole"] / extra["peft_lora"],
        "loop_over_hdmole_adapter_only": extra["loop"] / extra["hdmole"],
        "args": vars(args),
    }
    for name in models:
        print(f"{name:10s} median {1000 * median[name]:9.1f} ms  (min {1000 * min(times[name]):9.1f} ms)  "
              f"trainable {trainable[name]:,}")
    rank = args.experts * args.rank
    print(f"HDMoLE / peft LoRA rank {rank}, whole step:     {figures['hdmole_over_peft']:.2f}x  (target <= 1.2)")
    print(f"per-expert loop / HDMoLE, whole step:       {figures['loop_over_hdmole']:.2f}x  (target >= 2)")
    print(f"HDMoLE / peft LoRA, adapter time only:      {figures['hdmole_over_peft_adapter_only']:.2f}x")
    print(f"per-expert loop / HDMoLE, adapter time only: {figures['loop_over_hdmole_adapter_only']:.2f}x")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(figures, handle, indent=2)
    return figures


if __name__ == "__main__":
    main()
