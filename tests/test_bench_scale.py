"""hdmole.bin.bench_scale (the real-scale GPU benchmark of egs/kespeech) on CPU with the tiny shapes: the
same code path as on a GPU, so a broken benchmark is found here and not in the first minutes of a GPU lease."""

from __future__ import annotations

import json

from hdmole.bin import bench_scale


def test_bench_scale_times_every_stage_with_the_recipe_trainables(tmp_path):
    out = tmp_path / "bench.json"
    assert bench_scale.main(["--device", "cpu", "--models", "tiny", "--batch", "2", "--seconds", "1", "--warmup", "0",
                             "--steps", "1", "--decode-repeats", "0", "--out", str(out)]) == 0
    results = {r["what"]: r for r in json.loads(out.read_text())["results"]}
    assert list(results) == ["train base", "train router", "train adapt", "decode beam 1", "decode beam 4"]
    base, router, adapt = results["train base"], results["train router"], results["train adapt"]
    conf = bench_scale.model_conf("tiny")
    d_in, hidden = conf["encoder"]["config"]["d_model"] * conf["projector"]["stack"], conf["projector"]["hidden"]
    d_out = conf["llm"]["config"]["hidden_size"]
    # base (conf/base.yaml): the projector alone; router: the global router alone (a small fraction); adapt: the
    # hdmole system's adapters on both projector linears (E = 8 experts of rank 16) and their routers
    assert base["trainable_params"] == d_in * hidden + hidden + hidden * d_out + d_out
    assert 0 < router["trainable_params"] < base["trainable_params"] / 10
    assert adapt["trainable_params"] > 8 * 16 * (d_in + hidden + hidden + d_out)
    assert all(r["steps_per_s"] > 0 for r in (base, router, adapt))
    # the random model runs every hypothesis to decoding's length limit: 4 characters per second of audio (1 s
    # each here) + the 2 tokens hdmole.decode.search.token_limits always allows
    assert results["decode beam 1"]["tokens"] == results["decode beam 4"]["tokens"] == 2 * (4 + 2)
