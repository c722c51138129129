"""Tokenisers behind one interface: `vocab_size, pad_id, bos_id, eos_id, encode(text), decode(ids)`.

- `{"type": "sentencepiece", "model": "<prefix>.model"}`: a sentencepiece model, character-level for the
  small from-scratch models (trained by `python -m hdmole.bin.train_tokenizer`, which fixes
  pad=0, unk=1, bos=2, eos=3).
- `{"type": "units", "list": "<units file>"}`: whitespace-separated units from a plain list (CTC targets such as
  tonal pinyin), see `UnitTokenizer`.
- `{"type": "hf", "name_or_path": "<hub id or dir>"}`: the LLM's own tokenizer (`transformers.AutoTokenizer`),
  loaded offline (`local_files_only=True`). eos comes from the tokenizer; pad = eos and bos = eos where the
  tokenizer defines none (Qwen2 has no bos token).

`encode` never adds bos/eos: the model decides where they go.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable, Protocol, Sequence, runtime_checkable


@runtime_checkable
class Tokenizer(Protocol):
    vocab_size: int
    pad_id: int
    bos_id: int
    eos_id: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


class SentencePieceTokenizer:
    """A sentencepiece model; special ids come from the model (eos stands in for an undefined pad/bos)."""

    def __init__(self, model: str | Path):
        import sentencepiece as spm

        model = Path(model)
        if not model.is_file():
            raise FileNotFoundError(f"{model}: sentencepiece model not found; train it with `python -m hdmole.bin.train_tokenizer`")
        self.model_path = model
        self._sp = spm.SentencePieceProcessor(model_file=str(model))
        self.vocab_size = int(self._sp.get_piece_size())
        self.eos_id = int(self._sp.eos_id())
        if self.eos_id < 0:
            raise ValueError(f"{model}: the model defines no eos id; retrain it with hdmole.bin.train_tokenizer (eos_id=3)")
        self.pad_id = int(self._sp.pad_id()) if self._sp.pad_id() >= 0 else self.eos_id
        self.bos_id = int(self._sp.bos_id()) if self._sp.bos_id() >= 0 else self.eos_id
        self.unk_id = int(self._sp.unk_id())
        self._special = {self.pad_id, self.bos_id, self.eos_id}

    def __getstate__(self) -> dict:
        # The C++ processor does not pickle; DataLoader workers under spawn reload it from the model file.
        return {"model": str(self.model_path)}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["model"])

    def encode(self, text: str) -> list[int]:
        return list(self._sp.encode(text, out_type=int))

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`, skipping pad/bos/eos (unknown ids become sentencepiece's ` ⁇ `)."""
        return self._sp.decode([int(i) for i in ids if int(i) not in self._special])

    def id_to_piece(self, token_id: int) -> str:
        return self._sp.id_to_piece(int(token_id))


class HFTokenizer:
    """A `transformers` tokenizer (e.g. Qwen2's), loaded without network access."""

    def __init__(self, name_or_path: str | Path):
        from transformers import AutoTokenizer

        try:
            self._tok = AutoTokenizer.from_pretrained(str(name_or_path), local_files_only=True)
        except OSError as error:
            raise FileNotFoundError(
                f"tokenizer {name_or_path!r} is not available offline ({error}); download it into the local cache "
                "or a directory first and point name_or_path at it"
            ) from None
        self.name_or_path = str(name_or_path)
        if self._tok.eos_token_id is None:
            raise ValueError(f"tokenizer {name_or_path!r} defines no eos token; set one (tokenizer.eos_token) and save it")
        self.eos_id = int(self._tok.eos_token_id)
        self.pad_id = int(self._tok.pad_token_id) if self._tok.pad_token_id is not None else self.eos_id
        self.bos_id = int(self._tok.bos_token_id) if self._tok.bos_token_id is not None else self.eos_id
        # len() includes added special tokens; the LLM's embedding table may be larger (padded), never smaller.
        self.vocab_size = len(self._tok)

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=True)


class UnitTokenizer:
    """A plain list of units, one per line (line index = id, ``<unk>`` on line 0), for CTC targets given as
    whitespace-separated units, e.g. tonal pinyin ``zhong1 guo2`` (ESPnet's token_list, WeNet's units).
    Written by ``python -m hdmole.bin.train_tokenizer --model-type units``. CTC needs no bos/eos/pad: they
    are the unk id, and an unknown unit is ``<unk>`` (a rare syllable of a test set, say)."""

    UNK = "<unk>"

    def __init__(self, path: str | Path):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: unit list not found; make it with "
                                    "`python -m hdmole.bin.train_tokenizer --model-type units`")
        units = path.read_text(encoding="utf-8").split("\n")
        units = units[:-1] if units and units[-1] == "" else units
        if not units or units[0] != self.UNK:
            raise ValueError(f"{path}:1: a unit list starts with {self.UNK!r}; rebuild it with train_tokenizer --model-type units")
        for number, unit in enumerate(units, 1):
            if not unit or any(ch.isspace() for ch in unit):
                raise ValueError(f"{path}:{number}: a unit is one non-empty token without spaces, got {unit!r}")
        if len(set(units)) != len(units):
            raise ValueError(f"{path}: units are listed twice; rebuild it with train_tokenizer --model-type units")
        self.path, self.units = path, units
        self.index = {u: i for i, u in enumerate(units)}
        self.vocab_size = len(units)
        self.unk_id = self.pad_id = self.bos_id = self.eos_id = 0

    def encode(self, text: str) -> list[int]:
        return [self.index.get(unit, 0) for unit in text.split()]

    def decode(self, ids: Sequence[int]) -> str:
        return " ".join(self.units[int(i)] for i in ids)


TOKENIZER_KEYS = {"sentencepiece": {"type", "model"}, "hf": {"type", "name_or_path"}, "units": {"type", "list"}}


def check_tokenizer_conf(conf: dict) -> None:
    """The keys of a tokenizer config, checked without loading anything (a ValueError naming them)."""
    if not isinstance(conf, dict):
        raise ValueError(f"tokenizer config must be a mapping, got {conf!r}")
    kind = conf.get("type")
    if kind not in TOKENIZER_KEYS:
        raise ValueError(f"tokenizer config {conf!r}: 'type' must be one of {sorted(TOKENIZER_KEYS)}")
    unknown = set(conf) - TOKENIZER_KEYS[kind]
    missing = TOKENIZER_KEYS[kind] - set(conf)
    if unknown or missing:
        raise ValueError(
            f"tokenizer config {conf!r}: "
            + (f"unknown keys {sorted(unknown)} " if unknown else "")
            + (f"missing keys {sorted(missing)} " if missing else "")
            + f"(a {kind!r} tokenizer takes exactly {sorted(TOKENIZER_KEYS[kind])})"
        )


def build_tokenizer(conf: dict) -> Tokenizer:
    """Build a tokenizer from `{"type": "sentencepiece", "model": path}` or `{"type": "hf", "name_or_path": ...}`."""
    check_tokenizer_conf(conf)
    kind = conf["type"]
    if kind == "sentencepiece":
        return SentencePieceTokenizer(conf["model"])
    if kind == "units":
        return UnitTokenizer(conf["list"])
    return HFTokenizer(conf["name_or_path"])


def uncovered_characters(tokenizer: Tokenizer, texts: Iterable[str]) -> tuple[Counter, int]:
    """The characters of ``texts`` (after ``normalize_text``, as scoring sees them) that ``tokenizer`` cannot
    write, with their counts, and the number of characters in all: a model can never output the uncovered
    ones, so each is an error in the CER. A character is covered when it survives encode + decode (a char
    sentencepiece model turns an unseen one into ``<unk>``; a byte-level BPE covers everything)."""
    from hdmole.text.normalize import normalize_text

    counts = Counter(ch for text in texts for ch in normalize_text(text) if not ch.isspace())
    missing = Counter({ch: n for ch, n in counts.items() if tokenizer.decode(tokenizer.encode(ch)).strip() != ch})
    return missing, sum(counts.values())


def uncovered_warning(tokenizer: Tokenizer, texts: Iterable[str], where: str, name: str, examples: int = 10) -> str | None:
    """One warning line when ``texts`` hold characters ``tokenizer`` (called ``name``) cannot write: the
    count, the commonest examples and the fix; None when it covers them all."""
    missing, total = uncovered_characters(tokenizer, texts)
    if not missing:
        return None
    shown = " ".join(f"{ch!r}x{n}" for ch, n in missing.most_common(examples))
    more = f" and {len(missing) - examples} more" if len(missing) > examples else ""
    return (f"{where}: {sum(missing.values())} of {total} reference characters ({len(missing)} distinct: {shown}{more}) "
            f"are not in the tokenizer {name}: no hypothesis can contain them, so each counts as an error. "
            "Fix: train the tokenizer on an LM text that covers the test sets' characters (--lm-text, stage 2), "
            "or map them in the recipe's text normalisation (stage 0)")
