"""The LLM-based ASR model: speech encoder -> projector -> decoder-only LLM (docs/model.md)."""

from hdmole.models.build import build_model
from hdmole.models.encoder import SpeechEncoder, build_encoder
from hdmole.models.llm import build_llm
from hdmole.models.llm_asr import LLMASR
from hdmole.models.projector import Projector

__all__ = ["SpeechEncoder", "build_encoder", "build_llm", "LLMASR", "build_model", "Projector"]
