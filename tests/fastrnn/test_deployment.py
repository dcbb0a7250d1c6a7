"""torch.jit.trace, torch.jit.script, torch.onnx.export and torch.export on fastrnn's modules.

Tracing and ONNX export record torch's standard LSTM op (portable: it runs and exports without
fastrnn); torch.export records fastrnn's custom op; torch.jit.script compiles torch's own
module where this torch can, and otherwise says what to use instead.
"""

import warnings

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
from onnx.reference import ReferenceEvaluator

import fastrnn

VARIANTS = {"plain": dict(), "stacked bidirectional": dict(num_layers=2, bidirectional=True),
            "projection": dict(proj_size=3), "batch_first": dict(batch_first=True)}


def _pair(cls_ours, cls_theirs, *args, **kwargs):
    torch.manual_seed(0)
    ours = cls_ours(*args, **kwargs)
    theirs = cls_theirs(*args, **kwargs)
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


@pytest.mark.parametrize("variant", VARIANTS)
def test_jit_trace_records_a_correct_standard_graph(variant):
    ours, theirs = _pair(fastrnn.LSTM, nn.LSTM, 4, 5, **VARIANTS[variant])
    x = torch.randn(3, 2, 4)
    traced = torch.jit.trace(ours, (x,))  # its own check compares two runs: no garbage
    assert "aten::lstm" in str(traced.graph) and "fastrnn::" not in str(traced.graph)
    fresh = torch.randn(6, 2, 4)
    for got, want in zip(traced(fresh)[1], theirs(fresh)[1]):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(traced(fresh)[0], theirs(fresh)[0])


def _ops(graph) -> list[str]:
    return [node.kind() for node in graph.nodes()]


def test_jit_trace_of_a_cell_records_torchs_cell():
    ours, theirs = _pair(fastrnn.LSTMCell, nn.LSTMCell, 4, 5)
    x = torch.randn(2, 4)
    traced = torch.jit.trace(ours, (x,))
    assert _ops(traced.graph) == _ops(torch.jit.trace(theirs, (x,)).graph)
    torch.testing.assert_close(traced(x)[0], theirs(x)[0])


def test_tracing_with_resets_is_refused_with_the_alternative():
    lstm = fastrnn.LSTM(4, 5)
    resets = torch.zeros(3, 2, dtype=torch.bool)
    with pytest.raises(RuntimeError, match="resets: .*torch.export"):
        torch.jit.trace(lambda x: lstm(x, resets=resets)[0], (torch.randn(3, 2, 4),))


def test_jit_script_does_what_torch_can_or_says_what_works():
    ours, theirs = _pair(fastrnn.LSTMCell, nn.LSTMCell, 4, 5)
    x = torch.randn(2, 4)
    torch.testing.assert_close(torch.jit.script(ours)(x)[0], theirs(x)[0])  # torch scripts LSTMCell
    lstm, reference = _pair(fastrnn.LSTM, nn.LSTM, 4, 5)
    try:
        scripted_reference = torch.jit.script(reference)
        scripted_reference(torch.randn(3, 2, 4))
        torch_scripts_lstm = True
    except Exception:  # noqa: BLE001 - torch 2.13 scripts nn.LSTM without a forward
        torch_scripts_lstm = False
    if torch_scripts_lstm:
        x = torch.randn(3, 2, 4)
        torch.testing.assert_close(torch.jit.script(lstm)(x)[0], reference(x)[0])
    else:
        with pytest.raises(RuntimeError, match="cannot script nn.LSTM either. Use torch.jit.trace"):
            torch.jit.script(lstm)


def _onnx_outputs(path, x):
    session = ReferenceEvaluator(onnx.load(path))
    return session.run(None, {session.input_names[0]: x.numpy()})


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo exporter", "TorchScript exporter"])
@pytest.mark.parametrize("variant", ["plain", "stacked bidirectional", "batch_first"])
def test_onnx_export_writes_a_standard_lstm_that_computes_the_same(tmp_path, dynamo, variant):
    ours, theirs = _pair(fastrnn.LSTM, nn.LSTM, 4, 5, **VARIANTS[variant])
    x = torch.randn(3, 2, 4)
    path = str(tmp_path / "lstm.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(ours, (x,), path, dynamo=dynamo)
    assert "LSTM" in {node.op_type for node in onnx.load(path).graph.node}
    got = _onnx_outputs(path, x)
    want = theirs(x)
    np.testing.assert_allclose(got[0], want[0].detach().numpy(), atol=1e-5, rtol=1e-5)


def test_torch_export_records_fastrnn_op_and_runs():
    ours, theirs = _pair(fastrnn.LSTM, nn.LSTM, 4, 5, num_layers=2)
    x = torch.randn(3, 2, 4)
    program = torch.export.export(ours, (x,))
    assert "fastrnn" in str(program.graph)
    torch.testing.assert_close(program.module()(x)[0], theirs(x)[0])
