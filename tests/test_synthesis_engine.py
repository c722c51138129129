"""egs/mini_accent stage 0's synthesis by libespeak-ng + libsox (synthesis_engine) against the programs."""

import random
import sys
from pathlib import Path

import pytest

LOCAL = Path(__file__).resolve().parents[1] / "egs" / "mini_accent" / "local"
sys.path.insert(0, str(LOCAL))

import corpus_synthesis  # noqa: E402
import synthesis_engine  # noqa: E402
from corpus_synthesis import Job, SynthesisError, Voice, resolve_backend, run_jobs  # noqa: E402

# Variants of the corpus config, training and held-out test ones (a change of variant was where a shared
# engine went wrong), texts with fricatives and aspirates (the wave generator's noise) and a long one.
VOICES = [Voice("", 30, 170), Voice("paul", 40, 140), Voice("f4", 30, 170), Voice("Alex", 50, 155), Voice("m3", 70, 185),
          Voice("Annie", 60, 140), Voice("klatt", 50, 170)]
TEXTS = ["zhi1 dao4 le5", "shi2 si4 ge4 ren2 chi1 fan4", "xiang3 qu4 cha2 guan3 he1 cha2", "ni3 hao3",
         "ta1 shuo1 ming2 tian1 zao3 shang4 qi1 dian3 zhong1 zai4 huo3 che1 zhan4 qian2 mian4 deng3 wo3 men5"]


def jobs_in(directory: Path, count: int = 160) -> list[Job]:
    """The voices interleaved, so that each follows several others, and enough of them: a worker that set each
    voice before forking (instead of in the child) first differed from the programs at its 138th utterance."""
    rng = random.Random(3)
    return [Job(f"u{index:03d}", rng.choice(TEXTS), VOICES[(index * 3) % len(VOICES)], directory / f"u{index:03d}.wav")
            for index in range(count)]


def test_the_libraries_write_the_programs_wavs_byte_for_byte(tmp_path):
    (tmp_path / "programs").mkdir()
    (tmp_path / "library").mkdir()
    assert run_jobs(jobs_in(tmp_path / "programs"), 2, backend="programs") == (160, 0)
    # one worker: every utterance follows the one before it in a single engine
    assert run_jobs(jobs_in(tmp_path / "library"), 1, backend="library") == (160, 0)
    for job in jobs_in(tmp_path / "programs"):
        ours = tmp_path / "library" / job.wav_path.name
        assert ours.read_bytes() == job.wav_path.read_bytes(), f"{job.utt_id} ({job.voice.tag}, {job.pinyin!r})"
    assert not list((tmp_path / "library").glob("*.tmp.wav"))
    # a resumed run skips what is there
    assert run_jobs(jobs_in(tmp_path / "library"), 2, backend="library") == (0, 160)


def test_a_failed_utterance_is_named_and_finished_wavs_are_kept(tmp_path):
    jobs = jobs_in(tmp_path, count=6)
    bad = Job("bad", "ni3 hao3", VOICES[1], tmp_path / "missing_dir" / "bad.wav")
    with pytest.raises(SynthesisError, match=r"synthesis of bad\.wav failed \(voice paulp40s140, text 'ni3 hao3'\)"):
        run_jobs(jobs + [bad], 1, backend="library")
    assert all(job.wav_path.is_file() for job in jobs)  # one worker, in order: the six before it are whole
    assert not list(tmp_path.rglob("*.tmp.wav"))


def test_backend_choice(monkeypatch):
    assert resolve_backend("auto") == "library"
    assert resolve_backend("programs") == "programs"
    monkeypatch.setattr(synthesis_engine, "available", lambda: False)
    assert resolve_backend("auto") == "programs"
    with pytest.raises(SynthesisError, match="libespeak-ng.*does not load.*--synthesis programs"):
        resolve_backend("library")
    with pytest.raises(SynthesisError, match="unknown synthesis backend 'fast'"):
        corpus_synthesis.resolve_backend("fast")


def test_a_voice_tag_gives_its_voice_back():
    for voice in VOICES:
        assert Voice.from_tag(voice.tag) == voice
    assert Voice.from_tag("defp30s170") == Voice("", 30, 170) and Voice("", 30, 170).name == "cmn-latn-pinyin"
    assert Voice("m3", 50, 160).name == "cmn-latn-pinyin+m3"
    with pytest.raises(SynthesisError, match="'m3p50' is not a voice tag"):
        Voice.from_tag("m3p50")
