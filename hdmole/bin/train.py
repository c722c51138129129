"""Train one stage of one system: ``python -m hdmole.bin.train --config conf/x.yaml --exp-dir exp/x``.

Modes (the config's ``mode``): ``lm`` text-only LLM pretraining, ``base`` source-domain ASR,
``router`` router pre-training (the global accent router), ``adapt`` adaptation (``adapter.system``: full_ft | lora |
mole | hdmole). The exp dir receives ``config.yaml`` (resolved), ``cmd`` (the exact command),
``train.log``, ``train_log.jsonl``, checkpoints and ``train_summary.json``. A killed run started again
with the same command resumes from its last checkpoint; a finished one is skipped. An exp dir is the
record of one config: running it again with a config that would train differently (another lr, other
data, ...) is an error naming the keys, never a resume under the new values.
For several processes: ``torchrun --nproc_per_node N -m hdmole.bin.train ...``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shlex
import sys
from pathlib import Path

import yaml

# Keys that change how fast or how verbosely a run goes, not what it learns: they may differ on resume.
NOT_RESULTS = {"data.num_workers", "data.cache_encoder", "data.encoder_cache_dir", "log_every", "device", "dist_timeout_s",
               "activation_checkpointing"}


def _flat(conf, prefix: str = "") -> dict:
    if not isinstance(conf, dict):
        return {prefix: conf}
    flat = {}
    for key, value in conf.items():
        flat.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def has_results(exp_dir: Path) -> bool:
    """Whether a run has left checkpoints or a summary in ``exp_dir`` (made with its config.yaml)."""
    made = [exp_dir / f for f in ("last.pt", "best.pt", "train_summary.json")] + list(exp_dir.glob("ckpt-*.pt"))
    return any(p.exists() for p in made)


def trained_with_other_config(exp_dir: Path, resolved: dict) -> str | None:
    """What differs, in keys that change results, between ``resolved`` and the config.yaml that the
    checkpoints (or the summary) in ``exp_dir`` were made with; None if nothing was made yet or nothing differs."""
    stored = exp_dir / "config.yaml"
    if not stored.is_file() or not has_results(exp_dir):
        return None
    from hdmole.train.config import TrainConfig

    old = _flat(yaml.safe_load(stored.read_text(encoding="utf-8")) or {})
    # Through YAML and back, so that a tuple and the list it was stored as compare equal.
    new, defaults = (_flat(yaml.safe_load(yaml.safe_dump(d, allow_unicode=True)))
                     for d in (resolved, dataclasses.asdict(TrainConfig())))

    def differs(key: str) -> bool:
        if key in NOT_RESULTS:
            return False
        if key not in old and key in defaults and new.get(key) == defaults[key]:
            return False  # a setting added to hdmole after this exp dir was made, left at its default
        return old.get(key, "(not set)") != new.get(key, "(not set)")

    changed = sorted(k for k in set(old) | set(new) if differs(k))
    if not changed:
        return None
    shown = ", ".join(f"{k}: {old.get(k, '(not set)')!r} -> {new.get(k, '(not set)')!r}" for k in changed[:5])
    more = f" (and {len(changed) - 5} more)" if len(changed) > 5 else ""
    return (f"{exp_dir} was trained with another config ({shown}{more}; {stored} is what its checkpoints were made "
            f"with). Fix: train in a fresh --exp-dir, or restore the old value(s), or remove {exp_dir} if its "
            "results are no longer wanted")


INPUTS_RECORD = "train_inputs.json"


# Files a mode is given but does not read: the LM stage trains on text, so new features and their CMVN (e.g. after
# run.sh --pitch-norm-vars) leave its exp dir valid. Left out of the record and of the comparison with old records.
UNREAD_INPUTS = {"lm": ("data.cmvn",)}


def training_inputs(config) -> dict:
    """The versions of the files a training reads, by content (hdmole.files): init checkpoints, the data
    (a data dir's text, utt2accent, features, CTC units file; an LM text), tokenizer, CMVN, accent list."""
    from hdmole.files import data_version, file_version

    data = config.data
    extra = (data.ctc_text,) if data.ctc_text else ()
    model = config.model if isinstance(config.model, dict) else {}
    tokenizer_model = config.tokenizer.get("model") if isinstance(config.tokenizer, dict) else None
    lexicon = data.lm_prefix.lexicon if data.lm_prefix is not None else ""
    optional = {"data.dev": data.dev, "data.accents": data.accents, "data.cmvn": data.cmvn,
                "tokenizer.model": tokenizer_model, "model.ctc_units": model.get("ctc_units"),
                "data.lm_prefix.lexicon": lexicon}
    return {"init": [file_version(p) for p in config.init], "data.train": data_version(data.train, extra),
            **{key: (data_version(path, extra) if key == "data.dev" else file_version(path))
               for key, path in optional.items() if path and key not in UNREAD_INPUTS.get(config.mode, ())}}


def trained_from_other_inputs(exp_dir: Path, inputs: dict, unread: tuple[str, ...] = ()) -> str | None:
    """What changed, by content, among the files the checkpoints (or summary) in ``exp_dir`` were made
    from (its train_inputs.json); None if nothing was made yet, nothing changed, or there is no record
    (an exp dir from before the record: it is recorded from now on). Keys in ``unread`` (UNREAD_INPUTS) are not
    compared: a record written before they were left out still holds them."""
    from hdmole.files import changed_inputs, read_inputs_record

    old = read_inputs_record(exp_dir / INPUTS_RECORD)
    if old is None or not has_results(exp_dir):
        return None
    old = {key: version for key, version in old.items() if key not in unread}
    changed = changed_inputs(old, inputs)
    if not changed:
        return None
    return (f"{exp_dir} was trained from other inputs: {', '.join(changed)} changed (content) since its checkpoints "
            f"were made ({exp_dir / INPUTS_RECORD} records what they were made from). Fix: train in a fresh "
            f"--exp-dir, or restore those files, or remove {exp_dir} if its results are no longer wanted")


def _leave_process_group() -> None:
    """Tear the process group down before the interpreter exits. Left to the interpreter's own shutdown,
    gloo's worker threads can still be joinable when their C++ objects are destroyed, and the process dies
    with "terminate called without an active exception" (SIGABRT) after training finished: torchrun then
    reports the whole run as failed. Called on success only: a failing rank exits non-zero anyway, and
    tearing down a communicator with collectives still pending (NCCL) could block its exit. Not enough on its
    own: a finished rank also leaves through ``_exit_rank``."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hdmole.bin.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="training YAML")
    parser.add_argument("--exp-dir", required=True, help="experiment directory (created)")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="change one config value, e.g. --override optim.lr=5e-4 (repeatable)")
    parser.add_argument("--no-resume", action="store_true", help="refuse to continue an exp dir with checkpoints")
    parser.add_argument("--force", action="store_true", help="train again even if train_summary.json says done")
    parser.add_argument("--verbose", action="store_true", help="on an error, print its traceback too (train.log has it)")
    args = parser.parse_args(argv)

    from hdmole.logs import failure_message, log_failure
    from hdmole.train.config import ConfigError, load_train_config

    exp_dir = Path(args.exp_dir)
    is_main = int(os.environ.get("RANK", "0")) == 0
    try:
        config, resolved = load_train_config(args.config, args.override)
        changed = trained_with_other_config(exp_dir, resolved)
        if changed:
            raise ConfigError(changed)
        inputs = training_inputs(config)
        changed = trained_from_other_inputs(exp_dir, inputs, UNREAD_INPUTS.get(config.mode, ()))
        if changed:
            raise ConfigError(changed)
    except (ConfigError, OSError) as e:
        print(f"hdmole.bin.train: {failure_message(e)}", file=sys.stderr)
        return 2
    summary_file = exp_dir / "train_summary.json"
    if summary_file.exists() and not args.force:
        done = json.loads(summary_file.read_text())
        if done.get("steps", 0) >= config.optim.max_steps or done.get("epochs", 0) >= config.optim.max_epochs:
            print(f"hdmole.bin.train: {exp_dir} is already trained ({done['steps']} steps); --force to train again")
            return 0
    from hdmole.logs import setup_stage_logging

    try:
        exp_dir.mkdir(parents=True, exist_ok=True)
        if args.no_resume and any(exp_dir.glob("ckpt-*.pt")):
            print(f"hdmole.bin.train: {exp_dir} has checkpoints and --no-resume was given", file=sys.stderr)
            return 2
        # Only rank 0 writes the log; the other ranks report warnings and errors alone.
        setup_stage_logging(exp_dir / "train.log" if is_main else None, logging.INFO if is_main else logging.WARNING,
                            verbose=args.verbose)
        if is_main:
            # Kept as it is once checkpoints exist: it records what they were made with (checked above).
            if not has_results(exp_dir) or not (exp_dir / "config.yaml").is_file():
                (exp_dir / "config.yaml").write_text(yaml.safe_dump(resolved, allow_unicode=True, sort_keys=False))
            if not has_results(exp_dir) or not (exp_dir / INPUTS_RECORD).is_file():
                from hdmole.files import write_inputs_record

                write_inputs_record(exp_dir / INPUTS_RECORD, inputs)
            cmd = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "hdmole.bin.train", *sys.argv[1:]])
            (exp_dir / "cmd").write_text(cmd + "\n")
    except OSError as e:
        why = f"{e.filename}: {e.strerror}" if e.filename and e.strerror else str(e)
        print(f"hdmole.bin.train: cannot use {exp_dir} as the exp dir ({why}); choose another --exp-dir", file=sys.stderr)
        return 2

    from hdmole.train.trainer import NonFiniteLossError, Trainer

    log = logging.getLogger("hdmole.train")
    try:
        summary = Trainer(config, {"config_file": str(args.config)}, exp_dir).run()
    except (ValueError, OSError, NonFiniteLossError) as e:
        # Bad config values, data, tokenizer or checkpoints (ConfigError, DataError and CheckpointError
        # are ValueErrors; our other ValueErrors name their cause too), a missing or unwritable file.
        log_failure(log, e)
        return 1
    _leave_process_group()
    if is_main:
        log.info("done: %s", json.dumps({k: summary[k] for k in (
            "system", "steps", "train_seconds", "trainable_params", "dev")}, ensure_ascii=False))
    return 0


def _exit_rank() -> None:
    """Exit a torchrun rank that finished without the interpreter's C++ teardown. Leaving the process group
    (``_leave_process_group``) did not suffice: a test that destroys its gloo group too
    (tests/test_nn_ddp.py) died in CI with "terminate called without an active exception" (SIGABRT) after
    all its work was checked, i.e. in the teardown at interpreter exit, where a gloo thread is still
    joinable (pytorch/pytorch#179291 discusses the same crash). Everything this rank wrote is closed by now
    (checkpoints, the summary); the logs are flushed here, then ``os._exit`` skips that teardown."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    exit_code = main()
    if exit_code == 0 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        _exit_rank()
    sys.exit(exit_code)
