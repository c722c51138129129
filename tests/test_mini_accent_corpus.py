"""End to end: egs/mini_accent stage 0 (make_corpus.py) on the fast config, then its data dirs."""

import json
import shutil
import sys
import wave
from pathlib import Path

import pytest
import yaml

RECIPE = Path(__file__).resolve().parents[1] / "egs" / "mini_accent"
sys.path.insert(0, str(RECIPE / "local"))

import make_corpus  # noqa: E402
from corpus_datadir import CorpusError, check_corpus, check_data_dir, read_table  # noqa: E402

FAST = RECIPE / "conf" / "corpus_fast.yaml"
ACCENTS = ["Mandarin", "Southwestern", "JiangHuai", "JiaoLiao", "Zhongyuan"]
SETS = ["train_std", "train_accent", "dev_std", "dev_accent", "test_std"] + [f"test_{a}" for a in ACCENTS[1:]]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus") / "data"
    assert make_corpus.main(["--out", str(out), "--config", str(FAST), "--nj", "2"]) == 0
    return out


def table(path):
    return dict(read_table(path))


def test_files_and_accents(corpus):
    assert (corpus / "accents.txt").read_text().split() == ACCENTS
    for name in SETS:
        for f in ("wav.scp", "text", "utt2spk", "spk2utt", "utt2accent", "utt2dur", "pinyin", "spoken_pinyin"):
            assert (corpus / name / f).stat().st_size > 0, (name, f)
    assert "done in" in (corpus / "log" / "make_corpus.log").read_text()
    stats = json.loads((corpus / "corpus_stats.json").read_text())
    assert stats["sentences"]["characters"] == 600 and stats["sets"]["test_std"]["utterances"] == 6
    assert set(stats["change_rates"]) == set(ACCENTS[1:])


def test_sorted_consistent_and_valid(corpus):
    for name in SETS:
        utt2spk = table(corpus / name / "utt2spk")
        keys = list(utt2spk)
        assert keys == sorted(keys, key=lambda k: k.encode())  # LC_ALL=C byte order
        for utt, spk in utt2spk.items():
            assert utt.startswith(spk + "-")
            assert utt.startswith(table(corpus / name / "utt2accent")[utt] + "-")
        for utt, wav in table(corpus / name / "wav.scp").items():
            with wave.open(wav) as handle:
                assert (handle.getframerate(), handle.getsampwidth(), handle.getnchannels()) == (16000, 2, 1)
    accents = {name: set(table(corpus / name / "utt2accent").values()) for name in SETS}
    assert accents["train_std"] == accents["test_std"] == {"Mandarin"}
    assert accents["train_accent"] == set(ACCENTS)  # accented speech plus some standard speech
    assert accents["dev_accent"] == set(ACCENTS)  # every domain, Mandarin included (checkpoint selection)
    check_corpus(corpus, SETS, ACCENTS)  # also runs utils/validate_data_dir.sh


def test_hdmole_loader_accepts_the_dirs(corpus):
    from hdmole.data.datadir import DataDir

    data = DataDir.load(corpus / "test_JiaoLiao", accents=corpus / "accents.txt")
    assert len(data) == 6 and {data.accent_index(u) for u in data.utt_ids} == {3}


def test_paired_test_sets_and_disjoint_speakers(corpus):
    def by_sentence(name):
        return {utt.rsplit("-", 1)[1]: text for utt, text in table(corpus / name / "text").items()}

    reference = by_sentence("test_std")
    assert len(reference) == 6
    for accent in ACCENTS[1:]:
        assert by_sentence(f"test_{accent}") == reference
        spoken = table(corpus / f"test_{accent}" / "spoken_pinyin")
        standard = table(corpus / f"test_{accent}" / "pinyin")
        assert spoken != standard  # the accent changed something
    speakers = {name: set(table(corpus / name / "utt2spk").values()) for name in SETS}
    test_speakers = set().union(*(speakers[n] for n in SETS if n.startswith("test_")))
    train_speakers = set().union(*(speakers[n] for n in SETS if not n.startswith("test_")))
    assert test_speakers and train_speakers and not test_speakers & train_speakers
    sentences = {name: set(by_sentence(name)) for name in SETS}
    assert not sentences["test_std"] & (sentences["train_std"] | sentences["train_accent"] | sentences["dev_std"])
    lm_train = set((corpus / "lm_train.txt").read_text(encoding="utf-8").split())
    assert not lm_train & set(reference.values())
    assert not lm_train & set((corpus / "lm_dev.txt").read_text(encoding="utf-8").split())
    assert set(table(corpus / "train_std" / "text").values()) <= lm_train
    chars = set((corpus / "chars.txt").read_text(encoding="utf-8").split())
    assert all(set(line) <= chars for line in lm_train)
    # lexicon.txt: `char pinyin`, every character of the LM text, readings as the speech was made from
    lexicon = [line.split() for line in (corpus / "lexicon.txt").read_text(encoding="utf-8").splitlines()]
    assert all(len(entry) == 2 for entry in lexicon)
    assert {char for char, _ in lexicon} == set("".join(lm_train))
    readings = set(map(tuple, lexicon))
    pinyin = table(corpus / "train_std" / "pinyin")
    for utt, text in table(corpus / "train_std" / "text").items():
        spoken = pinyin[utt].split()
        assert sum((c, p) in readings for c, p in zip(text, spoken)) >= 0.9 * len(text)


def test_rerun_is_skipped_and_other_config_refused(corpus, tmp_path, capsys):
    wav = next(iter(table(corpus / "test_std" / "wav.scp").values()))
    before = Path(wav).stat().st_mtime_ns
    assert make_corpus.main(["--out", str(corpus), "--config", str(FAST)]) == 0
    assert "already holds" in capsys.readouterr().err
    assert Path(wav).stat().st_mtime_ns == before
    other = tmp_path / "other.yaml"
    config = yaml.safe_load(FAST.read_text())
    config["seed"] = 99
    other.write_text(yaml.safe_dump(config))
    assert make_corpus.main(["--out", str(corpus), "--config", str(other)]) == 1
    assert "--force" in capsys.readouterr().err


def test_validation_names_the_broken_file(corpus, tmp_path):
    broken = tmp_path / "test_std"
    shutil.copytree(corpus / "test_std", broken)
    lines = (broken / "text").read_text(encoding="utf-8").splitlines()
    (broken / "text").write_text("\n".join(reversed(lines)) + "\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"test_std/text.*not sorted"):
        check_data_dir(broken, ACCENTS)
    shutil.copytree(corpus / "test_std", broken, dirs_exist_ok=True)
    (broken / "utt2accent").write_text((broken / "utt2accent").read_text().replace(" Mandarin\n", " Klingon\n"))
    with pytest.raises(CorpusError, match="Klingon"):
        check_data_dir(broken, ACCENTS)


def test_bad_config_is_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: 1\n")
    with pytest.raises(SystemExit, match="lacks"):
        make_corpus.main(["--out", str(tmp_path / "x"), "--config", str(bad)])


def test_an_unknown_sentence_unit_stops_stage_0_naming_the_config(tmp_path):
    config = yaml.safe_load(FAST.read_text())
    config["unit"] = "paragraph"
    path = tmp_path / "corpus.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit, match=r"corpus\.yaml: unit must be one of clause, sentence, got 'paragraph'"):
        make_corpus.main(["--out", str(tmp_path / "data"), "--config", str(path)])
    assert not (tmp_path / "data" / make_corpus.DONE_MARKER).exists()


def _voices_config(**voices):
    config = yaml.safe_load(FAST.read_text())
    config["voices"].update(voices)
    config["speakers"].update(std_dev=4, accent_dev=2, std_test=8, accent_test=8)
    return config


def test_held_out_dev_and_test_voices_are_their_own_and_spread_evenly():
    from corpus_plan import allocate_speakers

    config = _voices_config(test_variants=["Alex", "paul", "linda", "Annie"], dev_variants=["Michael", "steph"],
                            pitches=[30, 40, 50, 60, 70], rates=[140, 155, 170, 185])
    speakers = allocate_speakers(ACCENTS, config, seed=7)
    variants = {role: {s.voice.variant for (_, r), group in speakers.items() if r == role for s in group}
                for role in ("train", "adapt", "dev", "test")}
    assert variants["test"] == {"Alex", "paul", "linda", "Annie"} and variants["dev"] == {"Michael", "steph"}
    assert not (variants["train"] | variants["adapt"]) & (variants["dev"] | variants["test"])
    every = [s.voice for group in speakers.values() for s in group]
    assert len(every) == len(set(every))  # one speaker per (variant, pitch, rate)
    for accent in ACCENTS:  # every test set hears each test variant twice, every dev set both dev variants
        test_variants = [s.voice.variant for s in speakers[accent, "test"]]
        assert sorted(test_variants) == sorted(["Alex", "paul", "linda", "Annie"] * 2)
        assert {s.voice.variant for s in speakers[accent, "dev"]} == {"Michael", "steph"}
        # one speaker per variant does not share one (pitch, rate) (each variant has its own seeded order)
        assert len({(s.voice.pitch, s.voice.rate) for s in speakers[accent, "test"][:4]}) > 1


@pytest.mark.parametrize("voices, message", [
    (dict(test_variants=["Alex"], dev_variants=["Alex"]), "both test_variants and dev_variants"),
    (dict(dev_variants=["m3"]), "both variants and dev_variants"),
    (dict(test_variants=["Alex"], pitches=[40], rates=[150]), "'Alex' has only 1"),
])
def test_held_out_voice_config_errors_name_the_fix(voices, message):
    from corpus_plan import allocate_speakers

    with pytest.raises(ValueError, match=message):
        allocate_speakers(ACCENTS, _voices_config(**voices), seed=7)


def test_a_voice_listed_for_two_roles_stops_stage_0_naming_the_config(tmp_path):
    config = _voices_config(test_variants=["Alex"], dev_variants=["Alex"])
    path = tmp_path / "corpus.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit, match=r"corpus\.yaml: config voices: \['Alex'\] are in both"):
        make_corpus.main(["--out", str(tmp_path / "data"), "--config", str(path)])
