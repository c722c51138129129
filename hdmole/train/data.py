"""The data a training stage reads: its train and dev loaders (speech, or text for the lm mode), the cache of
the frozen encoder's outputs (router and adapt modes), and the speaker-pooled router logits of
``global_router.pool: speaker`` (adapt mode). The trainer calls these once, before its first step."""

from __future__ import annotations

import logging

import torch
from torch import nn

from hdmole.data import AccentList, build_dataloader
from hdmole.train.config import ConfigError, TrainConfig
from hdmole.files import data_version, file_version
from hdmole.train.encoder_cache import EncoderCache, shared_encoder_cache
from hdmole.train.lm_data import build_noisy_prefix, build_text_loader

log = logging.getLogger("hdmole.train")


def build_loaders(c: TrainConfig, tok, accents: AccentList | None, rank: int = 0, world: int = 1):
    """(train loader, dev loader or None) for the config's mode; the train loader shards over the ranks."""
    if c.mode == "lm":
        prefix = build_noisy_prefix(c.data.lm_prefix, tok)
        train = build_text_loader(c.data.train, tok, max_tokens=c.data.max_frames, shuffle=True, seed=c.seed,
                                  rank=rank, world_size=world, prefix=prefix)
        dev = (build_text_loader(c.data.dev, tok, max_tokens=c.data.max_frames, shuffle=False, seed=c.seed,
                                 prefix=prefix) if c.data.dev else None)
        return train, dev
    specaug = c.data.specaug if c.mode == "base" else None  # frozen encoder later: no augmentation
    common = dict(max_frames=c.data.max_frames, seed=c.seed, tokenizer=tok, cmvn=c.data.cmvn)
    units = (c.model or {}).get("ctc_units")
    if units and c.mode == "base":  # the CTC loss only trains in the base mode (the encoder is frozen after)
        if not c.data.ctc_text:
            raise ConfigError("the model's CTC head is on ctc_units: set data.ctc_text (the data-dir file of units, "
                              "e.g. pinyin)")
        common.update(ctc_text=c.data.ctc_text, ctc_tokenizer={"type": "units", "list": units})
    train = build_dataloader(c.data.train, accents, shuffle=True, specaug=specaug, rank=rank,
                             world_size=world, num_workers=c.data.num_workers, **common)
    dev = (build_dataloader(c.data.dev, accents, shuffle=False, num_workers=c.data.num_workers, **common)
           if c.data.dev else None)
    return train, dev


def _in_order(c: TrainConfig, data_dir: str, accents: AccentList | None):
    """A set read whole and in order (no shard, no shuffle): what the one-off passes before training read."""
    return build_dataloader(data_dir, accents, max_frames=c.data.max_frames, shuffle=False, seed=c.seed,
                            cmvn=c.data.cmvn)


def fill_encoder_cache(model: nn.Module, c: TrainConfig, accents: AccentList | None, device: torch.device,
                       show_progress: bool = True) -> EncoderCache | None:
    """The frozen encoder's outputs of every train and dev utterance (router and adapt modes with
    ``data.cache_encoder``), so that each step runs the projector and the LLM only."""
    if c.mode not in ("router", "adapt") or not c.data.cache_encoder:
        return None
    # Every rank encodes the whole set (not its shard): the shards change from epoch to epoch.
    loaders = [(f"{name} set", _in_order(c, data_dir, accents))
               for name, data_dir in (("train", c.data.train), ("dev", c.data.dev)) if data_dir]
    inputs = {"sets": [data_version(d) if d else None for d in (c.data.train, c.data.dev)],
              "cmvn": file_version(c.data.cmvn) if c.data.cmvn else None, "max_frames": c.data.max_frames,
              "device": device.type}
    return shared_encoder_cache(model, loaders, device, c.data.encoder_cache_dir, inputs, show_progress)[0]


def pooled_route_logits(model: nn.Module, c: TrainConfig, accents: AccentList | None, device: torch.device,
                        cache: EncoderCache | None) -> dict | None:
    """With ``global_router.pool: speaker``: every train and dev utterance's pooled router logits (its
    speaker's evidence), computed once: the router is frozen, so they are constants (train as you route)."""
    if c.mode != "adapt" or getattr(model, "route_pooling", "utterance") == "utterance":
        return None
    if any(p.requires_grad for p in model.global_router.parameters()):
        raise ConfigError("global_router.pool: speaker pools a frozen router's posteriors over each speaker before "
                          "training; set adapter.train_global_router: false (or route by utterance)")
    from hdmole.models.speaker_routing import speaker_route_logits

    pooled: dict = {}
    attach = (lambda b: cache.attach(b, device)) if cache is not None else None
    for data_dir in (c.data.train, c.data.dev):
        if data_dir:
            pooled.update(speaker_route_logits(model, _in_order(c, data_dir, accents), device,
                                               model.route_pool_first_k, attach))
    log.info("speaker-level routing: pooled router posteriors of %d utterances", len(pooled))
    return pooled
