"""The Triton backend on a real GPU: every dtype against float64, graphs, torch.compile.

Skipped without a CUDA device (tests/fastrnn/test_triton_interpret.py runs the same kernels on the CPU
in CI) and in a process where TRITON_INTERPRET=1 was set (the interpreter tests set it at
import; run this file in its own pytest process, as scripts/gpu_check.sh does).
"""

import os

import pytest
import torch

# FASTRNN_GPU_DRY_RUN=1 (scripts/gpu_check.sh --dry-run, run in CI) collects this file on a
# machine without a GPU, so an import or parametrization error shows before a GPU is lent.
DRY_RUN = os.environ.get("FASTRNN_GPU_DRY_RUN") == "1"
if not torch.cuda.is_available() and not DRY_RUN:
    pytest.skip("needs a CUDA device (the interpreter tests cover the kernels on CPU)", allow_module_level=True)
if os.environ.get("TRITON_INTERPRET") == "1" and not DRY_RUN:
    pytest.skip("TRITON_INTERPRET=1 in this process: run tests/fastrnn/test_triton_gpu.py in its own pytest process",
                allow_module_level=True)

import torch.nn as nn  # noqa: E402

import fastrnn  # noqa: E402
from fastrnn import rl  # noqa: E402
from fastrnn.backends import get_backend  # noqa: E402
from fastrnn.reference import lstm_recurrence  # noqa: E402
from lstm_compare import assert_gradients_as_accurate_as_torch  # noqa: E402

DEVICE = torch.device("cuda")
backend = get_backend("triton")

# Absolute tolerance per dtype (scaled by each output's magnitude); a result also passes if
# it is no further from float64 than 3x the reference backend run in the same dtype.
ATOL = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 6e-2}


@pytest.fixture(autouse=True)
def exact_fp32():
    """float32 runs exact unless a test turns TF32 on."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _problem(seed, steps, batch, hidden, proj, with_resets, with_lengths):
    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    out = proj or hidden

    def rand(*shape, scale=1.0):
        return torch.randn(*shape, generator=gen, device=DEVICE, dtype=torch.float64) * scale

    problem = dict(
        xproj=rand(steps, batch, 4 * hidden), w_hh=rand(4 * hidden, out, scale=out ** -0.5),
        w_hr=rand(proj, hidden, scale=hidden ** -0.5) if proj else None,
        h0=rand(batch, out), c0=rand(batch, hidden),
        resets=(torch.rand(steps, batch, generator=gen, device=DEVICE) < 0.1) if with_resets else None,
        lengths=None,
    )
    if with_lengths:
        lengths = torch.randint(1, steps + 1, (batch,), generator=gen, device=DEVICE)
        lengths[0] = steps
        problem["lengths"] = lengths
    grads = (rand(steps, batch, out), rand(batch, out), rand(batch, hidden))
    return problem, grads


def _run(fn, problem, grads, dtype):
    leaves = {k: problem[k].detach().to(dtype).requires_grad_()
              for k in ("xproj", "w_hh", "w_hr", "h0", "c0") if problem[k] is not None}
    y, h_n, c_n = fn(leaves["xproj"], leaves["w_hh"], leaves.get("w_hr"), leaves["h0"], leaves["c0"],
                     problem["resets"], problem["lengths"])
    loss = sum((o.double() * g).sum() for o, g in zip((y, h_n, c_n), grads))
    loss.backward()
    results = {"y": y, "h_n": h_n, "c_n": c_n}
    results.update({f"grad_{k}": v.grad for k, v in leaves.items()})
    return {k: v.double() for k, v in results.items()}


def _check(problem, grads, dtype):
    want = _run(lstm_recurrence, problem, grads, torch.float64)
    got = _run(backend.recurrence, problem, grads, dtype)
    same_dtype_reference = _run(lstm_recurrence, problem, grads, dtype)
    for name, expected in want.items():
        error = (got[name] - expected).abs().max().item()
        reference_error = (same_dtype_reference[name] - expected).abs().max().item()
        allowed = max(ATOL[dtype] * max(1.0, expected.abs().max().item()), 3 * reference_error)
        assert error <= allowed, f"{name}: max error {error:.3g} > {allowed:.3g} ({dtype})"


SHAPES = [  # (steps, batch, hidden, proj, resets, lengths)
    (7, 1, 48, 0, False, False),
    (5, 70, 128, 0, True, False),
    (4, 33, 256, 0, True, True),
    (3, 300, 512, 0, False, True),
    (3, 16, 1024, 0, True, False),
    (4, 20, 200, 77, True, True),
    (1, 5, 96, 0, False, False),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T{}-B{}-H{}-P{}-r{:d}-l{:d}".format(*s))
def test_sequence_against_float64(dtype, shape):
    problem, grads = _problem(sum(shape), *shape)
    _check(problem, grads, dtype)


@pytest.mark.parametrize("shape", [(4, 40, 300, 0, True, True), (3, 9, 130, 50, True, False)])
def test_single_cta_groups_without_grid_sync(monkeypatch, shape):
    monkeypatch.setenv("FASTRNN_TRITON_GRID_SYNC", "0")
    problem, grads = _problem(11, *shape)
    _check(problem, grads, torch.bfloat16)


def test_many_groups_loop_over_batch_tiles():
    """More batch tiles than resident groups: groups loop, counters keep growing."""
    problem, grads = _problem(12, 3, 4096 + 5, 256, 0, True, False)
    _check(problem, grads, torch.bfloat16)


def test_tf32_float32_is_close():
    torch.backends.cudnn.allow_tf32 = True
    problem, grads = _problem(13, 5, 16, 128, 0, False, False)
    want = _run(lstm_recurrence, problem, grads, torch.float64)
    got = _run(backend.recurrence, problem, grads, torch.float32)
    for name, expected in want.items():
        torch.testing.assert_close(got[name], expected, atol=2e-2 * max(1.0, expected.abs().max().item()),
                                   rtol=2e-2, msg=name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_lstm_module_matches_cudnn(dtype):
    torch.manual_seed(0)
    ours = fastrnn.LSTM(32, 96, num_layers=2, backend="triton").to(DEVICE, dtype)
    theirs = nn.LSTM(32, 96, num_layers=2).to(DEVICE, dtype)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(20, 8, 32, device=DEVICE, dtype=dtype)
    y, (h, c) = ours(x)
    y_ref, (h_ref, c_ref) = theirs(x)
    tol = dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else dict(atol=3e-2, rtol=3e-2)
    for got, want in ((y, y_ref), (h, h_ref), (c, c_ref)):
        torch.testing.assert_close(got, want, **tol)


@pytest.mark.parametrize("proj", [0, 24])
def test_cuda_graph_rollout_equals_eager(proj):
    torch.manual_seed(1)
    cell = fastrnn.LSTM(10, 64, proj_size=proj, backend="triton").to(DEVICE)
    out = proj or 64
    xs = torch.randn(8, 1, 32, 10, device=DEVICE)
    h0, c0 = torch.randn(1, 32, out, device=DEVICE), torch.randn(1, 32, 64, device=DEVICE)

    def rollout(xs, h, c):
        for x in xs:
            _, (h, c) = cell(x, (h, c))
        return h, c

    with torch.no_grad():
        eager = rollout(xs, h0, c0)
        static_xs, static_h, static_c = xs.clone(), h0.clone(), c0.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            rollout(static_xs, static_h, static_c)  # warm-up: compiles, fills the bias cache
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            captured = rollout(static_xs, static_h, static_c)
        static_xs.copy_(xs)
        graph.replay()
    torch.cuda.synchronize()
    for got, want in zip(captured, eager):
        assert torch.equal(got, want)


def test_rollout_plan_on_cuda_equals_rollout_step():
    # The agent's rollout on --device cuda: each plan step is triton's rollout_step, into the rows.
    torch.manual_seed(4)
    lstm = fastrnn.LSTM(6, 48, backend="triton").to(DEVICE)
    inputs, weight = torch.randn(21, 32, 6, device=DEVICE), torch.randn(48, 3, device=DEVICE)
    addends, resets = torch.randn(20, 32, 3, device=DEVICE), torch.rand(21, 32, device=DEVICE) < 0.1
    state = expected = (torch.zeros(1, 32, 48, device=DEVICE), torch.zeros(1, 32, 48, device=DEVICE))
    with torch.no_grad():
        plan = rl.rollout_plan(lstm, inputs, weight, addends, 2, resets)
        for t in range(20):
            state = plan.step(t, state, reset=t % 5 == 0)
            actions, out, expected = rl.rollout_step(lstm, inputs[t], expected, weight, addends[t], 2,
                                                       resets[t] if t % 5 == 0 else None)
            assert torch.equal(plan.actions[t], actions) and torch.equal(plan.head_out[t], out)
    assert torch.equal(state[0], expected[0]) and torch.equal(state[1], expected[1])


@torch._dynamo.config.patch(allow_rnn=True)
def test_torch_compile_forward_and_backward():
    torch.manual_seed(2)
    model = fastrnn.LSTM(16, 64, backend="triton").to(DEVICE)
    x = torch.randn(12, 4, 16, device=DEVICE)
    resets = torch.rand(12, 4, device=DEVICE) < 0.2

    def loss_of(x):
        y, (h, c) = model(x, resets=resets)
        return y.square().mean() + h.sum()

    compiled = torch.compile(loss_of, fullgraph=True)
    eager_loss = loss_of(x)
    eager_grads = torch.autograd.grad(eager_loss, list(model.parameters()))
    compiled_loss = compiled(x)
    compiled_grads = torch.autograd.grad(compiled_loss, list(model.parameters()))
    torch.testing.assert_close(compiled_loss, eager_loss, atol=1e-5, rtol=1e-5)
    for a, b in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_auto_follows_the_cuda_rule_and_says_which_it_ran():
    """fastrnn/dispatch.py: a small float32 sequence goes to cuDNN, the same call with resets
    (which cuDNN cannot express) and the bfloat16 call run triton."""
    model = fastrnn.LSTM(4, 8).to(DEVICE)
    x = torch.randn(3, 2, 4, device=DEVICE)
    model(x)
    assert model.last_backend == "cudnn"
    model(x, resets=torch.zeros(3, 2, dtype=torch.bool, device=DEVICE))
    assert model.last_backend == "triton"
    model.bfloat16()(x.bfloat16())
    assert model.last_backend == "triton"


@pytest.mark.parametrize("dtype,hidden", [(torch.bfloat16, 256), (torch.float32, 1024)])
def test_long_sequences_with_many_ctas_are_right_and_bitwise_repeatable(dtype, hidden):
    """T = 768 steps: hundreds of group barriers per launch, repeated three times."""
    problem, grads = _problem(14, 768, 48, hidden, 0, True, False)
    _check(problem, grads, dtype)
    runs = [_run(backend.recurrence, problem, grads, dtype) for _ in range(3)]
    for name in runs[0]:
        assert all(torch.equal(runs[0][name], other[name]) for other in runs[1:]), name


@pytest.mark.parametrize("proj", [0, 40])
def test_no_grad_sequence_matches_the_saving_path(proj):
    """The forward that saves nothing (inference) equals the one that saves for backward."""
    problem, _ = _problem(15, 9, 24, 160, proj, True, True)
    args = [problem[k] if problem[k] is None or k in ("resets", "lengths") else problem[k].float()
            for k in ("xproj", "w_hh", "w_hr", "h0", "c0", "resets", "lengths")]
    with torch.no_grad():
        inference = backend.recurrence(*args)
    saved = backend.recurrence(*[a.requires_grad_() if a is not None and a.is_floating_point() else a
                                 for a in args])
    for got, want in zip(inference, saved):
        assert torch.equal(got, want.detach())


def test_sequence_kernels_replay_from_a_cuda_graph():
    """Forward and backward of a layer captured once, replayed on new data, equal eager."""
    torch.manual_seed(3)
    model = fastrnn.LSTM(32, 256, backend="triton").to(DEVICE, torch.bfloat16)
    static_x = torch.randn(50, 64, 32, device=DEVICE, dtype=torch.bfloat16, requires_grad=True)

    def step():
        y, _ = model(static_x)
        return torch.autograd.grad(y.float().square().sum(), [static_x, *model.parameters()])

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        step()  # compiles and warms the allocator
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = step()
    fresh = torch.randn_like(static_x)
    with torch.no_grad():
        static_x.copy_(fresh)
    graph.replay()
    torch.cuda.synchronize()
    eager = step()
    for got, want in zip(captured, eager):
        assert torch.equal(got, want)


def test_a_grid_that_cannot_be_resident_is_refused_instead_of_hanging():
    """Cooperative launch: the driver refuses more CTAs than can be resident at once."""
    from fastrnn.kernels import config as kconfig
    from fastrnn.kernels.launch_plan import resident_ctas
    from fastrnn.kernels.sequence_forward import launch_sequence_forward

    hidden, batch, steps = 256, 64, 3
    config = kconfig.forward_config(hidden, hidden, "bf16", True)
    tiles = -(-hidden // config.block_h)
    grid = (4 * resident_ctas(DEVICE), tiles)  # far past one CTA per SM
    t = dict(device=DEVICE, dtype=torch.bfloat16)
    xproj = torch.randn(steps, batch, 4 * hidden, **t)
    w_hh = torch.randn(4 * hidden, hidden, **t) * hidden ** -0.5
    h0, c0 = torch.zeros(batch, hidden, **t), torch.zeros(batch, hidden, **t)
    y, h_n, c_n = torch.empty(steps, batch, hidden, **t), torch.empty_like(h0), torch.empty_like(c0)
    with pytest.raises(Exception, match="(?i)cooperative|too large|resources|launch"):
        launch_sequence_forward(xproj, w_hh, None, h0, c0, None, None, y, h_n, c_n,
                                xproj.new_empty(0), xproj.new_empty(0), xproj.new_empty(0), False,
                                config, grid, "ieee")
        torch.cuda.synchronize()


def test_auto_hands_multi_pass_batches_to_cudnn_and_says_so():
    torch.manual_seed(4)
    ours = fastrnn.LSTM(32, 256).to(DEVICE, torch.bfloat16)
    theirs = nn.LSTM(32, 256).to(DEVICE, torch.bfloat16)
    theirs.load_state_dict(ours.state_dict())
    big = torch.randn(10, 4096, 32, device=DEVICE, dtype=torch.bfloat16)
    y, _ = ours(big)
    assert ours.last_backend == "cudnn"
    torch.testing.assert_close(y, theirs(big)[0], atol=0, rtol=0)
    ours(big, resets=torch.zeros(10, 4096, dtype=torch.bool, device=DEVICE))
    assert ours.last_backend == "triton"  # cuDNN cannot reset
    ours(big[:, :64])
    assert ours.last_backend == "triton"  # one pass: the persistent kernel is faster


@pytest.mark.parametrize("scale", [1e3, 1e6])
def test_saturated_gates_give_gradients_as_accurate_as_torchs(scale):
    # The CPU kernels' reciprocal once left saturated gates one ulp short of 1, with a
    # derivative that large inputs turned into spurious weight gradients (test_nan_propagation).
    # Here the GPU kernels' sigmoid and tanh: no noisier than cuDNN's float32 against float64.
    torch.manual_seed(0)
    ours = fastrnn.LSTM(5, 7, backend="triton").to(DEVICE)
    x = torch.randn(6, 4, 5, generator=torch.Generator().manual_seed(1)).to(DEVICE) * scale
    assert_gradients_as_accurate_as_torch(ours, x, factor=4, floor=1e-6)
