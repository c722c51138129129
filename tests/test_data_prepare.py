"""hdmole.data.prepare and hdmole.text.cleaning: what a recipe's stage 0 (egs/<corpus>/local) writes data dirs
and cleans transcripts with (moved out of egs/kespeech/local so that every recipe shares them; the kespeech
stage-0 tests run them on a whole fake corpus tree)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from hdmole.data import AccentList, DataDir, DataError
from hdmole.data.prepare import Utterance, accent_counts, kaldi_utt_id, replace_data_dirs, write_data_dir
from hdmole.text.cleaning import TextCleaner

ROOT = Path(__file__).resolve().parents[1]


def utterances(tmp_path: Path) -> list[Utterance]:
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"")
    rows = [("S2", "BAC009S2W1", "Yue", "你好"), ("S10", "S10-x", "Mandarin", "世界"), ("S2", "BAC009S2W0", "Yue", "好")]
    return [Utterance(kaldi_utt_id(spk, corpus_id), spk, accent, text, wav, f"list.tsv:{n}")
            for n, (spk, corpus_id, accent, text) in enumerate(rows, 2)]


def test_kaldi_ids_start_with_the_speaker():
    assert kaldi_utt_id("S0002", "BAC009S0002W0122") == "S0002-BAC009S0002W0122"
    assert kaldi_utt_id("S0002", "S0002W0122") == "S0002W0122"


def test_write_data_dir_writes_a_valid_sorted_data_dir(tmp_path):
    """Unsorted records in, a data dir that DataDir and utils/validate_data_dir.sh accept out."""
    utts = utterances(tmp_path)
    out = tmp_path / "data" / "train"
    write_data_dir(out, utts)
    AccentList(["Mandarin", "Yue"]).save(tmp_path / "data" / "accents.txt")
    loaded = DataDir.load(out, tmp_path / "data" / "accents.txt")
    assert loaded.utt_ids == ["S10-x", "S2-BAC009S2W0", "S2-BAC009S2W1"]
    assert (out / "spk2utt").read_text() == "S10 S10-x\nS2 S2-BAC009S2W0 S2-BAC009S2W1\n"
    check = subprocess.run([str(ROOT / "utils" / "validate_data_dir.sh"), "--accents", str(tmp_path / "data" / "accents.txt"),
                            str(out)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert accent_counts(utts) == {"Mandarin": 1, "Yue": 2}


def test_duplicate_ids_and_empty_sets_are_errors_naming_the_origin(tmp_path):
    utts = utterances(tmp_path)
    with pytest.raises(DataError, match=r"utterance id 'S2-BAC009S2W1' occurs twice \(list.tsv:2 and list.tsv:2\)"):
        write_data_dir(tmp_path / "dup", [*utts, utts[0]])
    with pytest.raises(DataError, match="no utterances left for this set"):
        write_data_dir(tmp_path / "empty", [])


def test_replace_data_dirs_swaps_whole_dirs_and_leaves_others(tmp_path):
    out, staging = tmp_path / "data", tmp_path / "data" / ".stage0.tmp"
    (out / "train").mkdir(parents=True)
    (out / "train" / "old").write_text("stale")
    (out / "keep").mkdir()
    write_data_dir(staging / "train", utterances(tmp_path))
    (staging / "accents.txt").write_text("Mandarin\nYue\n")
    replace_data_dirs(staging, out, ["train", "accents.txt"])
    assert not (out / "train" / "old").exists() and (out / "train" / "wav.scp").is_file()
    assert (out / "keep").is_dir() and (out / "accents.txt").read_text() == "Mandarin\nYue\n" and not staging.exists()


def test_text_cleaner_drops_strips_and_rejects_unknown_tags(tmp_path):
    conf = tmp_path / "cleaning.yaml"
    conf.write_text("drop_tags: [NOISE]\nstrip_tags: [SIL]\n")
    cleaner = TextCleaner.load(conf)
    assert cleaner.clean("<SIL>你好，ｗorld<SIL>", "t:1") == ("你好WORLD", "")
    assert cleaner.clean("你好<NOISE>", "t:2") == (None, "tag <NOISE>")
    assert cleaner.clean("<SIL>", "t:3") == (None, "empty after cleaning")
    with pytest.raises(DataError, match=r"t:4: unknown tag <LAUGH> .* add LAUGH to drop_tags .* in .*cleaning.yaml"):
        cleaner.clean("哈<LAUGH>", "t:4")
    conf.write_text("drop_tags: [X]\nstrip_tags: [X]\n")
    with pytest.raises(DataError, match="tag X is in both drop_tags and strip_tags"):
        TextCleaner.load(conf)


def sync(src: Path, dest: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / "utils" / "sync_data_dir.sh"), str(src), str(dest)], capture_output=True,
                          text=True)


def test_sync_data_dir_keeps_a_copy_and_drops_its_features_when_the_set_changes(tmp_path):
    """utils/sync_data_dir.sh (egs/kespeech's data/whisper<bins>/<set>): stage 0's files copied, side files
    too; the copy's features kept while nothing changed, removed when a file changed or went away."""
    src, dest = tmp_path / "data" / "train", tmp_path / "data" / "whisper80" / "train"
    write_data_dir(src, utterances(tmp_path))
    (src / "phones").write_text("S10-x sh i4\n")
    (src / "feats.scp").write_text("from the source's own stage 1\n")
    run = sync(src, dest)
    assert run.returncode == 0 and "train updated" in run.stdout
    assert sorted(p.name for p in dest.iterdir()) == ["phones", "spk2utt", "text", "utt2accent", "utt2spk", "wav.scp"]
    (dest / "utt2num_frames").write_text("S10-x 80\n")
    run = sync(src, dest)
    assert run.returncode == 0 and run.stdout == "" and (dest / "utt2num_frames").is_file()
    (src / "text").write_text((src / "text").read_text().replace("世界", "世间"))
    run = sync(src, dest)
    assert "(text)" in run.stdout and not (dest / "utt2num_frames").exists() and "世间" in (dest / "text").read_text()
    (dest / "utt2num_frames").write_text("S10-x 80\n")
    (src / "phones").unlink()
    assert "(phones)" in sync(src, dest).stdout and not (dest / "phones").exists()
    assert not (dest / "utt2num_frames").exists()
    bad = sync(tmp_path / "nowhere", dest)
    assert bad.returncode == 1 and "nowhere/wav.scp is missing" in bad.stderr
