"""egs/mini_accent/run.sh end to end with its fast config (tiny corpus, tiny model): every stage writes
what it should, a finished stage is skipped, a stage without its inputs names the stage to run first, and
the recipe's base stage, given more steps, really learns its training data (a CER bound that the
6-step model misses).

The recipe runs once (module fixture); every test that runs run.sh again works on its own copy of the
outputs, so that no test sees what another one appended (stage_times.tsv, run_commands.txt, RESULTS.md)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from hdmole.bin import decode, score

pytestmark = pytest.mark.slow
RECIPE = Path(__file__).resolve().parent.parent / "egs" / "mini_accent"
SYSTEMS = ["lora", "hdmole"]
# The CER test's base stage: 200 steps at lr 5e-3 (the fast recipe: 6 at 2e-3). Measured CER on train_std
# (greedy): 0% after those 200 steps (98% after 40, 66% after 80, 49% after 120); the recipe's 6-step
# model: 97%; a model that ignores the speech (projector output zeroed): 70% after 120 steps.
LONG_BASE_ARGS = "--override optim.max_steps=200 --override optim.lr=5e-3 --override checkpoint.every_steps=200"
CER_BOUND = 30.0


def run(*args, **dirs):
    cmd = ["./run.sh", "--fast", "true", *map(str, args)]
    for key, value in dirs.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    # One thread: on the shared 2-core machine, two spinning OpenMP threads per process cost more than they give.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    # The timeout only guards against a hang: on the loaded shared machine the run takes several minutes.
    return subprocess.run(cmd, cwd=RECIPE, capture_output=True, text=True, env=env, timeout=3600)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    root = tmp_path_factory.mktemp("mini_accent")
    dirs = {"data_dir": root / "data", "dump_dir": root / "dump", "exp_dir": root / "exp"}
    result = run("--systems", " ".join(SYSTEMS), **dirs)
    assert result.returncode == 0, result.stderr[-4000:]
    return dirs


@pytest.fixture
def own_copy(recipe, tmp_path) -> dict[str, Path]:
    """The recipe's outputs copied for one test (a few MB). The exp dirs' resolved configs name their data by
    absolute path: rewritten to the copy, as a user who moves a recipe's outputs would (hdmole.bin.train
    refuses to take an exp dir trained with other data as finished)."""
    copy = {key: Path(shutil.copytree(path, tmp_path / path.name, symlinks=True)) for key, path in recipe.items()}
    root = recipe["data_dir"].parent
    for config in copy["exp_dir"].glob("*/config.yaml"):
        config.write_text(config.read_text().replace(str(root), str(tmp_path)))
    return copy


def test_every_stage_writes_its_outputs(recipe):
    data, exp = recipe["data_dir"], recipe["exp_dir"]
    accents = (data / "accents.txt").read_text().split()
    assert accents[0] == "Mandarin" and len(accents) == 5
    test_sets = ["test_std"] + [f"test_{a}" for a in accents[1:]]
    for name in ["train_std", "train_accent", "dev_std", "dev_accent", *test_sets]:
        check = subprocess.run([str(RECIPE / "utils" / "validate_data_dir.sh"), "--no-feats", "false", "--accents",
                                str(data / "accents.txt"), str(data / name)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
    assert (data / "lang" / "char.model").is_file()
    for system in ["lm", "base", "router", *SYSTEMS]:
        assert (exp / system / "best.pt").is_file(), system
    for system in ["base", *SYSTEMS]:
        for name in test_sets:
            utts = (data / name / "text").read_text().splitlines()
            hyps = (exp / system / f"decode_{name}" / "text").read_text().splitlines()
            assert [h.split(" ", 1)[0] for h in hyps] == [u.split(" ", 1)[0] for u in utts]
            assert (exp / system / f"decode_{name}" / "cer.json").is_file()
    # stage 4: the router's 5 x 5 confusion matrices (rows: the true domain) on dev_accent, which holds every
    # domain, and on the test sets together
    for name, utterances in (("dev_accent", "dev_accent"), ("test_all", None)):
        matrix = json.loads((exp / "router" / f"router_{name}.json").read_text())["confusion"]
        assert len(matrix) == 5 and all(len(row) == 5 for row in matrix)
        counted = [sum(row) for row in matrix]
        if utterances:
            labels = [line.split()[1] for line in (data / utterances / "utt2accent").read_text().splitlines()]
            assert counted == [labels.count(a) for a in accents] and counted[0] > 0  # Mandarin is in dev
        else:
            assert counted == [len((data / t / "text").read_text().splitlines()) for t in test_sets]
        # the per-speaker table: every utterance counted once, under its speaker, worst routed first
        rows = [line.split() for line in (exp / "router" / f"router_{name}.speakers").read_text().splitlines()[1:]]
        assert sum(int(r[2]) for r in rows) == sum(counted)
        assert sum(int(r[3]) for r in rows) == sum(matrix[i][i] for i in range(5))
        accuracies = [float(r[4].rstrip("%")) for r in rows]
        assert accuracies == sorted(accuracies)
        # the logits file: one row of 5 per utterance, whose argmaxes are the matrix's routed columns
        logits = [line.split() for line in (exp / "router" / f"router_{name}.logits").read_text().splitlines()]
        assert len(logits) == sum(counted) and all(len(row) == 6 for row in logits)
        routed = [max(range(5), key=lambda d: float(row[1 + d])) for row in logits]
        assert [routed.count(d) for d in range(5)] == [sum(row[d] for row in matrix) for d in range(5)]
    results = (exp / "RESULTS.md").read_text()
    for system in ["base", *SYSTEMS]:
        assert f"| {system} |" in results
    assert (exp / "results" / "routing_hdmole.png").is_file()
    # stage 7: the threshold's dev operating curve of the thresholded system only (lora is skipped)
    curve = json.loads((exp / "hdmole" / "threshold_curve.json").read_text())
    assert curve["data"].endswith("dev_accent") and curve["layers"] and curve["per_layer"]
    assert not (exp / "lora" / "threshold_curve.json").exists()
    assert "## The threshold's operating curve (dev)" in results and "| hdmole | projector." in results
    assert "## Active experts per layer and domain" in results
    # the recipe's default report_args: a second interval with the test speakers resampled too
    assert "The second interval resamples the speakers too" in results and "interval, + speakers |" in results
    assert "Made by" in results and "./run.sh --fast true" in results  # the recipe command, quoted
    # stage 5: hdmole's first seed is the source gate grid's run of the chosen gate, copied, not trained twice;
    # the grid is decoded for its operating curve with the n-gram only (the LLM-only table has no gate rows)
    chosen = json.loads((exp / "gate" / "chosen.json").read_text())["gate"]
    assert (exp / "hdmole" / "best.pt").read_bytes() == (exp / "gate" / f"g{chosen}" / "best.pt").read_bytes()
    assert (exp / "gate" / f"g{chosen}" / "decode_test_std" / "text").is_file()
    assert not list((exp / "gate").glob("g*/decode_llm_*")) and (exp / "hdmole" / "decode_llm_test_std").is_dir()
    # the adaptations encode train_accent + dev_accent once per side-by-side pair, then load it
    # (data.encoder_cache_dir); stages 6-7 encode each test set (and test_all, for the routing statistics) once;
    # every cache file has its encoding time beside it (<digest>.json)
    caches = sorted((exp / "encoder_cache").glob("*.pt"))
    assert len(caches) == 1 + len(test_sets) + 1 and all(c.with_suffix(".json").is_file() for c in caches)
    sizes = sorted(json.loads(c.with_suffix(".json").read_text())["utterances"] for c in caches)
    train_and_dev = sum(len((data / s / "text").read_text().splitlines()) for s in ("train_accent", "dev_accent"))
    assert train_and_dev in sizes
    sizes.remove(train_and_dev)  # the rest: every test set, and test_all (all of them once more)
    assert sum(sizes) == 2 * sum(len((data / t / "text").read_text().splitlines()) for t in test_sets)
    assert "encoder cache: loaded" in (exp / "lora" / "train.log").read_text()
    modes = [dict(line.split() for line in (exp / system / f"decode_{name}" / "rtf").read_text().splitlines())
             ["encoder_cache"] for system in ["base", *SYSTEMS] for name in test_sets]
    assert set(modes) <= {"filled", "loaded"} and modes.count("filled") <= 2 * len(test_sets)  # 2 jobs at once
    assert modes.count("loaded") >= len(test_sets)
    # stage 6: one process per model and job runs its decodings (beam with the n-gram, then the LLM alone)
    log = (exp / "hdmole" / "log" / "decode.1.log").read_text()
    assert "decode_test_std" in log and "decode_llm_test_std" in log and "--then" in log
    assert not list((exp / "hdmole" / "log").glob("decode_llm*"))
    stages = [line.split("\t")[0] for line in (exp / "stage_times.tsv").read_text().splitlines()]
    assert stages == [str(s) for s in range(8)]


def test_finished_stage_is_skipped(own_copy):
    before = (own_copy["exp_dir"] / "base" / "best.pt").stat().st_mtime_ns
    result = run("--stage", 3, "--stop-stage", 3, **own_copy)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "already trained" in result.stdout + result.stderr
    assert (own_copy["exp_dir"] / "base" / "best.pt").stat().st_mtime_ns == before


def test_decoding_split_over_jobs_gives_the_same_hypotheses(recipe, own_copy):
    """--decode-nj 3: each test set split in 3 (utils/split_data.sh --per-utt), 3 jobs through cmd.sh's
    decode_cmd (run.pl), merged: the same hypotheses, byte for byte, as the recipe's single job."""
    exp = own_copy["exp_dir"]
    for out in exp.glob("*/decode_*"):
        shutil.rmtree(out)
    result = run("--stage", 6, "--stop-stage", 6, "--systems", "hdmole", "--decode-nj", 3, **own_copy)
    assert result.returncode == 0, result.stderr[-4000:]
    texts = sorted(recipe["exp_dir"].glob("*/decode_*/text"))
    assert len(texts) == 3 * 5 * 2  # base, lora, hdmole x 5 test sets x (fused, LLM alone); lora not decoded again
    for text in texts:
        if text.parts[-3] == "lora":
            continue
        again = exp / text.relative_to(recipe["exp_dir"])
        assert again.read_bytes() == text.read_bytes(), again
        assert "nj 3\n" in (again.parent / "rtf").read_text()
    for job in (1, 2, 3):
        assert "# Ended (code 0)" in (exp / "hdmole" / "log" / f"decode.{job}.log").read_text()


def test_stage_without_inputs_names_the_stage_to_run(recipe, tmp_path):
    result = run("--stage", 4, "--stop-stage", 4, data_dir=recipe["data_dir"], dump_dir=recipe["dump_dir"],
                 exp_dir=tmp_path / "empty_exp")
    assert result.returncode != 0
    assert "base/best.pt is missing: run stage 3 first" in result.stderr


def test_unknown_system_is_an_error(own_copy):
    result = run("--systems", "hdmole bogus", "--stage", 5, **own_copy)
    assert result.returncode != 0 and "unknown system 'bogus'" in result.stderr


def test_report_for_one_system_keeps_the_others(own_copy):
    """`--systems hdmole` after a full run (one more system, or a rerun of one) must not shrink the table."""
    result = run("--stage", 7, "--systems", "hdmole", **own_copy)
    assert result.returncode == 0, result.stderr[-2000:]
    assert results_rows(own_copy["exp_dir"] / "RESULTS.md")[: 1 + len(SYSTEMS)] == ["base", *SYSTEMS]  # lora kept


def results_rows(path: Path) -> list[str]:
    """The system names of the results table (the one headed '| system'; RESULTS.md has other tables)."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| system"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(line.split("|")[1].strip())
    return rows


def train_std_cer(base_exp: Path, data: Path, out: Path) -> float:
    """CER of the base model on its own training set (greedy), through the decode and score CLIs."""
    assert decode.main(["--config", str(base_exp / "config.yaml"), "--checkpoint", str(base_exp / "best.pt"),
                        "--data", str(data / "train_std"), "--accents", str(data / "accents.txt"),
                        "--out", str(out), "--beam", "1", "--threads", "1"]) == 0
    assert score.main(["--ref", str(data / "train_std"), "--hyp", str(out / "text"), "--out", str(out)]) == 0
    return json.loads((out / "cer.json").read_text())["total"]["cer"]


def test_the_base_stage_learns_its_training_data(recipe, tmp_path):
    """Stage 3 of the fast recipe with more steps (through run.sh, --extra-train-args) transcribes its own
    training sentences with a CER under CER_BOUND; the recipe's 6-step base model, a model that has not
    learned (as one that ignored the speech, or trained on shifted labels, would be), stays far above it."""
    exp = tmp_path / "exp"
    shutil.copytree(recipe["exp_dir"] / "lm", exp / "lm")  # stage 3 starts from stage 2's LM
    result = run("--stage", 3, "--stop-stage", 3, "--extra-train-args", LONG_BASE_ARGS,
                 data_dir=recipe["data_dir"], dump_dir=recipe["dump_dir"], exp_dir=exp)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((exp / "base" / "train_summary.json").read_text())["steps"] == 200
    trained = train_std_cer(exp / "base", recipe["data_dir"], tmp_path / "decode_long")
    untrained = train_std_cer(recipe["exp_dir"] / "base", recipe["data_dir"], tmp_path / "decode_short")
    assert trained < CER_BOUND < untrained, (trained, untrained)


def test_report_of_a_system_not_yet_decoded_names_the_stage_to_run(own_copy):
    """Stage 7 asked for a system with no exp dir (not trained, not decoded) says to run stage 6, rather than
    failing on the scoring log it would write into that dir."""
    result = run("--stage", 7, "--stop-stage", 7, "--systems", "mole_top1", **own_copy)
    assert result.returncode != 0
    assert "mole_top1/decode_test_std/text is missing: run stage 6 first" in result.stderr, result.stderr[-1500:]
