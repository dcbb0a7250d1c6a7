"""The cpp backend matches the reference backend: outputs and every gradient, through the
modules, over a randomized grid of every nn.LSTM argument, for every CPU instruction set."""

import pytest
import torch

import fastrnn
from lstm_cases import TOLERANCES, make_inputs, random_cases
from lstm_compare import assert_same_run

CASES = random_cases(40, seed=2)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_cpp_lstm_matches_reference(case, dtype):
    # Module composition over the default instruction set; the recurrence test below covers
    # every instruction set's kernels.
    torch.manual_seed(0)
    reference = fastrnn.LSTM(**case.module_kwargs(), backend="reference").to(dtype)
    cpp = fastrnn.LSTM(**case.module_kwargs(), backend="cpp").to(dtype)
    cpp.load_state_dict(reference.state_dict())
    x, hx = make_inputs(case, dtype, torch.Generator().manual_seed(3))
    assert_same_run(reference, cpp, x, hx, TOLERANCES[dtype])
    assert cpp.last_backend == "cpp"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape", [(1, 1, 1, 0), (4, 3, 7, 0), (6, 13, 33, 5), (5, 40, 64, 0), (3, 20, 17, 40)],
                         ids=lambda s: "T{}B{}H{}P{}".format(*s))
@pytest.mark.parametrize("with_resets", [False, True], ids=["", "resets"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["", "lengths"])
def test_cpp_recurrence_matches_reference(shape, dtype, with_resets, with_lengths, cpu_isa):
    """The raw recurrence op, with resets and per-row lengths (which nn.LSTM cannot express)."""
    from fastrnn import cpp_backend, reference

    steps, batch, hidden, proj = shape
    out = proj or hidden
    g = torch.Generator().manual_seed(4)
    tensors = [
        torch.randn(steps, batch, 4 * hidden, dtype=dtype, generator=g),
        torch.randn(4 * hidden, out, dtype=dtype, generator=g) * 0.3,
        torch.randn(proj, hidden, dtype=dtype, generator=g) * 0.3 if proj else None,
        torch.randn(batch, out, dtype=dtype, generator=g),
        torch.randn(batch, hidden, dtype=dtype, generator=g),
    ]
    resets = torch.rand(steps, batch, generator=g) < 0.3 if with_resets else None
    lengths = torch.randint(1, steps + 1, (batch,), generator=g) if with_lengths else None
    ref_in = [None if t is None else t.clone().requires_grad_() for t in tensors]
    cpp_in = [None if t is None else t.clone().requires_grad_() for t in tensors]
    expected = reference.lstm_recurrence(*ref_in, resets, lengths)
    actual = cpp_backend.BACKEND.recurrence(*cpp_in, resets, lengths)
    for name, a, e in zip(["y", "h_n", "c_n"], actual, expected):
        torch.testing.assert_close(a, e, **TOLERANCES[dtype], msg=lambda m: f"{name}: {m}")
    upstream = [torch.randn(t.shape, dtype=dtype, generator=g) for t in expected]
    names = ["xproj", "w_hh", "w_hr", "h0", "c0"]
    wrt = [(n, r, c) for n, r, c in zip(names, ref_in, cpp_in) if r is not None]
    expected_grads = torch.autograd.grad(expected, [r for _, r, _ in wrt], upstream)
    actual_grads = torch.autograd.grad(actual, [c for _, _, c in wrt], upstream)
    for (name, _, _), a, e in zip(wrt, actual_grads, expected_grads):
        torch.testing.assert_close(a, e, **TOLERANCES[dtype], msg=lambda m: f"grad of {name}: {m}")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("proj", [0, 3])
@pytest.mark.parametrize("packed", [True, False], ids=["packed", "large weights"])
def test_cpp_no_grad_step_matches_reference(dtype, proj, packed, cpu_isa, monkeypatch):
    """The fused no-grad step (input projection inside the kernel) used by RL rollouts, and
    the path for weights over STEP_PACK_LIMIT_BYTES (forced here by a zero limit)."""
    from fastrnn import dispatch

    if not packed:
        monkeypatch.setattr(dispatch, "STEP_PACK_LIMIT_BYTES", 0)
    torch.manual_seed(0)
    reference = fastrnn.LSTM(5, 12, proj_size=proj, num_layers=2, backend="reference").to(dtype)
    cpp = fastrnn.LSTM(5, 12, proj_size=proj, num_layers=2, backend="cpp").to(dtype)
    cpp.load_state_dict(reference.state_dict())
    x = torch.randn(1, 9, 5, dtype=dtype)
    hx = (torch.randn(2, 9, proj or 12, dtype=dtype), torch.randn(2, 9, 12, dtype=dtype))
    resets = torch.rand(1, 9) < 0.5
    with torch.no_grad():
        expected = reference(x, hx, resets=resets)
        actual = cpp(x, hx, resets=resets)
    assert cpp.last_backend == ("cpp" if packed else "lstm_cell")
    torch.testing.assert_close(actual[0], expected[0], **TOLERANCES[dtype])
    torch.testing.assert_close(actual[1], expected[1], **TOLERANCES[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("packed", [True, False], ids=["packed", "large weights"])
def test_cpp_lstm_cell_matches_reference_with_and_without_grad(dtype, batched, packed, cpu_isa, monkeypatch):
    """LSTMCell's (B, F) rows, on the packed fused step and on the path for weights over
    STEP_PACK_LIMIT_BYTES (forced here by a zero limit), which takes the rows as they are."""
    from fastrnn import dispatch

    if not packed:
        monkeypatch.setattr(dispatch, "STEP_PACK_LIMIT_BYTES", 0)
    torch.manual_seed(0)
    reference = fastrnn.LSTMCell(7, 20, backend="reference").to(dtype)
    cpp = fastrnn.LSTMCell(7, 20, backend="cpp").to(dtype)
    cpp.load_state_dict(reference.state_dict())
    x = torch.randn(11, 7, dtype=dtype)
    hx = (torch.randn(11, 20, dtype=dtype), torch.randn(11, 20, dtype=dtype))
    if not batched:
        x, hx = x[0], (hx[0][0], hx[1][0])
    with torch.no_grad():
        for a, e in zip(cpp(x, hx), reference(x, hx)):
            torch.testing.assert_close(a, e, **TOLERANCES[dtype])
        assert cpp.last_backend == ("cpp" if packed else "lstm_cell")
    x.requires_grad_()
    expected = reference(x, hx)
    expected_grads = torch.autograd.grad(sum(t.sum() for t in expected), [x, *reference.parameters()])
    actual = cpp(x, hx)
    actual_grads = torch.autograd.grad(sum(t.sum() for t in actual), [x, *cpp.parameters()])
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, **TOLERANCES[dtype])
    for a, e in zip(actual_grads, expected_grads):
        torch.testing.assert_close(a, e, **TOLERANCES[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape", [(7, 9, 72), (5, 23, 40), (4, 3, 20), (3, 5, 130), (3, 5, 260)],
                         ids=lambda s: "T{}B{}H{}".format(*s))
def test_cpp_recurrence_is_bitwise_the_same_on_every_thread_grid(shape, dtype, cpu_isa):
    """Forward and backward split hidden units over threads (one barrier per step), then
    rows, by size and thread count. On AVX2 float32 the forward runs H=72 as 2, 3 or 4 unit
    groups, H=40, B=23 on 4 threads as 2 unit x 2 row groups, H=20 on rows only; the backward
    (in 32-column panels) runs H=130 as 2 column groups (x 2 row groups on 4 threads), and in
    float64 (16-column panels) H=72 too. On one thread, H=260 (W_hh over 512 KiB in either
    dtype) runs the forward with unit blocks outer, its order for weights that do not fit
    L2, with a partial last unit block. Each output element is computed by
    the same instructions in the same order on any grid, so every thread count must give the
    same bits, with resets and per-row lengths, and match the reference."""
    from fastrnn import cpp_backend, reference

    steps, batch, hidden = shape
    g = torch.Generator().manual_seed(5)
    tensors = [torch.randn(steps, batch, 4 * hidden, dtype=dtype, generator=g),
               torch.randn(4 * hidden, hidden, dtype=dtype, generator=g) * 0.3, None,
               torch.randn(batch, hidden, dtype=dtype, generator=g),
               torch.randn(batch, hidden, dtype=dtype, generator=g)]
    resets = torch.rand(steps, batch, generator=g) < 0.3
    lengths = torch.randint(1, steps + 1, (batch,), generator=g)
    upstream = [torch.randn(steps, batch, hidden, dtype=dtype, generator=g),
                torch.randn(batch, hidden, dtype=dtype, generator=g),
                torch.randn(batch, hidden, dtype=dtype, generator=g)]

    def run(threads: int):
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            inputs = [None if t is None else t.clone().requires_grad_() for t in tensors]
            outputs = cpp_backend.BACKEND.recurrence(*inputs, resets, lengths)
            grads = torch.autograd.grad(outputs, [t for t in inputs if t is not None], upstream)
            return [o.detach() for o in outputs] + list(grads)
        finally:
            torch.set_num_threads(previous)

    one_thread = run(1)
    expected = reference.lstm_recurrence(*tensors, resets, lengths)
    for a, e in zip(one_thread, expected):
        torch.testing.assert_close(a, e, **TOLERANCES[dtype])
    names = ["y", "h_n", "c_n", "grad xproj", "grad w_hh", "grad h0", "grad c0"]
    for threads in (2, 3, 4):
        for name, a, e in zip(names, run(threads), one_thread):
            if name == "grad w_hh":
                torch.testing.assert_close(a, e, **TOLERANCES[dtype])
            else:
                assert torch.equal(a, e), f"{threads} threads: {name} differs from one thread's"
