"""egs/kespeech stage 0 on fake KeSpeech v1.0 and AISHELL-1 trees built here (the real layouts, real
espeak-ng wavs, tags in the transcripts): counts per subdialect, cleaned text, sorted valid data dirs,
and clear errors (file and line) for corrupted trees, with earlier outputs left as they were."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from speech_fixtures import synthesize, to_pinyin

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "egs" / "kespeech"
SUBDIALECTS = ["Mandarin", "Beijing", "Southwestern", "Zhongyuan", "Northeastern", "Lan-Yin", "Jiang-Huai",
               "Ji-Lu", "Jiao-Liao"]
SENTENCES = ["今天天气很好", "我们是中国人", "他说的是实话", "学生上课"]
# Special transcripts: (part, subdialect, index) -> (raw text with tags, cleaned text or None = dropped).
SPECIAL = {
    ("train_phase1", "Beijing", 1): ("<SPOKEN_NOISE>今天天气很好", None),
    ("train_phase1", "Southwestern", 0): ("我们是中国人<PERIOD>", "我们是中国人"),
    ("train_phase2", "Ji-Lu", 0): ("他 说 的<SIL>是 实话<QUESTIONMARK>", "他说的是实话"),
    ("train_phase2", "Zhongyuan", 0): ("<MUSIC>学生上课", None),
    ("dev_phase1", "Beijing", 0): ("ＡＢＣ，学生上课<EXCLAMATIONPOINT>", "ABC学生上课"),
    ("test", "Mandarin", 1): ("<NOISE>", None),  # nothing left once the tag is stripped: dropped
    # a test utterance with noise tags: kept, the tags stripped (only training drops them)
    ("test", "Beijing", 1): ("<SPOKEN_NOISE>学生<NOISE>上课<PERIOD>", "学生上课"),
}
# Utterances per (part, subdialect): train_kespeech keeps 3 per subdialect but Beijing and Zhongyuan (2).
PER_PART = {"train_phase1": 2, "train_phase2": 1, "dev_phase1": 1, "dev_phase2": 1, "test": 1}
EXPECTED_TRAIN = {s: 3 for s in SUBDIALECTS} | {"Beijing": 2, "Zhongyuan": 2}


@pytest.fixture(scope="session")
def voice_wavs(tmp_path_factory) -> list[Path]:
    """A few real speech wavs (16 kHz, 16 bit), copied to every path of the fake trees."""
    root = tmp_path_factory.mktemp("voices")
    wavs = []
    for i, sentence in enumerate(SENTENCES):
        wav = root / f"v{i}.wav"
        synthesize(to_pinyin(sentence, "Mandarin"), wav, pitch=50, speed=170)
        wavs.append(wav)
    return wavs


def speaker_of(subdialect: str) -> str:
    return str(1000001 + SUBDIALECTS.index(subdialect))


def make_kespeech(root: Path, wavs: list[Path], per_part=PER_PART, subdialects=SUBDIALECTS) -> Path:
    lists_root = root / "Tasks" / "ASR"
    for part, count in per_part.items():
        rows = []
        for subdialect in subdialects:
            spk = speaker_of(subdialect)
            n = count + (1 if (part, subdialect, count) in SPECIAL else 0)
            for j in range(n):
                utt = f"{spk}_{part[:1]}{part[-1]}{j:02d}"
                rel = f"Audio/{spk}/{'phase2' if part.endswith('2') else 'phase1'}/{utt}.wav"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(wavs[(j + len(rows)) % len(wavs)], root / rel)
                text = SPECIAL.get((part, subdialect, j), (SENTENCES[(j + len(rows)) % len(SENTENCES)],))[0]
                rows.append((utt, rel, text, subdialect, spk))
        d = lists_root / part
        d.mkdir(parents=True, exist_ok=True)
        rows.reverse()  # the corpus lists need not be sorted: stage 0 sorts
        (d / "wav.scp").write_text("".join(f"{u} {r}\n" for u, r, _, _, _ in rows), encoding="utf-8")
        (d / "text").write_text("".join(f"{u} {t}\n" for u, _, t, _, _ in rows), encoding="utf-8")
        (d / "utt2subdialect").write_text("".join(f"{u} {s}\n" for u, _, _, s, _ in rows), encoding="utf-8")
        (d / "utt2spk").write_text("".join(f"{u} {k}\n" for u, _, _, _, k in rows), encoding="utf-8")
    return root


AISHELL = {"train": {"S0002": 3, "S0003": 2}, "dev": {"S0724": 2}, "test": {"S0764": 2}}


def make_aishell(root: Path, wavs: list[Path]) -> Path:
    lines = []
    k = 0
    for split, speakers in AISHELL.items():
        for spk, n in speakers.items():
            for j in range(n):
                utt = f"BAC009{spk}W{j + 121:04d}"
                wav = root / "data_aishell" / "wav" / split / spk / f"{utt}.wav"
                wav.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(wavs[k % len(wavs)], wav)
                if not (spk == "S0003" and j == 1):  # this one has no transcript: dropped
                    lines.append(f"{utt} {' '.join(SENTENCES[k % len(SENTENCES)])}\n")
                k += 1
    lines.append("BAC009S0999W0001 没 有 音频\n")  # a transcript without audio: ignored
    transcript = root / "data_aishell" / "transcript" / "aishell_transcript_v0.8.txt"
    transcript.parent.mkdir(parents=True)
    transcript.write_text("".join(lines), encoding="utf-8")
    return root


def recipe_checkout(root: Path) -> Path:
    """egs/kespeech as links under ``root`` so that run.sh writes data/, dump/, exp/ there, not in the repo."""
    recipe = root / "egs" / "kespeech"
    recipe.mkdir(parents=True)
    for name in ("run.sh", "db.sh", "cmd.sh", "conf", "local", "path.sh", "utils", "RESULTS.notes.md"):
        (recipe / name).symlink_to(RECIPE / name)
    (root / "egs" / "TEMPLATE").symlink_to(ROOT / "egs" / "TEMPLATE")
    return recipe


def run_recipe(recipe: Path, *args: str, timeout: int = 3600) -> subprocess.CompletedProcess:
    """run.sh in ``recipe``; the timeout only guards against a hang (runs take minutes on a loaded machine)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(["./run.sh", *args], cwd=recipe, capture_output=True, text=True, env=env, timeout=timeout)


def read_table(path: Path) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in path.read_text(encoding="utf-8").splitlines())


@pytest.fixture
def trees(tmp_path, voice_wavs):
    kespeech = make_kespeech(tmp_path / "KeSpeech", voice_wavs)
    aishell = make_aishell(tmp_path / "aishell", voice_wavs)
    return kespeech, aishell, recipe_checkout(tmp_path / "work")


def stage0(recipe, kespeech, aishell):
    return run_recipe(recipe, "--stage", "0", "--stop-stage", "0", "--kespeech-root", str(kespeech),
                      "--aishell-root", str(aishell))


def test_stage0_writes_valid_sorted_data_dirs_with_cleaned_text(trees):
    kespeech, aishell, recipe = trees
    result = stage0(recipe, kespeech, aishell)
    assert result.returncode == 0, result.stderr[-3000:]
    data = recipe / "data"
    expected_sets = {"train_aishell", "dev_aishell", "test_aishell", "train_kespeech", "dev_kespeech", "dev_phase1",
                     "dev_phase2",
                     *(f"test_{s}" for s in SUBDIALECTS)}
    assert {p.name for p in data.iterdir() if (p / "wav.scp").is_file()} == expected_sets
    assert (data / "accents.txt").read_text().split() == SUBDIALECTS

    # Counts per subdialect: noise-tagged utterances dropped; phase 1 + 2 merged.
    accents = read_table(data / "train_kespeech" / "utt2accent")
    counts = {s: list(accents.values()).count(s) for s in SUBDIALECTS}
    assert counts == EXPECTED_TRAIN
    dev = list(read_table(data / "dev_kespeech" / "utt2accent").values())
    assert sorted(dev) == sorted(SUBDIALECTS * 2)  # dev_phase1 + dev_phase2, one per subdialect each
    for phase in ("dev_phase1", "dev_phase2"):  # and each phase alone (icefall's rows)
        assert sorted(read_table(data / phase / "utt2accent").values()) == sorted(SUBDIALECTS)
    for s in SUBDIALECTS:
        assert set(read_table(data / f"test_{s}" / "utt2accent").values()) == {s}
    assert len(read_table(data / "test_Mandarin" / "text")) == 1  # its <NOISE> utterance dropped (empty)
    assert read_table(data / "test_Beijing" / "text")[f"{speaker_of('Beijing')}_tt01"] == "学生上课"

    # Cleaned text: punctuation/silence tags stripped, spaces removed, full-width folded.
    text = read_table(data / "train_kespeech" / "text")
    assert text[f"{speaker_of('Southwestern')}_t100"] == "我们是中国人"
    assert text[f"{speaker_of('Ji-Lu')}_t200"] == "他说的是实话"
    assert f"{speaker_of('Beijing')}_t101" not in text and f"{speaker_of('Zhongyuan')}_t200" not in text
    assert read_table(data / "dev_kespeech" / "text")[f"{speaker_of('Beijing')}_d100"] == "ABC学生上课"
    assert all("<" not in t and " " not in t for t in text.values())

    # AISHELL-1: id = <speaker>-<stem>, spaces removed, the utterance without transcript dropped.
    aishell_text = read_table(data / "train_aishell" / "text")
    assert sorted(aishell_text) == ["S0002-BAC009S0002W0121", "S0002-BAC009S0002W0122", "S0002-BAC009S0002W0123",
                                    "S0003-BAC009S0003W0121"]
    assert aishell_text["S0002-BAC009S0002W0121"] == SENTENCES[0]
    assert set(read_table(data / "train_aishell" / "utt2accent").values()) == {"Mandarin"}
    assert read_table(data / "train_aishell" / "utt2spk")["S0003-BAC009S0003W0121"] == "S0003"

    # Every file sorted in byte order, every wav exists, and the validator agrees.
    for d in expected_sets:
        for f in ("wav.scp", "text", "utt2spk", "spk2utt", "utt2accent"):
            keys = [line.split(" ", 1)[0] for line in (data / d / f).read_text().splitlines()]
            assert keys == sorted(keys, key=lambda k: k.encode()) and len(set(keys)) == len(keys), f"{d}/{f}"
        assert all(Path(p).is_file() for p in read_table(data / d / "wav.scp").values())
        check = subprocess.run([str(ROOT / "utils" / "validate_data_dir.sh"), "--accents", str(data / "accents.txt"),
                                "--check-audio", "true", str(data / d)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
    summary = (data / "local" / "prep_summary.md").read_text()
    assert "train_phase1 / Beijing: 1 (tag <SPOKEN_NOISE>)" in summary
    assert "train_aishell / Mandarin: 1 (no transcript)" in summary
    assert (data / "local" / "prepare_data.log").is_file()


def corrupt(kespeech: Path, aishell: Path, problem: str) -> str:
    """Breaks the tree; returns what the error must say."""
    part = kespeech / "Tasks" / "ASR" / "train_phase1"
    if problem == "missing wav":
        rows = (part / "wav.scp").read_text().splitlines()
        (kespeech / rows[2].split()[1]).unlink()
        return f"{part}/wav.scp:3: audio file"
    if problem == "text without wav":
        with open(part / "text", "a", encoding="utf-8") as f:
            f.write("1000009_x999 多余的一行\n")
        n = len((part / "text").read_text().splitlines())
        return f"{part}/text:{n}: utterance '1000009_x999' has no line in {part}/wav.scp"
    if problem == "unknown subdialect":
        rows = (part / "utt2subdialect").read_text().splitlines()
        rows[4] = rows[4].split()[0] + " Cantonese"
        (part / "utt2subdialect").write_text("\n".join(rows) + "\n")
        return f"{part}/utt2subdialect:5: unknown subdialect 'Cantonese'"
    if problem == "unknown tag":
        rows = (part / "text").read_text(encoding="utf-8").splitlines()
        rows[0] = rows[0].split()[0] + " 你好<LAUGH>"
        (part / "text").write_text("\n".join(rows) + "\n", encoding="utf-8")
        return f"{part}/text:1: unknown tag <LAUGH>"
    if problem == "no aishell transcript":
        transcript = aishell / "data_aishell" / "transcript" / "aishell_transcript_v0.8.txt"
        transcript.unlink()
        return f"{transcript}: not found"
    raise ValueError(problem)


@pytest.mark.parametrize("problem", ["missing wav", "text without wav", "unknown subdialect", "unknown tag",
                                     "no aishell transcript"])
def test_corrupted_tree_fails_clearly_and_keeps_earlier_outputs(trees, problem):
    kespeech, aishell, recipe = trees
    if problem == "missing wav":  # once: a good run first, whose outputs must survive the failed one
        assert stage0(recipe, kespeech, aishell).returncode == 0
    before = {p: p.read_bytes() for p in (recipe / "data").rglob("*") if p.is_file() and p.suffix != ".log"} \
        if (recipe / "data").exists() else {}
    message = corrupt(kespeech, aishell, problem)
    result = stage0(recipe, kespeech, aishell)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-2000:]
    after = {p: p.read_bytes() for p in (recipe / "data").rglob("*") if p.is_file() and p.suffix != ".log"} \
        if (recipe / "data").exists() else {}
    assert after == before
    assert not (recipe / "data" / ".stage0.tmp").exists()
