"""Training configs, checked against dataclasses so that a misspelt key is an error that names it (and the
valid keys) instead of a silently ignored setting. Every section is checked when the config is loaded,
before anything is built: ``adapter.config`` as an ``HDMoLEConfig``, the model, tokenizer and SpecAugment
keys (docs/configs.md).

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

An adaptation config may instead name a comparison system and leave its method to the shared definition
(``hdmole.train.systems``), with sizes per adapter kind::

    system: hdmole                  # or --override system=hdmole: conf/systems/hdmole.yaml is merged in
    adapter_defaults:               # adapter.config keys the system leaves out, by adapter kind
      mixture: {rank: 3, alpha: 6}  # mole, hdmole: each expert
      lora: {rank: 15, alpha: 30}   # the single LoRA
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from hdmole.data import AccentList, DataError
from hdmole.data.specaug import SpecAugment
from hdmole.models.build import check_model_conf
from hdmole.models.config_utils import load_yaml_mapping, resolve_model_conf
from hdmole.nn import HDMoLEConfig
from hdmole.text.tokenizer import check_tokenizer_conf
from hdmole.train.config_fields import ConfigError, build_dataclass
from hdmole.train.sizes import check_lora_parity
from hdmole.train.systems import UnknownSystemError, system_files

MODES = ("lm", "base", "router", "adapt")
SYSTEMS = ("full_ft", "lora", "mole", "hdmole")
# adapter_defaults: which entry fills the adapter.config of each adapter kind (full_ft has none).
DEFAULTS_FOR = {"mole": "mixture", "hdmole": "mixture", "lora": "lora"}


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
    encoder_cache_dir: str | None = None  # with cache_encoder: also keep the cache on disk here, shared by the
                                     # trainings of one encoder, data and batching (hdmole.train.encoder_cache)
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
    # The global batch: batches of data.max_frames per optimizer step over all processes (GPUs x nodes). Set,
    # it fixes accum_grad = global_batches / processes, so the batch, max_steps and warmup_steps (optimizer
    # steps) mean the same data on 1 GPU or 16; null: accum_grad as given, the batch grows with the GPUs.
    global_batches: int | None = None
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
    train_global_router: bool = True  # adaptation fine-tunes the global router too (freezable)
    # Route with the accent labels instead of the global router (an upper bound: test sets need labels);
    # a model behaviour, so loading the config sets the model's oracle_routing (kept in config.yaml).
    oracle_routing: bool = False
    # Speaker-level routing (beyond the paper; hdmole.models.speaker_routing): every utterance routed with the
    # router posterior pooled over its speaker's utterances (speaker_first_k > 0: the first k only, the online
    # case); sets the model's global_router.pool. Needs a frozen router (train_global_router: false).
    speaker_routing: bool = False
    speaker_first_k: int = 0


@dataclass
class TrainConfig:
    mode: str = ""
    model: Any = None                # dict, or a path to the model YAML
    tokenizer: dict = field(default_factory=dict)
    init: list[str] = field(default_factory=list)
    data: DataConfig = field(default_factory=DataConfig)
    trainable: list[str] = field(default_factory=list)
    adapter: AdapterConfig | None = None  # adapt mode; ``system: <name>`` fills it from conf/systems/
    optim: OptimConfig = field(default_factory=OptimConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    seed: int = 0
    log_every: int = 20
    accent_weight: float | None = None  # overrides the model's L_accent weight (adapt: lambda_aid)
    device: str = "auto"             # auto | cpu | cuda
    # Recompute the LLM's and encoder's layer activations in the backward pass instead of keeping them
    # (less memory for a frozen LLM the projector's gradient passes through, ~1/3 more compute).
    activation_checkpointing: bool = False
    # Several processes: how long a collective (gradient all-reduce, a checkpoint's barrier) may wait for the
    # other ranks before the run fails with an error, instead of the backend's own default.
    dist_timeout_s: float = 1800.0
    # float32 | bfloat16 | float16: the autocast on GPU (hdmole.models.precision); float16 adds loss scaling
    dtype: str = "float32"
    # The files this config was composed from (set by load_train_config): provenance for train_summary.json
    # and RESULTS.md. A class variable, not a field, so the resolved config.yaml does not change with it.
    sources: ClassVar[tuple[str, ...]] = ()

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
                raise ConfigError(f"{source}: mode 'adapt' needs an 'adapter' section (system: {'|'.join(SYSTEMS)}), "
                                  "or a comparison system (system: <name> or --override system=<name>)")
            if self.adapter.system not in SYSTEMS:
                raise ConfigError(f"{source}: adapter.system must be one of {', '.join(SYSTEMS)}, "
                                  f"not {self.adapter.system!r}")
            if self.adapter.system == "full_ft" and not self.trainable:
                raise ConfigError(f"{source}: adapter.system full_ft needs 'trainable' (e.g. [projector])")
            if self.adapter.system == "full_ft" and self.adapter.config:
                raise ConfigError(f"{source}: adapter.system full_ft trains 'trainable' itself and injects nothing; "
                                  "remove adapter.config")
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
            ("optim.global_batches", o.global_batches, o.global_batches is None or o.global_batches >= 1,
             ">= 1 (or null)"),
            ("optim.betas", list(o.betas), all(0 <= b < 1 for b in o.betas), "two numbers in [0, 1)"),
            ("checkpoint.every_steps", c.every_steps, c.every_steps >= 1, ">= 1"),
            ("checkpoint.keep_last", c.keep_last, c.keep_last >= 1, ">= 1"),
            ("data.max_frames", d.max_frames, d.max_frames >= 1, ">= 1"),
            ("data.num_workers", d.num_workers, d.num_workers >= 0, ">= 0"),
            ("log_every", self.log_every, self.log_every >= 1, ">= 1"),
            ("dist_timeout_s", self.dist_timeout_s, self.dist_timeout_s > 0, "> 0"),
            ("device", self.device, self.device in ("auto", "cpu", "cuda"), "auto, cpu or cuda"),
            ("dtype", self.dtype, self.dtype in ("float32", "bfloat16", "float16"), "float32, bfloat16 or float16"),
        ]
        for key, value, ok, what in limits:
            if not ok:
                raise ConfigError(f"{source}: {key} must be {what}, got {value!r}")
        if o.global_batches is not None and o.accum_grad != 1:
            raise ConfigError(f"{source}: optim.global_batches sets accum_grad from the number of processes; "
                              f"remove optim.accum_grad ({o.accum_grad}) or set optim.global_batches: null")


def accum_grad_for(optim: OptimConfig, world_size: int) -> int:
    """Batches per rank and optimizer step: ``optim.accum_grad``, or with ``optim.global_batches`` that many
    batches over all ``world_size`` processes (rounded to the nearest whole number, at least 1; the trainer
    logs the global batch it then has when the processes do not divide it)."""
    if optim.global_batches is None:
        return optim.accum_grad
    return max(1, round(optim.global_batches / world_size))


def set_by_path(d: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for k in keys[:-1]:
        d = d.setdefault(k, {})
        if not isinstance(d, dict):
            raise ConfigError(f"override {dotted}: {k} is not a mapping")
    d[keys[-1]] = value


def _parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    parsed = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, value = item.split("=", 1)
        parsed.append((key, yaml.safe_load(value)))
    return parsed


def _read(path: str | os.PathLike) -> dict:
    try:
        return load_yaml_mapping(path)
    except (OSError, ValueError) as e:
        raise ConfigError(str(e)) from None


def _merge(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``: mappings merged key by key, anything else replaced."""
    merged = dict(base)
    for key, value in over.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


def _compose_system(raw: dict, name: Any, path: str | os.PathLike) -> tuple[dict, list[str]]:
    """``raw`` (a recipe's adaptation config) with the files defining system ``name`` merged on top;
    each file is checked on its own first, so an error names the file that has the bad key."""
    try:
        files = system_files(str(name), Path(path).parent)
    except UnknownSystemError as e:
        raise ConfigError(f"{path}: system: {e}") from None
    for file in files:
        layer = _read(file)
        build_dataclass(TrainConfig, layer, "", str(file))
        raw = _merge(raw, layer)
    return raw, [str(file) for file in files]


def _apply_adapter_defaults(raw: dict, source: str) -> dict | None:
    """Fills ``adapter.config`` with the ``adapter_defaults`` entry of its adapter kind (the keys it does
    not set itself); the defaults' keys come first, as a hand-written config lists the sizes first.
    Returns the defaults, for the parity check once the accents are known."""
    defaults = raw.pop("adapter_defaults", None)
    if defaults is None:
        return None
    valid = sorted(set(DEFAULTS_FOR.values()))
    if not isinstance(defaults, dict) or set(defaults) - set(valid):
        raise ConfigError(f"{source}: adapter_defaults must map {' and '.join(valid)} to adapter.config keys, "
                          f"got {defaults!r}")
    fields = set(HDMoLEConfig.field_names())
    for group, values in defaults.items():
        unknown = sorted(set(values) - fields) if isinstance(values, dict) else ["(not a mapping)"]
        if unknown:
            raise ConfigError(f"{source}: adapter_defaults.{group}: unknown key {unknown[0]}; "
                              f"valid keys: {', '.join(sorted(fields))}")
    adapter = raw.get("adapter")
    config = adapter.get("config") or {} if isinstance(adapter, dict) else None
    if not isinstance(config, dict):
        return defaults  # no adapter section (validate() says so) or a malformed one (the adapter check says so)
    group = DEFAULTS_FOR.get(adapter.get("system", AdapterConfig.system))
    if group in defaults:
        adapter["config"] = {**defaults[group], **config}
    return defaults


def adapter_config_for(config: TrainConfig, num_accents: int) -> HDMoLEConfig | None:
    """The HDMoLE config of an adapt-mode system; None for full fine-tuning."""
    adapter = config.adapter
    if adapter is None or adapter.system == "full_ft":
        return None
    if not isinstance(adapter.config or {}, dict):
        raise ConfigError(f"adapter.config must be a mapping of HDMoLEConfig fields, got {adapter.config!r}")
    conf = dict(adapter.config or {})
    if adapter.system == "lora":
        # A single LoRA: one expert, nothing to route. Its rank is given so that its size matches HDMoLE's.
        for key, value in (("num_domains", 1), ("experts_per_domain", 1), ("routing", "none"), ("gating", "dense")):
            if conf.setdefault(key, value) != value:
                raise ConfigError(f"adapter.system lora is a single expert: adapter.config.{key} must be {value!r}")
    else:
        conf.setdefault("num_domains", num_accents)
        if adapter.system == "mole":
            conf.setdefault("routing", "local")
        if conf.get("source_domain") is not None and conf.get("routing", HDMoLEConfig.routing) == "local":
            # A mixture without the global posterior cannot keep the source domain apart; it gets the experts
            # HDMoLE has (one per target domain), so every mixture trains the same number of parameters.
            conf["num_domains"] -= 1
            conf["source_domain"] = None
        if conf.get("source_domain") is None:  # the source gate (e.g. from adapter_defaults) acts on a source path
            conf.pop("source_gate_bias", None)
            conf.pop("source_gate_hard", None)
    try:
        return HDMoLEConfig.from_dict(conf, source="adapter.config")
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from None


def check_sections(config: TrainConfig, source: str, adapter_defaults: dict | None = None) -> None:
    """The checks that building would do later, done now: a bad ``adapter.config`` fails before an LLM
    of several GB is loaded, not after. (The ESPnet Conformer's own arguments are checked when it is
    built: listing them needs espnet imported.)"""
    checks = [("model", lambda: check_model_conf(config.model)),
              ("data.specaug", lambda: SpecAugment.from_config(config.data.specaug))]
    if config.tokenizer:  # the template always passes one; a hand-run config may leave it to an override
        checks.append(("tokenizer", lambda: check_tokenizer_conf(config.tokenizer)))
    for where, check in checks:
        try:
            check()
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{source}: {where}: {e}") from None
    if config.mode == "adapt" and config.adapter.system != "full_ft":
        try:
            num_accents = len(AccentList.load(config.data.accents))
        except DataError as e:
            raise ConfigError(f"{source}: data.accents: {e}") from None
        try:
            adapter_config_for(config, num_accents)
            if adapter_defaults:  # the single LoRA's size follows E: checked in every system's run, not only lora's
                check_lora_parity(adapter_defaults, num_accents, config.data.accents)
        except ValueError as e:  # a ConfigError too
            raise ConfigError(f"{source}: {e}") from None


def load_train_config(path: str | os.PathLike, overrides: list[str] = ()) -> tuple[TrainConfig, dict]:
    """Reads a training YAML (+ ``key.sub=value`` overrides), returns the checked config and the
    resolved plain dict (model YAML inlined) that the experiment dir keeps.

    Order: the file; the system's files (``system``); the overrides; ``adapter_defaults``; the model
    YAML inlined; ``model.*`` overrides. ``config.sources`` lists the files, for provenance."""
    raw = _read(path)
    parsed = _parse_overrides(overrides)
    system = raw.pop("system", None)
    for key, value in parsed:
        if key == "system":
            system = value
    sources = [str(path)]
    if system is not None:
        raw, files = _compose_system(raw, system, path)
        sources += files
    # Overrides inside the model config apply after the model YAML is inlined (a `model=...` override
    # may itself name another model YAML).
    for key, value in parsed:
        if key != "system" and not key.startswith("model."):
            set_by_path(raw, key, value)
    adapter_defaults = _apply_adapter_defaults(raw, str(path))
    try:
        raw["model"] = resolve_model_conf(raw.get("model"), path)
    except (OSError, ValueError) as e:
        raise ConfigError(str(e)) from None
    for key, value in parsed:
        if key.startswith("model."):
            set_by_path(raw, key, value)
    adapter = raw.get("adapter")
    if isinstance(adapter, dict) and adapter.get("oracle_routing") and isinstance(raw.get("model"), dict):
        raw["model"]["oracle_routing"] = True
    if isinstance(adapter, dict) and adapter.get("speaker_routing") and isinstance(raw.get("model"), dict):
        if not isinstance(raw["model"].get("global_router"), dict):
            raise ConfigError(f"{path}: adapter.speaker_routing pools the global router's posteriors, and the model "
                              "has no global_router section")
        raw["model"]["global_router"] = {**raw["model"]["global_router"], "pool": "speaker",
                                         "pool_first_k": int(adapter.get("speaker_first_k", 0))}
    if isinstance(raw.get("init"), str):
        raw["init"] = [raw["init"]]
    config = build_dataclass(TrainConfig, raw, "", str(path))
    config.validate(str(path))
    check_sections(config, str(path), adapter_defaults)
    config.sources = tuple(str(Path(source).resolve()) for source in sources)
    return config, dataclasses.asdict(config)
