"""Training configs: overrides, number coercion, and errors that name the key."""
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
])
def test_bad_values_name_the_key(config, override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        load_train_config(config, [override])


def test_missing_model_file(config, tmp_path):
    with pytest.raises(ConfigError, match="model config nowhere.yaml does not exist"):
        load_train_config(config, ["model=nowhere.yaml"])
