"""Speech encoders: an ESPnet Conformer (mini, from scratch) or a transformers Whisper encoder (real).

Both are wrapped behind one interface, ``SpeechEncoder``:
``forward(feats [B, T, F], feat_lens [B]) -> (out [B, T', d], out_lens [B])`` and ``output_size``.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from hdmole.models.config_utils import check_keys
from hdmole.models.precision import load_dtype


class SpeechEncoder(nn.Module):
    """Common interface; subclasses set ``output_size`` and ``input_size``."""

    output_size: int
    input_size: int

    def _check_feats(self, feats: torch.Tensor, feat_lens: torch.Tensor) -> None:
        if feats.dim() != 3 or feats.size(-1) != self.input_size:
            raise ValueError(
                f"{type(self).__name__} expects features [B, T, {self.input_size}], got {tuple(feats.shape)}; "
                "check the feature type/dimension of the data dir against the encoder config"
            )
        if feat_lens.dim() != 1 or feat_lens.size(0) != feats.size(0):
            raise ValueError(f"feat_lens must be [B={feats.size(0)}], got {tuple(feat_lens.shape)}")


def _conv_time_lengths(convs: list[nn.Conv2d], lens: torch.Tensor) -> torch.Tensor:
    for conv in convs:
        k, s, p, d = conv.kernel_size[0], conv.stride[0], conv.padding[0], conv.dilation[0]
        lens = (lens + 2 * p - d * (k - 1) - 1) // s + 1
    return lens


def _exact_subsampling_mask(module: nn.Module, args, output):
    """Forward hook on ESPnet's Conv2dSubsampling*: replace its output mask by the exact one.

    ESPnet subsamples the mask by slicing (``mask[:, :, :-2:2][:, :, :-2:2]``), which over-counts the valid
    frames of every utterance shorter than its batch (e.g. 10 instead of 8 for 37 frames padded to 60), so
    short utterances attend to, and return, frames computed from padding. The exact length follows from the
    convolutions' kernel/stride/padding along time.
    """
    x_mask = args[1] if len(args) > 1 else None
    if x_mask is None:
        return output
    x, _ = output
    t_out = (x[0] if isinstance(x, tuple) else x).size(1)
    convs = [m for m in module.conv.modules() if isinstance(m, nn.Conv2d)]
    lens = _conv_time_lengths(convs, x_mask[:, 0, :].sum(-1))
    mask = torch.arange(t_out, device=x_mask.device)[None, None, :] < lens[:, None, None]
    return x, mask


def _remember_layer_mask(module: nn.Module, args):
    """Forward pre-hook on a Conformer block: hand its padding mask to the block's depthwise convolution."""
    module.conv_module.depthwise_conv._hdmole_valid = args[1]


def _zero_padding_before_depthwise(module: nn.Module, args):
    """Forward pre-hook on the depthwise conv: zero padded frames, as WeNet's ConvolutionModule (mask_pad)
    does; ESPnet's lets the (bias-driven, non-zero) GLU output of padded frames leak into the last
    kernel/2 valid frames, so an utterance's output would depend on its batch."""
    valid = getattr(module, "_hdmole_valid", None)
    x = args[0]
    if valid is None or valid.size(-1) != x.size(-1):
        return None
    return (x * valid.to(x.dtype),) + tuple(args[1:])


class ConformerSpeechEncoder(SpeechEncoder):
    """ESPnet2 ``ConformerEncoder`` built from config kwargs.

    With ``exact_padding`` (default true) two forward hooks make the encoder exactly batch-invariant (an
    utterance's output does not depend on the padding its batch adds): exact subsampled masks and zeroed
    padding before the convolution module's depthwise conv (see the hook docstrings; docs/model.md).
    """

    def __init__(self, input_size: int = 80, exact_padding: bool = True, frame_stack: int = 1, **kwargs):
        super().__init__()
        # Imported lazily: importing espnet is slow and the Whisper path does not need it.
        from espnet2.asr.encoder.conformer_encoder import ConformerEncoder

        valid = set(inspect.signature(ConformerEncoder.__init__).parameters) - {"self", "input_size"}
        check_keys(kwargs, valid | {"exact_padding"}, "encoder (type: conformer)")
        self.input_size = input_size
        # frame_stack = k: a low-frame-rate front end (as Paraformer's LFR): k consecutive frames are
        # concatenated (the tail padded) before the encoder, whose input layer is then usually "linear".
        # On 2 CPU cores ESPnet's conv2d8 subsampling took ~85% of the encoder's time (1.6 s vs 0.23 s
        # for 32 x 3 s utterances, forward + backward); stacking 8 frames into a linear layer gives the
        # same 12.5 frames/s for a seventh of the cost.
        self.frame_stack = int(frame_stack)
        if self.frame_stack < 1:
            raise ValueError(f"encoder frame_stack must be >= 1, got {frame_stack}")
        input_size = input_size * self.frame_stack
        # ESPnet's constructor default "legacy" is deprecated, and its relative-position attention makes
        # an utterance's output depend on its batch's padded length; "latest" (ESPnet recipes' choice) does not.
        kwargs.setdefault("rel_pos_type", "latest")
        self.conformer = ConformerEncoder(input_size=input_size, **kwargs)
        self.output_size = self.conformer.output_size()
        if exact_padding:
            if type(self.conformer.embed).__name__.startswith("Conv2dSubsampling"):
                self.conformer.embed.register_forward_hook(_exact_subsampling_mask)
            for layer in self.conformer.encoders:
                if getattr(layer, "conv_module", None) is not None:
                    layer.register_forward_pre_hook(_remember_layer_mask)
                    layer.conv_module.depthwise_conv.register_forward_pre_hook(_zero_padding_before_depthwise)

    def forward(self, feats: torch.Tensor, feat_lens: torch.Tensor):
        self._check_feats(feats, feat_lens)
        if self.frame_stack > 1:
            feats, feat_lens = stack_frames(feats, feat_lens, self.frame_stack)
        out, out_lens, _ = self.conformer(feats, feat_lens)
        return out, out_lens


def stack_frames(feats: torch.Tensor, feat_lens: torch.Tensor, k: int):
    """``[B, T, F] -> [B, ceil(T/k), k*F]``: k consecutive frames side by side; each utterance's tail
    is padded with zeros, so no frame of one utterance depends on the batch's padding."""
    b, t, f = feats.shape
    pad = (-t) % k
    if pad:
        feats = torch.nn.functional.pad(feats, (0, 0, 0, pad))
    # Zero each utterance's frames past its length, so a partly filled last group is the same in any batch.
    mask = torch.arange(feats.size(1), device=feats.device)[None, :] < feat_lens[:, None]
    feats = feats * mask[..., None].to(feats.dtype)
    return feats.reshape(b, -1, k * f), torch.div(feat_lens + k - 1, k, rounding_mode="floor")


class WhisperSpeechEncoder(SpeechEncoder):
    """A transformers ``WhisperEncoder`` run on variable-length input.

    transformers 5.24's ``WhisperEncoder.forward`` raises unless the input has exactly
    ``2 * max_source_positions`` frames (30 s) and always adds all positional embeddings. Paying for 30 s
    of padding on 3-5 s utterances puts 6-10x the frames through the encoder, so -- as several LLM-ASR codebases do --
    this wrapper re-runs the same sub-modules (conv1, conv2, embed_positions, layers, layer_norm, with the
    loaded weights) on input padded only to the batch maximum, adding the first T' positional embeddings.
    Padded key frames are masked out of self-attention (``mask_padding``, default true) and padded frames
    are zeroed before each convolution, so an utterance's output does not depend on its batch.
    """

    def __init__(self, whisper_encoder: nn.Module, mask_padding: bool = True):
        super().__init__()
        self.whisper = whisper_encoder
        self.mask_padding = mask_padding
        self.input_size = whisper_encoder.config.num_mel_bins
        self.output_size = whisper_encoder.config.d_model
        self.max_source_positions = whisper_encoder.config.max_source_positions

    @staticmethod
    def _valid_mask(lens: torch.Tensor, length: int) -> torch.Tensor:
        return torch.arange(length, device=lens.device)[None, :] < lens[:, None]

    def forward(self, feats: torch.Tensor, feat_lens: torch.Tensor):
        self._check_feats(feats, feat_lens)
        w = self.whisper
        dtype = w.conv1.weight.dtype
        in_mask = self._valid_mask(feat_lens, feats.size(1))
        x = (feats * in_mask[..., None]).to(dtype).transpose(1, 2)  # [B, F, T]
        x = nn.functional.gelu(w.conv1(x))
        x = x * in_mask[:, None, :].to(dtype)  # conv2 must not see conv1's response to padding
        x = nn.functional.gelu(w.conv2(x)).transpose(1, 2)  # [B, T', d]
        out_lens = (feat_lens - 1) // 2 + 1  # kernel 3, stride 2, padding 1
        t_out = x.size(1)
        if t_out > self.max_source_positions:
            raise ValueError(
                f"input of {feats.size(1)} frames is longer than Whisper's maximum "
                f"({2 * self.max_source_positions} frames = 30 s); segment the audio first"
            )
        x = x + w.embed_positions.weight[:t_out].to(dtype)
        x = nn.functional.dropout(x, p=w.dropout, training=self.training)
        attn_mask = None
        if self.mask_padding:
            key_valid = self._valid_mask(out_lens, t_out)
            attn_mask = torch.zeros(x.size(0), 1, t_out, t_out, dtype=dtype, device=x.device)
            attn_mask.masked_fill_(~key_valid[:, None, None, :], torch.finfo(dtype).min)
        for layer in w.layers:
            # LayerDrop, as WhisperEncoder.forward does it.
            if self.training and w.layerdrop > 0.0 and torch.rand([]) < w.layerdrop:
                continue
            x = layer(x, attn_mask)
        x = w.layer_norm(x)
        return x, out_lens


WHISPER_KEYS = {"type", "name_or_path", "config", "mask_padding", "attn_implementation", "dtype"}


def _build_whisper(conf: dict) -> WhisperSpeechEncoder:
    from transformers import WhisperConfig, WhisperModel
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    check_keys(conf, WHISPER_KEYS, "encoder (type: whisper)")
    has_path, has_config = "name_or_path" in conf, "config" in conf
    if has_path == has_config:
        raise ValueError("encoder (type: whisper) needs exactly one of 'name_or_path' (hub id or local dir) or 'config'")
    attn = conf.get("attn_implementation", "sdpa")
    # Explicit (float32 unless the config says otherwise): transformers' default "auto" would take the
    # checkpoint's own dtype (whisper-large-v3: float16) behind the config's back (hdmole.models.precision).
    dtype = load_dtype(conf, "encoder")
    if has_path:
        # Loading the whole WhisperModel handles both WhisperModel and WhisperForConditionalGeneration
        # checkpoints (their weight prefixes differ); the decoder is dropped right after.
        full = WhisperModel.from_pretrained(conf["name_or_path"], dtype=dtype, attn_implementation=attn)
        encoder = full.get_encoder()
        del full
    else:
        config = WhisperConfig(**conf["config"])
        config._attn_implementation = attn
        encoder = WhisperEncoder(config).to(dtype)
    return WhisperSpeechEncoder(encoder, mask_padding=conf.get("mask_padding", True))


def build_encoder(conf: dict) -> SpeechEncoder:
    """Build a speech encoder from ``{"type": "conformer"|"whisper", ...}``."""
    conf = dict(conf)
    kind = conf.get("type")
    if kind == "conformer":
        conf.pop("type")
        return ConformerSpeechEncoder(**conf)
    if kind == "whisper":
        return _build_whisper(conf)
    raise ValueError(f"encoder 'type' must be 'conformer' or 'whisper', got {kind!r}")


__all__ = ["SpeechEncoder", "ConformerSpeechEncoder", "WhisperSpeechEncoder", "build_encoder"]
