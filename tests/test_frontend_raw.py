"""Raw-audio data dirs (compute_fbank --feats-type raw): the data loader computes, from wav.scp (files, Kaldi
pipes, kaldiio ark offsets), the same features as the dumped ones; utt2num_frames without computing them;
switching between raw and fbank; errors that name the wav.scp line."""

from __future__ import annotations

import shutil

import kaldiio
import numpy as np
import pytest

from hdmole.bin import compute_cmvn, compute_fbank
from hdmole.data import DataDir, DataError, read_wav
from hdmole.data.dataset import ASRDataset
from test_data_fixtures import make_data_dir

FRONT_ENDS = {"fbank": [], "fbank_pitch": ["--pitch"], "whisper": ["--feature-type", "whisper"]}


def mixed_wav_scp(root, data):
    """wav.scp with a plain file, a Kaldi pipe and a kaldiio ark offset (as ESPnet's format_wav_scp writes)."""
    rows = [line.split(" ", 1) for line in (data / "wav.scp").read_text().splitlines()]
    rows[1][1] = f"cat {rows[1][1]} |"
    samples, rate = read_wav(rows[2][1])
    with open(root / "audio.ark", "wb") as ark:
        kaldiio.save_ark(ark, {rows[2][0]: (rate, (samples * 32768).astype(np.int16))},
                         scp=str(root / "audio.scp"))
    rows[2][1] = (root / "audio.scp").read_text().split(" ", 1)[1].strip()
    assert rows[2][1].startswith(str(root / "audio.ark") + ":")
    (data / "wav.scp").write_text("".join(f"{u} {e}\n" for u, e in rows))


@pytest.fixture
def dirs(tmp_path):
    data = make_data_dir(tmp_path)
    mixed_wav_scp(tmp_path, data)
    raw = tmp_path / "raw"
    shutil.copytree(data, raw)
    return data, raw, tmp_path


@pytest.mark.parametrize("front_end", FRONT_ENDS)
def test_raw_features_equal_the_dumped_ones(dirs, front_end):
    data, raw, root = dirs
    options = FRONT_ENDS[front_end]
    assert compute_fbank.main([*options, str(data), str(root / "dump")]) == 0
    assert compute_fbank.main([*options, "--feats-type", "raw", "--nj", "2", str(raw), str(root / "rawlog")]) == 0
    # Raw writes no features: only utt2num_frames and frontend.json in the data dir, the log elsewhere.
    assert not (raw / "feats.scp").exists() and (raw / "frontend.json").is_file()
    assert sorted(p.name for p in (root / "rawlog").rglob("*") if p.is_file()) == ["compute_fbank.log"]
    assert (raw / "utt2num_frames").read_text() == (data / "utt2num_frames").read_text()
    dumped, computed = ASRDataset(data, root / "accents.txt"), ASRDataset(raw, root / "accents.txt")
    assert computed.data.frontend is not None and dumped.data.frontend is None
    for index in range(len(dumped)):
        a, b = dumped[index], computed[index]
        assert a["utt_id"] == b["utt_id"] and a["text"] == b["text"]
        np.testing.assert_allclose(b["feats"], a["feats"], rtol=0, atol=1e-6)


def test_cmvn_of_a_raw_dir_equals_the_dumped_one(dirs, tmp_path):
    data, raw, root = dirs
    assert compute_fbank.main([str(data), str(root / "dump")]) == 0
    assert compute_fbank.main(["--feats-type", "raw", str(raw), str(root / "rawlog")]) == 0
    a, b = compute_cmvn.compute_cmvn(data), compute_cmvn.compute_cmvn(raw)
    np.testing.assert_allclose(b.mean, a.mean, rtol=1e-6)
    np.testing.assert_allclose(b.std, a.std, rtol=1e-6)


def test_raw_is_skipped_when_unchanged_and_switching_type_removes_the_other(dirs, caplog):
    data, raw, root = dirs
    args = ["--feats-type", "raw", str(data), str(root / "log")]
    assert compute_fbank.main(args) == 0
    stamp = (data / "frontend.json").stat().st_mtime_ns
    assert compute_fbank.main(args) == 0 and (data / "frontend.json").stat().st_mtime_ns == stamp
    assert "is raw with the same audio and options; skipping" in caplog.text
    assert compute_fbank.main([str(data), str(root / "dump")]) == 0  # now dumped: no longer raw
    assert (data / "feats.scp").is_file() and not (data / "frontend.json").exists()
    assert DataDir.load(data, require_feats=True).frontend is None
    assert compute_fbank.main(args) == 0  # raw again: the dumped features are not used any more
    assert not (data / "feats.scp").exists() and DataDir.load(data, require_feats=True).frontend is not None


def test_raw_errors_name_the_wav_scp_line(dirs, caplog):
    data, raw, root = dirs
    rows = (raw / "wav.scp").read_text().splitlines()
    good = rows[3]
    rows[3] = rows[3].split()[0] + " /nonexistent.wav"
    (raw / "wav.scp").write_text("\n".join(rows) + "\n")
    assert compute_fbank.main(["--feats-type", "raw", str(raw), str(root / "log")]) == 1
    assert f"{raw}/wav.scp:4" in caplog.text and "not found" in caplog.text
    assert not (raw / "frontend.json").exists() and not (raw / "utt2num_frames").exists()
    # Audio replaced after the raw stage: the loader names the line instead of feeding other frames.
    rows[3] = good
    (raw / "wav.scp").write_text("\n".join(rows) + "\n")
    assert compute_fbank.main(["--feats-type", "raw", str(raw), str(root / "log")]) == 0
    utt, path = good.split(" ", 1)
    samples, rate = read_wav(path)
    from test_data_fixtures import make_wav

    make_wav(root / "longer.wav", len(samples) / rate + 0.2)
    rows[3] = f"{utt} {root / 'longer.wav'}"
    (raw / "wav.scp").write_text("\n".join(rows) + "\n")
    dataset = ASRDataset(raw, root / "accents.txt")
    with pytest.raises(DataError, match=r"wav.scp:4: the audio of .* gives \d+ frames but utt2num_frames says"):
        dataset[3]
    (raw / "feats.scp").write_text("")
    with pytest.raises(DataError, match="has both feats.scp"):
        DataDir.load(raw)
