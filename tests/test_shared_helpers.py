"""The helpers every package shares (one home each): atomic writes, the Kaldi-table writer, and the
partial state-dict load with its unexpected-tensor check."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hdmole.data import DataError, read_kaldi_table, write_kaldi_table
from hdmole.files import atomic_output, atomic_write_text
from hdmole.models.state import load_partial_state
from hdmole.nn import HDMoLEConfig, inject


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "result.json"
    atomic_write_text(path, "old\n")
    with pytest.raises(RuntimeError), atomic_output(path) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("killed")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no temporary file left behind


def test_kaldi_table_is_written_in_byte_order_and_reads_back(tmp_path):
    path = tmp_path / "text"
    rows = [("b-2", "乙"), ("B-1", "甲"), ("a-3", "丙"), ("é-4", "丁")]
    write_kaldi_table(path, iter(rows))
    assert [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines()] == ["B-1", "a-3", "b-2", "é-4"]
    assert read_kaldi_table(path).entries == dict(rows)


@pytest.mark.parametrize("rows, message", [
    ([("u1", "a"), ("u1", "b")], "key 'u1' occurs twice"),
    ([("u 1", "a")], "key 'u 1' is empty or contains whitespace"),
    ([("u1", "a\nb")], "the value of 'u1' contains a line break"),
])
def test_kaldi_table_that_could_not_be_read_back_is_refused(tmp_path, rows, message):
    with pytest.raises(DataError, match=message):
        write_kaldi_table(tmp_path / "text", rows)
    assert not (tmp_path / "text").exists()


def _model() -> nn.Module:
    model = nn.Sequential()
    model.proj = nn.Linear(4, 3)
    return model


def test_partial_state_loads_and_a_foreign_tensor_is_an_error_naming_the_source():
    model, trained = _model(), _model()
    load_partial_state(model, {"proj.weight": trained.proj.weight.detach()}, "checkpoint a.pt", fix="unused")
    assert torch.equal(model.proj.weight, trained.proj.weight)  # a partial state is fine
    with pytest.raises(ValueError, match=r"checkpoint b.pt holds tensors this model does not have, e\.g\. "
                                         r"\['other.weight'\]: use the right one"):
        load_partial_state(model, {"other.weight": torch.zeros(1)}, "checkpoint b.pt", fix="use the right one")


def test_adapter_tensors_the_model_lacks_get_their_own_message():
    adapted = _model()
    inject(adapted, HDMoLEConfig(rank=2), ["proj"])
    state = {k: v for k, v in adapted.state_dict().items() if "hdmole_" in k}
    with pytest.raises(ValueError, match="c.pt holds HDMoLE adapter tensors .* inject them first"):
        load_partial_state(_model(), state, "c.pt", fix="unused", adapter_fix="but nothing says how to: inject them first")
