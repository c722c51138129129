#!/usr/bin/env python3
"""Stage 0 of egs/mini_accent: build the synthetic multi-accent Mandarin corpus.

    python local/make_corpus.py --out data --nj 2 [--config conf/corpus.yaml] [--force] [--synthesis auto]

Writes into --out: one Kaldi data dir per set (train_std train_accent dev_std dev_accent test_std
test_<accent>...), accents.txt (domain index = line order, Mandarin first), chars.txt (the
character set, most frequent first), lm_train.txt / lm_dev.txt (text-only LM data: every selected
sentence except the dev and test ones / the dev ones), lexicon.txt (Kaldi-style ``char pinyin``: the
readings of each character in the LM text, for the LM stage's homophone noise), corpus_stats.json,
log/make_corpus.log, and
the audio under --wav-dir (default <out>/wavs). A finished corpus is skipped unless --force; a
killed run resumes (wavs already written are kept).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules of local/

from accent_rules import STANDARD, accent_names, change_rates  # noqa: E402
from corpus_datadir import check_corpus, write_data_dir  # noqa: E402
from corpus_plan import plan_sets, unique_utterances  # noqa: E402
from corpus_sentences import SentenceError, collect_sentences, split_sentences  # noqa: E402
from corpus_synthesis import BACKENDS, Job, check_tools, resolve_backend, run_jobs, wav_duration  # noqa: E402
from pinyin_inventory import text_to_tone3  # noqa: E402

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "conf" / "corpus.yaml"
DONE_MARKER = ".corpus_done.json"
LOG = logging.getLogger("make_corpus")


def load_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SystemExit(f"make_corpus.py: config {path} not found; pass --config conf/corpus.yaml")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise SystemExit(f"make_corpus.py: {path} is not valid YAML: {error}") from error
    required = ("seed", "sources", "min_chars", "max_chars", "num_chars", "accents", "voices", "speakers", "sizes")
    missing = [key for key in required if key not in config]
    if missing:
        raise SystemExit(f"make_corpus.py: {path} lacks {', '.join(missing)}; copy them from {DEFAULT_CONFIG}")
    return config


def config_digest(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def setup_logging(out: Path) -> Path:
    log_path = out / "log" / "make_corpus.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    for handler in (logging.FileHandler(log_path, encoding="utf-8"), logging.StreamHandler(sys.stderr)):
        handler.setFormatter(formatter)
        LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)
    return log_path


def remove_previous(out: Path, wav_dir: Path) -> None:
    """--force: delete only what this script writes (its data dirs, wavs, LM texts, stats)."""
    previous = out / DONE_MARKER
    set_names = json.loads(previous.read_text())["sets"] if previous.is_file() else []
    for name in set_names:
        shutil.rmtree(out / name, ignore_errors=True)
    shutil.rmtree(wav_dir, ignore_errors=True)
    for name in (DONE_MARKER, "accents.txt", "chars.txt", "lm_train.txt", "lm_dev.txt", "lexicon.txt", "corpus_stats.json"):
        (out / name).unlink(missing_ok=True)


def write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def lexicon_lines(sentences: list[str], chars: list[str], min_share: float = 0.05) -> list[str]:
    """``char pinyin`` for every reading pypinyin gives a character in context, in at least ``min_share``
    of its occurrences (rarer readings are mostly pypinyin's mistakes). Characters in ``chars`` order
    (most frequent first), each one's readings most frequent first: the LM stage takes the first
    character of a pronunciation as its canonical spelling."""
    counts: Counter[tuple[str, str]] = Counter()
    for sentence in sentences:
        counts.update(zip(sentence, text_to_tone3(sentence)))
    readings: dict[str, list[tuple[int, str]]] = {}
    for (char, syllable), n in counts.items():
        readings.setdefault(char, []).append((n, syllable))
    lines = []
    for char in chars:
        found = sorted(readings.get(char, []), key=lambda r: (-r[0], r[1]))
        lines += [f"{char} {syllable}" for n, syllable in found if n >= min_share * sum(c for c, _ in found)]
    return lines


def build(config: dict[str, Any], out: Path, wav_dir: Path, nj: int, synthesis: str = "auto") -> dict[str, Any]:
    started = time.time()
    check_tools()
    backend = resolve_backend(synthesis)  # before any work: a missing library is said at once
    accent_list = accent_names(config["accents"])
    unit = str(config.get("unit", "clause"))  # optional key: corpora configured before it read as clauses
    pool = collect_sentences(list(config["sources"]), min_chars=int(config["min_chars"]), max_chars=int(config["max_chars"]),
                             num_chars=int(config["num_chars"]), seed=int(config["seed"]),
                             max_lines=config.get("max_lines_per_source"), unit=unit)
    sizes = config["sizes"]
    id_to_text, split = split_sentences(pool, num_test=int(sizes["test"]), num_dev=int(sizes["dev"]))
    LOG.info("sentences: %d selected (%d candidate %ss, %d-%d chars, %d-character set): train %d dev %d test %d",
             len(pool.sentences), pool.num_candidates, unit, config["min_chars"], config["max_chars"], len(pool.chars),
             len(split.train), len(split.dev), len(split.test))
    write_lines(out / "accents.txt", accent_list)
    write_lines(out / "chars.txt", pool.chars)
    write_lines(out / "lm_train.txt", [id_to_text[i] for i in split.train])
    write_lines(out / "lm_dev.txt", [id_to_text[i] for i in split.dev])
    write_lines(out / "lexicon.txt", lexicon_lines([id_to_text[i] for i in split.train], pool.chars))

    sets, speakers = plan_sets(split, id_to_text, accent_list, config, wav_dir)
    utterances = unique_utterances(sets)
    for utterance in utterances:
        utterance.wav_path.parent.mkdir(parents=True, exist_ok=True)
    LOG.info("plan: %d utterances to have (%s)", len(utterances), ", ".join(f"{k} {len(v)}" for k, v in sets.items()))
    LOG.info("synthesis: %s", f"libespeak-ng + libsox in {nj} worker processes (library)" if backend == "library"
             else "espeak-ng | sox per utterance (programs)")
    synth_start = time.time()
    voice_of = {s.speaker_id: s.voice for members in speakers.values() for s in members}
    done, skipped = run_jobs([Job(u.utt_id, " ".join(u.spoken), voice_of[u.speaker], u.wav_path) for u in utterances], nj,
                             backend=backend)
    synth_seconds = time.time() - synth_start
    audio_seconds = sum(wav_duration(u.wav_path) for u in utterances)
    LOG.info("synthesis: %d new, %d already there, %.1f s wall, %.2f h of audio", done, skipped, synth_seconds, audio_seconds / 3600)

    for name, members in sets.items():
        write_data_dir(out / name, members, accent_list)
    check_corpus(out, list(sets), accent_list)
    LOG.info("validated %d data dirs", len(sets))

    rates = {}
    for accent in accent_list[1:]:
        accented = [u for u in utterances if u.accent == accent]
        rates[accent] = {k: round(v, 4) for k, v in change_rates([u.pinyin for u in accented], [u.spoken for u in accented]).items()}
        LOG.info("accent %-12s changes %.1f%% of syllables (%.1f%% segmental, %.1f%% tone only)", accent,
                 100 * rates[accent]["any"], 100 * rates[accent]["segmental"], 100 * rates[accent]["tone_only"])
    return {
        "sentences": {"selected": len(pool.sentences), "candidates": pool.num_candidates, "characters": len(pool.chars),
                      "by_source": {s: sum(1 for t in pool.sentences if pool.sources[t] == s) for s in config["sources"]},
                      "train": len(split.train), "dev": len(split.dev), "test": len(split.test)},
        "sets": {name: {"utterances": len(m), "speakers": len({u.speaker for u in m}),
                        "hours": round(sum(wav_duration(u.wav_path) for u in m) / 3600, 3)} for name, m in sets.items()},
        "speakers": {f"{a}/{r}": [s.speaker_id for s in v] for (a, r), v in speakers.items()},
        "speaker_rule_probabilities": {s.speaker_id: dict(s.accent.probabilities) for v in speakers.values() for s in v
                                       if s.accent.accent != STANDARD},
        "change_rates": rates,
        "synthesis": {"backend": backend, "utterances": done, "skipped": skipped, "wall_seconds": round(synth_seconds, 1), "nj": nj,
                      "utterances_per_second": round(done / synth_seconds, 2) if done else None,
                      "x_real_time": round(audio_seconds / synth_seconds, 1) if done and not skipped else None,
                      "audio_hours": round(audio_seconds / 3600, 3)},
        "wall_seconds": round(time.time() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output dir (Kaldi data dirs are written inside)")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="corpus config (default: %(default)s)")
    parser.add_argument("--wav-dir", type=Path, default=None, help="where the wavs go (default: <out>/wavs)")
    parser.add_argument("--nj", type=int, default=2, help="parallel synthesis jobs (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="rebuild even if a finished corpus is there")
    parser.add_argument("--synthesis", choices=BACKENDS, default="auto",
                        help="espeak-ng and sox as libraries in worker processes, or as programs per utterance: the "
                             "same wavs, the library about half the time; auto: the library when it loads "
                             "(default: %(default)s)")
    args = parser.parse_args(argv)

    out = args.out.resolve()
    wav_dir = (args.wav_dir or out / "wavs").resolve()
    config = load_config(args.config)
    digest = config_digest(config)
    marker = out / DONE_MARKER
    if marker.is_file() and not args.force:
        previous = json.loads(marker.read_text())
        if previous.get("config_digest") == digest:
            print(f"make_corpus.py: {out} already holds the corpus of {args.config} (rerun with --force to rebuild)", file=sys.stderr)
            return 0
        print(f"make_corpus.py: {out} holds a corpus built from a different config ({previous.get('config')}); "
              "rerun with --force to replace it, or choose another --out", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    if args.force:
        remove_previous(out, wav_dir)
    log_path = setup_logging(out)
    LOG.info("command: %s", " ".join(sys.argv))
    LOG.info("config %s (digest %s), out %s, wavs %s, nj %d", args.config, digest, out, wav_dir, args.nj)
    try:
        stats = build(config, out, wav_dir, args.nj, args.synthesis)
    except (ValueError, SentenceError) as error:  # the plan's checks and the sentence pool's: say which config to fix
        raise SystemExit(f"make_corpus.py: {args.config}: {error}") from error
    (out / "corpus_stats.json").write_text(json.dumps(stats, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    marker.write_text(json.dumps({"config": str(args.config), "config_digest": digest, "sets": list(stats["sets"])}) + "\n")
    LOG.info("done in %.1f s; stats in %s, log in %s", stats["wall_seconds"], out / "corpus_stats.json", log_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
