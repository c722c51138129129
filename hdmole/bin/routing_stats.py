"""Routing statistics of a trained HDMoLE/MoLE system on a data set, split by accent.

    python -m hdmole.bin.routing_stats --config exp/hdmole/config.yaml \\
        --checkpoint exp/base/best.pt --checkpoint exp/hdmole/best.pt \\
        --data data/test_all --accents data/accents.txt --out exp/hdmole/routing_test_all.json

Runs only the encoder, the global router and the projector (the LLM is not needed to see how tokens
are routed, and is not built: ``encoder_side``) with hdmole.nn.RoutingStatsRecorder, labelling each utterance with its accent. The JSON
has, per HDMoLE layer: the mean number of active experts per token, the threshold, and the mean
routing weight per expert, in total and per accent (``by_domain``), plus ``_accents`` (their order).
Padding frames of a batch are counted like speech frames; length-bucketed batches keep them few.

A system without a mixture of experts (full fine-tuning, a single LoRA) routes nothing: an error (exit
status 1), or with ``--if-routed`` a message and exit status 0, decided from the last checkpoint alone
before any model is built (what a recipe looping over every system wants).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch
from tqdm import tqdm


def has_experts(checkpoint: str | Path) -> bool:
    """Whether an adapter checkpoint routes: more than one expert per layer, or a source-preserving path
    (read from its adapter_config)."""
    from hdmole.models.checkpoint import adapter_spec, read_checkpoint
    from hdmole.nn import HDMoLEConfig

    spec = adapter_spec(read_checkpoint(checkpoint))
    if spec is None:
        return False
    config = HDMoLEConfig.from_dict(spec[0], source=str(checkpoint))
    return config.num_experts > 1 or config.source_domain is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hdmole.bin.routing_stats", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the model YAML, or an exp dir's config.yaml")
    parser.add_argument("--checkpoint", action="append", required=True,
                        help="base checkpoint, then adapter checkpoints on top (repeatable, in order)")
    parser.add_argument("--data", required=True, help="a data dir with feats.scp and utt2accent")
    parser.add_argument("--accents", required=True, help="accents.txt")
    parser.add_argument("--cmvn", default=None, help="global CMVN stats (default: data.cmvn of the training config)")
    parser.add_argument("--max-frames", type=int, default=20000)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--num-workers", type=int, default=0, help="data loader worker processes")
    parser.add_argument("--encoder-cache-dir", default=None,
                        help="reuse (or keep) the encoder's outputs of --data here: the systems adapted from one base "
                             "share its frozen encoder (hdmole.train.encoder_cache)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--if-routed", action="store_true",
                        help="when the last checkpoint has no mixture of experts, say so and exit 0 (default: exit 1)")
    parser.add_argument("--verbose", action="store_true", help="on an error, print its traceback too")
    args = parser.parse_args(argv)
    from hdmole.logs import log_failure, setup_stage_logging

    setup_stage_logging(None, verbose=args.verbose)
    try:
        return run(args)
    except (ValueError, OSError) as error:
        # A missing, unreadable or mismatched checkpoint (CheckpointError), bad data or accent list
        # (DataError), a bad config: one line naming the file (the traceback with --verbose).
        log_failure(logging.getLogger("hdmole.routing_stats"), error)
        return 1


def run(args) -> int:
    if args.if_routed and not has_experts(args.checkpoint[-1]):
        print(f"hdmole.bin.routing_stats: {args.checkpoint[-1]} has no mixture of experts (full fine-tuning, a "
              "single LoRA or the base model): nothing to route, no statistics written")
        return 0

    from hdmole.data import AccentList, build_dataloader
    from hdmole.files import atomic_write_text
    from hdmole.models.checkpoint import load_model_for_inference, read_inference_config
    from hdmole.models.precision import autocast, inference_autocast_dtype
    from hdmole.nn import RoutingStatsRecorder

    accents = AccentList.load(args.accents)
    model = load_model_for_inference(args.config, args.checkpoint, num_accents=len(accents), device=args.device,
                                     encoder_side=True)
    cmvn = args.cmvn or read_inference_config(args.config)[2]
    precision = inference_autocast_dtype(args.config)  # the training's autocast (hdmole.models.precision)
    model.eval()
    try:
        recorder = RoutingStatsRecorder(model)
    except ValueError:
        print(f"hdmole.bin.routing_stats: the model of {args.checkpoint[-1]} has no mixture of experts "
              "(a single LoRA or full fine-tuning routes nothing)", file=sys.stderr)
        return 1
    loader = build_dataloader(args.data, accents, max_frames=args.max_frames, shuffle=False, seed=0, cmvn=cmvn,
                              num_workers=args.num_workers)
    attach = None
    if args.encoder_cache_dir:
        from hdmole.train.encoder_cache import data_set_encoder_cache

        with autocast(args.device, precision):
            cache, _ = data_set_encoder_cache(model, loader, data=args.data, cmvn=cmvn, max_frames=args.max_frames,
                                              device=args.device, precision=precision,
                                              cache_dir=args.encoder_cache_dir)
        attach = lambda batch: cache.attach(batch, args.device)  # noqa: E731
    pooled = None
    if getattr(model, "route_pooling", "utterance") == "speaker":
        from hdmole.models.speaker_routing import speaker_route_logits

        with autocast(args.device, precision):
            pooled = speaker_route_logits(model, loader, args.device, model.route_pool_first_k, attach=attach)
    with torch.no_grad(), recorder:
        for batch in tqdm(loader, desc="routing stats"):
            recorder.set_domain_labels([accents.names[int(a)] for a in batch["accents"]])
            with autocast(args.device, precision):
                if attach is not None:
                    batch = attach(batch)
                    enc_out, enc_lens = batch["enc_out"], batch["enc_lens"]
                else:
                    enc_out, enc_lens = model.encode(batch["feats"].to(args.device), batch["feat_lens"].to(args.device))
                route_logits = None if pooled is None else torch.stack([pooled[u] for u in batch["utt_ids"]])
                probs = model.routing_posterior(enc_out, enc_lens, batch.get("accents"), route_logits)
                with model.routing(probs):
                    model.project(enc_out, enc_lens)
    stats = recorder.summary()
    stats["_accents"] = list(accents.names)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(stats, indent=1, ensure_ascii=False) + "\n")
    print(f"hdmole.bin.routing_stats: wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
