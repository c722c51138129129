"""egs/mini_accent/local/lr_table.py: the learning-rate grid of stage 5 read back from exp dirs (each system's lr
from its config.yaml), the lowest dev loss chosen, and an optimum at the grid's edge flagged for extension."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("lr_table", ROOT / "egs" / "mini_accent" / "local" / "lr_table.py")
lr_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lr_table)


def trained(exp: Path, system: str, lr: float, best: float, mode: str = "adapt") -> None:
    folder = exp / system
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"mode": mode, "optim": {"lr": lr}}))
    (folder / "train_summary.json").write_text(json.dumps({"steps": 600, "best": best}))


def test_grid_read_from_configs_chosen_and_edges_flagged(tmp_path):
    exp, exp4 = tmp_path / "exp", tmp_path / "exp_lr4e-3"
    trained(exp, "lora", 2e-3, 1.26)
    trained(exp4, "lora", 4e-3, 1.22)          # best at the largest lr measured: extend
    trained(exp, "full_ft", 2e-3, 1.14)
    trained(exp4, "full_ft", 4e-3, 1.15)
    trained(tmp_path / "exp_lr1e-3", "full_ft", 1e-3, 1.16)  # 2e-3 beats both neighbours: bracketed
    trained(exp, "lora_seed2", 2e-3, 1.0)      # other seeds are not part of the procedure
    trained(exp, "base", 2e-3, 0.5, mode="base")  # nor are other stages
    table = lr_table.best_losses([exp, exp4, tmp_path / "exp_lr1e-3"])
    assert table == {"lora": {2e-3: 1.26, 4e-3: 1.22}, "full_ft": {2e-3: 1.14, 4e-3: 1.15, 1e-3: 1.16}}
    rows = {line.split(" | ")[0].strip("| "): line for line in lr_table.markdown(table).splitlines()[2:]}
    assert rows["full_ft"].endswith("| **1.1400** | 1.1500 | 0.002 | yes |")
    assert rows["lora"].endswith("| 1.2600 | **1.2200** | 0.004 | NO: extend |")
    assert list(rows) == ["full_ft", "lora"]  # the results table's order
