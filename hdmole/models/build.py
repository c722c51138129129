"""Building an ``LLMASR`` from a model config (a YAML-style dict; every key in docs/model.md), and the checks
of that config that need nothing built (``check_model_conf``, run by the training config at load time)."""

from __future__ import annotations

from torch import nn

from hdmole.models.config_utils import check_keys, check_sizes
from hdmole.models.encoder import WHISPER_KEYS, build_encoder
from hdmole.models.heard_units import ngram_feature_size
from hdmole.models.llm import LLM_KEYS, build_llm
from hdmole.models.llm_asr import LLMASR, ROUTER_INPUTS
from hdmole.models.projector import Projector

MODEL_KEYS = {
    "encoder", "projector", "llm", "global_router", "ctc_weight", "accent_weight", "prompt", "use_bos",
    "router_grad", "oracle_routing", "ctc_units",
}
PROJECTOR_KEYS = {"stack", "hidden", "tail"}
MAX_NGRAM_FEATURES = 1_000_000  # unit bigrams: V^2 features, fine for a few hundred units, not for 150k tokens
# GlobalRouter's keys + what the model does around it: its input, and the pooling over a speaker's utterances
# (hdmole.models.speaker_routing: pool: utterance | speaker, pool_first_k: 0 = every utterance of the speaker)
# (ngram_order: 1 | 2, ngram_buckets: hash the bigrams into this many features, 0 = one each; input: ctc_ngrams)
# (input: ctc_tones takes dropout and num_domains only, hdmole/models/tone_channel.py)
ROUTER_KEYS = {"hidden", "dropout", "num_domains", "log_pooled", "log_floor", "input", "pool", "pool_first_k",
               "ngram_order", "ngram_buckets"}
DEFAULT_PROMPT = "转写："


def _prompt_ids(prompt, tokenizer) -> list[int]:
    if prompt is None:
        prompt = DEFAULT_PROMPT
    if isinstance(prompt, str):
        return list(tokenizer.encode(prompt)) if prompt else []
    if isinstance(prompt, (list, tuple)) and all(isinstance(i, int) for i in prompt):
        bad = [i for i in prompt if not 0 <= i < tokenizer.vocab_size]
        if bad:
            raise ValueError(f"prompt ids {bad} are outside the tokenizer's vocabulary (size {tokenizer.vocab_size})")
        return list(prompt)
    raise ValueError(f"'prompt' must be a text string or a list of token ids, got {prompt!r}")


def _llm_conf_for_tokenizer(llm_conf: dict, tokenizer) -> dict:
    """A from-config LLM gets its vocabulary size and special ids from the tokenizer unless given."""
    llm_conf = dict(llm_conf)
    if "config" in llm_conf:
        cfg = dict(llm_conf["config"])
        cfg.setdefault("vocab_size", tokenizer.vocab_size)
        for key, value in (("pad_token_id", tokenizer.pad_id), ("bos_token_id", tokenizer.bos_id),
                           ("eos_token_id", tokenizer.eos_id)):
            if value is not None and value >= 0:
                cfg.setdefault(key, value)
        if cfg["vocab_size"] < tokenizer.vocab_size:
            raise ValueError(f"llm.config.vocab_size={cfg['vocab_size']} is smaller than the tokenizer's "
                             f"vocabulary ({tokenizer.vocab_size}); remove it to follow the tokenizer")
        llm_conf["config"] = cfg
    return llm_conf


def check_model_conf(conf: dict) -> None:
    """The checks of ``build_model`` that need nothing built: every key known, the required parts
    present, each part's keys (except the ESPnet Conformer's, checked against its signature when built).
    Training configs run it at load time, before any weights are loaded."""
    check_keys(conf, MODEL_KEYS, "model config")
    for key in ("encoder", "llm"):
        if key not in conf:
            raise ValueError(f"model config: missing required key {key!r}")
    check_keys(conf.get("projector") or {}, PROJECTOR_KEYS, "model config: projector")
    check_keys(conf["llm"], LLM_KEYS, "llm")
    if ("name_or_path" in conf["llm"]) == ("config" in conf["llm"]):
        raise ValueError("llm needs exactly one of 'name_or_path' (hub id or local dir) or 'config' (with 'type')")
    encoder = conf["encoder"]
    if not isinstance(encoder, dict):
        raise ValueError(f"model config: encoder must be a mapping, got {type(encoder).__name__}")
    if encoder.get("type") not in ("conformer", "whisper"):
        raise ValueError(f"encoder 'type' must be 'conformer' or 'whisper', got {encoder.get('type')!r}")
    if encoder["type"] == "whisper":
        check_keys(encoder, WHISPER_KEYS, "encoder (type: whisper)")
    if conf.get("global_router") is not None:
        check_keys(conf["global_router"], ROUTER_KEYS, "model config: global_router")
    check_sizes(conf)


def build_model(conf: dict, tokenizer, num_accents: int | None = None, llm_weights: bool = True) -> LLMASR:
    """Build an ``LLMASR`` from a YAML-style dict (see docs/model.md for every key).

    ``num_accents`` (D, the number of lines of accents.txt) is needed when ``global_router`` is set, unless
    the router config gives ``num_domains``. ``llm_weights=False``: the LLM on the meta device (its shapes
    only, see ``build_llm``), for tools that run the encoder side alone.
    """
    check_model_conf(conf)
    encoder = build_encoder(conf["encoder"])
    llm = build_llm(_llm_conf_for_tokenizer(conf["llm"], tokenizer), weights=llm_weights)
    if llm.get_input_embeddings().num_embeddings < tokenizer.vocab_size:
        raise ValueError(f"the LLM's embedding table ({llm.get_input_embeddings().num_embeddings}) is smaller "
                         f"than the tokenizer's vocabulary ({tokenizer.vocab_size})")
    proj_conf = dict(conf.get("projector") or {})
    projector = Projector(encoder.output_size, llm.get_input_embeddings().embedding_dim,
                          stack=proj_conf.get("stack", 2), hidden=proj_conf.get("hidden", 2048),
                          tail=proj_conf.get("tail", "pad"))
    router, router_input, pooling, ngrams = None, "encoder", ("utterance", 0), (2, 0)
    ctc_weight = float(conf.get("ctc_weight", 0.0))
    ctc_vocab = tokenizer.vocab_size
    if conf.get("ctc_units"):  # CTC on its own units (a unit list file), not on the LLM's tokens
        if not ctc_weight > 0:
            raise ValueError("model config: ctc_units is set but ctc_weight is 0 (no CTC head)")
        from hdmole.text.tokenizer import UnitTokenizer

        ctc_vocab = UnitTokenizer(conf["ctc_units"]).vocab_size
    if conf.get("global_router") is not None:
        router_conf = dict(conf["global_router"])
        router_input = router_conf.pop("input", "encoder")
        if router_input not in ROUTER_INPUTS:
            raise ValueError(f"model config: global_router.input must be one of {ROUTER_INPUTS}, got {router_input!r}")
        if router_input != "encoder" and not ctc_weight > 0:
            raise ValueError(f"model config: global_router.input: {router_input} needs the CTC head (ctc_weight > 0)")
        ngrams = (int(router_conf.pop("ngram_order", 2)), int(router_conf.pop("ngram_buckets", 0)))
        d_in = {"encoder": encoder.output_size, "ctc": ctc_vocab,
                "ctc_ngrams": ngram_feature_size(ctc_vocab, *ngrams)}.get(router_input)
        if router_input == "ctc_ngrams" and d_in > MAX_NGRAM_FEATURES:
            raise ValueError(f"model config: global_router.input: ctc_ngrams over {ctc_vocab} CTC units means {d_in} "
                             "features; use a small unit list for the CTC head (ctc_units), or input: ctc")
        pooling = (router_conf.pop("pool", "utterance"), router_conf.pop("pool_first_k", 0))
        if router_input == "ctc_tones":
            router = _build_tone_router(router_conf, conf.get("ctc_units"), num_accents)
        else:
            router = _build_router(router_conf, d_in, num_accents)
    use_bos = conf.get("use_bos", True)
    if use_bos and (tokenizer.bos_id is None or tokenizer.bos_id < 0):
        raise ValueError("model config: use_bos is true but the tokenizer has no bos id; set use_bos: false")
    return LLMASR(
        encoder, projector, llm,
        prompt_ids=_prompt_ids(conf.get("prompt"), tokenizer),
        eos_id=tokenizer.eos_id,
        bos_id=tokenizer.bos_id if use_bos else None,
        global_router=router,
        ctc_vocab_size=ctc_vocab if ctc_weight > 0 else None,
        ctc_weight=ctc_weight,
        accent_weight=float(conf.get("accent_weight", 0.0)),
        router_grad=bool(conf.get("router_grad", False)),
        router_input=router_input,
        oracle_routing=bool(conf.get("oracle_routing", False)),
        ctc_on_units=bool(conf.get("ctc_units")),
        route_pooling=pooling[0],
        route_pool_first_k=pooling[1],
        router_ngrams=ngrams,
    )


def _build_tone_router(router_conf: dict, ctc_units: str | None, num_accents: int | None) -> nn.Module:
    from hdmole.models.tone_channel import ToneChannelRouter
    from hdmole.text.tokenizer import UnitTokenizer

    if not ctc_units:
        raise ValueError("model config: global_router.input: ctc_tones needs a CTC head on tonal units (ctc_units)")
    unused = sorted(k for k, v in router_conf.items() if k not in ("dropout", "num_domains") and v)
    if unused:
        raise ValueError(f"model config: global_router.input: ctc_tones has no {unused} (its keys: dropout, "
                         "num_domains, pool, pool_first_k)")
    num_domains = _num_domains(router_conf, num_accents)
    return ToneChannelRouter(UnitTokenizer(ctc_units).units, num_domains, dropout=float(router_conf.get("dropout", 0.1)))


def _num_domains(router_conf: dict, num_accents: int | None) -> int:
    num_domains = router_conf.pop("num_domains", num_accents)
    if num_domains is None:
        raise ValueError("model config: global_router needs the number of accents (pass num_accents from "
                         "accents.txt, or set global_router.num_domains)")
    if num_accents is not None and num_domains != num_accents:
        raise ValueError(f"global_router.num_domains={num_domains} but accents.txt lists {num_accents} accents")
    return num_domains


def _build_router(router_conf: dict, d_in: int, num_accents: int | None) -> nn.Module:
    from hdmole.nn import GlobalRouter

    num_domains = _num_domains(router_conf, num_accents)
    return GlobalRouter(d_in, num_domains, **router_conf)
