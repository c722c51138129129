"""hdmole.bin.routing_stats --if-routed: what the recipes' report stage calls for every system, so a
system without a mixture of experts must be skipped with a message, before any model is built."""

from __future__ import annotations

import torch

from hdmole.bin import routing_stats


def test_routing_stats_if_routed_skips_a_system_without_experts(tmp_path, capsys):
    lora = tmp_path / "lora.pt"
    torch.save({"model": {}, "adapter_config": {"rank": 15, "num_domains": 1, "experts_per_domain": 1,
                                                "routing": "none", "gating": "dense"},
                "target_modules": ["projector.linear1"]}, lora)
    mixture = tmp_path / "mole.pt"
    torch.save({"model": {}, "adapter_config": {"rank": 3, "num_domains": 5, "routing": "local", "gating": "dense"},
                "target_modules": ["projector.linear1"]}, mixture)
    full_ft = tmp_path / "full_ft.pt"
    torch.save({"model": {"projector.linear1.weight": torch.zeros(1)}}, full_ft)
    assert not routing_stats.has_experts(lora) and not routing_stats.has_experts(full_ft)
    assert routing_stats.has_experts(mixture)
    out = tmp_path / "routing.json"
    code = routing_stats.main(["--if-routed", "--config", "unused.yaml", "--checkpoint", "base.pt", "--checkpoint",
                               str(lora), "--data", "unused", "--accents", "unused", "--out", str(out)])
    assert code == 0 and not out.exists()
    assert "has no mixture of experts" in capsys.readouterr().out
