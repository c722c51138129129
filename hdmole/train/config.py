"""Training configs: one YAML file per system, checked against dataclasses so that a misspelt key
is an error that names it (and the valid keys) instead of a silently ignored setting.

A config looks like (every key optional except ``mode`` and ``model``)::

    mode: adapt                     # lm | base | router | adapt
    model: conf/model.yaml          # the model config (a path, relative to this file, or a dict)
    tokenizer: {type: sentencepiece, model: data/lang/char.model}
    init: [exp/base/best.pt]        # checkpoints loaded before training (in order)
    data: {train: data/train_accent, dev: data/dev_accent, accents: data/accents.txt, ...}
    trainable: [projector]          # base and adapt (full_ft): the model parts that train
    adapter: {system: hdmole, target_modules: [projector.linear1, projector.linear2], config: {...}}
    optim: {lr: 1.0e-3, max_steps: 1000, warmup_steps: 100, ...}
    checkpoint: {every_steps: 200, keep_last: 2}
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml

from hdmole.models.config_utils import load_yaml_mapping, resolve_model_conf

MODES = ("lm", "base", "router", "adapt")
SYSTEMS = ("full_ft", "lora", "mole", "hdmole")


class ConfigError(ValueError):
    """A config that cannot be used: the message names the file, the key and the fix."""


@dataclass
class LMPrefixConfig:
    """lm mode: the listening task of hdmole.train.lm_data (per-token probabilities)."""
    lexicon: str = ""                # Kaldi-style `word pron` lexicon; empty: no homophone noise
    canonical_prob: float = 0.0      # replaced by the canonical spelling of its pronunciation
    homophone_prob: float = 0.5      # else by a random token of the same pronunciation
    substitute_prob: float = 0.05    # by a random token of the text
    delete_prob: float = 0.03
    repeat_prob: float = 0.4         # one more copy (at most 3): speech has several frames a token


@dataclass
class DataConfig:
    train: str = ""                  # a data dir (ASR modes) or a text file, one sentence a line (lm)
    dev: str = ""
    accents: str = ""                # accents.txt: line order = domain index
    cmvn: str | None = None          # global CMVN stats from hdmole.bin.compute_cmvn
    max_frames: int = 20000          # batch budget: padded input frames (lm: padded tokens)
    specaug: dict | None = None      # hdmole.data SpecAugment options; base mode only
    num_workers: int = 0
    cache_encoder: bool = True       # router/adapt: the encoder is frozen, so run it once and cache
    lm_prefix: LMPrefixConfig | None = None  # lm: the noisy-prefix listening task (hdmole.train.lm_data)
    ctc_text: str = ""               # data-dir file of CTC target units (e.g. pinyin) for a model with ctc_units


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 100
    max_steps: int = 1000
    max_epochs: int = 1000
    scheduler: str = "cosine"        # any name transformers.get_scheduler knows
    grad_clip: float = 5.0
    accum_grad: int = 1
    # HDMoLE thresholds' own learning rate (no weight decay); null = lr. The threshold is one logit per layer
    # whose gradient is a sum over tokens of small terms: at the experts' lr it barely moves (0.10 -> 0.09).
    threshold_lr: float | None = None


@dataclass
class CheckpointConfig:
    every_steps: int = 200           # also the validation interval
    keep_last: int = 2
    metric: str = "loss"             # dev metric for best.pt: loss (lower is better) or acc


@dataclass
class AdapterConfig:
    system: str = "hdmole"           # full_ft | lora | mole | hdmole
    target_modules: list[str] = field(default_factory=lambda: ["projector.linear1", "projector.linear2"])
    config: dict = field(default_factory=dict)  # hdmole.nn.HDMoLEConfig fields
    train_global_router: bool = True  # stage 2 fine-tunes the global router too (freezable)


@dataclass
class TrainConfig:
    mode: str = ""
    model: Any = None                # dict, or a path to the model YAML
    tokenizer: dict = field(default_factory=dict)
    init: list[str] = field(default_factory=list)
    data: DataConfig = field(default_factory=DataConfig)
    trainable: list[str] = field(default_factory=list)
    adapter: AdapterConfig | None = None
    optim: OptimConfig = field(default_factory=OptimConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    seed: int = 0
    log_every: int = 20
    accent_weight: float | None = None  # overrides the model's L_accent weight (adapt: lambda_aid)
    device: str = "auto"             # auto | cpu | cuda
    dtype: str = "float32"           # float32 | bfloat16 (autocast on GPU)

    def validate(self, source: str) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"{source}: mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.model is None:
            raise ConfigError(f"{source}: 'model' is missing (a model YAML path or a dict)")
        if not self.data.train:
            raise ConfigError(f"{source}: data.train is missing")
        if self.mode != "lm" and not self.data.accents:
            raise ConfigError(f"{source}: data.accents (the accents.txt of the corpus) is missing")
        if self.mode == "adapt":
            if self.adapter is None:
                raise ConfigError(f"{source}: mode 'adapt' needs an 'adapter' section (system: {'|'.join(SYSTEMS)})")
            if self.adapter.system not in SYSTEMS:
                raise ConfigError(f"{source}: adapter.system must be one of {', '.join(SYSTEMS)}, "
                                  f"not {self.adapter.system!r}")
            if self.adapter.system == "full_ft" and not self.trainable:
                raise ConfigError(f"{source}: adapter.system full_ft needs 'trainable' (e.g. [projector])")
        if self.mode == "base" and not self.trainable:
            raise ConfigError(f"{source}: mode 'base' needs 'trainable' (e.g. [encoder, projector, ctc])")
        if self.data.lm_prefix is not None:
            if self.mode != "lm":
                raise ConfigError(f"{source}: data.lm_prefix is the LM stage's listening task; mode {self.mode!r} "
                                  "does not use it (remove it)")
            for f in dataclasses.fields(LMPrefixConfig):
                value = getattr(self.data.lm_prefix, f.name)
                if f.name.endswith("_prob") and not 0.0 <= value <= 1.0:
                    raise ConfigError(f"{source}: data.lm_prefix.{f.name} must be a probability in [0, 1], got {value}")
        if self.checkpoint.metric not in ("loss", "acc"):
            raise ConfigError(f"{source}: checkpoint.metric must be loss or acc")
        self._check_ranges(source)

    def _check_ranges(self, source: str) -> None:
        """Numbers that would fail deep inside training (or train nothing) are config errors here."""
        o, c, d = self.optim, self.checkpoint, self.data
        limits = [  # (key, value, ok, what it must be)
            ("optim.lr", o.lr, o.lr > 0, "> 0"),
            ("optim.weight_decay", o.weight_decay, o.weight_decay >= 0, ">= 0"),
            ("optim.warmup_steps", o.warmup_steps, o.warmup_steps >= 0, ">= 0"),
            ("optim.max_steps", o.max_steps, o.max_steps >= 1, ">= 1"),
            ("optim.max_epochs", o.max_epochs, o.max_epochs >= 1, ">= 1"),
            ("optim.grad_clip", o.grad_clip, o.grad_clip > 0, "> 0"),
            ("optim.accum_grad", o.accum_grad, o.accum_grad >= 1, ">= 1"),
            ("optim.betas", list(o.betas), all(0 <= b < 1 for b in o.betas), "two numbers in [0, 1)"),
            ("checkpoint.every_steps", c.every_steps, c.every_steps >= 1, ">= 1"),
            ("checkpoint.keep_last", c.keep_last, c.keep_last >= 1, ">= 1"),
            ("data.max_frames", d.max_frames, d.max_frames >= 1, ">= 1"),
            ("data.num_workers", d.num_workers, d.num_workers >= 0, ">= 0"),
            ("log_every", self.log_every, self.log_every >= 1, ">= 1"),
            ("device", self.device, self.device in ("auto", "cpu", "cuda"), "auto, cpu or cuda"),
            ("dtype", self.dtype, self.dtype in ("float32", "bfloat16"), "float32 or bfloat16"),
        ]
        for key, value, ok, what in limits:
            if not ok:
                raise ConfigError(f"{source}: {key} must be {what}, got {value!r}")


def _build(cls, value: Any, where: str, source: str):
    """Builds dataclass ``cls`` from a dict, recursively; unknown keys are errors."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: {where or 'the config'} must be a mapping, got {type(value).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - names)
    if unknown:
        raise ConfigError(f"{source}: unknown key {where + '.' if where else ''}{unknown[0]}; "
                          f"valid keys{' of ' + where if where else ''}: {', '.join(sorted(names))}")
    kwargs = {}
    for name, raw in value.items():
        hint = hints[name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        target = hint if dataclasses.is_dataclass(hint) else (args[0] if len(args) == 1 else None)
        if isinstance(hint, types.UnionType) and target is not None and dataclasses.is_dataclass(target):
            kwargs[name] = _build(target, raw, f"{where}.{name}" if where else name, source)
        elif dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, raw, f"{where}.{name}" if where else name, source)
        else:
            kwargs[name] = _coerce(raw, hint, f"{where}.{name}" if where else name, source)
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str, source: str) -> Any:
    """Numbers as the field says: YAML reads ``5e-3`` (no dot) as a string, and ``1`` for a float field
    as an int; both are what the user meant."""
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)
    if optional:
        if value is None:
            return None
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = rest[0] if len(rest) == 1 else hint
    # A string where a list belongs would be taken a character at a time ("unknown model part 'e'").
    if typing.get_origin(hint) is list and not isinstance(value, list):
        raise ConfigError(f"{source}: {key} must be a list, e.g. {key.rsplit('.', 1)[-1]}: [{value}], got {value!r}")
    if hint is dict and not isinstance(value, dict):
        _bad(key, value, "a mapping ({key: value, ...})", source)
    what = {float: "a number", int: "a whole number"}.get(hint)
    if what is not None:
        if isinstance(value, bool) or (hint is int and isinstance(value, float) and not value.is_integer()):
            _bad(key, value, what, source)
        try:
            return hint(value)
        except (TypeError, ValueError):
            _bad(key, value, what, source)
    if typing.get_origin(hint) is tuple:
        size = len(typing.get_args(hint))
        try:
            if isinstance(value, (list, tuple)) and len(value) == size:
                return tuple(float(v) for v in value)
        except (TypeError, ValueError):
            pass
        _bad(key, value, f"a list of {size} numbers", source)
    return value


def _bad(key: str, value: Any, what: str, source: str):
    raise ConfigError(f"{source}: {key} must be {what}, got {value!r}")


def set_by_path(d: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for k in keys[:-1]:
        d = d.setdefault(k, {})
        if not isinstance(d, dict):
            raise ConfigError(f"override {dotted}: {k} is not a mapping")
    d[keys[-1]] = value


def load_train_config(path: str | os.PathLike, overrides: list[str] = ()) -> tuple[TrainConfig, dict]:
    """Reads a training YAML (+ ``key.sub=value`` overrides), returns the checked config and the
    resolved plain dict (model YAML inlined) that the experiment dir keeps."""
    try:
        raw = load_yaml_mapping(path)
    except (OSError, ValueError) as e:
        raise ConfigError(str(e)) from None
    parsed = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, value = item.split("=", 1)
        parsed.append((key, yaml.safe_load(value)))
    # Overrides inside the model config apply after the model YAML is inlined (a `model=...` override
    # may itself name another model YAML).
    for key, value in parsed:
        if not key.startswith("model."):
            set_by_path(raw, key, value)
    try:
        raw["model"] = resolve_model_conf(raw.get("model"), path)
    except (OSError, ValueError) as e:
        raise ConfigError(str(e)) from None
    for key, value in parsed:
        if key.startswith("model."):
            set_by_path(raw, key, value)
    if isinstance(raw.get("init"), str):
        raw["init"] = [raw["init"]]
    config = _build(TrainConfig, raw, "", str(path))
    config.validate(str(path))
    return config, dataclasses.asdict(config)
