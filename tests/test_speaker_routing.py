"""Speaker-level routing (hdmole.models.speaker_routing): the router posterior pooled over a speaker's
utterances, the same in training and in decoding, and what eval_router reports of it."""

from __future__ import annotations

import copy

import pytest
import torch
from train_fixtures import MODEL, Corpus

from hdmole.bin.eval_router import speaker_level_accuracy
from hdmole.models.build import build_model
from hdmole.models.speaker_routing import attach_route_logits, pool_by_speaker
from hdmole.text.tokenizer import build_tokenizer

LOGITS = {"a-1": torch.tensor([2.0, 0.0, 0.0]), "a-2": torch.tensor([0.0, 1.0, 0.0]),
          "a-3": torch.tensor([1.5, 0.0, 0.5]), "b-1": torch.tensor([0.0, 0.0, 3.0])}
UTT2SPK = {"a-1": "a", "a-2": "a", "a-3": "a", "b-1": "b"}


def test_each_utterance_gets_its_speaker_s_summed_log_posteriors_and_a_lone_utterance_keeps_its_own():
    pooled = pool_by_speaker(LOGITS, UTT2SPK)
    a = sum(torch.log_softmax(LOGITS[u], -1) for u in ("a-1", "a-2", "a-3"))
    for utt in ("a-1", "a-2", "a-3"):
        torch.testing.assert_close(pooled[utt], a)
    torch.testing.assert_close(pooled["b-1"].softmax(-1), LOGITS["b-1"].softmax(-1))
    # a-2 alone would go to domain 1; its speaker's evidence sends it to domain 0
    assert int(LOGITS["a-2"].argmax()) == 1 and int(pooled["a-2"].argmax()) == 0


def test_first_k_pools_the_enrolment_only_and_routes_every_utterance_of_the_speaker_with_it():
    pooled = pool_by_speaker(LOGITS, UTT2SPK, first_k=1)
    for utt in ("a-1", "a-2", "a-3"):
        torch.testing.assert_close(pooled[utt], torch.log_softmax(LOGITS["a-1"], -1))
    two = pool_by_speaker(LOGITS, UTT2SPK, first_k=2)
    torch.testing.assert_close(two["a-3"], torch.log_softmax(LOGITS["a-1"], -1) + torch.log_softmax(LOGITS["a-2"], -1))
    with pytest.raises(ValueError, match="first_k"):
        pool_by_speaker(LOGITS, UTT2SPK, first_k=-1)
    with pytest.raises(ValueError, match="no speaker"):
        pool_by_speaker(LOGITS, {"a-1": "a"})


def test_eval_router_speaker_level_accuracy_counts_utterances_and_speakers():
    truths = {"a-1": 0, "a-2": 0, "a-3": 0, "b-1": 1}  # b is misrouted (domain 2) however it is pooled
    result = speaker_level_accuracy(LOGITS, truths, UTT2SPK)
    assert result["all"] == {"utterance_accuracy": 0.75, "speakers": 2, "speakers_correct": 1}
    assert result["first_1"]["utterance_accuracy"] == 0.75
    assert set(result) == {"all", "first_1", "first_3", "first_10"}


@pytest.fixture(scope="module")
def speaker_model(tmp_path_factory):
    corpus = Corpus(tmp_path_factory.mktemp("speaker_routing"))
    conf = copy.deepcopy(MODEL)
    conf["global_router"] = {**conf["global_router"], "pool": "speaker"}
    torch.manual_seed(0)
    return build_model(conf, build_tokenizer(corpus.tokenizer), num_accents=2).eval()


def test_the_model_routes_training_and_decoding_batches_with_the_pooled_logits(speaker_model):
    enc_out, enc_lens = torch.randn(2, 5, 32), torch.tensor([5, 3])
    pooled = {"s1-a": torch.tensor([3.0, -1.0]), "s2-b": torch.tensor([-2.0, 2.0])}
    batch = attach_route_logits({"utt_ids": ["s1-a", "s2-b"], "enc_out": enc_out, "enc_lens": enc_lens}, pooled)
    expected = torch.stack([pooled["s1-a"], pooled["s2-b"]]).softmax(-1)
    # decoding (hdmole.decode.search) and routing_stats route through routing_posterior ...
    torch.testing.assert_close(speaker_model.routing_posterior(enc_out, enc_lens, None, batch["route_logits"]), expected)
    # ... and training through _speech_and_route: the same posterior, whatever the utterance's own router says
    _, _, probs = speaker_model._speech_and_route(batch, {})
    torch.testing.assert_close(probs, expected)
    with pytest.raises(ValueError, match="pooled"):
        speaker_model.routing_posterior(enc_out, enc_lens)
    with pytest.raises(ValueError, match="no pooled posterior"):
        attach_route_logits({"utt_ids": ["s3-c"]}, pooled)


def test_the_report_shows_the_speaker_level_accuracy_of_eval_router(tmp_path):
    import json

    from hdmole.report.sections import router_section

    summary = {"accents": ["Mandarin", "Dental"], "utterances": 4, "accuracy": 0.5,
               "recall": {"Mandarin": 1.0, "Dental": 0.0}, "confusion": [[2, 0], [2, 0]],
               "speaker_level": speaker_level_accuracy(LOGITS, {"a-1": 0, "a-2": 0, "a-3": 0, "b-1": 1}, UTT2SPK)}
    (tmp_path / "router_dev.json").write_text(json.dumps(summary))
    text = router_section(tmp_path, ["dev"])
    assert "Speaker-level routing" in text
    assert "| dev | 75.0% (1/2) | 75.0% (1/2) |" in text


def test_the_report_gives_the_online_cers_of_a_speaker_routed_system(tmp_path):
    import json

    from hdmole.report.sections import online_speaker_section

    for prefix, cer in (("decode", 10.0), ("decode_first1", 14.0), ("decode_first3", 12.0), ("decode_first10", 11.0)):
        for test_set, offset in (("test_std", -5.0), ("test_a", 0.0), ("test_b", 2.0)):
            out = tmp_path / "hdmole_spk" / f"{prefix}_{test_set}"
            out.mkdir(parents=True)
            (out / "cer.json").write_text(json.dumps({"total": {"cer": cer + offset}}))
    (tmp_path / "hdmole").mkdir()  # an utterance-routed system: no online rows
    text = online_speaker_section(tmp_path, ["hdmole", "hdmole_spk"], "test_std", ["test_a", "test_b"])
    assert "| hdmole_spk | all | 11.00 | 5.00 |" in text
    assert "| hdmole_spk | first 1 | 15.00 | 9.00 |" in text and "| hdmole_spk | first 10 |" in text
    assert "| hdmole |" not in text
