"""Merge the outputs of a decoding run as N jobs on the parts of a split data dir (utils/split_data.sh).

    python -m hdmole.bin.merge_decode --data data/test_std --out exp/hdmole/decode_test_std \\
        exp/hdmole/decode_test_std/split4/{1,2,3,4}

Each part is a finished ``hdmole.bin.decode`` output dir (``text``, ``rtf``, ``decode_inputs.json``). Writes
``<out>/text`` (every part's hypotheses, LC_ALL=C order), ``<out>/rtf`` (``rtf``: the slowest part's decoding
seconds over all the audio, as if the parts ran side by side; ``cpu_rtf``: their sum; the other fields as
the parts have them, checked to agree) and last ``<out>/decode_inputs.json`` (the parts' records). The
hypotheses must cover exactly the utterances of ``--data``: a missing or unfinished part is an error naming
it, and the job to rerun.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hdmole.data.table import read_kaldi_table, write_kaldi_table
from hdmole.files import atomic_write_text

RECORD = "decode_inputs.json"  # hdmole.bin.decode writes it last: a part without it is unfinished
SUMMED = {"decode_seconds", "audio_seconds", "wall_seconds_with_loading", "utterances"}


def read_rtf(path: Path) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in path.read_text(encoding="utf-8").splitlines() if " " in line)


def merge(data: Path, out: Path, parts: list[Path]) -> int:
    hyps: dict[str, str] = {}
    stats, records = [], []
    for part in parts:
        if not (part / RECORD).is_file() or not (part / "text").is_file():
            raise SystemExit(f"error: {part} is not a finished decoding (no {RECORD}); rerun its decoding job "
                             f"(its log is in the exp dir's log/)")
        for utt, hyp in read_kaldi_table(part / "text", value_name="hypothesis", allow_empty_value=True).entries.items():
            if utt in hyps:
                raise SystemExit(f"error: {part / 'text'}: utterance {utt!r} is in two parts; split the data dir again "
                                 "(utils/split_data.sh) and decode every part")
            hyps[utt] = hyp
        stats.append(read_rtf(part / "rtf"))
        records.append(json.loads((part / RECORD).read_text(encoding="utf-8")))
    utts = set(read_kaldi_table(data / "text", value_name="transcript").entries)
    if set(hyps) != utts:
        missing = sorted(utts - set(hyps))
        extra = sorted(set(hyps) - utts)
        raise SystemExit(f"error: the parts {parts[0].parent}/* do not cover {data}: "
                         f"{len(missing)} utterances missing (first {missing[:1]}), {len(extra)} not in it "
                         f"(first {extra[:1]}); the data dir changed after the split: decode again")
    merged = {k: v for k, v in stats[0].items() if k not in SUMMED | {"rtf", "cpu_rtf"}}
    if "encoder_cache" in merged:  # how each part got its encoder outputs (decode --encoder-cache-dir): all of them
        ways = {way for s in stats for way in s.get("encoder_cache", "none").split(",")}
        merged["encoder_cache"] = ",".join(sorted(ways))
    for k in merged:
        # speed only, and free to differ between the parts: the threads, and whether the encoder's outputs were
        # computed or loaded (a part decoded first fills the cache, one decoded beside or after it loads it)
        if k not in ("threads_per_job", "encoder_cache") and any(s.get(k) != merged[k] for s in stats):
            raise SystemExit(f"error: the parts disagree on {k} ({sorted({s.get(k) for s in stats})}): they were "
                             "decoded with different options; decode again")
    totals = {k: sum(float(s[k]) for s in stats) for k in SUMMED}
    slowest = max(float(s["decode_seconds"]) for s in stats)
    audio = max(totals["audio_seconds"], 1e-9)
    result = {"rtf": slowest / audio, "cpu_rtf": totals["decode_seconds"] / audio, "decode_seconds": slowest,
              "audio_seconds": totals["audio_seconds"], "wall_seconds_with_loading": totals["wall_seconds_with_loading"],
              "utterances": int(totals["utterances"]), **merged, "nj": len(parts)}
    out.mkdir(parents=True, exist_ok=True)
    (out / RECORD).unlink(missing_ok=True)
    write_kaldi_table(out / "text", hyps.items())
    atomic_write_text(out / "rtf", "".join(f"{k} {v:.4f}\n" if isinstance(v, float) else f"{k} {v}\n"
                                           for k, v in result.items()))
    atomic_write_text(out / RECORD, json.dumps({"merged_from": [str(p) for p in parts], "parts": records},
                                               indent=1, sort_keys=True) + "\n")
    print(f"merge_decode: {len(hyps)} hypotheses of {len(parts)} parts -> {out}/text", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m hdmole.bin.merge_decode", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, type=Path, help="the whole data dir that was split")
    p.add_argument("--out", required=True, type=Path, help="the merged output dir")
    p.add_argument("parts", nargs="+", type=Path, help="the parts' output dirs, in order")
    args = p.parse_args(argv)
    return merge(args.data, args.out, args.parts)


if __name__ == "__main__":
    sys.exit(main())
