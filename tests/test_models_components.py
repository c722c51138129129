"""Encoders, projector and LLM builders: shapes, lengths, batch invariance, loading by path, config errors."""

from __future__ import annotations

import pytest
import torch
from models_fixtures import tiny_conf, tiny_whisper_config

from hdmole.models.encoder import WhisperSpeechEncoder, build_encoder
from hdmole.models.llm import build_llm
from hdmole.models.projector import Projector

torch.set_num_threads(1)


def _padded_feats(lengths, dim=80, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.zeros(len(lengths), max(lengths), dim)
    for i, n in enumerate(lengths):
        feats[i, :n] = torch.randn(n, dim, generator=g)
    return feats, torch.tensor(lengths)


@pytest.mark.parametrize("input_layer,factor", [("conv2d", 4), ("conv2d8", 8)])
def test_conformer_shapes_and_batch_invariance(input_layer, factor):
    conf = tiny_conf("conformer", cnn=True)["encoder"]
    conf["input_layer"] = input_layer
    enc = build_encoder(conf).eval()
    feats, lens = _padded_feats([97, 41, 64])
    with torch.no_grad():
        out, out_lens = enc(feats, lens)
        assert out.shape[0] == 3 and out.shape[2] == enc.output_size == 32
        assert out.shape[1] == int(out_lens.max())
        for i, n in enumerate(lens.tolist()):
            alone, alone_len = enc(feats[i : i + 1, :n], lens[i : i + 1])
            assert int(alone_len) == int(out_lens[i])  # exact subsampled lengths, not ESPnet's sliced mask
            assert abs(int(alone_len) - n / factor) < 2
            torch.testing.assert_close(out[i, : int(alone_len)], alone[0], atol=1e-5, rtol=1e-5)


def test_conformer_unknown_key_is_named():
    conf = dict(tiny_conf("conformer")["encoder"], num_blocs=3)
    with pytest.raises(ValueError, match="num_blocs.*valid keys"):
        build_encoder(conf)


def test_encoder_rejects_wrong_feature_dim():
    enc = build_encoder(tiny_conf("conformer")["encoder"])
    with pytest.raises(ValueError, match=r"\[B, T, 80\]"):
        enc(torch.zeros(1, 50, 40), torch.tensor([50]))


def test_whisper_variable_length_matches_transformers_on_full_input(tmp_path):
    """Our variable-length forward re-runs WhisperEncoder's modules: on a full 2*max_source_positions input
    without masking it must equal transformers' own forward; saved + loaded by path it must load weights."""
    from transformers import WhisperConfig, WhisperModel

    model = WhisperModel(WhisperConfig(**tiny_whisper_config())).eval()
    model.save_pretrained(tmp_path / "whisper")
    enc = build_encoder({"type": "whisper", "name_or_path": str(tmp_path / "whisper"), "mask_padding": False}).eval()
    assert isinstance(enc, WhisperSpeechEncoder) and enc.output_size == 32
    torch.testing.assert_close(enc.whisper.conv1.weight, model.encoder.conv1.weight)
    feats, lens = _padded_feats([400])
    with torch.no_grad():
        ours, ours_lens = enc(feats, lens)
        ref = model.encoder(feats.transpose(1, 2)).last_hidden_state
    assert int(ours_lens) == 200
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_whisper_short_inputs_are_batch_invariant_and_not_padded_to_30s():
    enc = build_encoder({"type": "whisper", "config": tiny_whisper_config()}).eval()
    feats, lens = _padded_feats([77, 30])
    with torch.no_grad():
        out, out_lens = enc(feats, lens)
        assert out.shape[1] == 39 and out_lens.tolist() == [39, 15]
        alone, _ = enc(feats[1:, :30], lens[1:])
    torch.testing.assert_close(out[1, :15], alone[0], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="longer than Whisper's maximum"):
        enc(torch.zeros(1, 402, 80), torch.tensor([402]))


def test_whisper_needs_exactly_one_source():
    with pytest.raises(ValueError, match="exactly one of"):
        build_encoder({"type": "whisper"})
    with pytest.raises(ValueError, match="'type' must be"):
        build_encoder({"type": "lstm"})


@pytest.mark.parametrize("tail,expected", [("pad", [3, 2, 1]), ("drop", [2, 1, 1])])
def test_projector_stacking(tail, expected):
    proj = Projector(4, 6, stack=3, hidden=5, tail=tail)
    x = torch.randn(3, 8, 4)
    lens = torch.tensor([8, 5, 2])
    out, out_lens = proj(x, lens)
    assert out_lens.tolist() == expected and out.shape == (3, max(expected), 6)
    # Utterance 0, first stacked frame = frames 0..2 concatenated.
    manual = proj.linear2(torch.relu(proj.linear1(x[0, :3].reshape(-1))))
    torch.testing.assert_close(out[0, 0], manual)
    # Frames beyond an utterance's length never reach the output: padding content is irrelevant.
    x2 = x.clone()
    x2[1, 5:] = 100.0
    out2, _ = proj(x2, lens)
    torch.testing.assert_close(out2[1, : expected[1]], out[1, : expected[1]])
    assert dict(proj.named_children()).keys() >= {"linear1", "linear2"}


def test_qwen2_from_config_and_from_path(tmp_path):
    conf = tiny_conf()["llm"]
    conf["config"] = dict(conf["config"], vocab_size=50)
    llm = build_llm(conf).eval()
    assert llm.config.hidden_size == 32 and llm.get_input_embeddings().num_embeddings == 50
    llm.save_pretrained(tmp_path / "qwen")
    loaded = build_llm({"name_or_path": str(tmp_path / "qwen")}).eval()
    ids = torch.tensor([[1, 5, 7, 9]])
    with torch.no_grad():
        torch.testing.assert_close(llm(ids).logits, loaded(ids).logits)
    bf16 = build_llm({"name_or_path": str(tmp_path / "qwen"), "dtype": "bfloat16"})
    assert bf16.get_input_embeddings().weight.dtype == torch.bfloat16


def test_llm_config_errors():
    with pytest.raises(ValueError, match="hidden.*valid keys"):
        build_llm({"type": "qwen2", "config": {}, "hidden": 3})
    with pytest.raises(ValueError, match="exactly one of"):
        build_llm({"type": "qwen2"})
    with pytest.raises(ValueError, match="dtype"):
        build_llm({"type": "qwen2", "config": {}, "dtype": "fp8"})


def test_whisper_log_mel_has_true_length_and_whisper_scaling():
    import numpy as np

    from hdmole.models.features import whisper_log_mel

    wav = (np.random.default_rng(0).standard_normal(16000) * 3000).astype(np.float32)  # 1 s, int16 scale
    feats = whisper_log_mel(wav, 16000, num_mel_bins=80)
    assert feats.shape == (100, 80)  # 10 ms hop, no padding to 30 s
    assert feats.max() - feats.min() <= 2.0 + 1e-5  # Whisper clamps to 8 (log10) below the max, then / 4
    with pytest.raises(ValueError, match="16 kHz"):
        whisper_log_mel(wav, 8000)
