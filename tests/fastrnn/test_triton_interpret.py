"""The Triton kernels on the CPU, in Triton's interpreter, against the reference backend.

TRITON_INTERPRET must be set before triton is imported (it decides what @triton.jit returns
when the kernels are defined), so it is set here, at the top of the module. The interpreter
has no bfloat16 arithmetic, so float32 and float16 are covered; shapes are small because
the interpreter runs each program in NumPy. tests/fastrnn/test_triton_gpu.py covers the GPU.
"""

import os

os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

import fastrnn  # noqa: E402
from fastrnn import rl  # noqa: E402
from fastrnn.backends import get_backend  # noqa: E402
from fastrnn.reference import lstm_recurrence  # noqa: E402

triton_backend = get_backend("triton")

# Tolerances for a float64 reference computed from the same (rounded) inputs.
TOLERANCE = {torch.float32: dict(atol=2e-5, rtol=2e-4), torch.float16: dict(atol=2e-2, rtol=2e-2)}


def _random_problem(seed, dtype, steps, batch, hidden, proj, with_resets, with_lengths):
    gen = torch.Generator().manual_seed(seed)
    out = proj or hidden

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen) * scale).to(dtype)

    problem = dict(
        xproj=rand(steps, batch, 4 * hidden),
        w_hh=rand(4 * hidden, out, scale=out ** -0.5),
        w_hr=rand(proj, hidden, scale=hidden ** -0.5) if proj else None,
        h0=rand(batch, out), c0=rand(batch, hidden),
        resets=(torch.rand(steps, batch, generator=gen) < 0.3) if with_resets else None,
        lengths=None,
    )
    if with_lengths:
        lengths = torch.randint(0, steps + 1, (batch,), generator=gen)
        lengths[0] = steps  # at least one full row
        problem["lengths"] = lengths
    grads = (rand(steps, batch, out), rand(batch, out), rand(batch, hidden))
    return problem, grads


def _run(fn, problem, grads, dtype, use_grad_y=True):
    """Outputs and the gradients of every differentiable input, all in float64."""
    leaves = {k: v.detach().clone().to(dtype).requires_grad_() for k, v in problem.items()
              if k in ("xproj", "w_hh", "w_hr", "h0", "c0") and v is not None}
    y, h_n, c_n = fn(leaves["xproj"], leaves["w_hh"], leaves.get("w_hr"), leaves["h0"], leaves["c0"],
                     problem["resets"], problem["lengths"])
    loss = (h_n.double() * grads[1].double()).sum() + (c_n.double() * grads[2].double()).sum()
    if use_grad_y:
        loss = loss + (y.double() * grads[0].double()).sum()
    loss.backward()
    results = {"y": y, "h_n": h_n, "c_n": c_n}
    results.update({f"grad_{k}": v.grad for k, v in leaves.items()})
    return {k: v.double() for k, v in results.items()}


def _check_against_reference(problem, grads, dtype, use_grad_y=True):
    got = _run(triton_backend.recurrence, problem, grads, dtype, use_grad_y)
    want = _run(lstm_recurrence, problem, grads, torch.float64, use_grad_y)
    # Gradients sum over steps and rows: scale the tolerance with their magnitude.
    for name, expected in want.items():
        scale = max(1.0, expected.abs().max().item())
        tol = TOLERANCE[dtype]
        torch.testing.assert_close(got[name], expected, atol=tol["atol"] * scale, rtol=tol["rtol"], msg=name)


# (dtype, steps, batch, hidden, proj, resets, lengths): non-powers of two, B=1, T=1, a batch
# over two row tiles, hidden sizes on the resident (one tile) and the tiled (several tiles,
# several K chunks) path, projections on both.
CASES = [
    (torch.float32, 1, 1, 16, 0, False, False),
    (torch.float32, 5, 3, 24, 0, True, False),
    (torch.float32, 4, 37, 20, 0, True, True),
    (torch.float32, 3, 2, 70, 0, False, False),
    (torch.float32, 3, 4, 40, 13, True, False),
    (torch.float32, 3, 3, 70, 33, False, True),
    (torch.float32, 3, 5, 24, 7, True, True),  # one resident 32-wide tile, projection in chunks
    (torch.float16, 4, 5, 24, 0, True, False),
    (torch.float16, 5, 37, 48, 0, True, True),  # h kept in registers, two row tiles in one group
    (torch.float16, 3, 3, 70, 20, True, True),
    (torch.float16, 1, 1, 130, 0, False, False),
]


@pytest.mark.parametrize("dtype,steps,batch,hidden,proj,resets,lengths", CASES)
def test_sequence_forward_and_gradients(dtype, steps, batch, hidden, proj, resets, lengths):
    problem, grads = _random_problem(hash((steps, batch, hidden, proj)) % 1000, dtype, steps, batch, hidden,
                                     proj, resets, lengths)
    _check_against_reference(problem, grads, dtype)


def test_cases_cover_every_forward_path():
    """Streamed, resident, and resident with h kept in registers (kernels/sequence_forward.py),
    as the launcher picks them here (no grid sync under the interpreter)."""
    from fastrnn.kernels import config as kconfig
    from fastrnn.kernels.launch_plan import DTYPE_NAMES

    paths = set()
    for dtype, _, _, hidden, proj, _, _ in CASES:
        cfg = kconfig.forward_config(hidden, proj or hidden, DTYPE_NAMES[dtype], grid_sync=False)
        paths.add("carry" if cfg.carry_h else "resident" if cfg.resident else "streamed")
    assert paths == {"carry", "resident", "streamed"}


@pytest.mark.parametrize("seed", range(3))
def test_sequence_random_shapes(seed):
    gen = torch.Generator().manual_seed(100 + seed)
    dtype = (torch.float32, torch.float16)[seed % 2]
    hidden = int(torch.randint(1, 90, (1,), generator=gen))
    proj = int(torch.randint(1, hidden, (1,), generator=gen)) if hidden > 1 and seed == 2 else 0
    steps = int(torch.randint(1, 5, (1,), generator=gen))
    batch = int(torch.randint(1, 9, (1,), generator=gen))
    problem, grads = _random_problem(seed, dtype, steps, batch, hidden, proj, True, seed == 1)
    _check_against_reference(problem, grads, dtype)


def test_gradient_through_final_state_only():
    problem, grads = _random_problem(7, torch.float32, 3, 4, 24, 0, True, False)
    _check_against_reference(problem, grads, torch.float32, use_grad_y=False)


def test_no_grad_forward_matches():
    problem, _ = _random_problem(8, torch.float32, 4, 3, 40, 17, True, True)
    args = [problem[k] for k in ("xproj", "w_hh", "w_hr", "h0", "c0", "resets", "lengths")]
    with torch.no_grad():
        got = triton_backend.recurrence(*args)
    want = lstm_recurrence(*[a.double() if a is not None and a.is_floating_point() else a for a in args])
    for g, w in zip(got, want):
        torch.testing.assert_close(g.double(), w, **TOLERANCE[torch.float32])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("bias,proj", [(True, 0), (False, 0), (True, 7)])
def test_cell_step(dtype, bias, proj):
    gen = torch.Generator().manual_seed(3)
    batch, inputs, hidden = 3, 11, 19
    out = proj or hidden

    def rand(*shape):
        return (torch.randn(*shape, generator=gen) * 0.5).to(dtype)

    x, h, c = rand(batch, inputs), rand(batch, out), rand(batch, hidden)
    w_ih, w_hh = rand(4 * hidden, inputs), rand(4 * hidden, out)
    b_ih, b_hh = (rand(4 * hidden), rand(4 * hidden)) if bias else (None, None)
    w_hr = rand(proj, hidden) if proj else None
    got = triton_backend.cell(x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr)
    reference = get_backend("reference")
    as64 = [None if t is None else t.double() for t in (x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr)]
    want = reference.cell(*as64)
    for g, w in zip(got, want):
        assert g.dtype == dtype
        torch.testing.assert_close(g.double(), w, **TOLERANCE[dtype])


def test_step_kernel_with_precomputed_input_and_resets():
    from fastrnn.kernels.config import step_config
    from fastrnn.kernels.step import launch_step

    gen = torch.Generator().manual_seed(4)
    batch, hidden = 5, 21
    xproj = torch.randn(batch, 4 * hidden, generator=gen)
    w_hh = torch.randn(4 * hidden, hidden, generator=gen) * 0.3
    h, c = torch.randn(batch, hidden, generator=gen), torch.randn(batch, hidden, generator=gen)
    resets = torch.tensor([True, False, True, False, False])
    h_out, c_out = torch.empty_like(h), torch.empty_like(c)
    launch_step(None, None, None, None, xproj, h, c, w_hh, resets.view(torch.uint8), h_out, c_out,
                step_config("fp32"), "ieee")
    _, h_ref, c_ref = lstm_recurrence(xproj.unsqueeze(0), w_hh, None, h, c, resets.unsqueeze(0))
    torch.testing.assert_close(h_out, h_ref, **TOLERANCE[torch.float32])
    torch.testing.assert_close(c_out, c_ref, **TOLERANCE[torch.float32])


def test_cell_step_reads_biases_written_through_data():
    """A write through .data bypasses version counters: the step must not use a cached bias."""
    torch.manual_seed(10)
    cell, ref_cell = fastrnn.LSTMCell(4, 10, backend="triton"), fastrnn.LSTMCell(4, 10, backend="reference")
    lstm, ref_lstm = fastrnn.LSTM(4, 10, backend="triton"), fastrnn.LSTM(4, 10, backend="reference")
    ref_cell.load_state_dict(cell.state_dict())
    ref_lstm.load_state_dict(lstm.state_dict())
    x = torch.randn(3, 4)
    with torch.no_grad():
        cell(x)  # a first step, as a rollout would have run before the write
        lstm(x[None])
        new_bias = torch.randn(40)
        for module in (cell, ref_cell):
            module.bias_ih.data.copy_(new_bias)
        for module in (lstm, ref_lstm):
            module.bias_ih_l0.data.copy_(new_bias)
        for got, want in zip(cell(x), ref_cell(x)):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
        y, (h, c) = lstm(x[None])  # one no-grad step: the fused cell path
        y_ref, (h_ref, c_ref) = ref_lstm(x[None])
    for got, want in ((y, y_ref), (h, h_ref), (c, c_ref)):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


# (settings a user makes in a fresh process, TF32 expected for a sequence, for a step)
PRECISION_SCENARIOS = [
    ([], True, False),  # torch's defaults: cuDNN RNNs on TF32, matmuls not
    ([("cuda.matmul", "tf32")], True, True),  # makes the legacy matmul flag raise
    ([("cudnn.rnn", "ieee")], False, False),  # makes the legacy cuDNN flag raise
    ([("cudnn", "ieee")], False, False),
    ([("", "tf32"), ("cuda.matmul", "ieee")], True, False),
    ([("cudnn.rnn", "none")], False, False),  # "none" up to the global setting: no TF32
    ([("cudnn.rnn", "none"), ("cudnn", "tf32")], True, True),
]

# Setting one level changes the levels below it only where they were never set themselves,
# state that cannot be put back: each scenario runs in a fresh fork of one process.
PRECISION_SCRIPT = r"""
import json, os, sys, traceback
import torch
from fastrnn.kernels.launch_plan import precision

def no_cuda(*args, **kwargs):
    raise AssertionError("precision() must only read flags, never touch CUDA")

for name in ("_lazy_init", "init", "current_device", "get_device_properties", "is_available", "device_count"):
    setattr(torch.cuda, name, no_cuda)
for settings in json.loads(sys.argv[1]):
    child = os.fork()
    if child == 0:
        try:
            for path, value in settings:
                level = torch.backends
                for name in filter(None, path.split(".")):
                    level = getattr(level, name)
                level.fp32_precision = value
            cuda = torch.device("cuda")
            print(json.dumps([precision(torch.float32, cuda, sequence=True) == "tf32",
                              precision(torch.float32, cuda, sequence=False) == "tf32",
                              precision(torch.float16, cuda, sequence=True)]), flush=True)
            os._exit(0)
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
            os._exit(1)
    assert os.waitpid(child, 0)[1] == 0, settings
"""


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(torch.backends, "fp32_precision"), reason="torch without the fp32_precision API")
def test_precision_follows_fp32_precision_api():
    import json
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    run = subprocess.run([sys.executable, "-c", PRECISION_SCRIPT, json.dumps([s for s, _, _ in PRECISION_SCENARIOS])],
                         cwd=repo, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-4000:]
    got = [json.loads(line) for line in run.stdout.splitlines()]
    want = [[sequence, step, "ieee"] for _, sequence, step in PRECISION_SCENARIOS]
    assert got == want


@pytest.mark.parametrize("cudnn,matmul", [(True, False), (False, True)])
def test_precision_reads_legacy_flags_without_fp32_precision_api(cudnn, matmul):
    from types import SimpleNamespace

    from fastrnn.kernels.launch_plan import _tf32_allowed

    old_torch = SimpleNamespace(cudnn=SimpleNamespace(allow_tf32=cudnn),
                                cuda=SimpleNamespace(matmul=SimpleNamespace(allow_tf32=matmul)))
    assert _tf32_allowed(True, old_torch) == cudnn
    assert _tf32_allowed(False, old_torch) == matmul


@pytest.mark.parametrize("kwargs", [
    dict(num_layers=2, bidirectional=True),
    dict(num_layers=1, proj_size=5, batch_first=True),
])
def test_lstm_module_matches_torch(kwargs):
    torch.manual_seed(5)
    ours = fastrnn.LSTM(6, 12, backend="triton", **kwargs)
    theirs = nn.LSTM(6, 12, **kwargs)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(3, 4, 6)
    y, (h, c) = ours(x)
    y_ref, (h_ref, c_ref) = theirs(x)
    assert ours.last_backend == "triton"
    for got, want in ((y, y_ref), (h, h_ref), (c, c_ref)):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    (y.sum() + h.sum() + c.sum()).backward()
    (y_ref.sum() + h_ref.sum() + c_ref.sum()).backward()
    for (name, p), p_ref in zip(ours.named_parameters(), theirs.parameters()):
        torch.testing.assert_close(p.grad, p_ref.grad, atol=1e-4, rtol=1e-4, msg=name)


def test_lstm_module_rollout_step_and_resets():
    torch.manual_seed(6)
    ours = fastrnn.LSTM(5, 9, num_layers=2, backend="triton")
    ref = fastrnn.LSTM(5, 9, num_layers=2, backend="reference")
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(1, 3, 5)
    resets = torch.tensor([[True, False, True]])
    hx = (torch.randn(2, 3, 9), torch.randn(2, 3, 9))
    with torch.no_grad():  # a one-step no-grad call takes the fused cell path
        y, (h, c) = ours(x, hx, resets=resets)
        y_ref, (h_ref, c_ref) = ref(x, hx, resets=resets)
    for got, want in ((y, y_ref), (h, h_ref), (c, c_ref)):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_lstm_module_rollout_step_composes_the_triton_step_with_the_readout():
    # triton has no fused readout: its rollout_step is its step kernel, addmm and argmax.
    torch.manual_seed(8)
    ours = fastrnn.LSTM(7, 16, backend="triton")
    ref = fastrnn.LSTM(7, 16, backend="reference")
    ref.load_state_dict(ours.state_dict())
    x, hx = torch.randn(5, 7), (torch.randn(1, 5, 16), torch.randn(1, 5, 16))
    weight, addend = torch.randn(16, 4), torch.randn(5, 4)
    resets = torch.tensor([True, False, False, True, False])
    with torch.no_grad():
        actions, out, (h, c) = rl.rollout_step(ours, x, hx, weight, addend, 3, resets)
        actions_ref, out_ref, (h_ref, c_ref) = rl.rollout_step(ref, x, hx, weight, addend, 3, resets)
    assert ours.last_backend == "triton"
    for got, want in ((out, out_ref), (h, h_ref), (c, c_ref)):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert torch.equal(actions, out[:, :3].argmax(dim=-1)) and torch.equal(actions, actions_ref)


def test_lstm_module_rollout_plan_steps_through_the_triton_rollout_step():
    # No fused binding on triton: each plan step is its rollout_step, bit for bit, into the rows.
    torch.manual_seed(9)
    ours = fastrnn.LSTM(7, 16, backend="triton")
    inputs, weight, addends = torch.randn(4, 5, 7), torch.randn(16, 4), torch.randn(3, 5, 4)
    resets = torch.rand(4, 5) < 0.4
    state = expected = (torch.randn(1, 5, 16), torch.randn(1, 5, 16))
    with torch.no_grad():
        plan = rl.rollout_plan(ours, inputs, weight, addends, 3, resets)
        for t in range(3):
            state = plan.step(t, state, reset=True)
            actions, out, expected = rl.rollout_step(ours, inputs[t], expected, weight, addends[t], 3, resets[t])
            assert torch.equal(plan.actions[t], actions) and torch.equal(plan.head_out[t], out)
    assert ours.last_backend == "triton"
    assert torch.equal(state[0], expected[0]) and torch.equal(state[1], expected[1])


def test_lstm_cell_module():
    torch.manual_seed(7)
    ours = fastrnn.LSTMCell(4, 10, backend="triton")
    theirs = nn.LSTMCell(4, 10)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(3, 4)
    with torch.no_grad():
        for got, want in zip(ours(x), theirs(x)):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    h, c = ours(x)
    h_ref, c_ref = theirs(x)
    (h.sum() + c.sum()).backward()
    (h_ref.sum() + c_ref.sum()).backward()
    torch.testing.assert_close(ours.weight_hh.grad, theirs.weight_hh.grad, atol=1e-5, rtol=1e-4)


def test_custom_op_traces_under_torch_compile():
    problem, grads = _random_problem(9, torch.float32, 2, 3, 16, 0, True, False)

    def loss_of(xproj, w_hh, h0, c0):
        y, h_n, c_n = triton_backend.recurrence(xproj, w_hh, None, h0, c0, problem["resets"], None)
        return y.sum() + h_n.sum() + c_n.sum()

    compiled = torch.compile(loss_of, backend="aot_eager", fullgraph=True)
    args = [problem[k].clone().requires_grad_() for k in ("xproj", "w_hh", "h0", "c0")]
    args_ref = [a.detach().clone().requires_grad_() for a in args]
    compiled(*args).backward()
    loss_of(*args_ref).backward()
    for a, b in zip(args, args_ref):
        torch.testing.assert_close(a.grad, b.grad)


def test_unsupported_inputs_say_why(monkeypatch):
    assert triton_backend.unsupported_reason(torch.device("cpu"), torch.float32) is None
    assert "float64" not in (triton_backend.unsupported_reason(torch.device("cpu"), torch.float64) or "float64")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert "TRITON_INTERPRET" in triton_backend.unsupported_reason(torch.device("cpu"), torch.float32)


@pytest.mark.parametrize("proj", [0, 3])
def test_every_kernel_backend_saves_the_same_tensors_for_backward(proj):
    """The op's saved gates, cells and hidden agree between the triton and cpp launchers, zeros
    past each row's length included (a third-party backward reading them sees one contract)."""
    from fastrnn.recurrence_op import recurrence_op

    problem, _ = _random_problem(7, torch.float32, 5, 4, 6, proj, with_resets=True, with_lengths=True)
    problem["lengths"] = torch.tensor([5, 2, 0, 4])
    args = [problem[k] for k in ("xproj", "w_hh", "w_hr", "h0", "c0", "resets", "lengths")]
    saved = {name: recurrence_op(name, *args, None, None, None) for name in ("cpp", "triton")}
    for index, what in enumerate(("y", "h_n", "c_n", "gates", "cells", "hidden")):
        torch.testing.assert_close(saved["triton"][index], saved["cpp"][index], atol=2e-5, rtol=2e-4, msg=what)
    for name, (_, _, _, gates, cells, hidden) in saved.items():
        for row, length in enumerate(problem["lengths"].tolist()):
            for tensor in (gates, cells) + ((hidden,) if proj else ()):
                assert not tensor[length:, row].any(), f"{name} saved non-zeros past row {row}'s length"
    assert saved["cpp"][5].numel() == (5 * 4 * 6 if proj else 0)
