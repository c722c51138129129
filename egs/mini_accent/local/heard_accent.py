"""Does the base model hear a speaker's accent? (issue 19, development only: why a speaker is misrouted.)

The stage-4 router (the tone channel) can only route on what the base model's CTC head hears. For every speaker
of a data dir this script aligns the heard syllables with the syllables as spoken (``spoken_pinyin``: the
standard pinyin after the accent's rules) and, at every syllable the accent changed, counts whether the CTC
head heard the accented form, the standard form it replaced, or something else; and how many of the syllables
the accent left alone it heard right. With ``--speaker``, the tone changes (standard tone -> spoken tone) are
broken down for that speaker against the rest of the set: which of the accent's tone rules the head loses.

    python local/router_probe.py --exp exp --data data   # once: writes exp/router_probe/<set>.heard
    python local/heard_accent.py --heard exp/router_probe/test_JiaoLiao.heard --data data/test_JiaoLiao \
        --speaker JiaoLiao-Alexp70s170

``--heard``: "utt unit unit ..." (the CTC best path in the CTC units, as router_probe.py dumps it); ``--data``:
the data dir (``utt2spk``, ``pinyin``, ``spoken_pinyin``).
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from pinyin_inventory import initial_final  # noqa: E402
from router_probe import align, read_table, syllables  # noqa: E402  (the probes' syllables and alignment)

from hdmole.data.table import read_kaldi_table  # noqa: E402  (the data dir's tables: a bad line named with its line)

OUTCOMES = ("spoken", "standard", "other")


def change_kind(standard: str, spoken: str) -> str:
    """'same' (the accent left it), 'tone' (only the tone changed) or 'segment' (initial or final changed)."""
    if standard == spoken:
        return "same"
    return "tone" if standard[:-1] == spoken[:-1] else "segment"


def heard_outcomes(heard: dict, standard: dict, spoken: dict):
    """(utt, kind, standard syllable, spoken syllable, outcome) for every spoken syllable, outcome one of
    OUTCOMES ('spoken' when heard as spoken; a deleted syllable is 'other')."""
    for utt, units in heard.items():
        if utt not in spoken or utt not in standard:
            raise ValueError(f"{utt}: in the heard file but not in the data dir's pinyin / spoken_pinyin; dump the "
                             "heard units of this data dir (router_probe.py) or pass the data dir they came from")
        said = ["".join(initial_final(p)) for p in spoken[utt]]
        meant = ["".join(initial_final(p)) for p in standard[utt]]
        if len(said) != len(meant):
            raise ValueError(f"{utt}: pinyin has {len(meant)} syllables, spoken_pinyin {len(said)}; the accent "
                             "rules rewrite syllables one for one, so the data dir is inconsistent")
        k = 0
        for ref, hyp in align(said, syllables(units)):
            if not ref:  # a syllable heard where none was spoken
                continue
            outcome = "spoken" if hyp == ref else "standard" if hyp == meant[k] else "other"
            yield utt, change_kind(meant[k], ref), meant[k], ref, outcome
            k += 1


def per_speaker(rows, utt2spk: dict) -> dict:
    """speaker -> kind -> outcome -> count."""
    table: dict = defaultdict(lambda: defaultdict(lambda: dict.fromkeys(OUTCOMES, 0)))
    for utt, kind, _, _, outcome in rows:
        table[utt2spk[utt]][kind][outcome] += 1
    return table


def shares(counts: dict) -> str:
    n = sum(counts.values())
    return " / ".join(f"{counts[o] / n:.1%}" for o in OUTCOMES) + f" (n={n})" if n else "-"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--heard", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--speaker", help="break this speaker's tone changes down against the rest of the set")
    args = parser.parse_args(argv)
    utt2spk = read_kaldi_table(args.data / "utt2spk").entries
    standard, spoken = (read_kaldi_table(args.data / name).entries for name in ("pinyin", "spoken_pinyin"))
    rows = list(heard_outcomes(read_table(args.heard), {u: v.split() for u, v in standard.items()},
                               {u: v.split() for u, v in spoken.items()}))
    print(f"{args.data.name}: heard as spoken / as standard / other, at syllables the accent changed\n")
    print("| speaker | tone changed | segment changed | left alone: heard right |\n|---|---|---|---|")
    for speaker, kinds in sorted(per_speaker(rows, utt2spk).items()):
        same = kinds["same"]
        print(f"| {speaker} | {shares(kinds['tone'])} | {shares(kinds['segment'])} | "
              f"{same['spoken'] / max(1, sum(same.values())):.1%} |")
    if args.speaker:
        if args.speaker not in utt2spk.values():
            raise SystemExit(f"--speaker {args.speaker}: not a speaker of {args.data / 'utt2spk'}")
        rules: dict = defaultdict(lambda: dict.fromkeys(OUTCOMES, 0))
        for utt, kind, meant, said, outcome in rows:
            if kind == "tone":
                rules[(meant[-1] + "->" + said[-1], utt2spk[utt] == args.speaker)][outcome] += 1
        print(f"\n| tone change | {args.speaker} | the rest of the set |\n|---|---|---|")
        for change in sorted({c for c, _ in rules}):
            print(f"| {change} | {shares(rules[(change, True)])} | {shares(rules[(change, False)])} |")


if __name__ == "__main__":
    main()
