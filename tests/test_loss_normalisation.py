"""Per-token (per-utterance) loss normalisation over an optimizer step, at the model level: the batches of
one step, each given the step's summed ``loss_counts`` as ``normalisers``, back-propagate objectives that
add up to the loss of the concatenated batch, and their gradients add up to its gradient. This is what
makes DDP and gradient accumulation equal to one big batch (end to end in test_train_equivalence.py)."""

from __future__ import annotations

import torch
from models_fixtures import ToyTokenizer, tiny_conf, toy_batch

from hdmole.models.build import build_model
from hdmole.train.lm_data import LossPositionsLM, TextLines, lm_forward, lm_loss_counts

torch.set_num_threads(1)
TOK = ToyTokenizer()
# Three utterances with 5, 2 and 9 characters: the split [0] | [1, 2] has 6 vs 13 tokens, 1 vs 2 utterances.
FRAMES, TEXTS = (60, 37, 81), ("你好abc", "世界", "abcdefghi")


class CharTokenizer:
    """One id per character, 0 pad, 1 bos, 2 eos (what TextLines needs)."""
    pad_id, bos_id, eos_id = 0, 1, 2

    def encode(self, text: str) -> list[int]:
        return ["中钟终国果过人".index(c) + 3 for c in text]


def summed(counts: list[dict]) -> dict:
    return {k: sum(c[k] for c in counts) for k in counts[0]}


def select(batch: dict, index: list[int]) -> dict:
    """The utterances ``index`` of a toy batch as a batch of their own (padding trimmed to them)."""
    idx = torch.tensor(index)
    frames, length = int(batch["feat_lens"][idx].max()), int(batch["text_lens"][idx].max())
    return {"utt_ids": [batch["utt_ids"][i] for i in index], "texts": [batch["texts"][i] for i in index],
            "feats": batch["feats"][idx, :frames], "feat_lens": batch["feat_lens"][idx],
            "accents": batch["accents"][idx], "text_ids": batch["text_ids"][idx, :length],
            "text_lens": batch["text_lens"][idx]}


def grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_objectives_of_a_split_step_add_up_to_the_concatenated_batch_loss_and_gradient():
    torch.manual_seed(0)
    model = build_model(tiny_conf(router=True), TOK, num_accents=2).eval()  # CTC, L_accent and L_asr terms
    batch = toy_batch(TOK, frames=FRAMES, texts=TEXTS)
    parts = [select(batch, [0]), select(batch, [1, 2])]
    counts = [model.loss_counts(p) for p in parts]
    assert counts == [{"utterances": 1, "tokens": 6, "ctc_tokens": 5}, {"utterances": 2, "tokens": 13, "ctc_tokens": 11}]
    normalisers = summed(counts)
    assert normalisers == model.loss_counts(batch)

    full = model(batch)
    assert full["objective"] is full["loss"] and full["num_tokens"] == normalisers["tokens"]
    full["loss"].backward()
    want = grads(model)
    model.zero_grad()
    total = 0.0
    for part in parts:
        objective = model(part, normalisers=normalisers)["objective"]
        objective.backward()
        total = total + objective.detach()
    torch.testing.assert_close(total, full["loss"].detach(), rtol=1e-5, atol=1e-6)
    got = grads(model)
    assert got.keys() == want.keys() and any(n.startswith("global_router.") for n in got)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-6, msg=name)
    # The mean of the parts' means, what a trainer without normalisers would average, is another number.
    naive = sum(model(p)["loss"].detach() for p in parts) / len(parts)
    assert abs(float(naive - full["loss"].detach())) > 1e-2


def test_ctc_on_its_own_units_is_normalised_over_the_steps_units(tmp_path):
    """With ctc_units the CTC loss averages over the batch's units, not its text tokens: the step's objectives
    must add up with the units counted (2 + 7 units vs 5 + 2 characters: a split where the two differ)."""
    units = tmp_path / "phones.units"
    units.write_text("".join(f"{u}\n" for u in ["<unk>", "n", "i3", "h", "ao3", "sh", "i4"]), encoding="utf-8")
    conf = tiny_conf()
    conf["ctc_units"] = str(units)
    torch.manual_seed(0)
    model = build_model(conf, TOK).eval()
    batch = toy_batch(TOK, frames=FRAMES[:2], texts=TEXTS[:2])
    batch["ctc_ids"] = torch.tensor([[1, 2, 0, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6, 3]])
    batch["ctc_lens"] = torch.tensor([2, 7])
    parts = []
    for i in (0, 1):
        part = select(batch, [i])
        part["ctc_ids"], part["ctc_lens"] = batch["ctc_ids"][i : i + 1, : int(batch["ctc_lens"][i])], batch["ctc_lens"][i : i + 1]
        parts.append(part)
    counts = [model.loss_counts(p) for p in parts]
    assert [c["ctc_tokens"] for c in counts] == [2, 7]
    normalisers = summed(counts)
    full = model(batch)
    total = sum(model(p, normalisers=normalisers)["objective"].detach() for p in parts)
    torch.testing.assert_close(total, full["loss"].detach(), rtol=1e-5, atol=1e-6)


def test_router_stage_objective_is_per_utterance_over_the_step():
    torch.manual_seed(0)
    model = build_model(tiny_conf(router=True), TOK, num_accents=2).eval()
    batch = toy_batch(TOK, frames=FRAMES, texts=TEXTS)
    parts = [select(batch, [0]), select(batch, [1, 2])]
    counts = [model.loss_counts(p, compute_asr=False) for p in parts]
    assert counts == [{"utterances": 1}, {"utterances": 2}]
    total = sum(model(p, compute_asr=False, normalisers=summed(counts))["objective"] for p in parts)
    torch.testing.assert_close(total, model(batch, compute_asr=False)["loss"], rtol=1e-5, atol=1e-6)


def test_lm_objectives_add_up_to_the_concatenated_batch_loss(tmp_path):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    text = tmp_path / "lm.txt"
    text.write_text("中国人\n过\n钟终国果过人中\n", encoding="utf-8")
    lines = TextLines(text, CharTokenizer())
    torch.manual_seed(0)
    llm = Qwen2ForCausalLM(Qwen2Config(vocab_size=16, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                       num_attention_heads=2, num_key_value_heads=1)).eval()
    full = lines.collate([lines[0], lines[1], lines[2]])
    parts = [lines.collate([lines[0]]), lines.collate([lines[1], lines[2]])]
    counts = [lm_loss_counts(p) for p in parts]
    assert counts == [{"tokens": 4}, {"tokens": 2 + 8}]  # text + eos
    net = LossPositionsLM(llm)
    total = sum(lm_forward(net, p, summed(counts))["objective"] for p in parts)
    torch.testing.assert_close(total, lm_forward(net, full)["loss"], rtol=1e-5, atol=1e-6)


def test_lm_head_on_the_loss_positions_only_gives_the_full_heads_loss_accuracy_and_gradients(tmp_path):
    """The lm mode's LM head runs only where a loss is (not on a listening example's prefix): the loss, the
    accuracy and every gradient must be those of transformers' own causal-LM loss over all positions."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from hdmole.train.lm_data import NoisyPrefix
    from hdmole.train.config import LMPrefixConfig

    text = tmp_path / "lm.txt"
    text.write_text("中国人过\n钟终国果过人中\n国人\n", encoding="utf-8")
    lines = TextLines(text, CharTokenizer(), prefix=NoisyPrefix(LMPrefixConfig(homophone_prob=0.0)),
                      deterministic=True)
    batch = lines.collate([lines[i] for i in range(3)])
    prefix = (batch["labels"] == -100) & (batch["attention_mask"] == 1)
    assert prefix.sum() > 0  # the prefix tokens are input only
    torch.manual_seed(0)
    llm = Qwen2ForCausalLM(Qwen2Config(vocab_size=16, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                       num_attention_heads=2, num_key_value_heads=1)).eval()
    reference = llm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"],
                    use_cache=False)
    reference.loss.backward()
    expected_grads = {name: p.grad.clone() for name, p in llm.named_parameters()}
    llm.zero_grad()
    gold = batch["labels"][:, 1:]
    expected_acc = (reference.logits[:, :-1].argmax(-1)[gold != -100] == gold[gold != -100]).float().mean()

    out = lm_forward(LossPositionsLM(llm), batch)
    out["loss"].backward()
    torch.testing.assert_close(out["loss"], reference.loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["acc"], expected_acc)
    assert out["num_tokens"] == int((gold != -100).sum())
    for name, p in llm.named_parameters():
        torch.testing.assert_close(p.grad, expected_grads[name], rtol=1e-4, atol=1e-6, msg=name)
