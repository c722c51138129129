"""The comparison systems: defined once in the top-level conf/systems/, composed with each recipe's
conf/adapt.yaml (docs/configs.md); and every section of a training config checked when it is loaded."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from torch import nn

from hdmole.nn import inject
from hdmole.train import systems
from hdmole.train.config import ConfigError, adapter_config_for, load_train_config

ROOT = Path(__file__).resolve().parent.parent
TABLE = ["full_ft", "lora", "mole_top1", "mole_top2", "mole_dense", "hdmole_no_global", "hdmole_global_only",
         "hdmole_dense", "hdmole_no_threshold", "hdmole_no_source", "hdmole", "hdmole_spk", "hdmole_oracle"]
# docs/method.md section 6: (routing, gating, top_k, source-preserving path) of each mixture system.
METHOD = {"mole_top1": ("local", "topk", 1, False), "mole_top2": ("local", "topk", 2, False),
          "mole_dense": ("local", "dense", None, False), "hdmole_no_global": ("local", "threshold", None, False),
          "hdmole_global_only": ("global", "threshold", None, True),
          "hdmole_dense": ("hierarchical", "dense", None, True),
          "hdmole_no_threshold": ("hierarchical", "topk", 2, True),
          "hdmole_no_source": ("hierarchical", "threshold", None, False),
          "hdmole": ("hierarchical", "threshold", None, True), "hdmole_oracle": ("hierarchical", "threshold", None, True),
          "hdmole_spk": ("hierarchical", "threshold", None, True)}
# recipe: (accents, expert rank r): mini_accent's Mandarin + 4 accents, KeSpeech's Mandarin + 8 subdialects.
RECIPES = {"mini_accent": (5, 3), "kespeech": (9, 16)}
# Shapes of the real projectors (Whisper d_model x stack 5 -> hidden 2048 -> LLM width): large, small.
PROJECTORS = {"large": (1280 * 5, 2048, 3584), "small": (768 * 5, 2048, 896)}


def accents_file(tmp_path: Path, count: int) -> Path:
    path = tmp_path / "accents.txt"
    path.write_text("".join(f"accent{i}\n" for i in range(count)))
    return path


def load_system(recipe: str, system: str, accents: Path, *overrides: str):
    conf = ROOT / "egs" / recipe / "conf"
    return load_train_config(conf / "adapt.yaml", [f"system={system}", "data.train=data/x", f"data.accents={accents}",
                                                    *overrides])


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_system_composes_with_every_recipe_as_documented(recipe, tmp_path):
    """Each recipe gets all the top-level systems, in table order; each composes into the method of
    docs/method.md section 6 with the recipe's sizes; the single LoRA is the size of the experts."""
    num_accents, rank = RECIPES[recipe]
    assert systems.known_systems(ROOT / "egs" / recipe / "conf") == TABLE
    accents = accents_file(tmp_path, num_accents)
    confs = {}
    for name in TABLE:
        config, _ = load_system(recipe, name, accents)
        assert config.mode == "adapt" and config.sources[1] == str(ROOT / "conf" / "systems" / f"{name}.yaml")
        confs[name] = adapter_config_for(config, num_accents)
    assert confs["full_ft"] is None
    for name, (routing, gating, k, source_path) in METHOD.items():
        c = confs[name]
        # one expert per target domain (the source domain, line 0 of accents.txt, owns none), except the
        # ablation that gives the source domain an expert of its own
        experts = num_accents if name == "hdmole_no_source" else num_accents - 1
        assert (c.routing, c.gating, c.num_experts, c.rank) == (routing, gating, experts, rank), name
        assert (c.source_domain == 0) == source_path, name
        assert k is None or c.top_k == k
    lora, experts = confs["lora"], confs["hdmole"]
    assert lora.num_experts == 1 and lora.rank == (num_accents - 1) * rank and lora.scaling == experts.scaling
    oracle, _ = load_system(recipe, "hdmole_oracle", accents)
    assert oracle.model["oracle_routing"] is True and oracle.adapter.train_global_router is False
    plain, _ = load_system(recipe, "hdmole", accents)
    assert not plain.model.get("oracle_routing") and plain.adapter.train_global_router is False
    assert plain.model["global_router"].get("pool", "utterance") == "utterance"
    speaker, _ = load_system(recipe, "hdmole_spk", accents)
    assert speaker.model["global_router"]["pool"] == "speaker" and speaker.adapter.train_global_router is False
    online, _ = load_system(recipe, "hdmole_spk", accents, "adapter.speaker_first_k=3")
    assert online.model["global_router"]["pool_first_k"] == 3


def count_adapter_params(adapter_conf, shape) -> int:
    d_in, hidden, d_out = shape
    model = nn.Module()
    model.projector = nn.Module()
    model.projector.linear1, model.projector.linear2 = nn.Linear(d_in, hidden), nn.Linear(hidden, d_out)
    inject(model, adapter_conf, ["projector.linear1", "projector.linear2"])
    return sum(p.numel() for name, p in model.named_parameters() if "hdmole_" in name)


def test_every_comparison_system_config_is_valid_and_sized_as_documented(tmp_path):
    """egs/kespeech: the large model and bf16 in every system; full fine-tuning keeps the recipe's own
    learning rate (its conf/systems/full_ft.yaml); HDMoLE trains about a tenth of the large projector
    (README's parameter table)."""
    accents = accents_file(tmp_path, 9)
    confs = {}
    for name in TABLE:
        config, _ = load_system("kespeech", name, accents)
        assert config.dtype == "bfloat16" and config.data.cache_encoder is False
        assert config.model["encoder"]["name_or_path"] == "openai/whisper-large-v3"
        assert config.model["llm"] == {"name_or_path": "Qwen/Qwen2-7B", "dtype": "bfloat16"}
        assert config.optim.lr == (1e-4 if name == "full_ft" else 2e-4), name
        confs[name] = adapter_config_for(config, 9)
    assert all(c.dropout == 0.05 for c in confs.values() if c is not None)
    large = PROJECTORS["large"]
    full = large[0] * large[1] + large[1] + large[1] * large[2] + large[2]
    hdmole, single = count_adapter_params(confs["hdmole"], large), count_adapter_params(confs["lora"], large)
    assert full == 20_452_864 and hdmole == 1_869_826 and single == 1_802_240
    assert 0.09 < hdmole / full < 0.11 and abs(hdmole - single) / hdmole < 0.04


@pytest.fixture
def shared_conf(tmp_path, monkeypatch):
    """A copy of the top-level conf/, used by the loader instead of the real one."""
    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "conf", conf)
    monkeypatch.setattr(systems, "SHARED_CONF", conf)
    return conf


def test_a_new_system_is_one_top_level_file(shared_conf, tmp_path):
    (shared_conf / "systems" / "hdmole_sum.yaml").write_text(
        "adapter: {system: hdmole, config: {routing: hierarchical, combine: sum, gating: threshold}}\n")
    for recipe, (num_accents, rank) in RECIPES.items():
        assert systems.known_systems(ROOT / "egs" / recipe / "conf") == [*TABLE, "hdmole_sum"]
        accents = accents_file(tmp_path, num_accents)
        config, _ = load_system(recipe, "hdmole_sum", accents)
        c = adapter_config_for(config, num_accents)
        assert (c.combine, c.rank, c.num_experts) == ("sum", rank, num_accents - 1)


def test_error_in_a_system_file_names_that_file(shared_conf, tmp_path):
    bad = shared_conf / "systems" / "hdmole.yaml"
    bad.write_text("adapter: {system: hdmole, confg: {gating: threshold}}\n")
    with pytest.raises(ConfigError, match=re.escape(f"{bad}: unknown key adapter.confg")):
        load_system("mini_accent", "hdmole", accents_file(tmp_path, 5))


def test_unknown_system_lists_the_known_ones(tmp_path):
    with pytest.raises(ConfigError, match="unknown system 'hdmole_typo': .* known systems: full_ft lora"):
        load_system("mini_accent", "hdmole_typo", accents_file(tmp_path, 5))
    result = subprocess.run([sys.executable, "-m", "hdmole.bin.systems", "--recipe-conf", "conf", "lora bogus"],
                            cwd=ROOT / "egs" / "mini_accent", capture_output=True, text=True)
    assert result.returncode == 1 and "unknown system 'bogus'" in result.stderr and "Traceback" not in result.stderr
    result = subprocess.run([sys.executable, "-m", "hdmole.bin.systems", "--recipe-conf", "conf", "all"],
                            cwd=ROOT / "egs" / "mini_accent", capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.split() == TABLE


@pytest.mark.parametrize("override, message", [
    ("adapter_defaults.experts={rank: 4}", "adapter_defaults must map lora and mixture to adapter.config keys"),
    ("adapter_defaults.mixture.rnak=4", "adapter_defaults.mixture: unknown key rnak"),
    ("adapter.config.rnak=4", "unknown HDMoLE config key(s) ['rnak']"),
    ("adapter.config=[4]", "adapter.config must be a mapping ({key: value, ...}), got [4]"),
    ("adapter.config.top_k=9", "top_k=9 exceeds the number of experts E=4"),
    ("data.specaug={num_freq_mask: 2}", "data.specaug: unknown SpecAugment option(s) ['num_freq_mask']"),
    ("tokenizer={type: sentencepiece, path: x.model}", "tokenizer: tokenizer config"),
    ("model.projector={stak: 2}", "model: model config: projector: unknown config key(s) 'stak'"),
    ("model.llm.name_or_path=Qwen/Qwen2-0.5B", "model: llm needs exactly one of 'name_or_path'"),
    ("model.global_router.hiden=8", "model: model config: global_router: unknown config key(s) 'hiden'"),
])
def test_every_section_is_checked_when_the_config_is_loaded(tmp_path, override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_system("mini_accent", "mole_top2", accents_file(tmp_path, 5), override)


def test_adapter_config_is_checked_against_the_accents_at_load_time(tmp_path):
    with pytest.raises(ConfigError, match="top_k=2 exceeds the number of experts E=1"):
        load_system("mini_accent", "mole_top2", accents_file(tmp_path, 2))  # E = one expert per accent but the source
    with pytest.raises(ConfigError, match=r"data\.accents: .*nowhere\.txt: accent list not found"):
        load_system("mini_accent", "hdmole", tmp_path / "nowhere.txt")
    with pytest.raises(ConfigError, match="full_ft trains 'trainable' itself and injects nothing"):
        load_system("mini_accent", "full_ft", accents_file(tmp_path, 5), "adapter.config={rank: 4}")


def test_resolved_config_is_a_plain_config_without_the_composition_keys(tmp_path):
    config, resolved = load_system("mini_accent", "lora", accents_file(tmp_path, 5))
    assert "system" not in resolved and "adapter_defaults" not in resolved and "sources" not in resolved
    assert resolved["adapter"]["config"] == {"rank": 12, "alpha": 24}
    # The resolved config trains the same system again as a plain config (what an exp dir keeps).
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(resolved, allow_unicode=True, sort_keys=False))
    again, resolved_again = load_train_config(path)
    assert resolved_again == resolved and again.sources == (str(path.resolve()),)


def test_mini_accent_trains_each_system_at_its_dev_chosen_learning_rate(tmp_path):
    """egs/mini_accent: every system's lr is the one its grid chose on dev_accent (the recipe's
    conf/systems/<system>.yaml, applied after the top-level method; README.md, "Development measurements"),
    and an --override still wins over it (local/lr_grid.sh trains every system at one lr that way)."""
    chosen = {"full_ft": 2e-3, "lora": 1.6e-2, "mole_top1": 3.2e-2, "mole_top2": 4e-3, "hdmole_no_global": 4e-3,
              "hdmole_global_only": 1.6e-2, "hdmole_dense": 1.6e-2, "hdmole_no_threshold": 1.6e-2,
              "hdmole_no_source": 1.6e-2}
    accents = accents_file(tmp_path, 5)
    for name in TABLE:
        config, _ = load_system("mini_accent", name, accents)
        assert config.optim.lr == chosen.get(name, 8e-3), name
        assert config.sources[-1] == str(ROOT / "egs" / "mini_accent" / "conf" / "systems" / f"{name}.yaml")
        assert config.optim.max_steps == 600 and config.optim.warmup_steps == 50  # the rest of optim is shared
    config, _ = load_system("mini_accent", "hdmole", accents, "optim.lr=1e-3")
    assert config.optim.lr == 1e-3
