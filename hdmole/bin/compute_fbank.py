"""Extract log-mel features for a data dir: 80-dim Kaldi-compatible fbank (kaldi-native-fbank), or
Whisper's own log-mel for a pre-trained Whisper encoder (--feature-type whisper; 80 bins, or 128 for
whisper-large-v3), written with kaldiio.

    python -m hdmole.bin.compute_fbank [--nj N] [--feature-type fbank|whisper] [--sample-rate 16000]
        [--num-mel-bins 80] [--feats-type fbank|raw] <data_dir> <feat_dir>

--feats-type raw (ESPnet's name) writes no features: it reads every audio entry once, writes
`<data_dir>/utt2num_frames` and `<data_dir>/frontend.json` (the options; hdmole.data.frontend), and the
data loader computes the same features from wav.scp when a stage reads the dir.

Writes `<feat_dir>/feats.{1..N}.ark/.scp` (one pair per job), then `<data_dir>/feats.scp` (absolute ark
paths, as Kaldi's make_fbank.sh writes them) and `<data_dir>/utt2num_frames`; logs to
`<feat_dir>/log/compute_fbank.log`. wav.scp entries may be paths or Kaldi pipe commands ending in `|`.

All-or-nothing: everything is written under temporary names and renamed only after every utterance
succeeded; on any failure the temporaries are removed and earlier outputs (a complete feats.scp) are left
as they were. A data dir whose feats.scp already covers every utterance is skipped unless --force, or
unless its features were made with other options or from other audio: `<feat_dir>/fbank_config.json`
records the options and a digest of wav.scp and of the audio files it names (size and mtime), so a new
pipe, a replaced file or another --num-mel-bins recomputes them. Whisper features of an utterance longer
than Whisper's 30 s window are an error naming the utterance. An expected failure is one line naming the
file (the traceback is in the log, and on stderr with --verbose).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import multiprocessing
import sys
import time
from pathlib import Path

import kaldiio
import numpy as np
from tqdm import tqdm

from hdmole.data.audio import is_pipe, read_wav
from hdmole.data.datadir import DataDir
from hdmole.data.errors import DataError
from hdmole.data.fbank import FbankConfig
from hdmole.data.frontend import FRONTEND_FILE, check_length, features_of, write_frontend
from hdmole.logs import log_failure, setup_stage_logging
from hdmole.data.table import read_kaldi_table, write_kaldi_table

log = logging.getLogger("hdmole.compute_fbank")
SOURCE_STAMP = "source_data_dir"
CONFIG_STAMP = "fbank_config.json"
def _extract(task: tuple[str, str, str, FbankConfig]) -> tuple[str, np.ndarray]:
    """Worker: one utterance -> (utt_id, feats). `where` is `wav.scp:line`, named in every error."""
    utt, entry, where, config = task
    try:
        samples, _ = read_wav(entry, expected_sample_rate=config.sample_rate)
        return utt, features_of(samples, config)
    except DataError as error:
        raise DataError(f"{where}: utterance {utt!r}: {error}") from None


def features_complete(data_dir: Path) -> bool:
    """feats.scp + utt2num_frames cover exactly the utterances of wav.scp and every ark they name exists."""
    try:
        data = DataDir.load(data_dir, require_feats=True)
    except DataError:
        return False
    if data.feats_scp is None:  # a raw data dir: no dumped features
        return False
    arks = {value.rsplit(":", 1)[0] for value in data.feats_scp.entries.values()}
    return all(Path(ark).is_file() for ark in arks)


def split_contiguous(items: list, parts: int) -> list[list]:
    """Kaldi split_data style: `parts` contiguous chunks whose sizes differ by at most one."""
    size, extra = divmod(len(items), parts)
    chunks, start = [], 0
    for index in range(parts):
        end = start + size + (1 if index < extra else 0)
        chunks.append(items[start:end])
        start = end
    return chunks


def claim_feat_dir(feat_dir: Path, data_dir: Path) -> None:
    """One feat dir per data dir: feats.N.ark names would otherwise collide between data sets."""
    stamp = feat_dir / SOURCE_STAMP
    if stamp.is_file() and stamp.read_text(encoding="utf-8").strip() != str(data_dir):
        raise DataError(
            f"{feat_dir}: already holds the features of {stamp.read_text(encoding='utf-8').strip()}; "
            f"use one feat dir per data set (e.g. dump/fbank/{data_dir.name})"
        )


def extract_all(data: DataDir, feat_dir: Path, config: FbankConfig, num_jobs: int) -> dict[str, list[Path]]:
    """Write every output under a `.tmp` name; return {"temp": [...], "final": [...]} pairs to rename."""
    utts = data.utt_ids
    num_jobs = max(1, min(num_jobs, len(utts)))
    chunks = split_contiguous(utts, num_jobs)
    job_of = {utt: job for job, chunk in enumerate(chunks, start=1) for utt in chunk}
    final = [feat_dir / f"feats.{job}.ark" for job in range(1, num_jobs + 1)]
    final += [feat_dir / f"feats.{job}.scp" for job in range(1, num_jobs + 1)]
    final += [data.path / "utt2num_frames", data.path / "feats.scp"]  # feats.scp last: it marks completion
    temps = [path.with_name(path.name + ".tmp") for path in final]
    renames = {"temp": temps, "final": final}
    tasks = [(utt, data.wav_scp[utt], data.wav_scp.where(utt), config) for utt in utts]
    arks = {job: open(temps[job - 1], "wb") for job in range(1, num_jobs + 1)}
    scp_lines: dict[int, list[str]] = {job: [] for job in arks}
    frames: dict[str, int] = {}
    try:
        if num_jobs == 1:
            results = map(_extract, tasks)
            pool = None
        else:
            # spawn, not fork: the parent may hold threads (tqdm, torch in tests) that fork would copy mid-state.
            pool = multiprocessing.get_context("spawn").Pool(num_jobs)
            results = pool.imap(_extract, tasks, chunksize=4)
        try:
            for utt, feats in tqdm(results, total=len(tasks), desc="fbank", unit="utt", file=sys.stderr):
                job = job_of[utt]
                ark = arks[job]
                # Kaldi scp offsets point just past "<utt> " at the binary-matrix marker.
                offset = ark.tell() + len(utt.encode("utf-8")) + 1
                kaldiio.save_ark(ark, {utt: feats})
                scp_lines[job].append(f"{utt} {final[job - 1]}:{offset}\n")
                frames[utt] = feats.shape[0]
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()
    finally:
        for ark in arks.values():
            ark.close()
    for job, lines in scp_lines.items():
        temps[num_jobs + job - 1].write_text("".join(lines), encoding="utf-8")
    temps[-2].write_text("".join(f"{utt} {frames[utt]}\n" for utt in utts), encoding="utf-8")
    temps[-1].write_text("".join(line for job in sorted(scp_lines) for line in scp_lines[job]), encoding="utf-8")
    log.info("extracted %d utterances, %d frames", len(frames), sum(frames.values()))
    return renames


AUDIO_SUFFIXES = (".wav", ".flac", ".sph", ".mp3", ".ogg")  # the files of a pipe entry (as validate_data_dir.sh)


def audio_digest(data: DataDir) -> str:
    """sha256 of wav.scp and of the size and mtime of every audio file it names (a pipe's arguments that
    look like audio files): a changed entry or a replaced file changes it; stat only, no audio is read."""
    digest = hashlib.sha256((data.path / "wav.scp").read_bytes())
    for utt in data.utt_ids:
        entry = data.wav_scp[utt]
        paths = [a for a in entry.split() if a.lower().endswith(AUDIO_SUFFIXES)] if is_pipe(entry) else [entry]
        for path in paths:
            try:
                stat = Path(path).stat()
                digest.update(f"{path}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
            except OSError:
                digest.update(f"{path}\tmissing\n".encode())
    return digest.hexdigest()


def recorded_config(feat_dir: Path) -> dict | None:
    """What the features in `feat_dir` were made with: the options and `audio` (audio_digest); None when unknown."""
    try:
        recorded = json.loads((feat_dir / CONFIG_STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    recorded.setdefault("feature_type", "fbank")  # written before feature types existed
    return recorded


def why_extract(data: DataDir, feat_dir: Path, wanted: dict) -> str | None:
    """None when the features of `data` are complete and were made by `wanted` (options + audio digest)."""
    if not features_complete(data.path):
        return "no complete feats.scp"
    recorded = recorded_config(feat_dir)
    if recorded is None:
        return f"{feat_dir / CONFIG_STAMP} (what made them) is missing or unreadable"
    if recorded.get("audio") != wanted["audio"]:
        return f"{data.path}/wav.scp or the audio it names changed since the features were made" if "audio" in recorded \
            else "the features predate the record of the audio they were made from"
    options = {k: v for k, v in recorded.items() if k != "audio"}
    if options != {k: v for k, v in wanted.items() if k != "audio"}:
        return f"the features were made with {options}"
    return None


def run(data_dir: Path, feat_dir: Path, config: FbankConfig, num_jobs: int, force: bool, accents: Path | None = None) -> None:
    data = DataDir.load(data_dir, accents, ignore_feats=True)
    wanted = {**config.as_dict(), "audio": audio_digest(data)}
    why = "--force" if force else why_extract(data, feat_dir, wanted)
    if why is None:
        log.info("%s/feats.scp already covers all %d utterances, made from the same audio with the same options; "
                 "skipping (use --force to recompute)", data_dir, len(data))
        return
    log.info("%s: computing features (%s)", data_dir, why)
    claim_feat_dir(feat_dir, data_dir)
    start = time.time()
    renames = None
    try:
        renames = extract_all(data, feat_dir, config, num_jobs)
    except BaseException:
        for path in list(feat_dir.glob("feats.*.tmp")) + [data_dir / "feats.scp.tmp", data_dir / "utt2num_frames.tmp"]:
            path.unlink(missing_ok=True)
        raise
    (data_dir / FRONTEND_FILE).unlink(missing_ok=True)  # the dir is no longer raw: its features are dumped
    for temp, final in zip(renames["temp"], renames["final"]):
        temp.replace(final)
    (feat_dir / SOURCE_STAMP).write_text(f"{data_dir}\n", encoding="utf-8")
    (feat_dir / CONFIG_STAMP).write_text(json.dumps(wanted, indent=1) + "\n", encoding="utf-8")
    # Re-read what we wrote: catches a broken scp before any later stage trusts it.
    read_kaldi_table(data_dir / "feats.scp")
    log.info("wrote %s/feats.scp and utt2num_frames in %.1f s", data_dir, time.time() - start)


def _frames(task: tuple[str, str, str, FbankConfig]) -> tuple[str, int]:
    """Worker (raw): one utterance -> (utt_id, its number of frames); the audio is read, so a bad entry fails here."""
    utt, entry, where, config = task
    try:
        samples, _ = read_wav(entry, expected_sample_rate=config.sample_rate)
        return utt, check_length(len(samples), config)
    except DataError as error:
        raise DataError(f"{where}: utterance {utt!r}: {error}") from None


def run_raw(data_dir: Path, config: FbankConfig, num_jobs: int, force: bool, accents: Path | None = None) -> None:
    """--feats-type raw: no features are written. Every audio entry is read once (checked, and its length
    turned into utt2num_frames, which batching needs); then frontend.json records the options (last: it
    marks the dir raw and complete). A stale feats.scp is removed: the dir's features are the loader's."""
    data = DataDir.load(data_dir, accents, ignore_feats=True)
    wanted = {**config.as_dict(), "audio": audio_digest(data)}
    stamp = data_dir / FRONTEND_FILE
    try:
        recorded = json.loads(stamp.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = None
    frames_file = data_dir / "utt2num_frames"
    if not force and recorded == wanted and not (data_dir / "feats.scp").exists() and frames_file.is_file() \
            and read_kaldi_table(frames_file).keys() == data.utt_ids:
        log.info("%s is raw with the same audio and options; skipping (use --force to redo)", data_dir)
        return
    stamp.unlink(missing_ok=True)
    tasks = [(utt, data.wav_scp[utt], data.wav_scp.where(utt), config) for utt in data.utt_ids]
    if num_jobs > 1:
        with multiprocessing.get_context("spawn").Pool(num_jobs) as pool:
            frames = dict(tqdm(pool.imap(_frames, tasks, chunksize=16), total=len(tasks), desc="raw", file=sys.stderr))
    else:
        frames = dict(tqdm(map(_frames, tasks), total=len(tasks), desc="raw", file=sys.stderr))
    (data_dir / "feats.scp").unlink(missing_ok=True)
    write_kaldi_table(frames_file, ((utt, str(n)) for utt, n in frames.items()))
    write_frontend(data_dir, config, wanted["audio"])
    log.info("%s: raw, %d utterances, %d frames (%s features computed by the data loader)", data_dir, len(frames),
             sum(frames.values()), config.feature_type)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hdmole.bin.compute_fbank", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nj", type=int, default=1, help="number of parallel jobs (and of ark files)")
    parser.add_argument("--feature-type", choices=("fbank", "whisper"), default="fbank",
                        help="fbank: Kaldi fbank; whisper: Whisper's log-mel (for a pre-trained Whisper encoder)")
    parser.add_argument("--sample-rate", type=int, default=16000, help="expected sample rate; other rates are an error")
    parser.add_argument("--num-mel-bins", type=int, default=80, help="mel bins (whisper: 80, or 128 for large-v3)")
    parser.add_argument("--dither", type=float, default=0.0, help="Kaldi dither (0 = reproducible features)")
    parser.add_argument("--pitch", action="store_true",
                        help="append 3 pitch features (voicing, normalised log F0, its delta: hdmole.data.pitch), "
                             "Kaldi's fbank+pitch for tonal languages")
    parser.add_argument("--pitch-norm-vars", action="store_true",
                        help="with --pitch: log F0 and its delta in units of the utterance's own log-F0 spread "
                             "(median absolute deviation): each voice's tone range made comparable (hdmole.data.pitch)")
    parser.add_argument("--feats-type", choices=("fbank", "raw"), default="fbank",
                        help="fbank: dump features into <feat_dir>; raw: keep wav.scp, write only utt2num_frames and "
                             "frontend.json into the data dir (the data loader computes the features; <feat_dir> "
                             "only gets the log)")
    parser.add_argument("--force", action="store_true", help="recompute even if feats.scp is complete")
    parser.add_argument("--accents", type=Path, help="accents.txt: also check every utt2accent entry before extracting")
    parser.add_argument("--verbose", action="store_true", help="on an error, print its traceback too (the log has it)")
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("feat_dir", type=Path)
    args = parser.parse_args(argv)
    if args.nj < 1:
        parser.error("--nj must be at least 1")
    data_dir, feat_dir = args.data_dir.resolve(), args.feat_dir.resolve()
    try:
        setup_stage_logging(feat_dir / "log" / "compute_fbank.log", verbose=args.verbose)
    except OSError as error:
        setup_stage_logging(verbose=args.verbose)
        log.error("cannot write the feat dir %s (%s); choose another <feat_dir>", feat_dir, error.strerror or error)
        return 1
    log.info("command: %s -m hdmole.bin.compute_fbank %s", sys.executable, " ".join(sys.argv[1:]))
    try:
        config = FbankConfig(sample_rate=args.sample_rate, num_mel_bins=args.num_mel_bins, dither=args.dither, pitch=args.pitch,
                             pitch_norm_vars=args.pitch_norm_vars, feature_type=args.feature_type)
    except ValueError as error:
        parser.error(str(error))
    try:
        if args.feats_type == "raw":
            run_raw(data_dir, config, args.nj, args.force, args.accents)
        else:
            run(data_dir, feat_dir, config, args.nj, args.force, args.accents)
    except (DataError, OSError) as error:
        log_failure(log, error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
