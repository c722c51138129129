#!/usr/bin/env python3
"""Stage 0's synthesis both ways, side by side: espeak-ng | sox per utterance, and libespeak-ng + libsox
in worker processes (synthesis_engine). Prints the seconds of each and their ratio, and checks that the
two wrote the same bytes.

    python local/bench_synthesis.py --data data/train_std --num 2000 [--nj 2]

The utterances are the first ``--num`` of a data dir that stage 0 made (its ``spoken_pinyin``; the voice
from the speaker id, ``<accent>-<voice tag>``); the wavs go to a temporary directory.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus_synthesis import Job, Voice, run_jobs  # noqa: E402


def read_jobs(data: Path, num: int, out: Path) -> list[Job]:
    speaker_of = dict(line.split() for line in (data / "utt2spk").read_text(encoding="utf-8").splitlines())
    jobs = []
    for line in (data / "spoken_pinyin").read_text(encoding="utf-8").splitlines()[:num]:
        utt, pinyin = line.split(" ", 1)
        jobs.append(Job(utt, pinyin, Voice.from_tag(speaker_of[utt].split("-", 1)[1]), out / f"{utt}.wav"))
    return jobs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="a data dir of stage 0 (with spoken_pinyin)")
    parser.add_argument("--num", type=int, default=2000, help="utterances (default: %(default)s)")
    parser.add_argument("--nj", type=int, default=2, help="parallel jobs, both ways (default: %(default)s)")
    args = parser.parse_args(argv)
    if not (args.data / "spoken_pinyin").is_file():
        parser.error(f"{args.data}/spoken_pinyin not found: give a data dir that stage 0 made")
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in ("programs", "library"):
            out = Path(tmp) / backend
            out.mkdir()
            jobs = read_jobs(args.data, args.num, out)
            start = time.perf_counter()
            run_jobs(jobs, args.nj, desc=backend, backend=backend)
            seconds[backend] = time.perf_counter() - start
        differ = [job.utt_id for job in read_jobs(args.data, args.num, Path(tmp) / "programs")
                  if job.wav_path.read_bytes() != (Path(tmp) / "library" / job.wav_path.name).read_bytes()]
    print(f"{len(jobs)} utterances of {args.data}, nj {args.nj}: programs {seconds['programs']:.1f} s, "
          f"library {seconds['library']:.1f} s ({seconds['programs'] / seconds['library']:.2f}x); "
          f"{'identical wavs' if not differ else f'{len(differ)} wavs DIFFER, e.g. {differ[0]}'}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
