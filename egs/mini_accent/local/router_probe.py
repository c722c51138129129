"""Router probes (issue 19, development only): how well could a 5-way accent classifier route, given what the
base model's CTC head hears, the syllables as spoken (as if heard perfectly), or a transcript? Each probe is
trained on `train_accent` in seconds, so input designs are compared on `dev_accent` without running stage 4.

    python local/router_probe.py --exp exp --data data [--hyp-dir exp/router_probe/hyp] > probe.md

Step 1 writes `<exp>/router_probe/<set>.heard` ("utt unit unit ...": the CTC best path of the stage-3 base
model loaded as stage 4 does, repeats merged, blanks dropped) unless it exists. Step 2 fits each probe and prints
a markdown table for `dev_accent` (where choices are made) and for the 5 test sets together: utterance
accuracy, Mandarin recall, mean log-loss, speaker-level accuracy (log-posteriors summed over a speaker's
utterances, as `global_router.pool: speaker` does), and the probe's learned parameters. With `--hyp-dir`, the
text-dependent probes also run on the base model's own hypotheses, decoded beforehand into
`<hyp-dir>/<set>/text` with `python -m hdmole.bin.decode --config exp/base/config.yaml --checkpoint
exp/base/best.pt --data data/<set> --accents data/accents.txt --out <hyp-dir>/<set> --beam 4 --ngram
exp/ngram/char4.bin --ngram-weight 0.3` for `train_accent`, `dev_accent` and the test sets.

The probes are plain numpy / torch on count vectors (naive Bayes and logistic regression; scikit-learn is not a
dependency of the project, and these few lines are all it would do); they are not the stage-4 router, whose
numbers `hdmole.bin.eval_router` gives. A syllable here is an initial unit and the tonal final after it.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from pinyin_inventory import initial_final  # noqa: E402  (the recipe's own split, as its data dirs' phones)

TEST_SETS = ("test_std", "test_Southwestern", "test_JiangHuai", "test_JiaoLiao", "test_Zhongyuan")
_HASH = 2654435761  # as hdmole/models/heard_units.py hashes bigrams


def stage4_model(exp: Path, data: Path):
    """(model, cmvn, accents): the stage-3 base with the stage-4 router, loaded as stage 4 leaves them (the encoder
    side only: encoder, CTC head, router)."""
    from hdmole.data import AccentList
    from hdmole.models.checkpoint import load_model_for_inference, read_inference_config

    accents = AccentList.load(data / "accents.txt")
    config = exp / "router/config.yaml"
    model = load_model_for_inference(config, [exp / "base/best.pt", exp / "router/best.pt"],
                                     num_accents=len(accents), encoder_side=True)
    return model, read_inference_config(config)[2], accents


def dump_heard(exp: Path, data: Path, sets: list[str], out: Path) -> None:
    from tqdm import tqdm

    from hdmole.data import build_dataloader

    todo = [s for s in sets if not (out / f"{s}.heard").exists()]
    if not todo:
        return
    model, cmvn, accents = stage4_model(exp, data)
    units = read_units(data)
    out.mkdir(parents=True, exist_ok=True)
    for name in todo:
        loader = build_dataloader(str(data / name), accents, max_frames=20000, shuffle=False, seed=0, cmvn=cmvn)
        lines = []
        with torch.no_grad():
            for batch in tqdm(loader, desc=f"heard units of {name}"):
                encoded, lengths = model.encode(batch["feats"], batch["feat_lens"])
                for utt, row, n in zip(batch["utt_ids"], model.ctc(encoded).argmax(-1), lengths.tolist()):
                    ids = torch.unique_consecutive(row[:n]).tolist()
                    lines.append(utt + " " + " ".join(units[i] for i in ids if i != model.ctc_blank))
        (out / f"{name}.heard").write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_units(data: Path) -> list[str]:
    return [line.split()[0] for line in (data / "lang/phones.units").read_text(encoding="utf-8").splitlines() if line]


def read_table(path: Path) -> dict[str, list[str]]:
    return {p[0]: p[1:] for p in (line.split() for line in path.read_text(encoding="utf-8").splitlines()) if p}


def syllables(units: list[str]) -> list[str]:
    """Initial + tonal final pairs (a final alone, or an initial with no final after it, stands alone)."""
    out, pending = [], ""
    for unit in units:
        if unit[-1].isdigit():
            out.append(pending + unit)
            pending = ""
        else:
            if pending:
                out.append(pending)
            pending = unit
    return out + ([pending] if pending else [])


def spoken_units(syllable: str) -> list[str]:
    return initial_final(syllable)


class Split:
    """One data dir: its utterances in order, their accent ids, speakers and unit sequences of each kind."""

    def __init__(self, data: Path, name: str, heard_dir: Path, accents: list[str], hyp_dir: Path | None):
        heard = read_table(heard_dir / f"{name}.heard")
        self.utts = sorted(heard)
        label, speaker = read_table(data / name / "utt2accent"), read_table(data / name / "utt2spk")
        self.y = np.array([accents.index(label[u][0]) for u in self.utts])
        self.spk = [speaker[u][0] for u in self.utts]
        self.heard = [heard[u] for u in self.utts]
        spoken = read_table(data / name / "spoken_pinyin")
        self.spoken_syl = [spoken[u] for u in self.utts]
        self.spoken = [[x for s in syl for x in spoken_units(s)] for syl in self.spoken_syl]
        canonical = read_table(data / name / "phones")
        self.canonical = [canonical[u] for u in self.utts]
        self.hyp_canonical = None
        if hyp_dir is not None and (hyp_dir / name / "text").exists():
            hyp = read_table(hyp_dir / name / "text")
            self.hyp_canonical = [text_units("".join(hyp.get(u, []))) for u in self.utts]


def text_units(text: str) -> list[str]:
    """A (hypothesis) text's standard pronunciation as CTC units; characters pypinyin cannot read are dropped."""
    from pypinyin import Style, lazy_pinyin
    out = []
    for syllable in lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True, errors="ignore"):
        try:
            out += spoken_units(syllable)
        except Exception:  # a hypothesis may hold non-syllables; the probe skips them
            pass
    return out


def unit_counts(seqs, unit_id, buckets=0):
    """Unit counts and, with ``buckets``, unit-bigram counts hashed as the recipe's router hashes them."""
    v = len(unit_id)
    x = np.zeros((len(seqs), v + buckets), np.float32)
    for i, seq in enumerate(seqs):
        ids = [unit_id.get(u, 0) for u in seq]
        for a in ids:
            x[i, a] += 1
        for a, b in zip(ids[:-1], ids[1:]):
            if buckets:
                x[i, v + (a * v + b) * _HASH % 2 ** 32 % buckets] += 1
    return x


def vocab_counts(seqs, vocab):
    x = np.zeros((len(seqs), len(vocab)), np.float32)
    for i, seq in enumerate(seqs):
        for w in seq:
            if w in vocab:
                x[i, vocab[w]] += 1
    return x


def tone(unit: str) -> int:
    return int(unit[-1]) if unit[-1].isdigit() else 0


def tone_pairs(reference, heard_seqs, unit_id, buckets=256):
    """Counts of (transcript tone, heard tone) over the finals a Levenshtein alignment pairs, 36 features, and of
    the transcript-heard unit substitutions hashed into ``buckets``."""
    v = len(unit_id)
    x = np.zeros((len(heard_seqs), 36 + buckets), np.float32)
    for i, (ref, hyp) in enumerate(zip(reference, heard_seqs)):
        for r, h in align(ref, hyp):
            if r and h and tone(r) and tone(h):
                x[i, tone(r) * 6 + tone(h)] += 1
            if r and h and r != h:
                x[i, 36 + (unit_id.get(r, 0) * v + unit_id.get(h, 0)) * _HASH % 2 ** 32 % buckets] += 1
    return x


def align(ref: list[str], hyp: list[str]) -> list[tuple[str, str]]:
    """Levenshtein alignment (jiwer aligns words but gives no pairs for substitutions of our units' tones
    cheaper than other substitutions): a tone-only substitution costs 0.5, any other edit 1."""
    def sub(a, b):
        return 0.0 if a == b else 0.5 if a.rstrip("12345") == b.rstrip("12345") else 1.5
    n, m = len(ref), len(hyp)
    d = np.zeros((n + 1, m + 1))
    d[:, 0], d[0, :] = np.arange(n + 1), np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i, j] = min(d[i - 1, j] + 1, d[i, j - 1] + 1, d[i - 1, j - 1] + sub(ref[i - 1], hyp[j - 1]))
    pairs, i, j = [], n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and d[i, j] == d[i - 1, j - 1] + sub(ref[i - 1], hyp[j - 1]):
            pairs.append((ref[i - 1], hyp[j - 1]))
            i, j = i - 1, j - 1
        elif i > 0 and d[i, j] == d[i - 1, j] + 1:
            pairs.append((ref[i - 1], ""))
            i -= 1
        else:
            pairs.append(("", hyp[j - 1]))
            j -= 1
    return pairs[::-1]


def naive_bayes(x, y, alpha=0.3):
    """Multinomial naive Bayes: returns (fitted log-probability scorer, learned parameter count)."""
    classes = int(y.max()) + 1
    counts = np.stack([x[y == c].sum(0) for c in range(classes)]) + alpha
    log_prob = np.log(counts / counts.sum(1, keepdims=True))
    prior = np.log(np.bincount(y, minlength=classes) / len(y))
    return (lambda z: z @ log_prob.T + prior), log_prob.size + classes


def logistic(x, y, lr=3e-3, steps=1500, weight_decay=0.01, dropout=0.1, seed=0):
    """Logistic regression trained as stage 4 trains the router (AdamW, batches of 64, dropout on the input)."""
    torch.manual_seed(seed)
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    layer = torch.nn.Linear(x.shape[1], int(y.max()) + 1)
    optim = torch.optim.AdamW(layer.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        idx = torch.randint(0, len(xt), (64,))
        loss = torch.nn.functional.cross_entropy(layer(torch.nn.functional.dropout(xt[idx], dropout)), yt[idx])
        optim.zero_grad()
        loss.backward()
        optim.step()
    return (lambda z: layer(torch.tensor(z, dtype=torch.float32)).detach().numpy()), sum(p.numel() for p in layer.parameters())


class ToneChannel:
    """P(heard syllable | accent c) = sum over t of P_std(t | base) M_c[t, heard tone]: an accent as a 5 x 5 tone
    channel applied to standard Mandarin, whose P_std(tone | syllable base) is counted on train_accent's
    transcripts in the CTC units (as stage 4's ``input: ctc_tones`` counts it; no accent labels). Trained
    discriminatively together with a logistic regression on ``extra`` features (unit counts) added to it."""

    def __init__(self, train: Split, extra_dim: int, classes: int):
        counts = Counter()
        for units in train.canonical:
            counts.update((s.rstrip("12345"), tone(s)) for s in syllables(units) if tone(s))
        self.base_id = {b: i for i, b in enumerate(sorted({b for b, _ in counts}))}
        prior = np.full((len(self.base_id), 6), 0.5)
        prior[:, 0] = 0
        for (b, t), n in counts.items():
            prior[self.base_id[b], t] += n
        self.prior = torch.tensor(prior / prior.sum(1, keepdims=True), dtype=torch.float32)
        self.channel = (torch.eye(6) * 3).repeat(classes, 1, 1).requires_grad_(True)
        self.linear = torch.nn.Linear(extra_dim, classes)

    def logits(self, heard_syllables, extra):
        rows = [(i, self.base_id[s.rstrip("12345")], tone(s)) for i, seq in enumerate(heard_syllables)
                for s in seq if tone(s) and s.rstrip("12345") in self.base_id]
        utt, base, heard = (torch.tensor(c) for c in zip(*rows))
        likelihood = torch.einsum("nk,ckh->nch", self.prior[base], torch.softmax(self.channel, -1))
        per_syllable = torch.log(likelihood[torch.arange(len(heard)), :, heard] + 1e-9)
        total = torch.zeros(len(heard_syllables), self.channel.size(0)).index_add_(0, utt, per_syllable)
        return total + self.linear(torch.tensor(extra))

    def fit(self, heard_syllables, extra, y, steps=400, lr=0.05):
        optim = torch.optim.Adam([self.channel, *self.linear.parameters()], lr=lr)
        for _ in range(steps):
            loss = torch.nn.functional.cross_entropy(self.logits(heard_syllables, extra), torch.tensor(y))
            optim.zero_grad()
            loss.backward()
            optim.step()
        return self

    def parameters(self) -> int:
        return self.channel.numel() + sum(p.numel() for p in self.linear.parameters())


def scores(name: str, log_posterior: np.ndarray, split: Split) -> str:
    log_posterior = log_posterior - np.logaddexp.reduce(log_posterior, axis=1, keepdims=True)
    pred = log_posterior.argmax(1)
    pooled = defaultdict(float)
    for row, spk in zip(log_posterior, split.spk):
        pooled[spk] = pooled[spk] + row
    speaker_right = {spk: pooled[spk].argmax() == y for spk, y in zip(split.spk, split.y)}
    spk_utt = np.mean([speaker_right[s] for s in split.spk])
    mandarin = pred[split.y == 0] == 0  # accents.txt lists the standard domain first
    return (f"{(pred == split.y).mean():.1%} | {mandarin.mean():.1%} | "
            f"{-log_posterior[np.arange(len(pred)), split.y].mean():.3f} | "
            f"{spk_utt:.1%} ({sum(speaker_right.values())}/{len(speaker_right)})")


def probes(train: Split, evaluate: list[Split], unit_id: dict):
    """(name, learned parameters, [scorer output per evaluation split]) for every probe."""
    def bow(split, kind, buckets=0):
        return unit_counts(getattr(split, kind), unit_id, buckets)

    def frequencies(split):
        x = bow(split, "heard", 256)
        return x / np.maximum(np.array([[len(s)] for s in split.heard]), 1)

    heard_syl_vocab = {w: i for i, w in enumerate(sorted({w for s in train.heard for w in syllables(s)}))}
    spoken_syl_vocab = {w: i for i, w in enumerate(sorted({w for s in train.spoken_syl for w in s}))}
    designs = [
        ("units + bigrams hashed into 256, relative frequencies, logistic (the recipe's input)", logistic,
         frequencies, {"lr": 3e-2}),
        ("the same, counts", logistic, lambda s: bow(s, "heard", 256), {}),
        ("heard units, naive Bayes", naive_bayes, lambda s: bow(s, "heard"), {}),
        ("heard syllables (every type), naive Bayes", naive_bayes,
         lambda s: vocab_counts([syllables(h) for h in s.heard], heard_syl_vocab), {}),
        ("spoken units, naive Bayes (perfect hearing)", naive_bayes, lambda s: bow(s, "spoken"), {}),
        ("spoken syllables (every type), naive Bayes (perfect hearing)", naive_bayes,
         lambda s: vocab_counts(s.spoken_syl, spoken_syl_vocab), {}),
        ("transcript vs heard: tone pairs + substitutions hashed into 256, logistic (oracle text)", logistic,
         lambda s: tone_pairs(s.canonical, s.heard, unit_id), {}),
    ]
    for name, fit, features, options in designs:
        scorer, size = fit(features(train), train.y, **options)
        yield name, size, [scorer(features(s)) for s in evaluate]
    channel = ToneChannel(train, len(unit_id), int(train.y.max()) + 1)
    channel.fit([syllables(h) for h in train.heard], bow(train, "heard"), train.y)
    with torch.no_grad():
        outputs = [channel.logits([syllables(h) for h in s.heard], bow(s, "heard")).numpy() for s in evaluate]
    yield "tone channel on heard syllables + heard unit counts, logistic", channel.parameters(), outputs
    if train.hyp_canonical is not None and all(s.hyp_canonical is not None for s in evaluate):
        def with_hypothesis(s):
            return np.hstack([bow(s, "heard", 256), tone_pairs(s.hyp_canonical, s.heard, unit_id)])
        scorer, size = logistic(with_hypothesis(train), train.y)
        yield ("two passes: the base model's hypothesis vs heard (tone pairs + substitutions) + heard units and "
               "bigrams, logistic", size, [scorer(with_hypothesis(s)) for s in evaluate])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exp", type=Path, default=Path("exp"))
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--hyp-dir", type=Path, help="the base model's hypotheses, <hyp-dir>/<set>/text")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    heard_dir = args.exp / "router_probe"
    dump_heard(args.exp, args.data, ["train_accent", "dev_accent", *TEST_SETS], heard_dir)
    accent_list = [line.split()[0] for line in (args.data / "accents.txt").read_text().splitlines() if line]
    unit_id = {u: i for i, u in enumerate(read_units(args.data))}
    load = lambda name: Split(args.data, name, heard_dir, accent_list, args.hyp_dir)  # noqa: E731
    train, dev, tests = load("train_accent"), load("dev_accent"), [load(n) for n in TEST_SETS]
    test_all = merge(tests)
    print("| probe | learned parameters | dev accuracy | dev Mandarin recall | dev log-loss | dev speaker-level "
          "| test accuracy | test Mandarin recall | test log-loss | test speaker-level |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, size, (dev_out, test_out) in probes(train, [dev, test_all], unit_id):
        print(f"| {name} | {size:,} | {scores(name, dev_out, dev)} | {scores(name, test_out, test_all)} |",
              flush=True)


def merge(splits: list[Split]) -> Split:
    merged = object.__new__(Split)
    for field in ("utts", "spk", "heard", "spoken_syl", "spoken", "canonical", "hyp_canonical"):
        parts = [getattr(s, field) for s in splits]
        setattr(merged, field, None if any(p is None for p in parts) else [x for p in parts for x in p])
    merged.y = np.concatenate([s.y for s in splits])
    return merged


if __name__ == "__main__":
    main()
