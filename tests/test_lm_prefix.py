"""The LM stage's noisy-prefix listening task (hdmole.train.lm_data): homophone groups from a lexicon,
the corruption process, the batch layout (loss only after the prefix) and its errors."""

import random

import pytest
import torch

from hdmole.data.errors import DataError
from hdmole.train.config import LMPrefixConfig
from hdmole.train.lm_data import NoisyPrefix, TextLines, build_noisy_prefix, read_homophones


class CharTokenizer:
    """One id per character (like the recipe's char sentencepiece model); 0 pad, 1 bos, 2 eos."""
    pad_id, bos_id, eos_id = 0, 1, 2

    def __init__(self, chars: str):
        self.ids = {c: i + 3 for i, c in enumerate(chars)}

    def encode(self, text: str) -> list[int]:
        return [self.ids[c] for c in text]


CHARS = "中钟终国果过人"
TOK = CharTokenizer(CHARS)


@pytest.fixture
def lexicon(tmp_path):
    path = tmp_path / "lexicon.txt"
    path.write_text("中 zhong1\n钟 zhong1\n终 zhong1\n国 guo2\n果 guo3\n过 guo4\n过 guo1\n人 ren2\n中国 zhong1 guo2\n",
                    encoding="utf-8")
    return path


def ids(text: str) -> list[int]:
    return TOK.encode(text)


def test_homophone_groups(lexicon):
    groups, canonical = read_homophones(lexicon, TOK)
    assert groups[TOK.ids["中"]] == sorted(ids("中钟终"))
    assert groups[TOK.ids["国"]] == [TOK.ids["国"]]  # guo2: alone (guo3, guo4, guo1 are other syllables)
    assert groups[TOK.ids["人"]] == [TOK.ids["人"]]
    assert "中国" not in groups  # several tokens: skipped
    # canonical spelling of a token's main (first) reading: the first word listed with that pronunciation
    assert canonical[TOK.ids["终"]] == canonical[TOK.ids["钟"]] == TOK.ids["中"]
    assert canonical[TOK.ids["过"]] == TOK.ids["过"]


def test_corruption_keeps_pronunciation_and_repeats(lexicon):
    prefix = NoisyPrefix(LMPrefixConfig(homophone_prob=1.0, substitute_prob=0.0, delete_prob=0.0, repeat_prob=0.0),
                         homophones=read_homophones(lexicon, TOK)[0])
    rng = random.Random(0)
    seen = set()
    for _ in range(50):
        noisy = prefix.corrupt(ids("中国人"), ids(CHARS), rng)
        assert len(noisy) == 3
        assert noisy[0] in ids("中钟终") and noisy[1:] == ids("国人")
        seen.add(noisy[0])
    assert seen == set(ids("中钟终"))  # every homophone is drawn
    prefix.options.repeat_prob = 1.0
    assert prefix.corrupt(ids("人国"), ids(CHARS), rng) == ids("人人人国国国")  # at most 3 copies
    prefix.options.delete_prob = 1.0
    assert prefix.corrupt(ids("人国"), ids(CHARS), rng) == ids("人")  # never empty
    canonical = build_noisy_prefix(LMPrefixConfig(lexicon=str(lexicon), canonical_prob=1.0, substitute_prob=0.0,
                                                  delete_prob=0.0, repeat_prob=0.0), TOK)
    assert canonical.corrupt(ids("终钟中国"), ids(CHARS), rng) == ids("中中中国")  # one spelling a sound


def test_batch_layout_has_loss_only_after_the_prefix(tmp_path, lexicon):
    text = tmp_path / "lm.txt"
    text.write_text("中国人\n过果\n", encoding="utf-8")
    prefix = build_noisy_prefix(LMPrefixConfig(lexicon=str(lexicon), repeat_prob=0.0, delete_prob=0.0,
                                               substitute_prob=0.0), TOK)
    lines = TextLines(text, TOK, prefix=prefix, deterministic=True)
    assert lines.lengths() == [3 + 2 + 3 + 1, 2 + 2 + 2 + 1]  # prefix + bos + text + eos (estimate: + 1)
    batch = lines.collate([lines[0], lines[1]])
    row, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    # [noisy 3] [bos] 中 国 人 [eos]
    assert row[3:] == [1] + ids("中国人") + [2]
    assert labels == [-100] * 4 + ids("中国人") + [2]
    assert batch["labels"][1].tolist() == [-100] * 3 + ids("过果") + [2] + [-100] * 2  # right padding
    assert batch["attention_mask"][1].tolist() == [1] * 6 + [0] * 2
    # dev (deterministic): the same corruption whatever the global RNG state, and a real one (with noise on)
    noisy = TextLines(text, TOK, prefix=build_noisy_prefix(LMPrefixConfig(lexicon=str(lexicon)), TOK),
                      deterministic=True)
    torch.manual_seed(0)
    first = noisy[0]
    torch.manual_seed(1)
    assert noisy[0] == first
    assert first[0][first[1] - 1 :] == [1] + ids("中国人") + [2] and first[1] > 1  # [noisy prefix] [bos] text eos
    assert TextLines(text, TOK)[0] == ([1] + ids("中国人") + [2], 0)  # no prefix: plain LM


def test_training_draws_new_corruptions(tmp_path, lexicon):
    text = tmp_path / "lm.txt"
    text.write_text("中中中中中中中中中中中中\n", encoding="utf-8")
    lines = TextLines(text, TOK, prefix=build_noisy_prefix(LMPrefixConfig(lexicon=str(lexicon)), TOK))
    torch.manual_seed(0)
    assert len({tuple(lines[0][0]) for _ in range(10)}) > 1


def test_errors_name_the_file_and_line(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_homophones(tmp_path / "missing.txt", TOK)
    bad = tmp_path / "lexicon.txt"
    bad.write_text("中 zhong1\n钟\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"lexicon.txt line 2: expected 'word pron"):
        read_homophones(bad, TOK)
