"""Global CMVN statistics (per-dimension mean and std) over the features of a data dir.

    python -m hdmole.bin.compute_cmvn <data_dir> <out_file.json>

Reads `<data_dir>/feats.scp` (run compute_fbank first; a raw data dir: computes the features from wav.scp) and writes JSON
`{"dim", "count", "mean": [...], "std": [...]}` that `hdmole.data.GlobalCMVN.load` reads. Compute it on the
training set only and use it for every set.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import kaldiio
from tqdm import tqdm

from hdmole.data.cmvn import GlobalCMVN
from hdmole.data.datadir import DataDir
from hdmole.data.errors import DataError
from hdmole.logs import setup_stage_logging

log = logging.getLogger("hdmole.compute_cmvn")


def compute_cmvn(data_dir: str | Path) -> GlobalCMVN:
    data = DataDir.load(data_dir, require_feats=True)
    if data.frontend is not None:  # a raw data dir: the features the data loader will compute
        from hdmole.data.audio import read_wav
        from hdmole.data.frontend import features_of

        def computed():
            for utt in tqdm(data.utt_ids, desc="cmvn (raw)", unit="utt", file=sys.stderr):
                try:
                    yield features_of(read_wav(data.wav_scp[utt], data.frontend.sample_rate)[0], data.frontend)
                except DataError as error:
                    raise DataError(f"{data.wav_scp.where(utt)}: utterance {utt!r}: {error}") from None

        return GlobalCMVN.from_features(computed())
    features = kaldiio.load_scp(str(data.path / "feats.scp"))

    def frames():
        for utt in tqdm(data.utt_ids, desc="cmvn", unit="utt", file=sys.stderr):
            try:
                yield features[utt]
            except (OSError, ValueError, KeyError) as error:
                raise DataError(
                    f"{data.feats_scp.where(utt)}: cannot read the features of {utt!r} ({error}); re-run compute_fbank --force"
                ) from None

    return GlobalCMVN.from_features(frames())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hdmole.bin.compute_cmvn", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("out_file", type=Path)
    args = parser.parse_args(argv)
    setup_stage_logging(args.out_file.with_name(args.out_file.name + ".log"))
    try:
        cmvn = compute_cmvn(args.data_dir)
    except DataError as error:
        log.error("%s", error)
        return 1
    cmvn.save(args.out_file)
    log.info("wrote %s: dim %d over %d frames", args.out_file, cmvn.dim, cmvn.count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
