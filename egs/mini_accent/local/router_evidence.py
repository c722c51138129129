"""How long must an utterance be for the stage-4 router to reach a target accuracy? (issue 19, development only.)

The router (the tone channel, hdmole/models/tone_channel.py) scores an utterance by the log-likelihood of its
heard syllables, a sum over syllables: an utterance k times as long carries about k times the evidence. This
script measures that without a new corpus: each utterance is routed with the log-posteriors of k utterances of
its speaker summed (itself and the next k - 1 in utterance-id order, cyclically), the combination speaker pooling
uses (hdmole/models/speaker_routing.py), and prints the accuracy, the Mandarin recall and the mean characters of
those k utterances against k. It is an estimate of a k-times-longer utterance, not a measurement of one: the
base model hears a longer utterance with more context, and a corpus of long sentences has other texts.

    python local/router_evidence.py --logits exp/router/router_dev_accent.logits --data data/dev_accent

``--logits``: what ``hdmole.bin.eval_router`` writes (``router_<set>.logits``); ``--data``: the data dir it
evaluated (``utt2spk``, ``utt2accent``, ``text``, ``accents.txt``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch


def speaker_windows(utts, utt2spk: dict, k: int):
    """(utt, the window routing it): utt and the next k - 1 utterances of its speaker (cyclic, utterance-id
    order); a speaker with fewer than k utterances pools all of them."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    by_speaker: dict[str, list[str]] = {}
    for utt in sorted(utts):
        by_speaker.setdefault(utt2spk[utt], []).append(utt)
    for group in by_speaker.values():
        width = min(k, len(group))
        for i, utt in enumerate(group):
            yield utt, [group[(i + j) % len(group)] for j in range(width)]


def pool_windows(logits: dict, utt2spk: dict, k: int) -> dict:
    """{utt: the summed log-posteriors of its window} (speaker_windows)."""
    log_post = {utt: torch.log_softmax(row.float(), -1) for utt, row in logits.items()}
    return {utt: torch.stack([log_post[u] for u in window]).sum(0)
            for utt, window in speaker_windows(logits, utt2spk, k)}


def evidence_row(logits: dict, truths: dict, utt2spk: dict, chars: dict, k: int, source: int = 0) -> dict:
    """Accuracy, recall of domain ``source`` (Mandarin) and mean characters per window, pooling k utterances."""
    pooled = pool_windows(logits, utt2spk, k)
    right = {u: int(pooled[u].argmax()) == truths[u] for u in pooled}
    source_utts = [u for u in pooled if truths[u] == source]
    window_chars = [sum(chars[u] for u in window) for _, window in speaker_windows(logits, utt2spk, k)]
    return {"k": k, "chars": sum(window_chars) / len(window_chars),
            "accuracy": sum(right.values()) / len(right),
            "source_recall": (sum(right[u] for u in source_utts) / len(source_utts)) if source_utts else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--logits", required=True, type=Path, help="router_<set>.logits of hdmole.bin.eval_router")
    p.add_argument("--data", required=True, type=Path, help="the data dir those logits are of")
    p.add_argument("--k", type=int, nargs="+", default=[1, 2, 3, 4, 6], help="utterances pooled per window")
    args = p.parse_args(argv)

    from hdmole.bin.eval_router import read_logits
    from hdmole.data import AccentList
    from hdmole.data.table import read_kaldi_table

    if not args.logits.is_file():  # an exp dir whose stage 4 ran before eval_router wrote the logits
        print(f"router_evidence.py: {args.logits} not found; write it with python -m hdmole.bin.eval_router --config "
              "exp/router/config.yaml --checkpoint exp/base/best.pt --checkpoint exp/router/best.pt --accents "
              "data/accents.txt --data <data dir> --out exp/router (stage 4 does since commit e4a26e9)", file=sys.stderr)
        return 1
    try:
        accents = AccentList.load(args.data / "accents.txt")
        logits = read_logits(args.logits)
        utt2spk = read_kaldi_table(args.data / "utt2spk").entries
        utt2accent = read_kaldi_table(args.data / "utt2accent")
        text = read_kaldi_table(args.data / "text").entries
        missing = [u for u in logits if u not in utt2spk or u not in utt2accent or u not in text]
        if missing:
            raise ValueError(f"{args.logits}: utterance {missing[0]!r} ({len(missing)} in all) is not in "
                             f"{args.data}'s utt2spk, utt2accent or text; give the data dir eval_router evaluated")
        truths = {u: accents.index(utt2accent[u], context=utt2accent.where(u)) for u in logits}
    except ValueError as error:
        print(f"router_evidence.py: {error}", file=sys.stderr)
        return 1
    chars = {u: len(text[u].replace(" ", "")) for u in logits}
    print(f"# {args.logits} ({len(logits)} utterances, {len(set(utt2spk[u] for u in logits))} speakers)")
    print("| utterances pooled (k) | characters | accuracy | Mandarin recall |")
    print("|---|---|---|---|")
    for k in args.k:
        row = evidence_row(logits, truths, utt2spk, chars, k)
        recall = "-" if row["source_recall"] is None else f"{100 * row['source_recall']:.1f}%"
        print(f"| {k} | {row['chars']:.1f} | {100 * row['accuracy']:.1f}% | {recall} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
