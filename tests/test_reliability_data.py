"""Reliability of feature extraction and of reading data dirs (docs/reliability.md): features are
recomputed when wav.scp or its audio changed, CRLF and byte-order marks are named instead of taken
in, and the resampling advice for a pipe is a working wav.scp entry."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from reliability_fixtures import assert_one_line_error
from test_data_fixtures import make_data_dir, make_wav

from hdmole.bin import compute_fbank
from hdmole.data import DataDir, DataError, read_kaldi_table, read_wav


def features(data):
    import kaldiio

    return {utt: np.array(m) for utt, m in kaldiio.load_scp(str(data / "feats.scp")).items()}


def test_compute_fbank_redoes_features_when_the_audio_changed(tmp_path):
    data = make_data_dir(tmp_path)
    feat_dir = tmp_path / "fbank"
    assert compute_fbank.main([str(data), str(feat_dir)]) == 0
    first = features(data)
    stamp = (data / "feats.scp").stat().st_mtime_ns
    assert compute_fbank.main([str(data), str(feat_dir)]) == 0  # unchanged: skipped
    assert (data / "feats.scp").stat().st_mtime_ns == stamp
    # A new pipe for one utterance (another recording): its features are recomputed.
    other = make_wav(tmp_path / "other.wav", 0.3, freq=1200.0)
    lines = (data / "wav.scp").read_text().splitlines()
    lines[0] = f"{lines[0].split()[0]} sox {other} -t wav - |"
    (data / "wav.scp").write_text("".join(line + "\n" for line in lines))
    assert compute_fbank.main([str(data), str(feat_dir)]) == 0
    second = features(data)
    utt = lines[0].split()[0]
    assert not np.array_equal(first[utt], second[utt])
    # The same path with new audio in the file: recomputed too.
    make_wav(other, 0.3, freq=300.0)
    assert compute_fbank.main([str(data), str(feat_dir)]) == 0
    assert not np.array_equal(features(data)[utt], second[utt])


def test_compute_fbank_rejects_crlf(tmp_path, caplog):
    data = make_data_dir(tmp_path)
    (data / "wav.scp").write_bytes((data / "wav.scp").read_bytes().replace(b"\n", b"\r\n"))
    code = compute_fbank.main([str(data), str(tmp_path / "fbank")])
    assert code == 1 and f"{data / 'wav.scp'}:1: contains a carriage return" in caplog.text
    assert not (data / "feats.scp").exists()


def test_table_with_a_byte_order_mark_is_named(tmp_path):
    path = tmp_path / "text"
    path.write_bytes(b"\xef\xbb\xbfa1 hello\nb2 x\n")
    with pytest.raises(DataError, match=f"{path}:1: starts with a UTF-8 byte-order mark"):
        read_kaldi_table(path)


def test_resampling_advice_for_a_pipe_is_a_working_entry(tmp_path):
    wav8k = make_wav(tmp_path / "a8k.wav", 0.2, rate=8000)
    pipe = f"sox {wav8k} -t wav - |"
    with pytest.raises(DataError) as error:
        read_wav(pipe, expected_sample_rate=16000)
    message = str(error.value)
    assert "sox sox" not in message
    suggested = message.split("wav.scp entry `", 1)[1].split("`", 1)[0]
    assert suggested == f"sox {wav8k} -t wav - | sox -t wav - -r 16000 -t wav - |"
    samples, rate = read_wav(suggested, expected_sample_rate=16000)
    assert rate == 16000 and len(samples) == pytest.approx(3200, abs=50)


def test_compute_fbank_unwritable_feat_dir_is_one_line(tmp_path):
    data = make_data_dir(tmp_path)
    (tmp_path / "file").write_text("")
    feat_dir = tmp_path / "file" / "fbank"  # a file where a directory should be
    run = subprocess.run([sys.executable, "-m", "hdmole.bin.compute_fbank", str(data), str(feat_dir)],
                         capture_output=True, text=True)
    assert_one_line_error(run.returncode, run.stderr, feat_dir)
    assert DataDir.load(data).feats_scp is None
