"""The LLM-based ASR model: speech encoder -> projector -> decoder-only LLM (docs/model.md); built from a
config by ``hdmole.models.build``."""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.nn import functional as F

from hdmole.models.encoder import SpeechEncoder
from hdmole.models.heard_units import heard_ngram_features
from hdmole.models.inputs import IGNORE_ID, assemble_prefix, assemble_training_inputs
from hdmole.models.projector import Projector

# What the global router pools: the encoder output, the CTC posteriors, the n-grams of the units the CTC
# head hears (greedy), or its heard syllables through per-domain tone channels (hdmole.models.tone_channel),
# see LLMASR.route_logits.
ROUTER_INPUTS = ("encoder", "ctc", "ctc_ngrams", "ctc_tones")


class LLMASR(nn.Module):
    """``[prompt ; projected speech ; (bos) ; text]`` into a causal LM, cross-entropy on text + eos only.

    Optional parts: ``global_router`` (hdmole.nn.GlobalRouter over the encoder output, one logit per accent
    domain; when HDMoLE layers are injected anywhere after the encoder its posterior is handed to them with
    ``hdmole.nn.global_routing``) and ``ctc`` (Linear(encoder d, vocab + 1), blank = the extra last id
    ``vocab_size``, so no text token is ever confused with blank).
    """

    def __init__(
        self,
        encoder: SpeechEncoder,
        projector: Projector,
        llm: nn.Module,
        prompt_ids: list[int],
        eos_id: int,
        bos_id: int | None = None,
        global_router: nn.Module | None = None,
        ctc_vocab_size: int | None = None,
        ctc_weight: float = 0.0,
        accent_weight: float = 0.0,
        router_grad: bool = False,
        router_input: str = "encoder",
        oracle_routing: bool = False,
        ctc_on_units: bool = False,
        route_pooling: str = "utterance",
        route_pool_first_k: int = 0,
        router_ngrams: tuple[int, int] = (2, 0),
    ):
        super().__init__()
        self.encoder, self.projector, self.llm = encoder, projector, llm
        self.global_router = global_router
        self.ctc = nn.Linear(encoder.output_size, ctc_vocab_size + 1) if ctc_vocab_size else None
        self.ctc_blank = ctc_vocab_size
        self.ctc_on_units = ctc_on_units
        self.ctc_weight, self.accent_weight, self.router_grad = ctc_weight, accent_weight, router_grad
        if router_input not in ROUTER_INPUTS:
            raise ValueError(f"global_router.input must be one of {ROUTER_INPUTS}, got {router_input!r}")
        if router_input != "encoder" and self.ctc is None:
            raise ValueError("global_router.input: ctc needs the CTC head (set ctc_weight > 0 in the model config)")
        self.router_input = router_input
        if oracle_routing and global_router is None:
            raise ValueError("oracle_routing needs the global_router section (it sets the number of domains)")
        self.oracle_routing = bool(oracle_routing)
        from hdmole.models.speaker_routing import POOLINGS

        if route_pooling not in POOLINGS:
            raise ValueError(f"global_router.pool must be one of {POOLINGS}, got {route_pooling!r}")
        if route_pooling != "utterance" and global_router is None:
            raise ValueError("global_router.pool: speaker needs the global_router")
        # Speaker-level routing: the data loop hands the pooled logits in as batch["route_logits"]
        # (hdmole.models.speaker_routing); the model itself only refuses to route without them.
        self.route_pooling, self.route_pool_first_k = route_pooling, int(route_pool_first_k)
        self.router_ngrams = router_ngrams  # (order, buckets) of the ctc_ngrams input
        self.eos_id, self.bos_id = eos_id, bos_id
        # Derived from the config and the tokenizer, so not part of the state dict.
        self.register_buffer("prompt_ids", torch.tensor(prompt_ids, dtype=torch.long), persistent=False)

    # ----- parts -------------------------------------------------------------------------------------------
    def encode(self, feats: torch.Tensor, feat_lens: torch.Tensor):
        """Encoder only: ``(enc_out [B, T', d], enc_lens [B])``, ``enc_out`` in the dtype of the parts that read
        it (projector, router, CTC head): an encoder loaded in half precision feeds fp32 parts without autocast."""
        enc_out, enc_lens = self.encoder(feats, feat_lens)
        return enc_out.to(next(self.projector.parameters()).dtype), enc_lens

    def route_logits(self, enc_out: torch.Tensor, enc_lens: torch.Tensor) -> torch.Tensor:
        if self.global_router is None:
            raise RuntimeError("this model has no global_router (set 'global_router' in the model config)")
        if self.router_input == "ctc_tones":  # a ToneChannelRouter reads the best path itself
            return self.global_router(self.ctc(enc_out).argmax(-1), enc_lens)
        if self.router_input == "ctc_ngrams":
            heard, lengths = self.heard_ngrams(enc_out, enc_lens)
            return self.global_router(heard, lengths)
        if self.router_input == "ctc":
            # What the CTC head hears: per frame its distribution over units given "not blank", weighted by
            # how much the frame is not blank, so the pooled vector is the expected histogram of heard units.
            # An accent is which sounds occur (mergers, shifted tones), not how one frame looks.
            probs = self.ctc(enc_out).float().softmax(-1)
            speech = 1.0 - probs[..., self.ctc_blank]
            heard = probs[..., : self.ctc_blank] / speech.clamp_min(1e-6)[..., None]
            return self.global_router(heard, enc_lens, weights=speech + 1e-6)
        return self.global_router(enc_out, enc_lens)

    @torch.no_grad()
    def heard_ngrams(self, enc_out: torch.Tensor, enc_lens: torch.Tensor):
        """``([B, 1, F], ones [B])``: the relative frequencies of the units the CTC head hears (greedy: best path,
        repeats merged, blanks dropped) and of their bigrams (hdmole.models.heard_units). Not differentiable:
        the router learns on top of the frozen recogniser."""
        best = self.ctc(enc_out).argmax(-1)
        order, buckets = self.router_ngrams
        out = heard_ngram_features(best, enc_lens, self.ctc_blank, order, buckets).to(enc_out.dtype)
        return out[:, None, :], torch.ones(best.size(0), dtype=torch.long, device=best.device)

    def route(self, enc_out: torch.Tensor, enc_lens: torch.Tensor) -> torch.Tensor:
        """Utterance-level accent posterior ``[B, D]`` from the global router."""
        return self.route_logits(enc_out, enc_lens).softmax(-1)

    def routing_posterior(self, enc_out: torch.Tensor, enc_lens: torch.Tensor,
                          accents: torch.Tensor | None = None,
                          route_logits: torch.Tensor | None = None) -> torch.Tensor | None:
        """The ``[B, D]`` posterior handed to the HDMoLE layers: the global router's (of this utterance, or with
        ``global_router.pool: speaker`` the pooled ``route_logits`` of its speaker), or with ``oracle_routing``
        the one-hot accent labels (an upper bound: it needs the labels at test time). Training and decoding
        both route through here."""
        if self.oracle_routing:
            if accents is None:
                raise ValueError("oracle_routing needs the accent label of every utterance (utt2accent)")
            return F.one_hot(accents.to(enc_out.device), self.global_router.num_domains).to(enc_out.dtype)
        if self.global_router is None:
            return None
        return self._routing_logits(enc_out, enc_lens, route_logits).softmax(-1)

    def _routing_logits(self, enc_out, enc_lens, route_logits):
        if self.route_pooling == "speaker":
            if route_logits is None:
                raise ValueError("global_router.pool: speaker routes every utterance with its speaker's pooled "
                                 "posterior, and this batch has none (batch['route_logits']): compute them with "
                                 "hdmole.models.speaker_routing.speaker_route_logits over the data set")
            return route_logits.to(device=enc_out.device, dtype=torch.float32)
        return self.route_logits(enc_out, enc_lens)

    def has_adapters(self) -> bool:
        from hdmole.nn import HDMoLELinear

        return any(isinstance(m, HDMoLELinear) for m in self.modules())

    def routing(self, probs: torch.Tensor | None):
        """Context handing the global posterior to every injected HDMoLE layer (no-op without adapters)."""
        if probs is None or not self.has_adapters():
            return contextlib.nullcontext()
        from hdmole.nn import global_routing

        return global_routing(self, probs if self.router_grad else probs.detach())

    def _gate_cost(self) -> torch.Tensor | None:
        if not self.has_adapters():
            return None
        from hdmole.nn import gate_cost

        return gate_cost(self)

    def project(self, enc_out: torch.Tensor, enc_lens: torch.Tensor):
        """Projector (call inside ``routing(probs)`` when it holds HDMoLE layers)."""
        return self.projector(enc_out, enc_lens)

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        return self.llm.get_input_embeddings()(ids)

    def prompt_embeds(self) -> torch.Tensor:
        return self.embed_tokens(self.prompt_ids)

    def decoding_prefix(self, speech: torch.Tensor, speech_lens: torch.Tensor):
        """Left-padded ``[prompt ; speech ; (bos)]``: (embeds, attention_mask, position_ids)."""
        bos = None
        if self.bos_id is not None:
            bos = self.embed_tokens(torch.tensor([self.bos_id], device=speech.device))[0]
        emb_dtype = self.llm.get_input_embeddings().weight.dtype
        return assemble_prefix(self.prompt_embeds(), speech.to(emb_dtype), speech_lens, bos)

    # ----- training ---------------------------------------------------------------------------------------
    def checkpoint_activations(self) -> int:
        """Activation (gradient) checkpointing of the LLM's and the encoder's layers: each layer's activations
        are recomputed in the backward pass instead of kept. Unlike transformers' own switch it also acts on
        frozen parts in eval mode, which is what the projector's gradient passes through the frozen LLM.
        Returns the number of layers wrapped."""
        stacks = [getattr(self.llm.base_model, "layers", None)]
        whisper = getattr(self.encoder, "whisper", None)
        stacks.append(getattr(whisper, "layers", None))
        stacks.append(getattr(getattr(self.encoder, "conformer", None), "encoders", None))
        wrapped = 0
        for stack in stacks:
            for layer in stack or ():
                _checkpoint_forward(layer)
                wrapped += 1
        return wrapped

    def _speech_and_route(self, batch: dict, out: dict):
        if "enc_out" in batch:  # cached encoder outputs (frozen encoder in the router/adapt stages)
            enc_out, enc_lens = batch["enc_out"], batch["enc_lens"]
        else:
            enc_out, enc_lens = self.encode(batch["feats"], batch["feat_lens"])
        probs = None
        if self.global_router is not None:
            # the utterance's own logits train the router (router pre-training, or a router trained jointly)
            logits = self.route_logits(enc_out, enc_lens)
            accents = batch.get("accents")
            if accents is not None:
                accents = accents.to(logits.device)
                out["loss_accent"] = F.cross_entropy(logits.float(), accents)
                out["accent_acc"] = (logits.argmax(-1) == accents).float().mean().detach()
            if self.oracle_routing or self.route_pooling != "utterance":
                probs = self.routing_posterior(enc_out, enc_lens, batch.get("accents"), batch.get("route_logits"))
            else:
                probs = logits.softmax(-1)
        return enc_out, enc_lens, probs

    def _ctc_loss(self, enc_out, enc_lens, text_ids, text_lens) -> torch.Tensor:
        log_probs = self.ctc(enc_out).float().log_softmax(-1).transpose(0, 1)  # [T, B, V+1]
        loss = F.ctc_loss(log_probs, text_ids, enc_lens, text_lens, blank=self.ctc_blank,
                          reduction="sum", zero_infinity=True)
        # Normalised per target token, like the cross-entropy, so ctc_weight means the same at any length.
        return loss / text_lens.sum().clamp(min=1)

    def _text_io(self, text_ids: torch.Tensor, text_lens: torch.Tensor):
        b = text_ids.size(0)
        targets = torch.cat([text_ids, text_ids.new_zeros(b, 1)], dim=1)
        targets.scatter_(1, text_lens[:, None], self.eos_id)
        if self.bos_id is not None:
            text_in = torch.cat([text_ids.new_full((b, 1), self.bos_id), text_ids], dim=1)
            return text_in, text_lens + 1, targets, text_lens + 1
        return text_ids, text_lens, targets, text_lens + 1

    def loss_counts(self, batch: dict, compute_asr: bool = True) -> dict[str, int]:
        """What each loss term of ``forward`` averages over in ``batch``, read from the batch alone (before
        any forward pass): ``utterances`` (L_accent), and with ``compute_asr`` ``tokens`` (L_asr: text + eos)
        and ``ctc_tokens`` (L_ctc: its targets, the text or, with ``ctc_units``, the batch's units). A trainer
        sums them over every micro-batch and rank of an optimizer step and passes the sums to
        ``forward(normalisers=...)``."""
        text_lens = batch["text_lens"]
        counts = {"utterances": int(text_lens.numel())}
        if compute_asr:
            counts["tokens"] = int(text_lens.sum()) + int(text_lens.numel())
            # the CTC targets (units when the head has its own; a batch without them has no CTC term: the
            # head is frozen after the base stage, and forward names what is missing when it is not)
            on_units = self.ctc_on_units and "ctc_lens" in batch
            counts["ctc_tokens"] = int((batch["ctc_lens"] if on_units else text_lens).sum())
        return counts

    def _ctc_targets(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """The CTC head's targets and their lengths: its own units (``ctc_ids``) or the LLM's text tokens."""
        if not self.ctc_on_units:
            return batch["text_ids"], batch["text_lens"]
        if "ctc_ids" not in batch:
            raise ValueError("the model's CTC head is on ctc_units but the batch has no ctc_ids: set data.ctc_text "
                             "(the data-dir file of units, e.g. pinyin) in the training config")
        return batch["ctc_ids"], batch["ctc_lens"]

    def forward(self, batch: dict, compute_asr: bool = True, normalisers: dict | None = None) -> dict:
        """Losses for one batch.

        ``batch``: ``feats, feat_lens`` (or cached ``enc_out, enc_lens``), ``text_ids, text_lens`` and
        optionally ``accents``. Returns ``loss`` (total), ``loss_asr``, ``acc``, ``num_tokens`` and, where
        they apply, ``loss_ctc``, ``loss_accent``, ``accent_acc``. ``compute_asr=False`` skips the
        projector and the LLM (router stage): then ``loss`` is the accent cross-entropy alone.

        ``objective`` is what a trainer back-propagates: ``loss`` itself, or with ``normalisers`` (the
        ``loss_counts`` summed over all the batches of one optimizer step, on every rank) each term's sum over
        this batch divided by its count over the whole step. Summed over the step's batches it is then the
        loss of the step's data as one batch (per-token mean for L_asr and L_ctc, per-utterance for
        L_accent), however the data is split over ranks and micro-batches.
        """
        out: dict = {}
        enc_out, enc_lens, probs = self._speech_and_route(batch, out)
        text_ids = batch["text_ids"].to(enc_out.device)
        text_lens = batch["text_lens"].to(enc_out.device)
        # (weight, mean over this batch, its count here, the loss_counts key of that count)
        terms = []
        if "loss_accent" in out:
            n_utts = int(text_lens.numel())
            terms.append((self.accent_weight if compute_asr else 1.0, out["loss_accent"], n_utts, "utterances"))
        if not compute_asr:
            if "loss_accent" not in out:
                raise ValueError("compute_asr=False needs a global_router and batch['accents']")
            out["loss"] = out["loss_accent"]
            out["objective"] = _objective(terms, normalisers, out["loss"])
            return out
        total = 0.0
        # CTC trains the encoder (base mode); once the head is frozen its loss is a constant: skip it.
        if self.ctc is not None and self.ctc.weight.requires_grad:
            ctc_ids, ctc_lens = (t.to(enc_out.device) for t in self._ctc_targets(batch))
            out["loss_ctc"] = self._ctc_loss(enc_out, enc_lens, ctc_ids, ctc_lens)
            total = total + self.ctc_weight * out["loss_ctc"]
            # averaged over the CTC targets (units when the head has its own), so counted in them
            terms.append((self.ctc_weight, out["loss_ctc"], int(ctc_lens.sum()), "ctc_tokens"))
        if "loss_accent" in out:
            total = total + self.accent_weight * out["loss_accent"]
        with self.routing(probs):
            speech, speech_lens = self.project(enc_out, enc_lens)
            text_in, text_in_lens, targets, target_lens = self._text_io(text_ids, text_lens)
            embeds, mask, positions, labels = assemble_training_inputs(
                self.prompt_embeds(), speech.to(self.llm.get_input_embeddings().weight.dtype), speech_lens,
                self.embed_tokens(text_in), text_in_lens, targets, target_lens,
            )
            hidden = self.llm.base_model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                                         use_cache=False).last_hidden_state
            selected = labels != IGNORE_ID
            # The LM head only on the text positions: with a 150k-token vocabulary, logits for the speech
            # positions would dominate memory for nothing.
            logits = self.llm.get_output_embeddings()(hidden[selected]).float()
        gold = labels[selected]
        price = self._gate_cost()
        if price is not None:  # HDMoLE's price on active experts (hdmole.nn.gate_cost; active_cost > 0)
            out["loss_gate"] = price
            total = total + price
            # a mean over the batch's speech frames: counted per utterance, as L_accent is
            terms.append((1.0, price, int(text_lens.numel()), "utterances"))
        out["loss_asr"] = F.cross_entropy(logits, gold)
        out["acc"] = (logits.argmax(-1) == gold).float().mean().detach()
        out["num_tokens"] = int(gold.numel())
        out["loss"] = total + out["loss_asr"]
        terms.append((1.0, out["loss_asr"], out["num_tokens"], "tokens"))
        out["objective"] = _objective(terms, normalisers, out["loss"])
        return out


def _checkpoint_forward(layer: nn.Module) -> None:
    """``layer.forward`` through ``torch.utils.checkpoint`` whenever gradients are being recorded."""
    from torch.utils.checkpoint import checkpoint

    forward = layer.forward

    def checkpointed(*args, **kwargs):
        if torch.is_grad_enabled():
            return checkpoint(forward, *args, use_reentrant=False, **kwargs)
        return forward(*args, **kwargs)

    layer.forward = checkpointed


def _objective(terms: list, normalisers: dict | None, loss: torch.Tensor) -> torch.Tensor:
    """``sum_t weight_t * mean_t * count_t / normaliser_t``: each term's sum over the batch divided by its
    count over the whole optimizer step (``loss`` itself without normalisers). Counts are clamped at 1 as
    the means' own denominators are (a batch of empty texts has a CTC sum but no CTC tokens)."""
    if normalisers is None:
        return loss
    return sum(weight * mean * (max(count, 1) / max(normalisers[key], 1)) for weight, mean, count, key in terms)
