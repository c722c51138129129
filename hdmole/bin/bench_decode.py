"""Decoding speed on CPU: greedy vs beam 4, batched vs one utterance at a time, our loop vs ``generate``.

    python -m hdmole.bin.bench_decode [--utts 16] [--threads 2] [--vocab 1200]

The mini model (Conformer d=144, 4 blocks, 4x conv2d subsampling; projector stack 2; Qwen2 d=256, 4 layers)
is built from a config with RANDOM weights: the timings are real, the hypotheses are not. A random model
rarely emits eos, so every hypothesis runs to its token limit; ``--tokens-per-second`` (default 5, about
the rate of Mandarin characters) sets that limit so that the work per utterance matches a trained model's.
RTF = decoding seconds / audio seconds (audio = frames * 10 ms); lower is faster.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

MINI_ENCODER = {"type": "conformer", "input_size": 80, "output_size": 144, "attention_heads": 4,
                "linear_units": 576, "num_blocks": 4, "input_layer": "conv2d", "cnn_module_kernel": 15}
MINI_LLM = {"hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 4, "num_attention_heads": 4,
            "num_key_value_heads": 2, "max_position_embeddings": 1024}


class _CountingTokenizer:
    """Only what the model needs to be built: ids, no text (random weights decode nothing readable)."""

    def __init__(self, vocab_size: int):
        self.vocab_size, self.pad_id, self.bos_id, self.eos_id = vocab_size, 0, 2, 3

    def encode(self, text: str) -> list[int]:
        return [4 + (ord(c) % (self.vocab_size - 4)) for c in text]

    def decode(self, ids) -> str:
        return " ".join(map(str, ids))


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m hdmole.bin.bench_decode", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--utts", type=int, default=16, help="utterances (2-6 s of random features)")
    p.add_argument("--batch-size", type=int, default=8, help="utterances per batch (length-sorted)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1: on a shared, loaded machine more threads spin and run slower)")
    p.add_argument("--vocab", type=int, default=1200, help="LLM vocabulary (characters)")
    p.add_argument("--tokens-per-second", type=float, default=5.0, help="hypothesis length per audio second")
    p.add_argument("--repeats", type=int, default=2, help="timed runs per setting (the best is kept)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from hdmole.decode.search import decode_batch_ids, hf_generate
    from hdmole.models.build import build_model

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    conf = {"encoder": MINI_ENCODER, "projector": {"stack": 2, "hidden": 512},
            "llm": {"type": "qwen2", "config": MINI_LLM}, "ctc_weight": 0.0, "prompt": [5, 6, 7]}
    model = build_model(conf, _CountingTokenizer(args.vocab)).eval()
    g = torch.Generator().manual_seed(args.seed)
    frames = torch.randint(200, 601, (args.utts,), generator=g)
    feats = torch.randn(args.utts, int(frames.max()), 80, generator=g)
    audio_seconds = float(frames.sum()) * 0.01
    # Speech embeddings per second: 100 frames / 4 (subsampling) / 2 (stacking) = 12.5.
    ratio = args.tokens_per_second / 12.5

    order = torch.argsort(frames).tolist()  # as hdmole.data buckets them: similar lengths together

    def batches(batched: bool):
        size = args.batch_size if batched else 1
        groups = [order[i : i + size] for i in range(0, args.utts, size)]
        return [{"feats": feats[g, : int(frames[g].max())], "feat_lens": frames[g]} for g in groups]

    def timed(fn, batched: bool) -> tuple[float, float, int]:
        """Best wall and CPU seconds over the repeats. With one thread the CPU time of this process is the
        robust figure on a shared machine: other processes' load inflates wall time, not CPU time."""
        best_wall, best_cpu, tokens = float("inf"), float("inf"), 0
        for _ in range(args.repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            tokens = sum(len(h) for b in batches(batched) for h in fn(b))
            best_wall = min(best_wall, time.perf_counter() - wall)
            best_cpu = min(best_cpu, time.process_time() - cpu)
        return best_wall, best_cpu, tokens

    settings = [
        ("greedy, own loop", lambda b: decode_batch_ids(model, b, beam=1, max_len_ratio=ratio)),
        ("greedy, generate()", lambda b: hf_generate(model, b, beam=1, max_len_ratio=ratio)),
        ("beam 4, own loop", lambda b: decode_batch_ids(model, b, beam=4, max_len_ratio=ratio)),
        ("beam 4, generate()", lambda b: hf_generate(model, b, beam=4, max_len_ratio=ratio)),
    ]
    print(f"mini model, random weights: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters; "
          f"{args.utts} utterances, {audio_seconds:.1f} s of audio, batches of {args.batch_size}; {args.threads} thread(s); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'setting':<20} {'batching':<11} {'wall s':>7} {'RTF':>7} {'CPU s':>7} {'CPU RTF':>8} {'tokens':>6}")
    with torch.no_grad():
        for batched in (True, False):
            wall, cpu, _ = timed(lambda b: [[]] * int(model.encode(b["feats"], b["feat_lens"])[1].numel()), batched)
            print(f"{'encoder only':<20} {'batched' if batched else 'one by one':<11} {wall:7.2f} "
                  f"{wall / audio_seconds:7.4f} {cpu:7.2f} {cpu / audio_seconds:8.4f} {'-':>6}", flush=True)
        for name, fn in settings:
            for batched in (True, False):
                wall, cpu, tokens = timed(fn, batched)
                print(f"{name:<20} {'batched' if batched else 'one by one':<11} {wall:7.2f} "
                      f"{wall / audio_seconds:7.4f} {cpu:7.2f} {cpu / audio_seconds:8.4f} {tokens:6d}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
