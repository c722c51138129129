"""Global CMVN statistics (per-dimension mean and std) over the features of a data dir.

    python -m hdmole.bin.compute_cmvn <data_dir> <out_file.json>

Reads `<data_dir>/feats.scp` (run compute_fbank first; a raw data dir: computes the features from wav.scp) and writes JSON
`{"dim", "count", "mean": [...], "std": [...]}` that `hdmole.data.GlobalCMVN.load` reads. Compute it on the
training set only and use it for every set. Next to it, `<out stem>_inputs.json` records the version of the
features it was made from; run again, it is skipped when they are the same and recomputed when they changed
(re-extracted features, another `--pitch`). An expected failure is one line; `--verbose` adds the traceback.
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
from hdmole.files import changed_inputs, data_version, inputs_record_path, read_inputs_record, write_inputs_record
from hdmole.logs import log_failure, setup_stage_logging

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
            # kaldiio asserts (AssertionError) on an offset past the end of the ark, or into the wrong bytes
            except (OSError, ValueError, KeyError, EOFError, AssertionError) as error:
                reason = str(error) or "no matrix at that offset: the offset is past the end of the ark, or the ark changed"
                raise DataError(
                    f"{data.feats_scp.where(utt)}: cannot read the features of {utt!r} ({reason}); re-run compute_fbank --force"
                ) from None

    return GlobalCMVN.from_features(frames())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hdmole.bin.compute_cmvn", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("out_file", type=Path)
    parser.add_argument("--force", action="store_true", help="recompute even if out_file was made from the same features")
    parser.add_argument("--verbose", action="store_true", help="on an error, print its traceback too (the .log has it)")
    args = parser.parse_args(argv)
    # The record of what out_file was made from (hdmole.files): the data dir's features by version, so that
    # re-extracted features (new audio, --pitch toggled) make it stale instead of silently mismatched.
    record_file = inputs_record_path(args.out_file)
    inputs = {"data": data_version(args.data_dir)}
    if not args.force and args.out_file.is_file() and not changed_inputs(read_inputs_record(record_file), inputs):
        print(f"compute_cmvn: {args.out_file} was made from the same features of {args.data_dir}; skipping "
              "(--force to recompute)", file=sys.stderr)
        return 0
    try:
        setup_stage_logging(args.out_file.with_name(args.out_file.name + ".log"), verbose=args.verbose)
    except OSError as error:  # the output's directory cannot be made (under a file, no permission)
        setup_stage_logging(verbose=args.verbose)
        log_failure(log, error)
        return 1
    try:
        cmvn = compute_cmvn(args.data_dir)
        record_file.unlink(missing_ok=True)  # the record goes last: out_file without it counts as unfinished
        cmvn.save(args.out_file)
        write_inputs_record(record_file, inputs)
    except (DataError, OSError) as error:
        log_failure(log, error)
        return 1
    log.info("wrote %s: dim %d over %d frames", args.out_file, cmvn.dim, cmvn.count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
