"""Shared helpers for the model and decoding tests (no tests here): a toy tokenizer and tiny configs."""

from __future__ import annotations

import torch


class ToyTokenizer:
    """Character tokenizer over a fixed alphabet: 0 = pad, 1 = bos, 2 = eos, 3 = unk, then the characters."""

    def __init__(self, alphabet: str = "转写：abcdefghijklmnopqrstuvwxyz 你好世界"):
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = 0, 1, 2, 3
        self.chars = list(dict.fromkeys(alphabet))
        self.index = {c: i + 4 for i, c in enumerate(self.chars)}
        self.vocab_size = len(self.chars) + 4

    def encode(self, text: str) -> list[int]:
        return [self.index.get(c, self.unk_id) for c in text]

    def decode(self, ids) -> str:
        return "".join(self.chars[i - 4] for i in ids if i >= 4)


def tiny_conf(encoder: str = "conformer", cnn: bool = False, ctc_weight: float = 0.3, router: bool = False,
              prompt="转写：") -> dict:
    if encoder == "conformer":
        enc = {"type": "conformer", "input_size": 80, "output_size": 32, "attention_heads": 2,
               "linear_units": 64, "num_blocks": 2, "input_layer": "conv2d", "use_cnn_module": cnn,
               "cnn_module_kernel": 7, "dropout_rate": 0.0, "positional_dropout_rate": 0.0}
    else:
        enc = {"type": "whisper", "config": tiny_whisper_config()}
    return {
        "encoder": enc,
        "projector": {"stack": 2, "hidden": 48},
        "llm": {"type": "qwen2", "config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                                             "num_attention_heads": 4, "num_key_value_heads": 2,
                                             "max_position_embeddings": 512}},
        "global_router": {"hidden": 16} if router else None,
        "ctc_weight": ctc_weight,
        "accent_weight": 0.1 if router else 0.0,
        "prompt": prompt,
    }


def tiny_whisper_config() -> dict:
    return {"num_mel_bins": 80, "d_model": 32, "encoder_layers": 2, "encoder_attention_heads": 2,
            "encoder_ffn_dim": 64, "decoder_layers": 1, "decoder_attention_heads": 2, "decoder_ffn_dim": 64,
            "max_source_positions": 200, "vocab_size": 100, "dropout": 0.0, "pad_token_id": 0, "bos_token_id": 1,
            "eos_token_id": 2, "decoder_start_token_id": 1}


def toy_batch(tokenizer: ToyTokenizer, frames=(60, 37), texts=("你好abc", "世界"), seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    b, t = len(frames), max(frames)
    feats = torch.zeros(b, t, 80)
    for i, n in enumerate(frames):
        feats[i, :n] = torch.randn(n, 80, generator=g)
    ids = [tokenizer.encode(x) for x in texts]
    length = max(len(x) for x in ids)
    text_ids = torch.full((b, length), tokenizer.pad_id, dtype=torch.long)
    for i, x in enumerate(ids):
        text_ids[i, : len(x)] = torch.tensor(x)
    return {"utt_ids": [f"u{i}" for i in range(b)], "feats": feats, "feat_lens": torch.tensor(frames),
            "texts": list(texts), "accents": torch.arange(b) % 2, "text_ids": text_ids,
            "text_lens": torch.tensor([len(x) for x in ids])}


def sub_batch(batch: dict, index: int) -> dict:
    """Utterance ``index`` alone, with its own padding trimmed."""
    n, length = int(batch["feat_lens"][index]), int(batch["text_lens"][index])
    return {"utt_ids": [batch["utt_ids"][index]], "feats": batch["feats"][index : index + 1, :n],
            "feat_lens": batch["feat_lens"][index : index + 1], "texts": [batch["texts"][index]],
            "accents": batch["accents"][index : index + 1],
            "text_ids": batch["text_ids"][index : index + 1, :length],
            "text_lens": batch["text_lens"][index : index + 1]}


# The decoding tests' model and batch: a seeded tiny CNN-front-end model and three utterances of different
# lengths (one shorter than the others, so padding is exercised). Shared by the search and n-gram tests.
DECODE_FRAMES, DECODE_TEXTS = (60, 37, 81), ("你好abc", "世界", "abc")


def decode_test_model(tokenizer: ToyTokenizer):
    from hdmole.models.build import build_model

    torch.manual_seed(1)
    return build_model(tiny_conf(cnn=True), tokenizer).eval()


def decode_test_batch(tokenizer: ToyTokenizer) -> dict:
    return toy_batch(tokenizer, frames=DECODE_FRAMES, texts=DECODE_TEXTS)


# q/k scale of the position-sensitive decoding model. At initialisation (weights of std 0.02) the tiny Qwen2's
# attention is nearly uniform, so a token placed one position off moves the logits by ~3e-4 against a spread of
# ~0.13 and never changes the chosen one; scaled up 20 times, attention scores are large enough for the rotary
# positions to decide where each query looks, and a one-position shift changes the hypotheses.
POSITION_QK_SCALE = 20.0


def position_sensitive_model(tokenizer: ToyTokenizer):
    """A decoding model whose tokens depend on the positions they are computed at (q/k weights scaled up) and
    which never ends early (eos's output row zeroed: logit 0, below the best other one), so every utterance
    runs to its token limit: cached, batched, beam and naive decodes compared on it differ when any of them
    places a token at the wrong position. ``test_decode_search`` checks that it does react to a shift."""
    model = decode_test_model(tokenizer)
    with torch.no_grad():
        for layer in model.llm.model.layers:
            attention = layer.self_attn
            for p in (attention.q_proj.weight, attention.q_proj.bias, attention.k_proj.weight, attention.k_proj.bias):
                p.mul_(POSITION_QK_SCALE)
        model.llm.lm_head.weight[model.eos_id] = 0.0
    return model
