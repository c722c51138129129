"""Caching the frozen encoder's outputs for the router and adapt stages.

From router pre-training on, the speech encoder is frozen (and in eval mode, no SpecAugment), so its output for an
utterance never changes: running it once per utterance instead of once per step made adaptation
steps about 4x cheaper in a prototype on this project's 2-core machine. The cache lives in memory
(the mini corpus' encoder outputs are a few hundred MB at most); on a GPU with a large encoder, turn it
off with ``data.cache_encoder: false``.

With ``data.encoder_cache_dir`` the cache is also kept on disk, one file per (encoder weights, data, CMVN,
batching, torch threads and version) digest, so the trainings of one stage that share all of these (the
recipe's adaptation systems, seeds and source gates) encode once and load it after: each file holds
exactly the tensors a fill would compute, so a loaded cache trains bit for bit as a filled one. The
batching and the thread count are in the digest because they can change the last bits of the outputs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import torch
from tqdm import tqdm

from hdmole.files import atomic_write_text
from hdmole.train.checkpoint import atomic_save

log = logging.getLogger(__name__)


class EncoderCache:
    def __init__(self):
        self.outputs: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def fill(self, model, loader, device, desc: str, show_progress: bool = True) -> None:
        was_training = model.encoder.training
        model.encoder.eval()
        for batch in tqdm(loader, desc=f"encoding {desc} (cache)", disable=not show_progress, leave=False):
            missing = [i for i, u in enumerate(batch["utt_ids"]) if u not in self.outputs]
            if not missing:
                continue
            enc_out, enc_lens = model.encode(batch["feats"].to(device), batch["feat_lens"].to(device))
            for i in missing:
                self.outputs[batch["utt_ids"][i]] = enc_out[i, : int(enc_lens[i])].detach().cpu()
        model.encoder.train(was_training)
        log.info("encoder cache: %d utterances (%s)", len(self.outputs), desc)

    def attach(self, batch: dict, device) -> dict:
        """Adds ``enc_out [B, T', d]`` (zero padded) and ``enc_lens`` for the batch's utterances."""
        outs = [self.outputs[u] for u in batch["utt_ids"]]
        lens = torch.tensor([o.size(0) for o in outs], dtype=torch.long)
        padded = outs[0].new_zeros(len(outs), int(lens.max()), outs[0].size(1))
        for i, o in enumerate(outs):
            padded[i, : o.size(0)] = o
        batch = dict(batch)
        batch["enc_out"], batch["enc_lens"] = padded.to(device), lens.to(device)
        return batch

    def save(self, path: Path) -> None:
        """Written under a temporary name and renamed: a reader never sees a partial file, and two trainings
        that fill the same cache side by side both write whole (identical) files."""
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_save(self.outputs, path)
        log.info("encoder cache: saved %d utterances to %s", len(self.outputs), path)

    def load(self, path: Path) -> None:
        self.outputs.update(torch.load(path, map_location="cpu", weights_only=True))
        log.info("encoder cache: loaded %d utterances from %s (encoded by an earlier training)", len(self.outputs), path)


def cache_digest(encoder: torch.nn.Module, inputs: dict) -> str:
    """What decides the cached tensors: the encoder's weights and buffers, and ``inputs`` (the data's versions,
    the CMVN, the batching), with the torch version and thread count."""
    h = hashlib.sha256()
    for name, tensor in sorted(encoder.state_dict().items()):
        h.update(name.encode())
        h.update(str((tuple(tensor.shape), tensor.dtype)).encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    runtime = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    h.update(json.dumps({**inputs, **runtime}, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def shared_encoder_cache(model, loaders, device, cache_dir, inputs: dict,
                         show_progress: bool = True) -> tuple[EncoderCache, float | None]:
    """The encoder outputs of every utterance of ``loaders`` (``(description, loader)`` pairs, each read whole and
    in order), loaded from ``cache_dir`` when an earlier call with the same encoder, ``inputs`` and runtime saved
    them, otherwise encoded and saved there (``cache_dir`` None: encoded, not saved).

    The trainings of one stage share a file (``data.encoder_cache_dir``), and so do the decodings of every model
    adapted from one base (decode ``--encoder-cache-dir``). Returns the cache and, when it was loaded, the seconds
    its encoding took when it was made (None when encoded here): a decoder's real-time factor stays the cost of
    decoding from features. The seconds are written beside the tensors (``<digest>.json``) before them, so a
    complete ``<digest>.pt`` always has them."""
    cache = EncoderCache()
    path = Path(cache_dir) / f"{cache_digest(model.encoder, inputs)}.pt" if cache_dir else None
    if path is not None and path.is_file():
        cache.load(path)
        try:
            return cache, float(json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))["encoder_seconds"])
        except (OSError, ValueError, KeyError):
            log.info("%s: no record of its encoding time (made before it was kept)", path.with_suffix(".json"))
            return cache, 0.0
    start = time.perf_counter()
    for desc, loader in loaders:
        cache.fill(model, loader, device, desc, show_progress=show_progress)
    seconds = time.perf_counter() - start
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path.with_suffix(".json"),
                          json.dumps({"encoder_seconds": seconds, "utterances": len(cache.outputs)}) + "\n")
        cache.save(path)
    return cache, None


def data_set_encoder_cache(model, loader, *, data, cmvn, max_frames: int, device, precision, cache_dir,
                           show_progress: bool = True) -> tuple[EncoderCache, float | None]:
    """shared_encoder_cache for a whole data set read by an inference tool (decode, routing_stats), keyed by the
    encoder's weights and everything else that decides its outputs: the features (or a raw set's front end), the
    CMVN, the batching (it changes the last bits), the device, the autocast dtype, the torch version and threads.
    Called inside the tool's autocast, as its own encoding would be."""
    from hdmole.files import data_version, file_version

    data = Path(data)
    frontend = data / "frontend.json"
    inputs = {"set": data_version(data), "cmvn": file_version(cmvn) if cmvn else None,
              "frontend": file_version(frontend) if frontend.is_file() else None,
              "max_frames": max_frames, "device": str(device).split(":")[0], "autocast": str(precision)}
    return shared_encoder_cache(model, [(data.name, loader)], device, cache_dir, inputs, show_progress=show_progress)
