"""compute_fbank / compute_cmvn end to end on tiny synthetic wavs; failures leave nothing half-written."""

from __future__ import annotations

import json

import kaldiio
import numpy as np
import pytest

from hdmole.bin import compute_cmvn, compute_fbank
from hdmole.data import DataDir, FbankConfig, GlobalCMVN, compute_fbank as fbank_of, read_wav
from test_data_fixtures import UTTERANCES, make_data_dir, make_wav


def expected_frames(seconds: float) -> int:
    # Kaldi with snip_edges: 1 + (samples - 400) // 160 for 25 ms windows, 10 ms shift at 16 kHz.
    return 1 + (int(seconds * 16000) - 400) // 160


def snapshot(*dirs):
    return {p: p.read_bytes() for d in dirs for p in sorted(d.rglob("*")) if p.is_file() and "log" not in p.parts}


def test_fbank_of_a_tone_peaks_at_its_mel_bin(tmp_path):
    samples, _ = read_wav(make_wav(tmp_path / "t.wav", 0.5, freq=1000.0))
    feats = fbank_of(samples, FbankConfig())
    assert feats.shape == (expected_frames(0.5), 80) and feats.dtype == np.float32
    # Mel of 1 kHz with 80 bins between 20 Hz and 8 kHz: bin index (mel(1000)-mel(20)) / bin width - 1.
    mel = lambda f: 1127.0 * np.log(1 + f / 700.0)  # noqa: E731
    expected_bin = (mel(1000) - mel(20)) / ((mel(8000) - mel(20)) / 81) - 1
    assert abs(int(feats.mean(axis=0).argmax()) - expected_bin) <= 1
    # Same input, same options: identical features (dither 0).
    np.testing.assert_array_equal(feats, fbank_of(samples, FbankConfig()))


def test_compute_fbank_writes_feats_and_frames(tmp_path):
    data = make_data_dir(tmp_path)
    # One entry as a Kaldi pipe command: it must give the same features as the plain path.
    rows = (data / "wav.scp").read_text().splitlines()
    rows[1] = f"{rows[1].split()[0]} cat {rows[1].split()[1]} |"
    (data / "wav.scp").write_text("\n".join(rows) + "\n")
    assert compute_fbank.main(["--nj", "2", str(data), str(tmp_path / "fbank")]) == 0
    loaded = DataDir.load(data, require_feats=True)
    by_id = {u[0]: u for u in UTTERANCES}
    assert loaded.utt2num_frames == {utt: expected_frames(by_id[utt][4]) for utt in loaded.utt_ids}
    feats = kaldiio.load_scp(str(data / "feats.scp"))
    for utt in loaded.utt_ids:
        samples, _ = read_wav(f"{tmp_path}/wavs/{utt}.wav")
        np.testing.assert_allclose(feats[utt], fbank_of(samples), rtol=0, atol=0)
    assert sorted(p.name for p in (tmp_path / "fbank").glob("feats.*")) == ["feats.1.ark", "feats.1.scp", "feats.2.ark", "feats.2.scp"]
    assert (tmp_path / "fbank" / "log" / "compute_fbank.log").read_text().count("extracted 6 utterances") == 1
    assert not list(tmp_path.rglob("*.tmp"))

    # Complete: a re-run skips; --force recomputes the same features with another job count.
    before = (data / "feats.scp").stat().st_mtime_ns
    assert compute_fbank.main([str(data), str(tmp_path / "fbank")]) == 0
    assert (data / "feats.scp").stat().st_mtime_ns == before
    first = {utt: feats[utt] for utt in loaded.utt_ids}
    assert compute_fbank.main(["--force", str(data), str(tmp_path / "fbank")]) == 0
    again = kaldiio.load_scp(str(data / "feats.scp"))
    for utt, value in first.items():
        np.testing.assert_array_equal(again[utt], value)

    # Global CMVN from these features: mean/std per dim, applied gives zero mean and unit std.
    assert compute_cmvn.main([str(data), str(tmp_path / "cmvn.json")]) == 0
    cmvn = GlobalCMVN.load(tmp_path / "cmvn.json")
    stacked = np.concatenate(list(first.values()))
    assert json.loads((tmp_path / "cmvn.json").read_text())["count"] == stacked.shape[0]
    np.testing.assert_allclose(cmvn.mean, stacked.mean(axis=0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(cmvn.std, np.maximum(stacked.std(axis=0), 1e-5), rtol=1e-3, atol=1e-4)
    normalised = cmvn.apply(stacked)
    np.testing.assert_allclose(normalised.mean(axis=0), 0, atol=1e-3)
    assert np.all(stacked.std(axis=0) > 1e-2)  # no dimension at the std floor, so every one has unit std
    np.testing.assert_allclose(normalised.std(axis=0), 1, rtol=1e-3)
    import torch

    np.testing.assert_allclose(cmvn.apply(torch.from_numpy(stacked)).numpy(), normalised, atol=1e-5)


def break_entry(data, utt, new_value):
    rows = (data / "wav.scp").read_text().splitlines()
    index = [r.split()[0] for r in rows].index(utt)
    rows[index] = f"{utt} {new_value}"
    (data / "wav.scp").write_text("\n".join(rows) + "\n")
    return index + 1


@pytest.mark.parametrize("nj", [1, 2])
@pytest.mark.parametrize(
    "problem, message",
    [("missing", "not found"), ("rate", "sample rate 8000 Hz, expected 16000 Hz"), ("corrupt", "not a readable 16-bit PCM WAV")],
)
def test_compute_fbank_bad_audio_fails_cleanly(tmp_path, caplog, nj, problem, message):
    data = make_data_dir(tmp_path)
    bad = tmp_path / "bad.wav"
    if problem == "rate":
        make_wav(bad, 0.3, rate=8000)
    elif problem == "corrupt":
        bad.write_bytes(b"RIFF\x00\x00\x00\x00junkjunkjunkjunk")
    line = break_entry(data, "spkB-002", str(bad))
    before = snapshot(data)
    assert compute_fbank.main(["--nj", str(nj), str(data), str(tmp_path / "fbank")]) == 1
    assert f"wav.scp:{line}: utterance 'spkB-002'" in caplog.text and message in caplog.text
    assert snapshot(data) == before  # no feats.scp, no utt2num_frames
    assert not [p for p in (tmp_path / "fbank").iterdir() if p.name != "log"]  # no arks, no temporaries
    assert message in (tmp_path / "fbank" / "log" / "compute_fbank.log").read_text()


def test_failed_recompute_keeps_complete_features(tmp_path, caplog):
    data = make_data_dir(tmp_path)
    assert compute_fbank.main([str(data), str(tmp_path / "fbank")]) == 0
    before = snapshot(data, tmp_path / "fbank")
    break_entry(data, "spkA-001", str(tmp_path / "gone.wav"))
    assert compute_fbank.main(["--force", str(data), str(tmp_path / "fbank")]) == 1
    assert "utterance 'spkA-001'" in caplog.text
    assert snapshot(data, tmp_path / "fbank") == {**before, data / "wav.scp": (data / "wav.scp").read_bytes()}


def test_feat_dir_belongs_to_one_data_dir(tmp_path, caplog):
    first = make_data_dir(tmp_path, name="train")
    second = make_data_dir(tmp_path, name="dev")
    assert compute_fbank.main([str(first), str(tmp_path / "fbank")]) == 0
    assert compute_fbank.main([str(second), str(tmp_path / "fbank")]) == 1
    assert "already holds the features of" in caplog.text and not (second / "feats.scp").exists()


def test_cmvn_subtracts_the_mean_and_divides_by_the_std():
    """(x - mean) / std on numbers read off by hand, for numpy arrays and torch tensors alike."""
    import torch

    cmvn = GlobalCMVN(mean=[1.0, -2.0, 0.5], std=[2.0, 4.0, 0.25])
    feats = np.array([[3.0, 2.0, 1.0], [1.0, -10.0, 0.0]], dtype=np.float32)
    expected = np.array([[1.0, 1.0, 2.0], [0.0, -2.0, -2.0]], dtype=np.float32)
    np.testing.assert_allclose(cmvn.apply(feats), expected)
    torch.testing.assert_close(cmvn.apply(torch.from_numpy(feats)), torch.from_numpy(expected))


def test_compute_cmvn_needs_features(tmp_path, caplog):
    data = make_data_dir(tmp_path)
    assert compute_cmvn.main([str(data), str(tmp_path / "cmvn.json")]) == 1
    assert "run `python -m hdmole.bin.compute_fbank" in caplog.text and not (tmp_path / "cmvn.json").exists()


@pytest.mark.parametrize(
    "file, line, new_line, message",
    [
        ("text", 2, "spkA-002 ", "text:2: id 'spkA-002' has an empty transcript"),
        ("utt2accent", 3, "spkB-001 cantonese", "utt2accent:3: unknown accent 'cantonese'"),
        ("utt2accent", 3, None, "utterance 'spkB-001' has no entry in"),
        ("utt2spk", 1, "spkB-001 spkB", "utt2spk:2: not sorted"),
    ],
)
def test_compute_fbank_rejects_bad_data_dir_before_writing(tmp_path, caplog, file, line, new_line, message):
    data = make_data_dir(tmp_path)
    rows = (data / file).read_text(encoding="utf-8").splitlines()
    if new_line is None:
        del rows[line - 1]
    else:
        rows[line - 1] = new_line
    (data / file).write_text("\n".join(rows) + "\n", encoding="utf-8")
    before = snapshot(data)
    assert compute_fbank.main(["--accents", str(tmp_path / "accents.txt"), str(data), str(tmp_path / "fbank")]) == 1
    assert message in caplog.text
    assert snapshot(data) == before and not [p for p in (tmp_path / "fbank").iterdir() if p.name != "log"]


def test_whisper_features_match_whisper_log_mel_and_switching_type_recomputes(tmp_path):
    from hdmole.models.features import whisper_log_mel

    data = make_data_dir(tmp_path)
    feat_dir = tmp_path / "fbank"
    assert compute_fbank.main(["--feature-type", "whisper", "--num-mel-bins", "128", str(data), str(feat_dir)]) == 0
    feats = kaldiio.load_scp(str(data / "feats.scp"))
    loaded = DataDir.load(data, require_feats=True)
    for utt in loaded.utt_ids:
        samples, _ = read_wav(f"{tmp_path}/wavs/{utt}.wav")
        expected = whisper_log_mel(samples, 16000, num_mel_bins=128)
        assert feats[utt].shape == (len(samples) // 160, 128)  # 10 ms hop, no 30 s padding
        np.testing.assert_allclose(feats[utt], expected, rtol=0, atol=0)
        assert loaded.utt2num_frames[utt] == expected.shape[0]
    recorded = json.loads((feat_dir / "fbank_config.json").read_text())
    assert recorded["feature_type"] == "whisper" and recorded["num_mel_bins"] == 128

    # Same options: skipped. Other options (fbank now): the features are recomputed, not silently kept.
    before = (data / "feats.scp").stat().st_mtime_ns
    assert compute_fbank.main(["--feature-type", "whisper", "--num-mel-bins", "128", str(data), str(feat_dir)]) == 0
    assert (data / "feats.scp").stat().st_mtime_ns == before
    assert compute_fbank.main([str(data), str(feat_dir)]) == 0
    again = kaldiio.load_scp(str(data / "feats.scp"))
    assert all(again[utt].shape[1] == 80 for utt in loaded.utt_ids)
    assert json.loads((feat_dir / "fbank_config.json").read_text())["feature_type"] == "fbank"


def test_whisper_feature_options_are_checked(tmp_path, capsys):
    data = make_data_dir(tmp_path)
    with pytest.raises(SystemExit):
        compute_fbank.main(["--feature-type", "whisper", "--num-mel-bins", "40", str(data), str(tmp_path / "f")])
    assert "80 (large-v2, small, ...) or 128 (large-v3)" in capsys.readouterr().err
    with pytest.raises(ValueError, match="16 kHz"):
        FbankConfig(feature_type="whisper", sample_rate=8000)
    with pytest.raises(ValueError, match="feature_type must be one of"):
        FbankConfig(feature_type="mfcc")


def test_whisper_features_reject_audio_longer_than_30s(tmp_path, caplog):
    data = make_data_dir(tmp_path)
    line = break_entry(data, "spkA-002", str(make_wav(tmp_path / "long.wav", 30.5)))
    assert compute_fbank.main(["--feature-type", "whisper", str(data), str(tmp_path / "fbank")]) == 1
    assert f"wav.scp:{line}: utterance 'spkA-002'" in caplog.text and "longer than Whisper's 30 s window" in caplog.text
    assert not (data / "feats.scp").exists()
