"""Kaldi tables, accent lists, data dir validation and WAV reading: values and every bad-input error."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from hdmole.data import AccentList, DataDir, DataError, read_kaldi_table, read_wav
from test_data_fixtures import ACCENTS, make_data_dir, make_wav, write_table


def lines(path):
    return path.read_text(encoding="utf-8").splitlines()


def test_read_kaldi_table_values_and_line_numbers(tmp_path):
    path = tmp_path / "text"
    path.write_text("a1 hello world \nb2 x\n", encoding="utf-8")
    table = read_kaldi_table(path)
    assert table.entries == {"a1": "hello world", "b2": "x"}
    assert table.where("b2") == f"{path}:2"


@pytest.mark.parametrize(
    "content, message",
    [
        ("a x\n\nb y\n", ":2: malformed line"),
        ("a x\n b y\n", ":2: malformed line"),
        ("a x\nb\n", ":2: id 'b' has an empty"),
        ("a x\na y\n", ":2: duplicate id 'a'"),
        ("b x\na y\n", ":2: not sorted"),
        # LC_ALL=C is byte order: upper case sorts before lower case.
        ("a x\nB y\n", ":2: not sorted"),
    ],
)
def test_read_kaldi_table_errors(tmp_path, content, message):
    path = tmp_path / "table"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message) as error:
        read_kaldi_table(path)
    assert str(path) in str(error.value)


def test_read_kaldi_table_missing_and_bad_encoding(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_kaldi_table(tmp_path / "nope")
    path = tmp_path / "text"
    path.write_bytes("a ok\n".encode() + "b 你好\n".encode("gbk"))
    with pytest.raises(DataError, match=r":2: not valid UTF-8"):
        read_kaldi_table(path)


def test_accent_list(tmp_path):
    path = tmp_path / "accents.txt"
    path.write_text("mandarin\nnortheastern\n", encoding="utf-8")
    accents = AccentList.load(path)
    assert accents.names == ("mandarin", "northeastern") and len(accents) == 2
    assert accents.index("northeastern") == 1 and "mandarin" in accents
    with pytest.raises(DataError, match="unknown accent 'cantonese'.*mandarin, northeastern"):
        accents.index("cantonese", context="x:3")
    path.write_text("a\na\n", encoding="utf-8")
    with pytest.raises(DataError, match="listed twice"):
        AccentList.load(path)
    path.write_text("a\n\nb\n", encoding="utf-8")
    with pytest.raises(DataError, match=":2: expected exactly one accent"):
        AccentList.load(path)


def test_accent_index_is_the_line_number_in_a_non_alphabetical_list(tmp_path):
    """Index d means the accent on line d + 1 of accents.txt, also where that order is not alphabetical; the
    names (which label routing statistics and confusion matrices) stay paired with their indices."""
    data_dir = make_data_dir(tmp_path)
    order = ["southwestern", "mandarin", "northeastern"]
    (tmp_path / "accents.txt").write_text("".join(f"{name}\n" for name in order), encoding="utf-8")
    accents = AccentList.load(tmp_path / "accents.txt")
    assert accents.names == tuple(order) and [accents.index(name) for name in order] == [0, 1, 2]
    data = DataDir.load(data_dir, accents)
    assert [data.accent_index(u) for u in data.utt_ids] == [1, 1, 2, 2, 0, 0]  # spkA mandarin, ..., spkC southwestern
    assert all(accents.names[data.accent_index(u)] == data.utt2accent[u] for u in data.utt_ids)


def test_valid_data_dir(tmp_path):
    data = DataDir.load(make_data_dir(tmp_path), tmp_path / "accents.txt")
    assert len(data) == 6 and data.feats_scp is None
    assert data.text["spkB-001"] == "我爱北京"
    assert data.accent_index("spkC-002") == ACCENTS.index("southwestern")


def edit_line(path, number, new_line):
    rows = lines(path)
    if new_line is None:
        del rows[number - 1]
    else:
        rows[number - 1] = new_line
    path.write_text("".join(f"{r}\n" for r in rows), encoding="utf-8")


@pytest.mark.parametrize(
    "file, line, new_line, message",
    [
        ("text", 3, "spkB-001", r"text:3: id 'spkB-001' has an empty transcript"),
        ("text", 3, None, r"wav.scp:3: utterance 'spkB-001' has no entry in .*text"),
        ("utt2accent", 2, None, r"wav.scp:2: utterance 'spkA-002' has no entry in .*utt2accent"),
        ("utt2accent", 5, "spkC-001 cantonese", r"utt2accent:5: unknown accent 'cantonese'"),
        ("utt2spk", 1, "spkA-001 spkB", r"utt2spk:1: utterance id 'spkA-001' does not start with its speaker id 'spkB'"),
        ("wav.scp", 2, "spkA-000 /x.wav", r"wav.scp:2: not sorted"),
        ("spk2utt", 1, "spkA spkA-001", r"spk2utt: utterance 'spkA-002'.* is missing"),
    ],
)
def test_data_dir_errors_name_file_and_line(tmp_path, file, line, new_line, message):
    data = make_data_dir(tmp_path)
    edit_line(data / file, line, new_line)
    with pytest.raises(DataError, match=message):
        DataDir.load(data, tmp_path / "accents.txt")


def test_data_dir_missing_file_and_extra_utterance(tmp_path):
    data = make_data_dir(tmp_path)
    (data / "utt2accent").unlink()
    with pytest.raises(DataError, match=r"utt2accent: required file missing"):
        DataDir.load(data)
    data = make_data_dir(tmp_path / "b")
    with open(data / "text", "a", encoding="utf-8") as handle:
        handle.write("spkD-001 多余\n")
    with pytest.raises(DataError, match=r"text:7: utterance 'spkD-001' is not in .*wav.scp"):
        DataDir.load(data)


def test_data_dir_feats_checks(tmp_path):
    data = make_data_dir(tmp_path)
    with pytest.raises(DataError, match="no features; run `python -m hdmole.bin.compute_fbank"):
        DataDir.load(data, require_feats=True)
    shutil.copy(data / "utt2spk", data / "feats.scp")
    with pytest.raises(DataError, match="utt2num_frames: missing"):
        DataDir.load(data)
    write_table(data / "utt2num_frames", [(u, "0") for u in DataDir.load(data, ignore_feats=True).utt_ids])
    with pytest.raises(DataError, match=r"utt2num_frames:1: frame count '0' is not a positive integer"):
        DataDir.load(data)


def test_read_wav_file_and_pipe(tmp_path):
    path = make_wav(tmp_path / "a.wav", 0.25, freq=1000)
    samples, rate = read_wav(path, expected_sample_rate=16000)
    assert rate == 16000 and samples.dtype == np.float32 and samples.shape == (4000,)
    assert 0.29 < np.abs(samples).max() < 0.31  # written at amplitude 0.3, read back scaled to [-1, 1)
    piped, _ = read_wav(f"cat {path} |")
    np.testing.assert_array_equal(piped, samples)
    # sox is a requirement of the suite (tools/install.sh installs it; the speech fixtures use it too): a
    # missing sox fails here, it is not skipped.
    assert shutil.which("sox"), "sox is not installed: run tools/install.sh (or apt-get install sox)"
    resampled, rate = read_wav(f"sox {path} -r 8000 -t wav - |", expected_sample_rate=8000)
    assert rate == 8000 and abs(len(resampled) - 2000) <= 2


def test_read_wav_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_wav(tmp_path / "missing.wav")
    with pytest.raises(DataError, match=r"sample rate 8000 Hz, expected 16000 Hz"):
        read_wav(make_wav(tmp_path / "8k.wav", 0.1, rate=8000), expected_sample_rate=16000)
    (tmp_path / "junk.wav").write_bytes(b"this is not a wav file at all" * 4)
    with pytest.raises(DataError, match="not a readable 16-bit PCM WAV"):
        read_wav(tmp_path / "junk.wav")
    with pytest.raises(DataError, match="8-bit samples, not 16-bit PCM"):
        read_wav(make_wav(tmp_path / "u8.wav", 0.1, sampwidth=1))
    with pytest.raises(DataError, match="2 channels, expected mono"):
        read_wav(make_wav(tmp_path / "st.wav", 0.1, channels=2))
    good = make_wav(tmp_path / "t.wav", 0.2).read_bytes()
    (tmp_path / "trunc.wav").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="truncated"):
        read_wav(tmp_path / "trunc.wav")
    with pytest.raises(DataError, match="exit status 3"):
        read_wav("exit 3 |")
    with pytest.raises(DataError, match="wrote nothing"):
        read_wav("true |")


def test_float_wav_is_rejected(tmp_path):
    # WAVE_FORMAT_IEEE_FLOAT (3): build the header by hand, the wave module only writes PCM.
    data = np.zeros(160, dtype="<f4").tobytes()
    fmt = (3).to_bytes(2, "little") + (1).to_bytes(2, "little") + (16000).to_bytes(4, "little")
    fmt += (64000).to_bytes(4, "little") + (4).to_bytes(2, "little") + (32).to_bytes(2, "little")
    body = b"WAVE" + b"fmt " + len(fmt).to_bytes(4, "little") + fmt + b"data" + len(data).to_bytes(4, "little") + data
    (tmp_path / "f.wav").write_bytes(b"RIFF" + len(body).to_bytes(4, "little") + body)
    with pytest.raises(DataError, match="not a readable 16-bit PCM WAV.*sox"):
        read_wav(tmp_path / "f.wav")
