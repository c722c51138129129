"""Guards for a new corpus where the docs would otherwise be the only defence (docs/adding_a_corpus.md):
a domain of accents.txt without training utterances, a single LoRA whose size does not follow the number
of accents, test characters the tokenizer cannot write."""

from __future__ import annotations

import logging
import re
import subprocess
from pathlib import Path

import pytest
import torch

from reliability_fixtures import assert_one_line_error, make_features, train_config
from test_conf_systems import accents_file, load_system
from test_data_fixtures import ACCENTS, UTTERANCES, make_data_dir

from hdmole.bin import train
from hdmole.data import AccentList, DataError
from hdmole.train.config import ConfigError

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("guards")
    setup = make_features(root)
    setup["root"] = root
    return setup


def write_accents(path: Path, names: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{name}\n" for name in names), encoding="utf-8")
    return path


@pytest.mark.parametrize("mode", ["router", "adapt"])
def test_a_domain_without_training_utterances_stops_the_phase(setup, mode, capsys):
    """accents.txt names an accent the training set lacks: one line naming the set, the domain and the fix,
    before the model is built and with nothing trained."""
    root = setup["root"] / mode
    accents = write_accents(root / "accents.txt", [*ACCENTS, "wu"])
    config = train_config(root / f"{mode}.yaml", mode, {**setup, "accents": accents},
                          system="hdmole" if mode == "adapt" else None)
    code = train.main(["--config", str(config), "--exp-dir", str(root / "exp")])
    err = capsys.readouterr().err
    assert_one_line_error(code, err, setup["data"] / "utt2accent", accents)
    phase = "router pre-training" if mode == "router" else "adaptation"
    assert f"{phase}: no training utterance of wu (line 4)" in err
    assert "Fix: add utterances of wu to" in err and "or remove an accent the corpus lacks" in err
    assert not list((root / "exp").glob("*.pt"))


def test_a_target_set_without_the_source_domain_is_an_error_that_says_why(setup, capsys):
    """The source domain (line 1) missing from the target training set: the router could never protect it.
    The fix is to add it, never to remove it."""
    root = setup["root"] / "nosource"
    accents = write_accents(root / "accents.txt", ["standard", *ACCENTS])
    config = train_config(root / "router.yaml", "router", {**setup, "accents": accents})
    code = train.main(["--config", str(config), "--exp-dir", str(root / "exp")])
    err = capsys.readouterr().err
    assert_one_line_error(code, err, setup["data"] / "utt2accent")
    assert "standard (line 1, the source domain)" in err and "keep the base model for the source domain" in err
    assert "remove" not in err


def test_a_dev_set_without_a_domain_is_a_warning(tmp_path, caplog):
    from hdmole.data.accents import check_domain_coverage

    train_dir = make_data_dir(tmp_path)
    dev_dir = make_data_dir(tmp_path, [u for u in UTTERANCES if u[3] != "southwestern"], name="dev")
    accents = AccentList.load(tmp_path / "accents.txt")
    with caplog.at_level(logging.WARNING, logger="hdmole.data"):
        check_domain_coverage(train_dir, dev_dir, accents, "adaptation")
    assert re.search(r"dev/utt2accent: adaptation: no dev utterance of southwestern \(line 3\)", caplog.text)
    with pytest.raises(DataError, match="no training utterance of southwestern"):
        check_domain_coverage(dev_dir, None, accents, "adaptation")
    check_domain_coverage(train_dir, train_dir, accents, "adaptation")  # every domain: silent


@pytest.mark.parametrize("system", ["lora", "hdmole", "mole_top1"])
def test_the_single_lora_size_is_checked_against_the_number_of_accents(tmp_path, system):
    """mini_accent's sizes (r = 3, single LoRA 12 = 4 x 3) with six accents: E = 5, so the LoRA must be
    rank 15, alpha 30; every system's run says so (the sizes are the recipe's, shared by all its systems)."""
    with pytest.raises(ConfigError, match=re.escape(
            "has 6 domains, so a mixture has E = 5 experts (the source domain owns none) of rank 3, alpha 6: "
            "the single LoRA must be rank E x r = 15, alpha E x alpha = 30 to match their size. "
            "Fix: set adapter_defaults.lora: {rank: 15, alpha: 30}")):
        load_system("mini_accent", system, accents_file(tmp_path, 6))
    config, _ = load_system("mini_accent", system, accents_file(tmp_path, 6),
                            "adapter_defaults.lora={rank: 15, alpha: 30}")
    assert config.adapter.config["rank"] == (15 if system == "lora" else 3)


def test_the_parity_rule_follows_the_recipe_sizes(tmp_path):
    with pytest.raises(ConfigError, match=re.escape("set adapter_defaults.lora: {rank: 64, alpha: 128}")):
        load_system("kespeech", "lora", accents_file(tmp_path, 5))
    # a mixture without the source-preserving path in its defaults: E = D experts
    with pytest.raises(ConfigError, match=re.escape("E = 5 experts of rank 3")):
        load_system("mini_accent", "lora", accents_file(tmp_path, 5), "adapter_defaults.mixture.source_domain=null")
    load_system("mini_accent", "full_ft", accents_file(tmp_path, 6))  # no adapter: nothing to size


def test_test_characters_outside_the_tokenizer_are_reported_at_decode_time(tmp_path):
    """A test set with characters the char tokenizer never saw: decoding warns with the count, examples and
    the fix (they can only be errors); a covered set gets no such line."""
    from decode_fixtures import make_decode_setup

    from hdmole.bin import decode
    from hdmole.text.tokenizer import uncovered_warning

    setup = make_decode_setup(tmp_path)
    text = setup["data"] / "text"
    assert uncovered_warning(setup["tokenizer"], ["你好，世界！"], "x", "char.model") is None
    text.write_text(text.read_text(encoding="utf-8").replace("你好世界\n", "你好世界猫猫狗\n"), encoding="utf-8")
    out = tmp_path / "decode"
    code = decode.main(["--config", str(setup["config"]), "--checkpoint", str(tmp_path / "base.pt"),
                        "--adapter", str(tmp_path / "adapter.pt"),
                        "--data", str(setup["data"]), "--accents", str(tmp_path / "accents.txt"), "--out", str(out),
                        "--batch-frames", "400", "--threads", "1"])
    assert code == 0
    log = (out / "decode.log").read_text(encoding="utf-8")
    assert re.search(rf"WARNING .*{re.escape(str(text))}: 3 of 13 reference characters \(2 distinct: '猫'x2 '狗'x1\) "
                     r"are not in the tokenizer .*char\.model: no hypothesis can contain them", log), log
    assert "--lm-text, stage 2" in log


def run_template(recipe: Path, *options: str) -> subprocess.CompletedProcess:
    """egs/TEMPLATE/hdmole.sh run from ``recipe`` (a bare recipe dir: utils/ linked, nothing prepared)."""
    if not (recipe / "utils").exists():
        recipe.mkdir(parents=True, exist_ok=True)
        (recipe / "utils").symlink_to(ROOT / "utils")
    return subprocess.run(["bash", str(ROOT / "egs" / "TEMPLATE" / "hdmole.sh"), *options], cwd=recipe,
                          capture_output=True, text=True, timeout=120)


def test_a_missing_recipe_input_names_its_option_and_what_reads_it(tmp_path):
    """The LM text, the CTC unit file and the lexicon come from the recipe's own data preparation: the error
    names the file, the option that points at it and the stage that reads it, not "run stage 0 first"."""
    run = run_template(tmp_path, "--stage", "2", "--stop-stage", "2", "--lm-text", "data/sentences.txt")
    assert run.returncode == 1
    assert ("data/sentences.txt (--lm-text) is missing: stage 2 trains the character tokenizer on it" in run.stderr
            and "stage 0) writes it; or correct --lm-text" in run.stderr), run.stderr
    assert "run stage 0 first" not in run.stderr
    run = run_template(tmp_path, "--stage", "2", "--stop-stage", "2", "--tokenizer-conf", "{type: hf, name_or_path: x}",
                       "--ctc-text", "phones", "--source-train", "train_x")
    assert run.returncode == 1
    assert "data/train_x/phones (--ctc-text phones) is missing: stage 2 lists the CTC units" in run.stderr, run.stderr


def test_pitch_norm_vars_without_pitch_stops_before_any_stage(tmp_path):
    """--pitch-norm-vars true normalises pitch features: without --pitch true there are none, and the option
    would be dropped silently; the template stops at once, naming the fix."""
    run = run_template(tmp_path, "--stage", "1", "--stop-stage", "1", "--pitch-norm-vars", "true")
    assert run.returncode == 1
    assert "--pitch-norm-vars true normalises the pitch features: it needs --pitch true" in run.stderr, run.stderr
    assert not (tmp_path / "dump").exists()


def test_no_shared_code_hard_codes_the_source_accent_name():
    """The source domain is line 1 of the recipe's accents.txt (docs/adding_a_corpus.md): the shared stages,
    the package and the recipes' run.sh never compare an accent with a name such as Mandarin. (A corpus reader
    in egs/*/local may: it maps the corpus' own labels.)"""
    files = [*ROOT.glob("hdmole/**/*.py"), *ROOT.glob("egs/TEMPLATE/*.sh"), *ROOT.glob("egs/*/run.sh"),
             *ROOT.glob("conf/**/*.yaml"), *ROOT.glob("egs/*/conf/*.yaml"), *ROOT.glob("utils/*")]
    code_name = re.compile(r"""['"^]Mandarin\b""")
    found = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}" for path in files if path.is_file()
             for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
             if code_name.search(line.split("#", 1)[0])]
    assert not found, found


def test_systems_cli_prints_each_systems_size_for_the_accents_or_the_fix(tmp_path, capsys, monkeypatch):
    """`python -m hdmole.bin.systems --accents data/accents.txt all`: the check a new corpus runs before any
    training (docs/adding_a_corpus.md): the sizes stage 5 would train, or the parity error with the fix."""
    from hdmole.bin import systems as systems_cli

    monkeypatch.chdir(ROOT / "egs" / "mini_accent")
    accents = write_accents(tmp_path / "accents.txt", ["标准", "西南", "江淮", "胶辽", "中原", "晋语"])
    assert systems_cli.main(["--recipe-conf", "conf", "--accents", str(accents), "hdmole", "full_ft"]) == 1
    assert "set adapter_defaults.lora: {rank: 15, alpha: 30}" in capsys.readouterr().err
    accents = write_accents(tmp_path / "accents.txt", ["标准", "西南", "江淮", "胶辽", "中原"])
    assert systems_cli.main(["--recipe-conf", "conf", "--accents", str(accents), "lora hdmole full_ft"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "lora: lora, E = 1 expert(s) of rank 12, alpha 24, routing none, gating dense",
        "hdmole: hdmole, E = 4 expert(s) of rank 3, alpha 6, routing hierarchical, gating threshold, "
        "source domain 0 (标准) keeps the base model",
        "full_ft: full_ft, trains projector"]
