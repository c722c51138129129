"""egs/TEMPLATE/launcher.sh: the training launcher hdmole.sh builds from --ngpu, --num-nodes, --node-rank,
--master-addr/--master-port and --rdzv-endpoint (torchrun's arguments, as ESPnet and WeNet document them)."""
import subprocess
from pathlib import Path

import pytest

LAUNCHER = Path(__file__).resolve().parent.parent / "egs" / "TEMPLATE" / "launcher.sh"
DEFAULTS = {"ngpu": "0", "num_nodes": "1", "node_rank": "0", "master_addr": "", "master_port": "29500",
            "rdzv_endpoint": "", "rdzv_id": ""}


def launcher(exp="exp/model_large/base", **options) -> subprocess.CompletedProcess:
    values = {**DEFAULTS, **{k: str(v) for k, v in options.items()}}
    script = "".join(f"{k}='{v}'\n" for k, v in values.items()) + f". '{LAUNCHER}'\ntrain_launcher '{exp}'\n"
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True)


def words(**options) -> str:
    result = launcher(**options)
    assert result.returncode == 0, result.stderr
    return " ".join(result.stdout.splitlines())


def test_one_node():
    assert words() == "python -m hdmole.bin.train"
    assert words(ngpu=4) == "torchrun --standalone --nproc_per_node 4 -m hdmole.bin.train"


def test_several_nodes_static_rendezvous():
    assert words(ngpu=8, num_nodes=2, node_rank=1, master_addr="gpu01", master_port=29600) == (
        "torchrun --nnodes 2 --nproc_per_node 8 --node_rank 1 --master_addr gpu01 --master_port 29600 "
        "-m hdmole.bin.train")
    # CPU nodes: one process each
    assert words(num_nodes=3, master_addr="10.0.0.1").startswith("torchrun --nnodes 3 --nproc_per_node 1 --node_rank 0 ")


def test_several_nodes_c10d_rendezvous():
    assert words(ngpu=8, num_nodes=4, rdzv_endpoint="gpu01:29400") == (
        "torchrun --nnodes 4 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint gpu01:29400 "
        "--rdzv_id exp_model_large_base -m hdmole.bin.train")
    assert "--rdzv_id job42 " in words(ngpu=1, num_nodes=2, rdzv_endpoint="h:1", rdzv_id="job42")


@pytest.mark.parametrize("options, message", [
    ({"num_nodes": 2}, "needs --master-addr HOST"),
    ({"num_nodes": 2, "master_addr": "h", "node_rank": 2}, "--node-rank must be 0..1"),
    ({"num_nodes": 2, "master_addr": "h", "rdzv_endpoint": "h:1"}, "not both"),
    ({"num_nodes": 2, "rdzv_endpoint": "gpu01"}, "needs a port"),
    ({"node_rank": 1}, "--node-rank 1 needs --num-nodes > 1"),
])
def test_bad_options_name_the_fix(options, message):
    result = launcher(**options)
    assert result.returncode == 1 and message in result.stderr and not result.stdout
