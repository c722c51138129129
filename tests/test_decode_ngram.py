"""n-gram LM (KenLM) shallow fusion: the LM built by hdmole.bin.train_ngram, its scores, and beam search with it."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from models_fixtures import ToyTokenizer, decode_test_batch, decode_test_model

from hdmole.bin import train_ngram
from hdmole.decode.ngram import NgramLM
from hdmole.decode.search import DEFAULT_MAX_LEN_RATIO, Fusion, beam_search, decode_batch_ids, token_limits

torch.set_num_threads(1)
TOK = ToyTokenizer()


def build_lm(tmp_path: Path, lines: list[str], name: str = "lm", order: int = 3) -> Path:
    text = tmp_path / f"{name}.txt"
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / f"{name}.arpa"
    assert train_ngram.main(["--text", str(text), "--out", str(out), "--order", str(order)]) == 0
    return out


@pytest.fixture(scope="module")
def model():
    return decode_test_model(TOK)


@pytest.fixture(scope="module")
def batch():
    return decode_test_batch(TOK)


def unigrams(arpa: Path) -> set[str]:
    section = arpa.read_text(encoding="utf-8").split("\\1-grams:")[1].split("\\2-grams:")[0]
    return {line.split("\t")[1] for line in section.strip().splitlines()}


def test_train_ngram_writes_arpa_skips_when_current_and_rebuilds_on_change(tmp_path, capsys):
    arpa = build_lm(tmp_path, ["abc", "abd", "你好。"])
    header = arpa.read_text(encoding="utf-8").split("\\1-grams:")[0]
    assert "ngram 1=" in header and "ngram 3=" in header
    assert unigrams(arpa) == {"<unk>", "<s>", "</s>", "A", "B", "C", "D", "你", "好"}  # normalised: upper, no 。
    mtime = arpa.stat().st_mtime_ns
    assert train_ngram.main(["--text", str(tmp_path / "lm.txt"), "--out", str(arpa), "--order", "3"]) == 0
    assert "up to date" in capsys.readouterr().err
    assert arpa.stat().st_mtime_ns == mtime
    (tmp_path / "lm.txt").write_text("xyz\n", encoding="utf-8")
    assert train_ngram.main(["--text", str(tmp_path / "lm.txt"), "--out", str(arpa), "--order", "3"]) == 0
    assert unigrams(arpa) == {"<unk>", "<s>", "</s>", "X", "Y", "Z"}


def test_train_ngram_without_lmplz_is_one_clear_message(tmp_path):
    (tmp_path / "t.txt").write_text("abc\n", encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "hdmole.bin.train_ngram", "--text", str(tmp_path / "t.txt"),
                             "--out", str(tmp_path / "x.arpa"), "--lmplz", str(tmp_path / "missing")],
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert "lmplz was not found" in result.stderr and "tools/install.sh" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x.arpa").exists()


def test_scores_are_kenlm_scores_of_the_characters(tmp_path):
    import kenlm

    arpa = build_lm(tmp_path, ["abc", "abd", "bca", "你好"])
    lm = NgramLM(arpa, TOK)
    reference = kenlm.Model(str(arpa)).score("A B C", bos=True, eos=True) * math.log(10)
    assert lm.sentence_score(TOK.encode("abc")) == pytest.approx(reference, abs=1e-5)
    # a token the LM cannot spell (punctuation, special ids) costs <unk> and keeps the context; eos ends it
    model = kenlm.Model(str(arpa))
    unk = model.score("<unk>", bos=True, eos=False) * math.log(10)
    for token in (TOK.bos_id, TOK.unk_id, TOK.encode("：")[0]):
        logp, state = lm.score(lm.begin(), token)
        assert logp == pytest.approx(unk, abs=1e-5) and logp < -1.0
        assert lm.score(state, TOK.encode("a")[0])[0] == pytest.approx(lm.score(lm.begin(), TOK.encode("a")[0])[0])
    state = lm.begin()
    assert lm.score(state, TOK.eos_id)[0] == pytest.approx(lm.score_end(state)[0])


def test_fusion_weight_zero_is_the_plain_beam_search(model, batch, tmp_path):
    lm = NgramLM(build_lm(tmp_path, ["abc"] * 20), TOK)
    plain = decode_batch_ids(model, batch, beam=3)
    assert decode_batch_ids(model, batch, beam=3, fusion=Fusion(lm, weight=0.0, pre_beam=4)) == plain
    assert all(len(h) > 0 for h in plain)  # non-empty hypotheses: a real comparison


@pytest.mark.parametrize("favoured", ["abc", "xyz"])
def test_the_lm_decides_what_it_favours(model, batch, tmp_path, favoured):
    """With a heavy weight and every token a candidate, the hypothesis is the LM's favourite sentence; the
    same search without the LM (or with an LM favouring another sentence) does not produce it."""
    lm = NgramLM(build_lm(tmp_path, [favoured] * 50), TOK)
    fusion = Fusion(lm, weight=20.0, pre_beam=TOK.vocab_size)
    fused = decode_batch_ids(model, batch, beam=3, fusion=fusion)
    assert fused == [TOK.encode(favoured)] * 3
    assert TOK.encode(favoured) not in decode_batch_ids(model, batch, beam=3)


def test_fused_hypothesis_has_the_better_fused_score(model, batch, tmp_path):
    """Moderate weight: whatever fusion picks must score at least as well, under the fused length-normalised
    score recomputed independently (teacher-forced LLM + KenLM), as the plain beam's hypothesis. Scored as the
    search scores them: a hypothesis that ended with eos counts eos (its LLM and n-gram end-of-sentence terms,
    and one more token), one cut at its utterance's token limit does not."""
    lm = NgramLM(build_lm(tmp_path, ["abc", "ab", "bca", "cab"] * 10), TOK)
    weight = 0.5
    enc_out, enc_lens = model.encode(batch["feats"], batch["feat_lens"])
    with torch.no_grad():
        fused = beam_search(model, enc_out, enc_lens, beam=4, fusion=Fusion(lm, weight, pre_beam=TOK.vocab_size))
        plain = beam_search(model, enc_out, enc_lens, beam=4)
        limits = token_limits(model.project(enc_out, enc_lens)[1], None, DEFAULT_MAX_LEN_RATIO)

    def fused_score(i: int, hyp: list[int]) -> float:
        speech, speech_lens = model.project(enc_out[i : i + 1, : int(enc_lens[i])], enc_lens[i : i + 1])
        prefix, _, _ = model.decoding_prefix(speech, speech_lens)
        assert len(hyp) <= limits[i]
        scored = hyp + [model.eos_id] if len(hyp) < limits[i] else hyp  # eos ended it, or the limit did
        ids = torch.tensor([scored])
        embeds = torch.cat([prefix, model.embed_tokens(ids[:, :-1])], dim=1)
        with torch.no_grad():
            logp = model.llm(inputs_embeds=embeds).logits[0, prefix.size(1) - 1 :].log_softmax(-1)
        llm = float(logp.gather(1, ids[0][:, None]).sum())
        state, ngram = lm.begin(), 0.0
        for token in scored:  # eos scores the end of sentence
            logp_token, state = lm.score(state, token)
            ngram += logp_token
        return (llm + weight * ngram) / len(scored)

    assert fused != plain  # the LM changed something: the comparison is not of a hypothesis with itself
    for i in range(len(fused)):
        assert fused_score(i, fused[i]) >= fused_score(i, plain[i]) - 1e-4, i
