"""Decode a data dir with a trained LLM-ASR model: Kaldi-style hypotheses and the real-time factor.

    python -m hdmole.bin.decode --config exp/base/config.yaml --checkpoint exp/base/best.pt \\
        [--adapter exp/hdmole/best.pt] --data data/test_accent --accents data/accents.txt \\
        --out exp/hdmole/decode_test_accent [--beam 4] [--batch-frames 20000] [--nj 2]

Writes ``<out>/text`` (``utt_id hyp`` lines, LC_ALL=C order), ``<out>/rtf`` (``key value`` lines: ``rtf``
= decoding wall seconds / audio seconds, audio seconds = frames * 10 ms; model loading excluded) and
``<out>/decode.log``, and last ``<out>/decode_inputs.json``: what produced the hypotheses (the config,
checkpoints, tokenizer, CMVN and accent list by content, the features' versions, the options that change
results). A finished output dir is skipped unless ``--force`` or unless one of those changed (a retrained
system, another beam): then it is decoded again. ``--config`` is a training config (the exp dir's resolved
``config.yaml``: model, tokenizer, data.cmvn) or a bare model config together with ``--tokenizer``.
An expected failure (a missing, unreadable or mismatched checkpoint, bad data) is one line naming the file;
its traceback is in decode.log (and on stderr with ``--verbose``).

``--then`` starts another decoding in the same process: the arguments after it are a complete command line of
their own (nothing is inherited), decoded exactly as a separate call would, and a pass with the same config
and checkpoints reuses the loaded model. The recipes decode each model this way (beam search with the n-gram,
then the LLM alone): one Python start and one model load per model instead of one per decoding.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import logging
import multiprocessing
import os
import sys
import time
from pathlib import Path

import yaml

from hdmole.data.table import write_kaldi_table
from hdmole.files import atomic_write_text, feats_version, file_version

log = logging.getLogger("hdmole.decode")
FRAME_SECONDS = 0.01


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m hdmole.bin.decode", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="training config (exp dir config.yaml) or model config")
    p.add_argument("--checkpoint", required=True, action="append",
                   help="base checkpoint(s), loaded in order (repeat the option for several)")
    p.add_argument("--adapter", action="append", default=[], help="adapter checkpoint(s) loaded after the base")
    p.add_argument("--data", required=True, action="append",
                   help="Kaldi data dir with feats.scp and utt2num_frames, or raw (repeatable, paired with --out: the "
                        "model is loaded once for all of them)")
    p.add_argument("--accents", required=True, help="accents.txt (line order = domain index)")
    p.add_argument("--out", required=True, action="append", help="output dir (one per --data)")
    p.add_argument("--beam", type=int, default=1, help="beam size (1 = greedy)")
    p.add_argument("--batch-frames", type=int, default=20000, help="padded input frames per batch")
    p.add_argument("--nj", type=int, default=1, help="parallel decoding processes (CPU)")
    p.add_argument("--max-len", type=int, default=200, help="most tokens per hypothesis")
    p.add_argument("--max-len-ratio", type=float, default=1.0,
                   help="most tokens per speech embedding fed to the LLM (plus 2)")
    p.add_argument("--no-length-norm", action="store_true", help="beam: rank by summed log-prob, not per token")
    p.add_argument("--ngram", default=None,
                   help="character n-gram LM (ARPA or KenLM binary, from hdmole.bin.train_ngram) for shallow fusion")
    p.add_argument("--ngram-weight", type=float, default=0.3, help="weight of the n-gram log-probability")
    p.add_argument("--pre-beam", type=int, default=8,
                   help="with --ngram: tokens per hypothesis (the LLM's most probable) scored with the n-gram")
    p.add_argument("--tokenizer", default=None,
                   help="tokenizer config as YAML, e.g. '{type: sentencepiece, model: data/lang/char.model}' "
                        "(default: the config's tokenizer section)")
    p.add_argument("--cmvn", default=None, help="global CMVN stats (default: the config's data.cmvn; 'none': off)")
    p.add_argument("--speaker-first-k", type=int, default=None,
                   help="speaker-level routing (global_router.pool: speaker): pool only each speaker's first K "
                        "utterances, the online case (default: the model's pool_first_k; 0 = all)")
    p.add_argument("--threads", type=int, default=0, help="torch threads per job (default: CPUs / nj)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--encoder-cache-dir", default=None,
                   help="keep the encoder's outputs of each data set here and reuse them: models that share a "
                        "frozen encoder (every system adapted from one base) encode a test set once "
                        "(hdmole.train.encoder_cache)")
    p.add_argument("--num-workers", type=int, default=0,
                   help="data loader worker processes per job (raw audio: the features are computed there)")
    p.add_argument("--force", action="store_true", help="decode again even if <out> is complete")
    p.add_argument("--verbose", action="store_true", help="on an error, print its traceback too (decode.log has it)")
    return p.parse_args(argv)


def _setup_logging(out: Path | None, verbose: bool) -> None:
    from hdmole.logs import setup_stage_logging

    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    setup_stage_logging(out / "decode.log" if out is not None else None, verbose=verbose)


def _settings(args) -> dict:
    from hdmole.models.checkpoint import read_inference_config

    model_conf, tok_conf, cmvn = read_inference_config(args.config)
    if args.tokenizer is not None:
        tok_conf = yaml.safe_load(args.tokenizer)
    if tok_conf is None:
        raise SystemExit(f"error: {args.config} has no tokenizer section; pass --tokenizer '{{type: ..., ...}}'")
    if args.cmvn is not None:
        cmvn = None if args.cmvn.lower() == "none" else args.cmvn
    return {"tok_conf": tok_conf, "cmvn": cmvn}


_MODELS: dict = {}


def decode_shard(job: dict) -> dict:
    """Decode batches ``job_id, job_id + nj, ...`` of the data dir (run in a worker process when nj > 1)."""
    import torch
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from hdmole.data import AccentList, build_dataloader
    from hdmole.decode.search import decode_batch
    from hdmole.models.checkpoint import load_model_for_inference
    from hdmole.models.precision import autocast, inference_autocast_dtype
    from hdmole.text.tokenizer import build_tokenizer

    torch.set_num_threads(job["threads"])
    args = job["args"]
    tokenizer = build_tokenizer(job["tok_conf"])
    accents = AccentList.load(args.accents)
    key = (args.config, tuple(args.checkpoint) + tuple(args.adapter), args.device)
    if key not in _MODELS:  # several data sets in one call share one loaded model
        _MODELS.clear()
        _MODELS[key] = load_model_for_inference(args.config, list(key[1]), tokenizer=tokenizer,
                                                num_accents=len(accents), device=args.device)
    model = _MODELS[key]
    fusion = None
    if args.ngram:
        from hdmole.decode.ngram import NgramLM
        from hdmole.decode.search import Fusion

        fusion = Fusion(NgramLM(args.ngram, tokenizer), weight=args.ngram_weight, pre_beam=args.pre_beam)
    loader = build_dataloader(job["data"], accents, max_frames=args.batch_frames, shuffle=False, seed=0,
                              cmvn=job["cmvn"])
    batches = loader.batch_sampler.batches[job["job_id"]:: job["nj"]]
    shard = DataLoader(loader.dataset, batch_sampler=batches, collate_fn=loader.collate_fn,
                       num_workers=args.num_workers)
    hyps, refs, frames = {}, {}, 0
    start = time.perf_counter()
    precision = inference_autocast_dtype(args.config)  # the training's autocast (hdmole.models.precision)
    cache, cached_seconds = None, None
    if args.encoder_cache_dir:  # the whole set's outputs: every job of an nj > 1 decoding reads the one file
        from hdmole.train.encoder_cache import data_set_encoder_cache

        with autocast(args.device, precision):
            cache, cached_seconds = data_set_encoder_cache(
                model, loader, data=job["data"], cmvn=job["cmvn"], max_frames=args.batch_frames, device=args.device,
                precision=precision, cache_dir=args.encoder_cache_dir, show_progress=job["job_id"] == 0)
    attach = (lambda b: cache.attach(b, args.device)) if cache is not None else None
    pooled = None
    if getattr(model, "route_pooling", "utterance") == "speaker":  # the speaker's evidence, from the whole set
        from hdmole.models.speaker_routing import attach_route_logits, speaker_route_logits

        first_k = model.route_pool_first_k if args.speaker_first_k is None else args.speaker_first_k
        with autocast(args.device, precision):
            pooled = speaker_route_logits(model, loader, args.device, first_k, attach=attach)
    for batch in tqdm(shard, desc=f"decode job {job['job_id'] + 1}/{job['nj']}", position=job["job_id"]):
        if attach is not None:
            batch = attach(batch)
        if pooled is not None:
            batch = attach_route_logits(batch, pooled)
        with autocast(args.device, precision):
            texts = decode_batch(model, batch, tokenizer, beam=args.beam, max_len=args.max_len,
                                 max_len_ratio=args.max_len_ratio, length_norm=not args.no_length_norm, fusion=fusion)
        for utt, hyp, ref in zip(batch["utt_ids"], texts, batch["texts"]):
            # One line per utterance in a Kaldi text file: no newlines, no leading/doubled spaces.
            hyps[utt], refs[utt] = " ".join(hyp.split()), ref
        frames += int(batch["feat_lens"].sum())
    seconds = time.perf_counter() - start
    if cached_seconds is not None:  # loaded: the encoding's time when the cache was made, this job's share of it
        seconds += cached_seconds * len(batches) / max(len(loader.batch_sampler.batches), 1)
    return {"hyps": hyps, "refs": refs, "frames": frames, "seconds": seconds,
            "encoder_cache": "none" if cache is None else ("filled" if cached_seconds is None else "loaded")}


# ------------------------------------------------------------------ what produced an output
RECORD = "decode_inputs.json"
# Options that change only the speed, not the hypotheses. Every other option, including any added later,
# is part of the record (a new option is taken to change results until it is listed here).
SPEED_ONLY = {"nj", "threads", "batch_frames", "device", "force", "verbose", "data", "out", "num_workers",
              "encoder_cache_dir"}
# Options naming files: recorded by their content (or version), not by their name.
FILE_OPTIONS = {"config", "checkpoint", "adapter", "accents", "tokenizer", "cmvn", "ngram"}
# Files are recorded by content, or by path, size and mtime above hdmole.files.HASH_LIMIT (256 MB).


def what_produced(args, data: Path, settings: dict) -> dict:
    """The record of everything that decides the hypotheses of ``data`` (JSON-normalised)."""
    tok = settings["tok_conf"]
    tok_model = tok.get("model") if isinstance(tok, dict) else None
    record = {
        "options": {k: v for k, v in sorted(vars(args).items()) if k not in SPEED_ONLY | FILE_OPTIONS},
        "config": file_version(args.config),
        "checkpoints": [file_version(p) for p in [*args.checkpoint, *args.adapter]],
        "accents": file_version(args.accents),
        "tokenizer": {"conf": tok, "model": file_version(tok_model) if tok_model else None},
        "ngram": file_version(args.ngram) if args.ngram else None,
        "cmvn": file_version(settings["cmvn"]) if settings["cmvn"] else None,
        # Re-extracted features keep feats.scp's text but replace its arks (new mtimes).
        "feats": feats_version(data / "feats.scp"),
    }
    if (data / "frontend.json").is_file():  # raw: the front end's options and the audio's digest, by content
        record["feats"] = {"frontend": file_version(data / "frontend.json")}
    return json.loads(json.dumps(record, sort_keys=True, default=str))


def why_decode_again(out: Path, data: Path, record: dict) -> str | None:
    """None when ``out`` holds finished hypotheses of every utterance of ``data`` produced by ``record``;
    otherwise why it must be decoded (again)."""
    text, rtf, stored = out / "text", out / "rtf", out / RECORD
    if not (text.is_file() and rtf.is_file()):
        return "not decoded yet"
    try:
        old = json.loads(stored.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"{stored} (what produced it) is missing or unreadable"
    if old != record:
        changed = [f"{k} {old['options'].get(k)!r} -> {v!r}" for k, v in record["options"].items()
                   if isinstance(old.get("options"), dict) and old["options"].get(k) != v]
        changed += [k for k in record if k != "options" and old.get(k) != record[k]]
        return f"what produced it changed ({', '.join(changed) or 'the record format'})"
    frames = data / "utt2num_frames"  # next to feats.scp, or alone in a raw data dir
    done = {line.split(maxsplit=1)[0] for line in text.read_text(encoding="utf-8").splitlines() if line.strip()}
    utts = {line.split(maxsplit=1)[0] for line in frames.read_text(encoding="utf-8").splitlines() if line.strip()}
    return None if done == utts else f"{text} does not cover the utterances of {frames}"


def split_passes(argv: list[str]) -> list[list[str]]:
    """The command line cut at each ``--then``: one complete argument list per decoding pass."""
    passes: list[list[str]] = [[]]
    for arg in argv:
        if arg == "--then":
            passes.append([])
        else:
            passes[-1].append(arg)
    return passes


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passes = split_passes(argv)
    if any(not p for p in passes):
        raise SystemExit("error: --then must separate two complete decoding command lines (one is empty)")
    for pass_argv in passes:  # every pass's options are checked before the first one decodes
        check_args(parse_args(pass_argv))
    for pass_argv in passes:
        status = decode_pass(pass_argv)
        if status:
            return status
    return 0


def check_args(args) -> None:
    if len(args.data) != len(args.out):
        raise SystemExit(f"error: {len(args.data)} --data but {len(args.out)} --out; give one output dir per data dir")
    if args.beam < 1 or args.nj < 1 or args.batch_frames < 1:
        raise SystemExit("error: --beam, --nj and --batch-frames must be >= 1")
    if args.num_workers < 0:
        raise SystemExit("error: --num-workers must be >= 0")


def decode_pass(argv: list[str]) -> int:
    """One decoding: every --data / --out pair of one command line."""
    args = parse_args(argv)
    from hdmole.logs import log_failure

    _setup_logging(None, args.verbose)
    try:
        for data, out in zip(args.data, args.out):
            decode_set(args, Path(data), Path(out), argv)
    except (ValueError, OSError) as error:
        # A missing, unreadable or mismatched checkpoint (CheckpointError), bad data (DataError), a bad
        # config or tokenizer: one line (the traceback goes to decode.log, and to stderr with --verbose).
        log_failure(log, error)
        return 1
    return 0


def _warn_uncovered(tok_conf: dict, refs, data: Path) -> None:
    """Test characters the tokenizer cannot write are errors no model can avoid: say so, with examples."""
    from hdmole.text.tokenizer import build_tokenizer, uncovered_warning

    name = tok_conf.get("model") or tok_conf.get("name_or_path") or tok_conf.get("list")
    warning = uncovered_warning(build_tokenizer(tok_conf), refs, f"{data / 'text'}", str(name))
    if warning:
        log.warning("%s", warning)


def decode_set(args, data: Path, out: Path, argv) -> None:
    settings = _settings(args)
    record = what_produced(args, data, settings)
    why = "--force" if args.force else why_decode_again(out, data, record)
    if why is None:
        print(f"decode: {out}/text already covers {data} and was made by the same model, data and options; skipping "
              "(use --force to decode again)", file=sys.stderr)
        return
    _setup_logging(out, args.verbose)
    log.info("command: %s", " ".join([sys.executable, "-m", "hdmole.bin.decode", *(argv or sys.argv[1:])]))
    log.info("decoding %s: %s", out, why)
    (out / RECORD).unlink(missing_ok=True)  # from here until it is rewritten, the output counts as unfinished
    for stale in ("text", "rtf"):  # and a kill leaves no earlier model's hypotheses for score to report
        (out / stale).unlink(missing_ok=True)
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.nj)
    jobs = [{"args": args, "data": str(data), "job_id": j, "nj": args.nj, "threads": threads, **settings}
            for j in range(args.nj)]
    wall = time.perf_counter()
    if args.nj == 1:
        results = [decode_shard(jobs[0])]
    else:
        ctx = multiprocessing.get_context("spawn")  # fork after torch threads start is unsafe
        with concurrent.futures.ProcessPoolExecutor(args.nj, mp_context=ctx) as pool:
            results = list(pool.map(decode_shard, jobs))
    wall = time.perf_counter() - wall
    hyps = {utt: hyp for r in results for utt, hyp in r["hyps"].items()}
    refs = {utt: ref for r in results for utt, ref in r["refs"].items()}
    frames = sum(r["frames"] for r in results)
    decode_seconds = max(r["seconds"] for r in results)  # the jobs run side by side
    audio_seconds = frames * FRAME_SECONDS
    for utt in sorted(hyps):
        log.info("%s ref=%s hyp=%s", utt, refs[utt], hyps[utt])
    _warn_uncovered(settings["tok_conf"], refs.values(), data)
    write_kaldi_table(out / "text", hyps.items())
    stats = {
        "rtf": decode_seconds / max(audio_seconds, 1e-9),
        "cpu_rtf": sum(r["seconds"] for r in results) / max(audio_seconds, 1e-9),
        "decode_seconds": decode_seconds, "audio_seconds": audio_seconds, "wall_seconds_with_loading": wall,
        "utterances": len(hyps), "beam": args.beam, "nj": args.nj, "threads_per_job": threads,
        "ngram": args.ngram or "none", "ngram_weight": args.ngram_weight if args.ngram else 0.0,
        "device": args.device,
        # "loaded": the encoder's outputs came from --encoder-cache-dir, its time counted as when they were made
        "encoder_cache": ",".join(sorted({r["encoder_cache"] for r in results})),
    }
    atomic_write_text(out / "rtf", "".join(f"{k} {v:.4f}\n" if isinstance(v, float) else f"{k} {v}\n"
                                       for k, v in stats.items()))
    atomic_write_text(out / RECORD, json.dumps(record, indent=1, sort_keys=True) + "\n")  # last: marks it finished
    log.info("decoded %d utterances (%.1f s of audio) in %.1f s: RTF %.4f (beam %d, nj %d); wrote %s/text",
             len(hyps), audio_seconds, decode_seconds, stats["rtf"], args.beam, args.nj, out)


if __name__ == "__main__":
    sys.exit(main())
