"""Acoustic evidence beside the tone router (issue 19, development only): does the sound at the syllables the CTC
head hears carry the accent that its best path loses?

The stage-4 router scores the heard tones; one test speaker's accent (tone 2 -> 4) is heard as the standard tone
(README.md, "Why one test speaker is misrouted"). This probe asks whether the acoustics at the heard tonal finals
hold it anyway. For every utterance it keeps, at each tonal final on the CTC best path (encoder frame f, which
covers fbank frames 8f .. 8f+7 with conf/model.yaml's frame_stack 8):

- ``contour``: the pitch track over fbank frames 8f .. 8f+7 (features after the global CMVN): mean log F0 (height),
  mean delta (slope) and the second half's log F0 less the first half's (rise), summed per heard tone (5 x 3);
- ``encoder``: the encoder output at frame f, averaged over the heard finals (144) or per heard tone (5 x 144).

Each is fitted on ``train_accent`` with the logistic regression of ``router_probe.py`` (features standardised) and
scored on ``dev_accent`` alone and added to the stage-4 router's log-posterior with weights 0.5, 1 and 2: a
post-hoc fusion, which a router trained jointly would have to beat. ``--test`` prints the 5 test sets too (read
only after a decision on dev).

    python local/acoustic_probe.py --exp exp --data data [--test]

Step 1 writes ``<exp>/acoustic_probe/<set>.pt`` unless it exists (the base and router as stage 4 left them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from router_probe import TEST_SETS, logistic, read_table, read_units, scores, stage4_model  # noqa: E402  (shared)

TONES = 5
CONTOUR = 3  # height, slope, rise


def contour_summary(pitch: np.ndarray, frame: int, stack: int) -> np.ndarray | None:
    """(height, slope, rise) of ``pitch`` [T, 3] (voicing, log F0, delta) over the fbank frames of encoder frame
    ``frame``; None when fewer than 4 frames are left at the end of the utterance."""
    window = pitch[stack * frame: stack * (frame + 1)]
    if len(window) < 4:
        return None
    half = len(window) // 2
    return np.array([window[:, 1].mean(), window[:, 2].mean(), window[half:, 1].mean() - window[:half, 1].mean()])


def utterance_evidence(best: list[int], tones: list[int], blank: int, pitch: np.ndarray, encoded: np.ndarray,
                       stack: int) -> dict:
    """The probe's per-utterance features (module docstring) from the best path ``best`` (one id per encoder
    frame) and ``tones`` (1-5 for a tonal final's id, 0 otherwise)."""
    contour, count = np.zeros((TONES, CONTOUR)), np.zeros(TONES)
    per_tone = np.zeros((TONES, encoded.shape[1]))
    # The best path walked here, not through ToneChannelRouter.heard_counts: the probe needs each final's frame.
    for f, unit in enumerate(best):
        if unit == blank or (f > 0 and best[f - 1] == unit) or not tones[unit]:
            continue
        t = tones[unit] - 1
        count[t] += 1
        per_tone[t] += encoded[f]
        summary = contour_summary(pitch, f, stack)
        if summary is not None:
            contour[t] += summary
    finals = max(1.0, count.sum())
    return {"contour": contour.reshape(-1), "encoder": per_tone.sum(0) / finals,
            "encoder_per_tone": (per_tone / np.maximum(count, 1)[:, None]).reshape(-1)}


def dump(exp: Path, data: Path, sets: list[str], out: Path) -> None:
    from tqdm import tqdm

    from hdmole.data import build_dataloader
    from hdmole.data.pitch import PITCH_DIM
    from hdmole.models.tone_channel import unit_tone

    todo = [s for s in sets if not (out / f"{s}.pt").exists()]
    if not todo:
        return
    model, cmvn, accents = stage4_model(exp, data)
    tones = [unit_tone(u) for u in read_units(data)]
    pitch_dims = slice(-PITCH_DIM, None)  # fbank + pitch: the pitch features are the last columns
    out.mkdir(parents=True, exist_ok=True)
    for name in todo:
        loader = build_dataloader(str(data / name), accents, max_frames=20000, shuffle=False, seed=0, cmvn=cmvn)
        rows = {}
        with torch.no_grad():
            for batch in tqdm(loader, desc=f"acoustic evidence of {name}"):
                encoded, lengths = model.encode(batch["feats"], batch["feat_lens"])
                logits = model.route_logits(encoded, lengths).log_softmax(-1)
                best = model.ctc(encoded).argmax(-1)
                for i, utt in enumerate(batch["utt_ids"]):
                    n, frames = int(lengths[i]), int(batch["feat_lens"][i])
                    stack = max(1, round(frames / n))  # fbank frames per encoder frame (8 in conf/model.yaml)
                    rows[utt] = {"router": logits[i].numpy(), **utterance_evidence(
                        best[i, :n].tolist(), tones, model.ctc_blank, batch["feats"][i, :frames, pitch_dims].numpy(),
                        encoded[i, :n].numpy(), stack)}
        torch.save(rows, out / f"{name}.pt")


class Probed:
    """One or more data dirs' dumped evidence in a fixed utterance order, with ``y`` and ``spk`` for ``scores``."""

    def __init__(self, data: Path, names: list[str], dumped: Path, accents: list[str]):
        self.rows, self.y, self.spk = [], [], []
        for name in names:
            rows = torch.load(dumped / f"{name}.pt", weights_only=False)
            label, speaker = read_table(data / name / "utt2accent"), read_table(data / name / "utt2spk")
            for utt in sorted(rows):
                self.rows.append(rows[utt])
                self.y.append(accents.index(label[utt][0]))
                self.spk.append(speaker[utt][0])
        self.y = np.array(self.y)

    def matrix(self, key: str) -> np.ndarray:
        return np.stack([r[key] for r in self.rows]).astype(np.float32)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exp", type=Path, default=Path("exp"))
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--test", action="store_true", help="also score the 5 test sets (after a decision on dev)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    dumped = args.exp / "acoustic_probe"
    dump(args.exp, args.data, ["train_accent", "dev_accent", *TEST_SETS], dumped)
    accents = [line.split()[0] for line in (args.data / "accents.txt").read_text().splitlines() if line]
    train, dev = Probed(args.data, ["train_accent"], dumped, accents), Probed(args.data, ["dev_accent"], dumped, accents)
    evaluate = [("dev_accent", dev)]
    if args.test:
        evaluate.append(("test sets", Probed(args.data, list(TEST_SETS), dumped, accents)))
    header = " | ".join(f"{n}: accuracy | Mandarin recall | log-loss | speaker-level" for n, _ in evaluate)
    print(f"| probe | learned parameters | {header} |\n|---|---|{'---|' * 4 * len(evaluate)}")
    print("| the stage-4 router alone | - | "
          + " | ".join(scores("router", s.matrix("router"), s) for _, s in evaluate) + " |", flush=True)
    for key in ("contour", "encoder", "encoder_per_tone"):
        x = train.matrix(key)
        mean, std = x.mean(0), x.std(0) + 1e-3
        scorer, size = logistic((x - mean) / std, train.y)
        alone = [scorer((s.matrix(key) - mean) / std) for _, s in evaluate]
        print(f"| {key} alone | {size:,} | " + " | ".join(scores(key, a, s) for a, (_, s) in zip(alone, evaluate))
              + " |")
        for weight in (0.5, 1.0, 2.0):
            fused = [s.matrix("router") + weight * (a - np.logaddexp.reduce(a, axis=1, keepdims=True))
                     for a, (_, s) in zip(alone, evaluate)]
            print(f"| router + {weight:g} x {key} | {size:,} | "
                  + " | ".join(scores(key, f, s) for f, (_, s) in zip(fused, evaluate)) + " |", flush=True)


if __name__ == "__main__":
    main()
