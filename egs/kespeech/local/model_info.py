"""What run.sh needs to know about a model config: the LLM's tokenizer and the encoder's mel bins.

    python local/model_info.py conf/model_large.yaml
    -> tokenizer={type: hf, name_or_path: Qwen/Qwen2-7B}
       num_mel_bins=128

The tokenizer is always the LLM's own (``llm.name_or_path``). The mel bins come from the Whisper
encoder's config: inline (``encoder.config.num_mel_bins``), or the config.json of ``name_or_path``
(a local dir, or a hub id already in the Hugging Face cache); for a hub id not downloaded yet the
known OpenAI checkpoints are used (large-v3 and large-v3-turbo: 128, every other Whisper: 80), so the
features can be extracted before the model is downloaded.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

MEL_BINS_128 = ("openai/whisper-large-v3", "openai/whisper-large-v3-turbo")


def fail(message: str) -> None:
    print(f"local/model_info.py: {message}", file=sys.stderr)
    sys.exit(1)


def mel_bins(encoder: dict, source: str) -> int:
    if encoder.get("type") != "whisper":
        fail(f"{source}: encoder.type must be whisper in this recipe (pre-trained Whisper features)")
    if "config" in encoder:
        return int(encoder["config"].get("num_mel_bins", 80))
    name = str(encoder.get("name_or_path", ""))
    if not name:
        fail(f"{source}: encoder needs name_or_path (a hub id or a local dir) or config")
    # transformers returns a default config (80 bins) for a directory without config.json instead of failing
    if Path(name).exists() and not (Path(name) / "config.json").is_file():
        fail(f"{source}: {name} has no readable Whisper config.json")
    try:
        from transformers import WhisperConfig

        return int(WhisperConfig.from_pretrained(name, local_files_only=True).num_mel_bins)
    except OSError:
        if Path(name).exists():
            fail(f"{source}: {name} has no readable Whisper config.json")
        return 128 if name in MEL_BINS_128 else 80


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        fail("usage: local/model_info.py <model.yaml>")
    path = Path(argv[0])
    if not path.is_file():
        fail(f"model config {path} does not exist")
    conf = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    llm = conf.get("llm") or {}
    if "name_or_path" not in llm:
        fail(f"{path}: llm.name_or_path is missing; this recipe uses a pre-trained LLM and its own tokenizer")
    print("tokenizer=" + yaml.safe_dump({"type": "hf", "name_or_path": str(llm["name_or_path"])},
                                        default_flow_style=True, width=10000).strip())
    print(f"num_mel_bins={mel_bins(conf.get('encoder') or {}, str(path))}")


if __name__ == "__main__":
    main(sys.argv[1:])
