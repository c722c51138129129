"""Training configs: overrides, number coercion, and errors that name the key."""
import re

import pytest
import yaml

from hdmole.train.config import ConfigError, load_train_config


@pytest.fixture
def config(tmp_path):
    (tmp_path / "model.yaml").write_text(yaml.safe_dump({"encoder": {"type": "conformer"}, "llm": {"config": {}}}))
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({"mode": "lm", "model": "model.yaml", "data": {"train": "lm.txt"}}))
    return path


def test_overrides_and_number_coercion(config):
    c, resolved = load_train_config(config, ["optim.lr=5e-3", "optim.max_steps=10", "optim.warmup_steps=2.0",
                                             "model.projector={stack: 4}"])
    assert c.optim.lr == 0.005 and isinstance(c.optim.lr, float)  # YAML reads 5e-3 as a string
    assert c.optim.max_steps == 10 and c.optim.warmup_steps == 2 and isinstance(c.optim.warmup_steps, int)
    assert resolved["model"]["encoder"] == {"type": "conformer"}  # the model YAML is inlined
    assert resolved["model"]["projector"] == {"stack": 4}  # model.* overrides apply after inlining


@pytest.mark.parametrize("override, message", [
    ("optim.lr=fast", "optim.lr must be a number, got 'fast'"),
    ("optim.max_steps=2.5", "optim.max_steps must be a whole number"),
    ("optim.lrr=1", "unknown key optim.lrr"),
    ("mode=train", "mode must be one of lm, base, router, adapt"),
    ("checkpoint.every_steps", "must look like key.sub=value"),
    ("data.lm_prefix.homophone_probability=0.5", "unknown key data.lm_prefix.homophone_probability; valid keys of "
     "data.lm_prefix: canonical_prob, delete_prob, homophone_prob, lexicon, repeat_prob, substitute_prob"),
    ("data.lm_prefix.repeat_prob=1.5", "data.lm_prefix.repeat_prob must be a probability in [0, 1], got 1.5"),
])
def test_bad_values_name_the_key(config, override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_train_config(config, [override])


def test_lm_prefix_section(config):
    c, _ = load_train_config(config, ["data.lm_prefix={lexicon: lexicon.txt, homophone_prob: 1}"])
    assert c.data.lm_prefix.lexicon == "lexicon.txt"
    assert c.data.lm_prefix.homophone_prob == 1.0 and isinstance(c.data.lm_prefix.homophone_prob, float)
    assert c.data.lm_prefix.repeat_prob == 0.4  # defaults for what the file leaves out
    with pytest.raises(ConfigError, match="data.lm_prefix is the LM stage's listening task; mode 'base'"):
        load_train_config(config, ["mode=base", "trainable=[projector]", "data.accents=a.txt",
                                   "data.lm_prefix={repeat_prob: 0.3}"])


def test_missing_model_file(config, tmp_path):
    with pytest.raises(ConfigError, match="model config nowhere.yaml does not exist"):
        load_train_config(config, ["model=nowhere.yaml"])


def test_global_batches_set_accum_grad_from_the_number_of_processes(config):
    from hdmole.train.config import accum_grad_for

    c, _ = load_train_config(config, ["optim.global_batches=8"])
    assert [accum_grad_for(c.optim, world) for world in (1, 2, 8, 16)] == [8, 4, 1, 1]
    assert accum_grad_for(c.optim, 3) == 3  # 9 batches: the nearest global batch (the trainer logs it)
    plain, _ = load_train_config(config, ["optim.accum_grad=3"])
    assert [accum_grad_for(plain.optim, world) for world in (1, 8)] == [3, 3]  # no global batch: as given
    with pytest.raises(ConfigError, match="remove optim.accum_grad"):
        load_train_config(config, ["optim.global_batches=8", "optim.accum_grad=2"])
    with pytest.raises(ConfigError, match="optim.global_batches must be >= 1"):
        load_train_config(config, ["optim.global_batches=0"])
    assert load_train_config(config, ["dtype=float16"])[0].dtype == "float16"
    with pytest.raises(ConfigError, match="dtype must be float32, bfloat16 or float16"):
        load_train_config(config, ["dtype=fp16"])
