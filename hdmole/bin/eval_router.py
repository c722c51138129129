"""Evaluate the global accent router (router pre-training, recipe stage 4): accuracy, recall per domain and
the confusion matrix, on each data set given.

    python -m hdmole.bin.eval_router --config exp/router/config.yaml --checkpoint exp/base/best.pt \\
        --checkpoint exp/router/best.pt --accents data/accents.txt \\
        --data data/dev_accent --data dump/test_all --out exp/router

Writes ``<out>/router_<set>.json`` (``accuracy``, ``recall`` and ``precision`` per domain, ``confusion``:
rows = true domain, columns = the router's argmax, in accents.txt order, ``mean_posterior`` per true
domain, ``utterances``), ``<out>/router_<set>.txt`` (the same as a table) and ``<out>/router_<set>.speakers``
(one line per speaker: its true domain, utterances, how many the router routes right one by one, the domain
it routes to most, and the domain its pooled posterior chooses; the speakers the router gets worst first, so
that a voice it mishears shows at the top) and ``<out>/router_<set>.logits`` (a Kaldi text table, ``utt`` then
the router's D logits in accents.txt order: what analyses of the router read, e.g. mini_accent's
``local/router_evidence.py``, without running the encoder again). Runs the encoder and the
router only: the LLM is not built (``encoder_side``), so the large model's router is evaluated without loading
its 7B LLM; ``--device cuda`` puts it on the GPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


log = logging.getLogger("hdmole.eval_router")

def confusion_summary(confusion: list[list[int]], names: list[str], posterior_sums: list[list[float]]) -> dict:
    """Accuracy, per-domain recall/precision and mean posterior from a confusion matrix (rows = truth)."""
    total = sum(map(sum, confusion))
    correct = sum(confusion[i][i] for i in range(len(names)))
    rows = [sum(r) for r in confusion]
    cols = [sum(confusion[i][j] for i in range(len(names))) for j in range(len(names))]
    return {
        "accents": names,
        "utterances": total,
        "accuracy": correct / total if total else None,
        "recall": {n: (confusion[i][i] / rows[i] if rows[i] else None) for i, n in enumerate(names)},
        "precision": {n: (confusion[i][i] / cols[i] if cols[i] else None) for i, n in enumerate(names)},
        "confusion": confusion,
        "mean_posterior": {n: ([v / rows[i] for v in posterior_sums[i]] if rows[i] else None)
                           for i, n in enumerate(names)},
    }


# The enrolment sizes of the online case: a speaker routed with its first k utterances (0 = all of them).
FIRST_K = (0, 1, 3, 10)


def speaker_level_accuracy(logits: dict, truths: dict, utt2spk: dict) -> dict:
    """Accuracy of speaker-level routing (hdmole.models.speaker_routing) over the utterances and over the
    speakers, pooling every utterance of a speaker (``all``) or its first k (``first_<k>``)."""
    from hdmole.models.speaker_routing import pool_by_speaker

    out = {}
    for k in FIRST_K:
        pooled = pool_by_speaker(logits, utt2spk, first_k=k)
        correct = {u: int(pooled[u].argmax()) == truths[u] for u in pooled}
        speakers: dict[str, bool] = {}
        for utt, ok in correct.items():
            speakers[utt2spk[utt]] = speakers.get(utt2spk[utt], True) and ok
        out["all" if k == 0 else f"first_{k}"] = {
            "utterance_accuracy": sum(correct.values()) / len(correct) if correct else None,
            "speakers": len(speakers), "speakers_correct": sum(speakers.values())}
    return out


def speaker_table(logits: dict, truths: dict, utt2spk: dict, names: list[str]) -> str:
    """Per speaker: true domain, utterances, utterances routed right, the most frequent routed domain and the
    pooled (speaker-level) choice; sorted by utterance accuracy, worst first. A speaker whose utterances carry two
    true domains (a data dir whose speakers are sessions, say) gets a row per domain, each with the pooled choice of
    all the speaker's utterances, as speaker-level routing would make it."""
    from collections import Counter

    from hdmole.models.speaker_routing import pool_by_speaker

    pooled = pool_by_speaker(logits, utt2spk, first_k=0)
    routed: dict[tuple[str, int], Counter] = {}
    for utt in logits:
        routed.setdefault((utt2spk[utt], truths[utt]), Counter())[int(logits[utt].argmax())] += 1
    choice = {utt2spk[utt]: int(pooled[utt].argmax()) for utt in logits}
    rows = sorted((counts[truth] / sum(counts.values()), spk, truth) for (spk, truth), counts in routed.items())
    lines = ["# speaker true utterances routed_right accuracy most_routed pooled_choice"]
    for accuracy, spk, truth in rows:
        counts = routed[spk, truth]
        lines.append(f"{spk} {names[truth]} {sum(counts.values())} {counts[truth]} {100 * accuracy:.1f}% "
                     f"{names[counts.most_common(1)[0][0]]} {names[choice[spk]]}")
    return "\n".join(lines) + "\n"


def write_logits(path: Path, logits: dict) -> None:
    """``utt l_1 ... l_D`` per utterance, in Kaldi's key order; read back with :func:`read_logits`."""
    from hdmole.data.table import write_kaldi_table

    write_kaldi_table(path, ((utt, " ".join(f"{v:.6g}" for v in row.tolist())) for utt, row in logits.items()))


def read_logits(path: str | Path) -> dict:
    """{utt: logits [D]} of a ``router_<set>.logits`` file; a malformed line is a ValueError naming the file and
    the line."""
    import torch

    from hdmole.data.table import read_kaldi_table

    table = read_kaldi_table(path)
    out, width = {}, None
    for utt in table.keys():
        try:
            row = [float(v) for v in table[utt].split()]
        except ValueError:
            row = []
        if not row or (width is not None and len(row) != width):
            raise ValueError(f"{table.where(utt)}: expected {width or 'D'} numbers (the router's logits) after "
                             f"{utt!r}, got {table[utt]!r}; write the file with hdmole.bin.eval_router")
        width = len(row)
        out[utt] = torch.tensor(row)
    return out


def confusion_text(summary: dict) -> str:
    names = summary["accents"]
    width = max(len(n) for n in names + ["true \\ routed"]) + 1
    lines = [f"accuracy {100 * summary['accuracy']:.1f}% over {summary['utterances']} utterances",
             "true \\ routed".ljust(width) + "".join(n[:10].rjust(11) for n in names) + "     recall"]
    for i, n in enumerate(names):
        recall = summary["recall"][n]
        lines.append(n.ljust(width) + "".join(str(c).rjust(11) for c in summary["confusion"][i])
                     + (f"   {100 * recall:6.1f}%" if recall is not None else "        -"))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hdmole.bin.eval_router", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="the router stage's config.yaml (or any with the model)")
    p.add_argument("--checkpoint", required=True, action="append", help="checkpoints in order: base, then router")
    p.add_argument("--accents", required=True, help="accents.txt (line order = domain index)")
    p.add_argument("--data", required=True, action="append", help="data dir with feats.scp (repeatable)")
    p.add_argument("--out", required=True, type=Path, help="output dir")
    p.add_argument("--max-frames", type=int, default=20000, help="padded input frames per batch")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--num-workers", type=int, default=0, help="data loader worker processes")
    p.add_argument("--verbose", action="store_true", help="on an error, print its traceback too")
    args = p.parse_args(argv)

    from hdmole.logs import log_failure, setup_stage_logging

    setup_stage_logging(None, verbose=args.verbose)
    try:
        return _evaluate(args)
    except (ValueError, OSError) as error:
        # a missing or mismatched config, checkpoint or data dir: one line naming it (as hdmole.bin.decode)
        log_failure(log, error)
        return 1


def _evaluate(args) -> int:
    import torch
    from tqdm import tqdm

    from hdmole.data import AccentList, build_dataloader
    from hdmole.models.checkpoint import load_model_for_inference, read_inference_config
    from hdmole.models.precision import autocast, inference_autocast_dtype

    accents = AccentList.load(args.accents)
    names = list(accents.names)
    model = load_model_for_inference(args.config, args.checkpoint, num_accents=len(accents), device=args.device,
                                     encoder_side=True)
    if model.global_router is None:
        print(f"hdmole.bin.eval_router: the model of {args.config} has no global_router", file=sys.stderr)
        return 1
    cmvn = read_inference_config(args.config)[2]
    precision = inference_autocast_dtype(args.config)  # the training's autocast (hdmole.models.precision)
    args.out.mkdir(parents=True, exist_ok=True)
    for data in args.data:
        loader = build_dataloader(data, accents, max_frames=args.max_frames, shuffle=False, seed=0, cmvn=cmvn,
                                  num_workers=args.num_workers)
        confusion = [[0] * len(names) for _ in names]
        posterior_sums = [[0.0] * len(names) for _ in names]
        logits, truths = {}, {}
        with torch.no_grad():
            for batch in tqdm(loader, desc=f"router on {Path(data).name}"):
                with autocast(args.device, precision):
                    enc_out, enc_lens = model.encode(batch["feats"].to(args.device), batch["feat_lens"].to(args.device))
                    rows = model.route_logits(enc_out, enc_lens).float().cpu()
                for utt, truth, row in zip(batch["utt_ids"], batch["accents"].tolist(), rows):
                    logits[utt], truths[utt] = row, truth
                    posterior = row.softmax(-1).tolist()
                    confusion[truth][int(row.argmax())] += 1
                    posterior_sums[truth] = [a + b for a, b in zip(posterior_sums[truth], posterior)]
        summary = confusion_summary(confusion, names, posterior_sums)
        summary["speaker_level"] = speaker_level_accuracy(logits, truths, loader.dataset.data.utt2spk.entries)
        stem = args.out / f"router_{Path(data).name}"
        stem.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
        stem.with_suffix(".txt").write_text(confusion_text(summary), encoding="utf-8")
        stem.with_suffix(".speakers").write_text(
            speaker_table(logits, truths, loader.dataset.data.utt2spk.entries, names), encoding="utf-8")
        write_logits(stem.with_suffix(".logits"), logits)
        spk = summary["speaker_level"]["all"]
        print(f"hdmole.bin.eval_router: {Path(data).name}: speaker-level {100 * spk['utterance_accuracy']:.1f}% "
              f"({spk['speakers_correct']}/{spk['speakers']} speakers)")
        print(f"hdmole.bin.eval_router: {Path(data).name}: accuracy {100 * summary['accuracy']:.1f}%, "
              + ", ".join(f"{n} {100 * r:.0f}%" for n, r in summary["recall"].items() if r is not None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
