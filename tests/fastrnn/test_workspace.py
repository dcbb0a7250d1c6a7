"""CPU forwards write their input projection into a per-thread workspace reused between calls
(fastrnn/workspace.py says why), with autograd too for wide inputs (its graph keeps the
operands, not the projection): the results and gradients must be what the fresh projection
gives, bit for bit, no output may alias the workspace, threads must not share it, and it must
work across inference_mode and be freed by clear_workspace()."""

import threading

import pytest
import torch

import fastrnn
from fastrnn import cpp_backend, layers
from fastrnn import workspace as workspace_module

BACKENDS = ["cpp", "reference"]


def _lstm(backend, **kwargs):
    torch.manual_seed(0)
    return fastrnn.LSTM(20, 24, backend=backend, **kwargs)


def _buffer():
    return getattr(workspace_module._local, "buffers", {}).get(torch.float32)


@pytest.fixture(autouse=True)
def every_projection_takes_the_workspace(request, monkeypatch):
    """The tests below check the workspace's mechanics at small sizes: the size threshold off,
    except in the tests of the threshold itself."""
    if "threshold" not in request.node.name:
        monkeypatch.setattr(layers, "WORKSPACE_MIN_BYTES", 0)
    # and the cpp backend's no-grad forward projecting as the grad forward does (its fused
    # projection, which forms no projection at all, has tests of its own)
    monkeypatch.setattr(cpp_backend, "FUSED_PROJECTION_MIN_ROWS", 1 << 30)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("options", [{}, {"num_layers": 2, "bidirectional": True}, {"bias": False}, {"proj_size": 8}])
def test_no_grad_forward_equals_the_grad_forward_bit_for_bit(backend, options):
    # The grad forward projects with F.linear into a fresh tensor; the no-grad one into the workspace.
    lstm = _lstm(backend, **options)
    x = torch.randn(7, 5, 20)
    fastrnn.clear_workspace()
    with torch.no_grad():
        y, (h, c) = lstm(x)
    assert _buffer() is not None  # the no-grad call did take the workspace
    y_grad, (h_grad, c_grad) = lstm(x.clone().requires_grad_())
    assert torch.equal(y, y_grad) and torch.equal(h, h_grad) and torch.equal(c, c_grad)


def test_the_workspace_is_reused_across_calls_and_no_output_aliases_it():
    lstm = _lstm("cpp")
    x = torch.randn(7, 5, 20)
    fastrnn.clear_workspace()
    with torch.no_grad():
        y1, (h1, c1) = lstm(x)
        kept = y1.clone()
        first = _buffer().data_ptr()
        y2, _ = lstm(2 * x)
        assert _buffer().data_ptr() == first  # the same memory, not a fresh allocation
        lstm(torch.randn(3, 5, 20))  # smaller: still the same buffer
        assert _buffer().data_ptr() == first
    assert torch.equal(y1, kept)  # the later calls did not write into an earlier output
    storage = _buffer().untyped_storage().data_ptr()
    assert all(t.untyped_storage().data_ptr() != storage for t in (y1, h1, c1, y2))


def test_a_larger_call_grows_the_workspace():
    lstm = _lstm("cpp")
    fastrnn.clear_workspace()
    with torch.no_grad():
        lstm(torch.randn(3, 2, 20))
        small = _buffer().numel()
        lstm(torch.randn(9, 6, 20))
    assert small == 3 * 2 * 4 * 24 and _buffer().numel() == 9 * 6 * 4 * 24


@pytest.mark.parametrize("options", [{}, {"num_layers": 2, "bidirectional": True}, {"bias": False}, {"proj_size": 8}])
def test_the_grad_forward_projects_into_the_workspace_with_f_linears_bits(options, monkeypatch):
    # A wide input under autograd: the projection lives in the workspace (its graph keeps only
    # the operands), and the outputs and every gradient are those of the fresh F.linear path.
    lstm = _lstm("cpp", **options)
    x = torch.randn(7, 5, 20, requires_grad=True)

    def run():
        lstm.zero_grad()
        x.grad = None
        y, (h, c) = lstm(x)
        (y.square().sum() + h.sum() + c.sum()).backward()
        return [y.detach(), x.grad.clone(), *(p.grad.clone() for p in lstm.parameters())]

    fastrnn.clear_workspace()
    in_workspace = run()
    assert _buffer() is not None
    monkeypatch.setattr(layers, "workspace_applies", lambda *args: False)  # F.linear into fresh memory
    fresh = run()
    assert all(torch.equal(a, b) for a, b in zip(in_workspace, fresh))


def test_a_narrow_input_under_autograd_keeps_its_own_projection():
    # Inputs of at most NARROW_INPUT features take input_projection's addmm form (the agent's).
    torch.manual_seed(0)
    lstm = fastrnn.LSTM(layers.NARROW_INPUT, 24, backend="cpp")
    fastrnn.clear_workspace()
    y, _ = lstm(torch.randn(7, 5, layers.NARROW_INPUT))
    y.sum().backward()
    assert _buffer() is None


def test_a_double_backward_through_the_workspace_projection_is_exact():
    torch.manual_seed(0)
    lstm = fastrnn.LSTM(layers.NARROW_INPUT + 1, 3, backend="cpp").double()
    params = dict(lstm.named_parameters())
    x = torch.randn(3, 2, layers.NARROW_INPUT + 1, dtype=torch.double, requires_grad=True)
    w_ih = params["weight_ih_l0"].detach().clone().requires_grad_()

    def output(x, w_ih):
        return torch.func.functional_call(lstm, {**params, "weight_ih_l0": w_ih}, (x,))[0]

    fastrnn.clear_workspace()
    assert torch.autograd.gradgradcheck(output, (x, w_ih))
    assert workspace_module._local.buffers.get(torch.double) is not None  # it ran through the workspace


def test_a_workspace_made_under_inference_mode_serves_later_no_grad_calls():
    # An inference tensor could not be written outside inference_mode; the buffer must not be one.
    lstm = _lstm("cpp")
    x = torch.randn(7, 5, 20)
    fastrnn.clear_workspace()
    with torch.inference_mode():
        y_inference, _ = lstm(x)
    assert not _buffer().is_inference()
    with torch.no_grad():
        y, _ = lstm(x)
    assert torch.equal(y, y_inference)


def test_threads_each_get_their_own_workspace_and_correct_results():
    lstm = _lstm("cpp")
    inputs = [torch.randn(30, 8, 20) for _ in range(4)]
    with torch.no_grad():
        expected = [lstm(x)[0] for x in inputs]
    results, pointers, errors = [None] * 4, [None] * 4, []

    def run(i):
        try:
            with torch.no_grad():
                for _ in range(20):
                    results[i] = lstm(inputs[i])[0]
            pointers[i] = _buffer().data_ptr()
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(set(pointers)) == 4
    for got, want in zip(results, expected):
        assert torch.equal(got, want)


def test_clear_workspace_frees_the_buffer():
    lstm = _lstm("cpp")
    with torch.no_grad():
        lstm(torch.randn(7, 5, 20))
    assert _buffer() is not None
    fastrnn.clear_workspace()
    assert _buffer() is None


@pytest.mark.parametrize("grad", [False, True])
def test_a_projection_below_the_size_threshold_keeps_its_own_tensor(grad):
    # 7 x 5 rows x 96 outputs x 4 bytes = 13 KiB, far under layers.WORKSPACE_MIN_BYTES (1 MiB):
    # the workspace's fixed cost would outweigh any page faults it could save.
    lstm = _lstm("cpp")
    fastrnn.clear_workspace()
    with torch.set_grad_enabled(grad):
        lstm(torch.randn(7, 5, 20, requires_grad=grad))
    assert _buffer() is None


@pytest.mark.parametrize("grad", [False, True])
def test_a_projection_at_the_size_threshold_takes_the_workspace(grad):
    lstm = _lstm("cpp")  # 4H = 96 outputs
    steps, batch = 128, 22  # 128 x 22 x 96 x 4 bytes = 1.03 MiB
    assert steps * batch * 96 * 4 >= layers.WORKSPACE_MIN_BYTES
    fastrnn.clear_workspace()
    x = torch.randn(steps, batch, 20, requires_grad=grad)
    with torch.set_grad_enabled(grad):
        y, _ = lstm(x)
    assert _buffer() is not None and _buffer().numel() == steps * batch * 96
    if grad:
        y.sum().backward()  # the workspace projection's backward ran
        assert x.grad is not None
