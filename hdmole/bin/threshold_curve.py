"""The dynamic threshold's operating curve of a trained system: the dev loss with tau forced to a grid.

    python -m hdmole.bin.threshold_curve --exp-dir exp/hdmole \\
        --checkpoint exp/base/best.pt --checkpoint exp/hdmole/best.pt --data data/dev_accent \\
        --taus 0,0.02,0.05,0.1,0.15,0.2,0.3,0.5

For each tau of the grid, with ``hdmole.nn.forced_thresholds``: every thresholded layer forced to tau, and
each layer forced alone (the others keep their learned tau); plus the learned taus themselves. At each
point: the dev ASR loss (the training objective's cross-entropy of the transcript, per token, as the
adaptation's validation computes it; the encoder is run once and its outputs cached, as in training) and
the mean number of active experts per layer (hdmole.nn.RoutingStatsRecorder). Writes
``<exp-dir>/threshold_curve.json`` and ``<exp-dir>/threshold_curve.png``; hdmole.bin.report turns the json
into a table that says, per layer, whether the learned tau lies where the curve is within 1% of its best.
Cost: 1 + (layers + 1) x taus passes of the projector and the LLM over the dev set (the encoder once).

``--config`` (default ``<exp-dir>/config.yaml``) gives the model, the tokenizer, the CMVN and the default
``--data`` (the adaptation's dev set) and ``--accents``; ``--checkpoint`` defaults to the config's first
``init`` (the base model) and ``<exp-dir>/best.pt``. A system without a threshold is an error (exit 1), or
with ``--if-thresholded`` a message and exit 0, decided from the last checkpoint before any model is built.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

log = logging.getLogger("hdmole.threshold_curve")

# Finer where thresholds have collapsed (near 0) and where a sparse gate of E = 4 experts acts (p ~ 1/E).
DEFAULT_TAUS = "0,0.02,0.05,0.1,0.15,0.2,0.3,0.5"


def has_threshold(checkpoint: str | Path) -> bool:
    """Whether an adapter checkpoint's layers gate with a learned threshold (from its adapter_config)."""
    from hdmole.models.checkpoint import adapter_spec, read_checkpoint
    from hdmole.nn import HDMoLEConfig

    spec = adapter_spec(read_checkpoint(checkpoint))
    return spec is not None and HDMoLEConfig.from_dict(spec[0], source=str(checkpoint)).uses_threshold


def parse_taus(text: str) -> list[float]:
    try:
        taus = sorted({float(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise ValueError(f"--taus {text!r}: expected comma-separated numbers, e.g. {DEFAULT_TAUS}") from None
    if not taus or taus[0] < 0.0 or taus[-1] >= 1.0:
        raise ValueError(f"--taus {text!r}: every tau must be in [0, 1), e.g. {DEFAULT_TAUS}")
    return taus


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hdmole.bin.threshold_curve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp-dir", type=Path, help="the system's exp dir (outputs go there)")
    parser.add_argument("--config", type=Path, help="its config.yaml (default <exp-dir>/config.yaml)")
    parser.add_argument("--checkpoint", action="append",
                        help="base checkpoint, then the adapter (repeatable; default: the config's init[0], best.pt)")
    parser.add_argument("--data", help="the dev data dir (default: the config's data.dev)")
    parser.add_argument("--accents", help="accents.txt (default: the config's data.accents)")
    parser.add_argument("--taus", default=DEFAULT_TAUS, help=f"the forced taus, comma-separated (default {DEFAULT_TAUS})")
    parser.add_argument("--max-frames", type=int, default=20000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--if-thresholded", action="store_true",
                        help="when the system has no threshold, say so and exit 0 (default: exit 1)")
    parser.add_argument("--verbose", action="store_true", help="on an error, print its traceback too")
    args = parser.parse_args(argv)
    if args.exp_dir is None and args.config is None:
        parser.error("give --exp-dir or --config")

    from hdmole.logs import log_failure, setup_stage_logging

    setup_stage_logging(None, verbose=args.verbose)
    try:
        return _run(args)
    except (ValueError, OSError) as error:
        # a missing config, checkpoint or data dir, a bad grid: one line naming it
        log_failure(log, error)
        return 1


def _setup(args) -> tuple[Path, Path, dict, list[str]]:
    """The exp dir, its config file, that config (a mapping) and the checkpoints to load."""
    from hdmole.models.config_utils import load_yaml_mapping

    exp_dir = args.exp_dir or args.config.parent
    config_path = args.config or exp_dir / "config.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path}: no such config; pass --config (the exp dir's config.yaml)")
    raw = load_yaml_mapping(config_path)
    checkpoints = args.checkpoint
    if not checkpoints:
        init = raw.get("init") or []
        if not init:
            raise ValueError(f"{config_path}: no init checkpoint to take the base model from; pass --checkpoint "
                             "<base best.pt> --checkpoint <adapter best.pt>")
        checkpoints = [init[0], str(exp_dir / "best.pt")]
    return exp_dir, config_path, raw, checkpoints


def _run(args) -> int:
    taus = parse_taus(args.taus)
    exp_dir, config_path, raw, checkpoints = _setup(args)
    if not has_threshold(checkpoints[-1]):
        message = (f"{checkpoints[-1]} has no dynamic threshold (gating is not 'threshold', or a single LoRA or full "
                   "fine-tuning): no operating curve")
        if args.if_thresholded:
            print(f"hdmole.bin.threshold_curve: {message}, nothing written")
            return 0
        raise ValueError(f"{message}; run it on a system with gating: threshold (or pass --if-thresholded)")
    data = args.data or (raw.get("data") or {}).get("dev")
    accents_file = args.accents or (raw.get("data") or {}).get("accents")
    if not data or not accents_file:
        raise ValueError(f"{config_path}: no data.dev / data.accents; pass --data and --accents")

    import torch

    from hdmole.data import AccentList, build_dataloader
    from hdmole.files import atomic_write_text
    from hdmole.models.checkpoint import load_model_for_inference, read_inference_config
    from hdmole.nn import forced_thresholds, hdmole_layers
    from hdmole.report.plots import threshold_operating_curve
    from hdmole.report.threshold import layer_verdict
    from hdmole.text.tokenizer import build_tokenizer
    from hdmole.train.encoder_cache import EncoderCache

    accents = AccentList.load(accents_file)
    _, tok_conf, cmvn = read_inference_config(config_path)
    tokenizer = build_tokenizer(tok_conf)
    model = load_model_for_inference(config_path, checkpoints, tokenizer=tokenizer, num_accents=len(accents),
                                     device=args.device)
    model.requires_grad_(False)  # nothing trains: the frozen CTC head's loss is then skipped, as in adaptation
    layers = [name for name, layer in hdmole_layers(model) if layer.config.uses_threshold]
    loader = build_dataloader(data, accents, max_frames=args.max_frames, shuffle=False, seed=0, tokenizer=tokenizer,
                              cmvn=cmvn)
    cache = EncoderCache()
    cache.fill(model, loader, args.device, Path(data).name)
    batches = [cache.attach({k: (v.to(args.device) if torch.is_tensor(v) else v) for k, v in b.items() if k != "feats"},
                            args.device) for b in loader]
    if getattr(model, "route_pooling", "utterance") == "speaker":  # routed as in training: the speaker's evidence
        from hdmole.models.speaker_routing import attach_route_logits, pool_by_speaker, utterance_route_logits

        pooled = pool_by_speaker(utterance_route_logits(model, batches, args.device),
                                 loader.dataset.data.utt2spk.entries, model.route_pool_first_k)
        batches = [attach_route_logits(b, pooled, args.device) for b in batches]

    def point(forced: dict[str, float] | None) -> dict:
        """The dev ASR loss (token-weighted) and mean active experts per layer, with ``forced`` taus."""
        from contextlib import nullcontext

        from hdmole.nn import RoutingStatsRecorder

        loss = tokens = 0.0
        recorder = RoutingStatsRecorder(model)
        with torch.no_grad(), recorder, (forced_thresholds(model, forced) if forced else nullcontext()):
            for batch in batches:
                out = model(batch)
                loss += float(out["loss_asr"]) * out["num_tokens"]
                tokens += out["num_tokens"]
            stats = recorder.summary()
        return {"loss": loss / max(tokens, 1.0),
                "mean_active_experts": {name: stats[name]["mean_active_experts"] for name in layers if name in stats}}

    learned = point(None)
    modules = dict(hdmole_layers(model))
    learned["thresholds"] = {name: _value(modules[name].threshold()) for name in layers}
    all_layers = [{"tau": tau, **point({name: tau for name in layers})} for tau in taus]
    per_layer = {}
    for name in layers:
        per_layer[name] = []
        for tau in taus:
            result = point({name: tau})
            per_layer[name].append({"tau": tau, "loss": result["loss"],
                                    "mean_active_experts": result["mean_active_experts"][name]})
        log.info("%s: learned tau %s, dev loss %.4f", name, learned["thresholds"][name], learned["loss"])
    curve = {"data": str(data), "checkpoints": [str(c) for c in checkpoints], "taus": taus, "layers": layers,
             "loss": "dev ASR cross-entropy per token", "learned": learned, "all_layers": all_layers,
             "per_layer": per_layer}
    out = exp_dir / "threshold_curve.json"
    atomic_write_text(out, json.dumps(curve, indent=1) + "\n")
    threshold_operating_curve(curve, exp_dir / "threshold_curve.png", f"{exp_dir.name}: forced-tau dev loss")
    for name in layers:
        verdict = layer_verdict(curve, name)
        print(f"hdmole.bin.threshold_curve: {name}: learned tau {learned['thresholds'][name]} "
              f"{'is' if verdict['learned_within'] else 'is NOT'} within 1% of the best dev loss "
              f"({verdict['learned_loss']:.4f} vs {verdict['best_loss']:.4f})")
    print(f"hdmole.bin.threshold_curve: wrote {out} and {out.with_suffix('.png')}")
    return 0


def _value(tau):
    """A learned threshold as JSON: a float, or a list when a layer has several (e.g. one per domain)."""
    values = tau.detach().flatten().tolist()
    return values[0] if len(values) == 1 else values


if __name__ == "__main__":
    sys.exit(main())
