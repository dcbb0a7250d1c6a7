"""The modules work under torch.compile: the custom ops' fake kernels and autograd
registrations carry forward and backward through a traced graph.

Dynamo refuses to trace any nn.LSTM (subclasses included) unless
``torch._dynamo.config.allow_rnn`` is set: by default it breaks the graph at the module and
runs it eagerly (still correct); with allow_rnn it traces our forward into one graph."""

import pytest
import torch

import fastrnn


@pytest.mark.parametrize("proj", [0, 2])
@torch._dynamo.config.patch(allow_rnn=True)
def test_lstm_compiles_to_one_graph_matching_eager_forward_and_backward(proj):
    torch._dynamo.reset()
    torch.manual_seed(0)
    lstm = fastrnn.LSTM(3, 5, num_layers=2, proj_size=proj).double()
    compiled = torch.compile(lstm, backend="aot_eager", fullgraph=True)
    x = torch.randn(6, 4, 3, dtype=torch.float64, requires_grad=True)
    resets = torch.zeros(6, 4, dtype=torch.bool)
    resets[3, 1] = True
    eager_y, (eager_h, _) = lstm(x, resets=resets)
    (eager_grad,) = torch.autograd.grad(eager_y.sum() + eager_h.sum(), x)
    y, (h, _) = compiled(x, resets=resets)
    (grad,) = torch.autograd.grad(y.sum() + h.sum(), x)
    torch.testing.assert_close(y, eager_y, atol=1e-12, rtol=0)
    torch.testing.assert_close(grad, eager_grad, atol=1e-12, rtol=0)


def test_compiled_no_grad_step_matches_eager():
    torch._dynamo.reset()
    torch.manual_seed(0)
    cell = fastrnn.LSTMCell(3, 5)
    compiled = torch.compile(cell, backend="aot_eager", fullgraph=True)
    x, hx = torch.randn(2, 3), (torch.randn(2, 5), torch.randn(2, 5))
    with torch.no_grad():
        for a, b in zip(compiled(x, hx), cell(x, hx)):
            torch.testing.assert_close(a, b)


def _model_around_an_lstm():
    """A fresh Dynamo, and a small model with a fastrnn.LSTM inside: (the LSTM, the model)."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    lstm = fastrnn.LSTM(3, 4)
    head = torch.nn.Linear(4, 2)

    def forward(x):
        return head(torch.relu(lstm(x)[0])).sum(-1)

    return lstm, forward


def _traced_targets_of(graph) -> set[str]:
    return {str(node.target) for node in graph.graph.nodes}


def _traced_targets(counter) -> set[str]:
    return set().union(*map(_traced_targets_of, counter.graphs))


@torch._dynamo.config.patch(allow_rnn=True)
def test_inductor_compiles_a_model_around_the_lstm_with_the_op_in_its_graph():
    """With allow_rnn the recurrence op itself is in the graph Inductor compiles (forward and,
    through its registered autograd, backward), and the result matches eager."""
    from torch._dynamo.testing import CompileCounterWithBackend

    lstm, forward = _model_around_an_lstm()
    counter = CompileCounterWithBackend("inductor")
    compiled = torch.compile(forward, backend=counter, fullgraph=True)
    x = torch.randn(5, 2, 3, requires_grad=True)
    got = compiled(x)
    (grad,) = torch.autograd.grad(got.sum(), x)
    want = forward(x)
    (want_grad,) = torch.autograd.grad(want.sum(), x)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(grad, want_grad)
    assert counter.frame_count == 1
    assert "fastrnn.lstm_recurrence.default" in _traced_targets(counter)
    assert lstm.last_backend == "cpp"


@torch._dynamo.config.patch(allow_rnn=True)
def test_a_compiled_no_grad_sequence_records_the_op_not_the_eager_fused_forward():
    """Eager no-grad calls fuse the input projection into the cpp kernels; a traced one must
    record the recurrence op (the fused forward has no fake kernel), and match eager."""
    from torch._dynamo.testing import CompileCounterWithBackend

    lstm, forward = _model_around_an_lstm()
    counter = CompileCounterWithBackend("eager")
    compiled = torch.compile(forward, backend=counter, fullgraph=True)
    x = torch.randn(5, 4, 3)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), forward(x))
    assert "fastrnn.lstm_recurrence.default" in _traced_targets(counter)


def test_default_dynamo_settings_still_trace_the_op_below_the_module_frame():
    """Without allow_rnn Dynamo will not trace the module's own frame (a graph break at the
    module: the model around it is not in the op's graph), but it compiles the frames that
    forward calls (run_layers): the recurrence op is still traced, and the result matches."""
    from torch._dynamo.testing import CompileCounterWithBackend

    lstm, forward = _model_around_an_lstm()
    counter = CompileCounterWithBackend("eager")
    compiled = torch.compile(forward, backend=counter)
    x = torch.randn(5, 2, 3)
    torch.testing.assert_close(compiled(x), forward(x))
    op_graphs = [g for g in counter.graphs if "fastrnn.lstm_recurrence.default" in _traced_targets_of(g)]
    assert op_graphs
    assert all("<built-in method relu of type object" not in " ".join(_traced_targets_of(g)) for g in op_graphs)
    assert lstm.last_backend == "cpp"


@pytest.mark.slow
def test_compile_before_any_eager_call_traces_one_graph():
    """The first call of a fresh process may be a compiled one: choosing (and importing) the
    backend must not be traced."""
    import subprocess
    import sys

    script = (
        "import torch, fastrnn\n"
        "cell = fastrnn.LSTMCell(3, 5)\n"
        "compiled = torch.compile(cell, backend='aot_eager', fullgraph=True)\n"
        "x, hx = torch.randn(2, 3), (torch.randn(2, 5), torch.randn(2, 5))\n"
        "h, c = compiled(x, hx)\n"
        "torch.testing.assert_close(h, cell(x, hx)[0])\n"
        "print(cell.last_backend)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "cpp"


def test_backend_resolver_is_marked_constant_like_torchs_decorator():
    """The backend resolver is marked constant as torchs decorator would mark it."""
    # fastrnn sets the marker itself (torch's decorator imports torch._dynamo, seconds on every
    # `import fastrnn`); if torch ever changes what the decorator does, this fails.
    from fastrnn import backends

    def probe():
        return None

    marked = torch.compiler.assume_constant_result(probe)
    assert marked is probe and probe.__dict__ == {"_dynamo_marked_constant": True}
    assert backends._resolve_name._dynamo_marked_constant is True


@pytest.mark.slow
def test_importing_fastrnn_and_running_a_module_does_not_import_dynamo():
    import subprocess
    import sys

    code = ("import sys, torch, fastrnn; m = fastrnn.LSTM(4, 8); m(torch.randn(3, 2, 4)); "
            "fastrnn.LSTMCell(4, 8)(torch.randn(2, 4)); "
            "assert 'torch._dynamo' not in sys.modules, 'torch._dynamo was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
