"""Honest parameter accounting: a system's count in the results table includes the global router it routes
by (learned in router pre-training with the accent labels); the oracle and local-only systems do not."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from models_fixtures import ToyTokenizer, tiny_conf
from report_fixtures import results_table

from hdmole.models.build import build_model
from hdmole.report.table import load_row, markdown_table
from hdmole.train.config import AdapterConfig, TrainConfig
from hdmole.train.setup import prepare_model

ROUTING = {"routing": "hierarchical", "combine": "product", "gating": "threshold", "rank": 2}


def setup_info(adapter: AdapterConfig, oracle: bool = False) -> tuple[dict, int]:
    torch.manual_seed(0)
    conf = tiny_conf(router=True)
    conf["oracle_routing"] = oracle
    model = build_model(conf, ToyTokenizer(), num_accents=3)
    router = sum(p.numel() for p in model.global_router.parameters())
    return prepare_model(model, TrainConfig(mode="adapt", adapter=adapter), num_accents=3), router


@pytest.mark.parametrize("adapter, oracle, uses", [
    (AdapterConfig(system="hdmole", config=ROUTING, train_global_router=False), False, True),
    (AdapterConfig(system="hdmole", config={**ROUTING, "routing": "global"}, train_global_router=False), False, True),
    (AdapterConfig(system="hdmole", config=ROUTING, train_global_router=False), True, False),  # oracle
    (AdapterConfig(system="hdmole", config={**ROUTING, "routing": "local"}), False, False),  # local only
    (AdapterConfig(system="lora", config={"rank": 4}), False, False),
])
def test_the_training_summary_says_whether_the_system_routes_by_the_stage4_router(adapter, oracle, uses):
    info, _ = setup_info(adapter, oracle)
    assert info["uses_stage4_router"] is uses
    assert info["router_params_retrained"] == 0


def test_a_router_retrained_in_the_adaptation_is_counted_once():
    info, router = setup_info(AdapterConfig(system="hdmole", config=ROUTING, train_global_router=True))
    assert info["uses_stage4_router"] and info["router_params_retrained"] == router > 0
    frozen, _ = setup_info(AdapterConfig(system="hdmole", config=ROUTING, train_global_router=False))
    assert info["trainable_params"] == frozen["trainable_params"] + router


def test_the_table_counts_the_global_router_of_the_systems_that_route_by_it(tmp_path):
    summaries = {
        "full_ft": {"mode": "adapt", "trainable_params": 4000, "full_ft_params": 4000, "uses_stage4_router": False},
        "hdmole": {"mode": "adapt", "trainable_params": 300, "full_ft_params": 4000, "uses_stage4_router": True,
                   "router_params_retrained": 0},
        "hdmole_retrained": {"mode": "adapt", "trainable_params": 1300, "full_ft_params": 4000,
                             "uses_stage4_router": True, "router_params_retrained": 1000},
        "hdmole_oracle": {"mode": "adapt", "trainable_params": 300, "full_ft_params": 4000, "uses_stage4_router": False},
        "hdmole_no_global": {"mode": "adapt", "trainable_params": 300, "full_ft_params": 4000,
                             "uses_stage4_router": False},
        # written before uses_stage4_router existed: decided from its adapter config and config.yaml
        "legacy": {"mode": "adapt", "trainable_params": 300, "full_ft_params": 4000,
                   "adapter_config": {"num_domains": 3, "routing": "hierarchical", "gating": "threshold"}},
        "legacy_oracle": {"mode": "adapt", "trainable_params": 300, "full_ft_params": 4000,
                          "adapter_config": {"num_domains": 3, "routing": "hierarchical", "gating": "threshold"}},
    }
    for name, summary in summaries.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "train_summary.json").write_text(json.dumps(summary))
    (tmp_path / "legacy_oracle" / "config.yaml").write_text(yaml.safe_dump({"model": {"oracle_routing": True}}))
    rows = [load_row(tmp_path / name, name, ["test"], router_params=1000) for name in summaries]
    table = results_table(markdown_table(rows, ["test"], "test"))
    expected = {"full_ft": (0, 4000), "hdmole": (1000, 1300), "hdmole_retrained": (1000, 1300),
                "hdmole_oracle": (0, 300), "hdmole_no_global": (0, 300), "legacy": (1000, 1300),
                "legacy_oracle": (0, 300)}
    for name, (router, total) in expected.items():
        row = table[name]
        assert row["stage-5 params"] == f"{summaries[name]['trainable_params']:,}", name
        assert (row["router params"], row["total learned"]) == (f"{router:,}", f"{total:,}"), name
        assert row["% of full FT (total)"] == f"{100 * total / 4000:.1f}", name
    # the router's size unknown (no router exp dir): shown as unknown, not left out
    unknown = results_table(markdown_table([load_row(tmp_path / "hdmole", "hdmole", ["test"])], ["test"], "test"))
    assert unknown["hdmole"]["router params"] == "?" and unknown["hdmole"]["% of full FT (total)"] == "–"
