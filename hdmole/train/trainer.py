"""The training loop shared by every mode (lm, base, router, adapt) and every system.

AdamW with warmup + decay (transformers' schedulers), gradient clipping and accumulation, DDP through
``torchrun`` (gloo on CPU, nccl on GPU), bf16 or fp16 autocast on GPU (fp16 with loss scaling), a tqdm bar and a log file, atomic
checkpoints (the last N plus the best on dev), exact resume after a kill (model, optimizer, scheduler,
RNG and the position in the epoch are restored), and a clear stop on a non-finite loss.

One optimizer step takes ``optim.accum_grad`` batches on each rank (with ``optim.global_batches``: that many
batches over all ranks, accum_grad derived from the number of processes) (fewer at the end of an epoch: a step
never spans two epochs, so a checkpoint always lies between two steps' batches and resume is exact). The
step's loss is normalised over all of them: the batches' ``loss_counts`` (tokens, utterances) are summed
over the micro-batches and all-reduced over the ranks first, and each batch back-propagates its loss sum
divided by those totals (times the world size, which DDP's gradient averaging divides out). So W ranks x
A micro-batches give the gradient of one process on the concatenated batches (per-token mean), not the
mean of per-batch means (which weighted a short batch's tokens more), and the logged ``loss`` is that
step loss over every rank; the other logged values are rank 0's per-batch means.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import itertools
import json
import logging
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm
from transformers import get_scheduler

from hdmole.data import AccentList
from hdmole.data.accents import check_domain_coverage
from hdmole.models.build import build_model
from hdmole.models.checkpoint import read_checkpoint
from hdmole.models.precision import autocast
from hdmole.models.state import load_partial_state
from hdmole.text.tokenizer import build_tokenizer
from hdmole.train.checkpoint import RESUME_FIX, atomic_save, inference_part, latest_checkpoint, save_checkpoint
from hdmole.train.config import ConfigError, TrainConfig, accum_grad_for
from hdmole.train.data import build_loaders, fill_encoder_cache, pooled_route_logits
from hdmole.train.lm_data import LossPositionsLM, lm_forward, lm_loss_counts
from hdmole.train.setup import load_init, prepare_model, saved_state

log = logging.getLogger("hdmole.train")
PHASES = {"router": "router pre-training", "adapt": "adaptation"}
LOGGED = ("loss_asr", "loss_ctc", "loss_accent", "loss_gate", "acc")  # per-batch values averaged into the log records


def _warmup_then_constant(step: int, warmup: int) -> float:
    """Learning-rate factor of the threshold group: the same linear warmup as the rest, then constant."""
    return min(1.0, (step + 1) / max(1, warmup)) if warmup > 0 else 1.0


class NonFiniteLossError(RuntimeError):
    pass


def init_distributed(device_pref: str, timeout_s: float = 1800.0) -> tuple[int, int, torch.device]:
    """Rank, world size and device; joins the process group with an explicit timeout: a collective that
    waits longer (a rank that died, a node that never came) fails after ``timeout_s`` seconds instead of the
    backend's default."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_pref == "cuda" or (device_pref == "auto" and torch.cuda.is_available())
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=datetime.timedelta(seconds=timeout_s))
    return rank, world, device


class Trainer:
    def __init__(self, config: TrainConfig, info_extra: dict, exp_dir: str | os.PathLike):
        self.config, self.exp_dir = config, Path(exp_dir)
        self.rank, self.world, self.device = init_distributed(config.device, config.dist_timeout_s)
        self.is_main = self.rank == 0
        self.accum_grad = accum_grad_for(config.optim, self.world)
        if config.optim.global_batches is not None and self.accum_grad * self.world != config.optim.global_batches:
            log.warning("optim.global_batches %d over %d processes: accum_grad %d, a global batch of %d batches",
                        config.optim.global_batches, self.world, self.accum_grad, self.accum_grad * self.world)
        torch.manual_seed(config.seed)
        self.tokenizer = build_tokenizer(config.tokenizer)
        self.accents = AccentList.load(config.data.accents) if config.data.accents else None
        if config.mode in ("router", "adapt"):  # before the model loads: every domain needs training data
            check_domain_coverage(config.data.train, config.data.dev, self.accents, PHASES[config.mode])
        model_conf = dict(config.model)
        if config.mode == "lm":  # text only: the router (and its accent count) play no part
            model_conf.pop("global_router", None)
        self.model = build_model(model_conf, self.tokenizer,
                                 num_accents=len(self.accents) if self.accents else None).to(self.device)
        load_init(self.model, config.init)
        if config.accent_weight is not None:
            self.model.accent_weight = config.accent_weight
        self.info = prepare_model(self.model, config, len(self.accents) if self.accents else 1)
        self.info.update(info_extra, config_sources=list(config.sources))  # provenance, for RESULTS.md
        if config.activation_checkpointing:
            self.model.checkpoint_activations()
        self.model.to(self.device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        if not self.params:
            raise ConfigError("nothing to train: every parameter is frozen (check 'trainable' / 'adapter')")
        # The lm mode trains the LLM on its own (its head on the loss positions), so that is what DDP wraps there.
        self.net = LossPositionsLM(self.model.llm) if config.mode == "lm" else self.model
        self.ddp = (nn.parallel.DistributedDataParallel(self.net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
                    if self.world > 1 else None)
        opt = config.optim
        self.optimizer = torch.optim.AdamW(self._param_groups(), lr=opt.lr, betas=tuple(opt.betas),
                                           weight_decay=opt.weight_decay)
        self.scheduler = get_scheduler(opt.scheduler, self.optimizer, num_warmup_steps=opt.warmup_steps,
                                       num_training_steps=opt.max_steps)
        for index, group in enumerate(self.optimizer.param_groups):
            if group.get("thresholds"):
                # The thresholds keep their rate after the warmup: annealed with the adapters', a tau that had
                # moved early could never move back (docs/method.md section 4).
                self.scheduler.lr_lambdas[index] = functools.partial(_warmup_then_constant, warmup=opt.warmup_steps)
        # float16 autocast (GPUs without bf16) flushes small gradients to zero unless the loss is scaled; the
        # scaler skips a step whose gradients overflowed and lowers the scale. Disabled it is the identity.
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.dtype == "float16")
        self.train_loader, self.dev_loader = self._loaders()
        self.cache = fill_encoder_cache(self.model, config, self.accents, self.device, show_progress=self.is_main)
        self.route_logits = pooled_route_logits(self.model, config, self.accents, self.device, self.cache)
        self.step = self.epoch = self.batch_in_epoch = 0
        self.train_seconds = 0.0
        self.best: float | None = None
        self.last_dev: dict = {}

    def _param_groups(self) -> list[dict]:
        """One group, or two when the HDMoLE thresholds have their own learning rate (optim.threshold_lr)."""
        opt = self.config.optim
        if opt.threshold_lr is None:
            return [{"params": self.params}]
        names = {id(p): n for n, p in self.model.named_parameters()}
        is_tau = [names[id(p)].endswith("hdmole_threshold_logit") for p in self.params]
        groups = [{"params": [p for p, t in zip(self.params, is_tau) if not t]}]
        if any(is_tau):
            groups.append({"params": [p for p, t in zip(self.params, is_tau) if t], "lr": opt.threshold_lr,
                           "weight_decay": 0.0, "thresholds": True})
        return [g for g in groups if g["params"]]

    # ------------------------------------------------------------------------------------ data
    def _loaders(self):
        """(train, dev) loaders; a method so that a test can give the trainer other batches."""
        return build_loaders(self.config, self.tokenizer, self.accents, self.rank, self.world)

    def _to_device(self, batch: dict) -> dict:
        batch = {k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in batch.items()}
        if self.cache is not None:
            batch = self.cache.attach(batch, self.device)
        if self.route_logits is not None:
            from hdmole.models.speaker_routing import attach_route_logits

            batch = attach_route_logits(batch, self.route_logits, self.device)
        return batch

    # ------------------------------------------------------------------------------------ forward
    def _autocast(self):
        return autocast(self.device, self.config.dtype)  # the same in every inference tool

    def forward(self, net: nn.Module, batch: dict, normalisers: dict | None = None) -> dict:
        """One batch through ``net``: the model (in lm mode the LLM alone, its head on the loss positions:
        LossPositionsLM), DDP-wrapped when training; ``normalisers``: the step's loss counts (see
        ``step_normalisers``)."""
        with self._autocast():
            if self.config.mode == "lm":
                return lm_forward(net, batch, normalisers)
            out = net(batch, compute_asr=self.config.mode != "router", normalisers=normalisers)
            if self.config.mode == "router":
                out["acc"] = out["accent_acc"]
            return out

    def _set_train_mode(self) -> None:
        """Frozen parts stay in eval mode: no dropout, and BatchNorm statistics (ESPnet's Conformer
        has them) are not moved by data the part does not train on."""
        self.model.train()
        for module in self.model.children():
            if not any(p.requires_grad for p in module.parameters()):
                module.eval()

    def _dev_shard(self):
        """This rank's share of the dev batches: batches rank, rank + world, ... (each batch once overall)."""
        if self.world == 1:
            return self.dev_loader
        loader = self.dev_loader
        batches = list(loader.batch_sampler)[self.rank :: self.world]
        return torch.utils.data.DataLoader(loader.dataset, batch_sampler=batches, collate_fn=loader.collate_fn,
                                           num_workers=loader.num_workers)

    @torch.no_grad()
    def validate(self) -> dict:
        """Dev loss and accuracy (per token; per utterance in router mode). Every rank validates its share and
        the sums are all-reduced, so no rank waits at a barrier while one validates the whole set."""
        if self.dev_loader is None:
            return {}
        self.model.eval()
        total = torch.zeros(3, dtype=torch.float64, device=self.device)  # loss * n, acc * n, n
        for batch in self._dev_shard():
            batch = self._to_device(batch)
            out = self.forward(self.net, batch)
            n = out.get("num_tokens", len(batch.get("utt_ids", batch.get("input_ids", []))))
            total += torch.tensor([float(out["loss"]) * n, float(out["acc"]) * n, n], dtype=torch.float64,
                                  device=self.device)
        if self.world > 1:
            dist.all_reduce(total)
        self._set_train_mode()
        n = max(float(total[2]), 1.0)
        return {"dev_loss": float(total[0]) / n, "dev_acc": float(total[1]) / n}

    # ------------------------------------------------------------------------------------ checkpoints
    def _state(self) -> dict:
        return {
            **self.info,
            "model": saved_state(self.model, self.config.mode, self.config.model),
            "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": torch.get_rng_state(), "train_seconds": self.train_seconds,
            "best": self.best, "dev": self.last_dev,
        }

    def save(self) -> None:
        if self.is_main:
            state = self._state()
            save_checkpoint(self.exp_dir, state, self.step, self.config.checkpoint.keep_last)
            log.info("step %d: checkpoint written (%s)", self.step, self.exp_dir / f"ckpt-{self.step}.pt")
        if self.world > 1:
            dist.barrier()

    def resume(self) -> bool:
        path = latest_checkpoint(self.exp_dir)
        if path is None:
            return False
        state = read_checkpoint(path, fix=RESUME_FIX)
        load_partial_state(self.model, state["model"], f"checkpoint {path}",
                           fix=f"it is not this experiment's; use a fresh exp dir or delete {self.exp_dir}/ckpt-*.pt")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):  # float16 training: the loss scale it had reached
            self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        self.train_seconds, self.best, self.last_dev = state["train_seconds"], state["best"], state.get("dev", {})
        log.info("resumed from %s (step %d, epoch %d, batch %d)", path, self.step, self.epoch, self.batch_in_epoch)
        return True

    def _is_better(self, dev: dict) -> bool:
        value = dev["dev_loss"] if self.config.checkpoint.metric == "loss" else -dev["dev_acc"]
        if self.best is None or value < self.best:
            self.best = value
            return True
        return False

    # ------------------------------------------------------------------------------------ the loop
    def _append_log(self, record: dict) -> None:
        if self.is_main:
            with open(self.exp_dir / "train_log.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")

    def _all_finite(self, loss: torch.Tensor) -> bool:
        finite = torch.tensor([float(torch.isfinite(loss.detach()).all())], device=self.device)
        if self.world > 1:
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        return bool(finite.item())

    def _routing_recorder(self, batch: dict):
        from hdmole.nn import RoutingStatsRecorder, hdmole_layers

        if self.config.mode != "adapt" or not any(layer.num_experts > 1 for _, layer in hdmole_layers(self.model)):
            return None
        rec = RoutingStatsRecorder(self.model)
        if self.accents is not None and "accents" in batch:
            rec.set_domain_labels([self.accents.names[int(a)] for a in batch["accents"]])
        return rec

    def step_normalisers(self, window: list[dict]) -> dict[str, int]:
        """The loss counts (tokens, utterances) of one optimizer step's batches, summed over the ranks."""
        if self.config.mode == "lm":
            counts = [lm_loss_counts(b) for b in window]
        else:
            counts = [self.model.loss_counts(b, compute_asr=self.config.mode != "router") for b in window]
        keys = sorted(counts[0])
        totals = torch.tensor([sum(c[k] for c in counts) for k in keys], dtype=torch.float64, device=self.device)
        if self.world > 1:
            dist.all_reduce(totals)
        return {k: int(v) for k, v in zip(keys, totals.tolist())}

    def train_step(self, window: list[dict], record: bool) -> tuple[list[dict], dict | None, torch.Tensor]:
        """Forward and backward of one optimizer step's batches (gradients synchronised on the last one).
        Returns each batch's logged values (floats), the routing statistics of the last batch (when
        ``record``) and this rank's share of the step loss."""
        model = self.ddp if self.ddp is not None else self.net
        normalisers = self.step_normalisers(window)
        outs, step_loss = [], torch.zeros((), dtype=torch.float64, device=self.device)
        rec = None
        for i, batch in enumerate(window):
            batch = self._to_device(batch)
            last = i == len(window) - 1
            rec = self._routing_recorder(batch) if record and last else None
            with (rec if rec is not None else contextlib.nullcontext()):
                with (model.no_sync() if self.ddp is not None and not last else contextlib.nullcontext()):
                    out = self.forward(model, batch, normalisers)
                    if not self._all_finite(out["loss"]):
                        raise NonFiniteLossError(str(float(out["loss"].detach())))
                    # DDP averages the ranks' gradients: scaled by the world size, the sum over ranks remains.
                    self.scaler.scale(out["objective"] * self.world).backward()
            step_loss += out["objective"].detach().double()
            outs.append({k: float(out[k].detach()) for k in LOGGED if k in out})
        return outs, (rec.summary() if rec is not None else None), step_loss

    def _global_sum(self, value: torch.Tensor) -> float:
        if self.world > 1:
            value = value.clone()
            dist.all_reduce(value)
        return float(value)

    def run(self) -> dict:
        c = self.config
        resumed = self.resume()
        if self.is_main:
            log.info("training %s: %s (%d rank(s) on %s), up to %d steps%s", c.mode, self.info["system"], self.world,
                     self.device, c.optim.max_steps, " (resumed)" if resumed else "")
        self._set_train_mode()
        bar = tqdm(total=c.optim.max_steps, initial=self.step, disable=not self.is_main, desc=f"train {c.mode}",
                   dynamic_ncols=True)
        t0 = time.time()
        running: dict[str, float] = {}
        # This rank's share of the loss of the steps since the last log record (summed over ranks when logged).
        interval_loss, interval_steps = torch.zeros((), dtype=torch.float64, device=self.device), 0
        try:
            while self.step < c.optim.max_steps and self.epoch < c.optim.max_epochs:
                sampler = self.train_loader.batch_sampler
                sampler.set_epoch(self.epoch, skip_batches=self.batch_in_epoch)
                batches = iter(self.train_loader)
                epoch_done = False
                while self.step < c.optim.max_steps:
                    window = list(itertools.islice(batches, self.accum_grad))
                    if not window:  # every rank has as many batches, so all ranks end the epoch together
                        epoch_done = True
                        break
                    self.batch_in_epoch += len(window)
                    record = (self.step + 1) % c.log_every == 0
                    try:
                        outs, routing, step_loss = self.train_step(window, record)
                    except NonFiniteLossError as e:
                        self.save()
                        raise NonFiniteLossError(
                            f"non-finite loss ({e}) at step {self.step + 1}; the state before it is saved in "
                            f"{self.exp_dir}/ckpt-{self.step}.pt. A resume keeps this exp dir's config and data "
                            "(it refuses another lr, or changed data), so it would meet the same step: check the data "
                            "of this batch, then train in a fresh --exp-dir with a lower optim.lr or more "
                            f"optim.warmup_steps (or remove {self.exp_dir} and train it again).") from None
                    for out in outs:
                        for k, v in out.items():
                            running[k] = running.get(k, 0.0) + v
                        running["n"] = running.get("n", 0) + 1
                    interval_loss += step_loss
                    interval_steps += 1
                    self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
                    grad_norm = torch.nn.utils.clip_grad_norm_(self.params, c.optim.grad_clip)
                    self.scaler.step(self.optimizer)  # skipped (float16) when a gradient overflowed
                    self.scaler.update()
                    self.scheduler.step()
                    self.optimizer.zero_grad(set_to_none=True)
                    self.step += 1
                    bar.update(1)
                    if record:
                        n = running.pop("n")
                        loss = self._global_sum(interval_loss) / interval_steps
                        entry = {"step": self.step, "epoch": self.epoch, "lr": self.scheduler.get_last_lr()[0],
                                 "grad_norm": float(grad_norm), "elapsed": self.train_seconds + time.time() - t0,
                                 "loss": loss, **{k: v / n for k, v in running.items()}}
                        if routing:
                            entry["routing"] = routing
                        running = {}
                        interval_loss, interval_steps = torch.zeros_like(interval_loss), 0
                        bar.set_postfix(loss=f"{entry['loss']:.3f}", acc=f"{entry.get('acc', 0):.3f}")
                        log.info("step %d: %s", self.step, " ".join(f"{k}={v:.4g}" for k, v in entry.items()
                                                                    if isinstance(v, float) and k != "elapsed"))
                        self._append_log(entry)
                    if self.step % c.checkpoint.every_steps == 0 or self.step >= c.optim.max_steps:
                        self._end_of_interval(t0)
                        t0 = time.time()
                if epoch_done:
                    self.epoch += 1
                    self.batch_in_epoch = 0
        finally:
            bar.close()
        if self.step >= c.optim.max_steps or self.epoch >= c.optim.max_epochs:
            if not (self.exp_dir / f"ckpt-{self.step}.pt").exists():
                self._end_of_interval(t0)
        self._check_ranks_agree()
        return self._summary()

    def _end_of_interval(self, t0: float) -> None:
        self.train_seconds += time.time() - t0
        dev = self.validate()  # on every rank, each its share of the dev set
        if dev:
            self.last_dev = dev
            better = self._is_better(dev)
            if self.is_main:
                log.info("step %d: dev_loss=%.4f dev_acc=%.4f%s", self.step, dev["dev_loss"], dev["dev_acc"],
                         " (best)" if better else "")
            self._append_log({"step": self.step, **dev})
        else:
            better = self.dev_loader is None
        self.save()
        if self.is_main and better:
            atomic_save(inference_part(self._state()), self.exp_dir / "best.pt")

    def _check_ranks_agree(self) -> None:
        """DDP must leave every rank with the same parameters; a cheap checksum proves it."""
        if self.world == 1:
            return
        checksum = torch.stack([p.detach().double().sum() for p in self.params]).sum().reshape(1).to(self.device)
        gathered = [torch.zeros_like(checksum) for _ in range(self.world)]
        dist.all_gather(gathered, checksum)
        values = [float(g) for g in gathered]
        if max(values) - min(values) > 1e-6 * max(1.0, abs(values[0])):
            raise RuntimeError(f"DDP ranks disagree after training: parameter checksums {values}")
        if self.is_main:
            log.info("parameters agree across %d ranks (checksum %.6f)", self.world, values[0])

    def _summary(self) -> dict:
        summary = {k: v for k, v in self.info.items() if k != "adapter_config"}
        summary.update(adapter_config=self.info.get("adapter_config"), steps=self.step, epochs=self.epoch,
                       train_seconds=round(self.train_seconds, 1), dev=self.last_dev,
                       best=self.best, world_size=self.world, accum_grad=self.accum_grad)
        if self.is_main:
            (self.exp_dir / "train_summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
        return summary
