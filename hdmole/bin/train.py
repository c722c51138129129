"""Train one stage of one system: ``python -m hdmole.bin.train --config conf/x.yaml --exp-dir exp/x``.

Modes (the config's ``mode``): ``lm`` text-only LLM pretraining, ``base`` source-domain ASR,
``router`` stage-1 accent router, ``adapt`` stage-2 adaptation (``adapter.system``: full_ft | lora |
mole | hdmole). The exp dir receives ``config.yaml`` (resolved), ``cmd`` (the exact command),
``train.log``, ``train_log.jsonl``, checkpoints and ``train_summary.json``. A killed run started again
with the same command resumes from its last checkpoint; a finished one is skipped.
For several processes: ``torchrun --nproc_per_node N -m hdmole.bin.train ...``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from pathlib import Path

import yaml


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hdmole.bin.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="training YAML")
    parser.add_argument("--exp-dir", required=True, help="experiment directory (created)")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="change one config value, e.g. --override optim.lr=5e-4 (repeatable)")
    parser.add_argument("--no-resume", action="store_true", help="refuse to continue an exp dir with checkpoints")
    parser.add_argument("--force", action="store_true", help="train again even if train_summary.json says done")
    args = parser.parse_args(argv)

    from hdmole.train.config import ConfigError, load_train_config

    exp_dir = Path(args.exp_dir)
    is_main = int(os.environ.get("RANK", "0")) == 0
    try:
        config, resolved = load_train_config(args.config, args.override)
    except (ConfigError, OSError) as e:
        print(f"hdmole.bin.train: {e}", file=sys.stderr)
        return 2
    summary_file = exp_dir / "train_summary.json"
    if summary_file.exists() and not args.force:
        done = json.loads(summary_file.read_text())
        if done.get("steps", 0) >= config.optim.max_steps or done.get("epochs", 0) >= config.optim.max_epochs:
            print(f"hdmole.bin.train: {exp_dir} is already trained ({done['steps']} steps); --force to train again")
            return 0
    exp_dir.mkdir(parents=True, exist_ok=True)
    if args.no_resume and any(exp_dir.glob("ckpt-*.pt")):
        print(f"hdmole.bin.train: {exp_dir} has checkpoints and --no-resume was given", file=sys.stderr)
        return 2
    from hdmole.logs import setup_stage_logging

    # Only rank 0 writes the log; the other ranks report warnings and errors alone.
    setup_stage_logging(exp_dir / "train.log" if is_main else None, logging.INFO if is_main else logging.WARNING)
    if is_main:
        (exp_dir / "config.yaml").write_text(yaml.safe_dump(resolved, allow_unicode=True, sort_keys=False))
        cmd = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "hdmole.bin.train", *sys.argv[1:]])
        (exp_dir / "cmd").write_text(cmd + "\n")

    from hdmole.train.trainer import NonFiniteLossError, Trainer

    try:
        summary = Trainer(config, {"config_file": str(args.config)}, exp_dir).run()
    except (ConfigError, NonFiniteLossError) as e:
        logging.getLogger("hdmole.train").error("%s", e)
        return 1
    if is_main:
        logging.getLogger("hdmole.train").info("done: %s", json.dumps({k: summary[k] for k in (
            "system", "steps", "train_seconds", "trainable_params", "dev")}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
