"""The cpp backend: csrc/ kernels (fastrnn._C) for float32 and float64 tensors on the CPU."""

from __future__ import annotations

import torch
from torch import Tensor

from fastrnn import _C
from fastrnn.recurrence_op import (BackwardOutputs, ForwardOutputs, Inputs, Launcher, OutputGrads, composed_cell_heads,
                                   kernel_backend)
from fastrnn.weight_cache import WeightCache

_DTYPE_CODES = {torch.float32: 0, torch.float64: 1}

# Only the single no-grad step caches packed weights: there packing would cost as much as the
# step itself. Sequence calls pack inside C++ every call (see csrc/cpu_dispatch.h for why).
_packed = WeightCache(all_bytes_equal=_C.bytes_equal)


def _unsupported_reason(device: torch.device, dtype: torch.dtype) -> str | None:
    if device.type != "cpu":
        return "the cpp backend runs on the CPU only"
    if dtype not in _DTYPE_CODES:
        return "the cpp backend takes float32 and float64 only"
    return None


def _ptr(tensor: Tensor | None) -> int:
    """A tensor's address for the kernels' argument structs; 0 for none."""
    return 0 if tensor is None or tensor.numel() == 0 else tensor.data_ptr()


def _pack_gates(w: Tensor, hidden_size: int) -> Tensor:
    """W (4H, K) in the layout the fused gate micro-kernel reads."""
    code = _DTYPE_CODES[w.dtype]
    w = w.detach().contiguous()
    out = torch.empty(_C.packed_gates_numel(code, hidden_size, w.shape[1]), dtype=w.dtype)
    _C.pack_gates(code, w.data_ptr(), hidden_size, w.shape[1], out.data_ptr())
    return out


def _pack_panels(w: Tensor, transposed: bool) -> Tensor:
    """W as the right operand of `a @ W.T` (transposed) or of `a @ W`."""
    code = _DTYPE_CODES[w.dtype]
    w = w.detach().contiguous()
    rows, cols = w.shape
    k, n = (cols, rows) if transposed else (rows, cols)
    out = torch.empty(_C.packed_panels_numel(code, k, n), dtype=w.dtype)
    _C.pack_panels(code, w.data_ptr(), k, n, transposed, out.data_ptr())
    return out


def _cell_weights(w_ih, w_hh, b_ih, b_hh, w_hr):
    """The step's packed weights and their _C.CellWeights, cached per weight contents."""
    def make(w_ih, w_hh, b_ih, b_hh, w_hr):
        hidden_size = w_hh.shape[0] // 4
        bias = None if b_ih is None else (b_ih + b_hh).detach().contiguous()
        packed = (_pack_gates(w_ih, hidden_size), _pack_gates(w_hh, hidden_size), bias,
                  None if w_hr is None else _pack_panels(w_hr, True))
        weights = _C.CellWeights()
        weights.input_size, weights.hidden_size, weights.out_size = w_ih.shape[1], hidden_size, w_hh.shape[1]
        weights.proj = 0 if w_hr is None else w_hr.shape[0]
        weights.w_ih_gates, weights.w_hh_gates, weights.bias, weights.w_proj = map(_ptr, packed)
        return packed, weights  # the tensors stay referenced as long as their addresses are
    return _packed.get("cell", (w_ih, w_hh, b_ih, b_hh, w_hr), make, layout_key=_weight_layout(w_hh.dtype))


def _weight_layout(dtype: torch.dtype) -> int:
    # The packed layout depends on the vector width of the instruction set in use (set_isa).
    return _C.vector_width(_DTYPE_CODES[dtype])


def _forward(inputs: Inputs, out: ForwardOutputs, save: bool) -> None:
    a = _C.ForwardArgs()
    a.steps, a.batch, four_h = inputs.xproj.shape
    a.hidden_size, a.out_size = four_h // 4, inputs.h0.shape[1]
    a.proj = 0 if inputs.w_hr is None else inputs.w_hr.shape[0]
    a.xproj, a.w_hh, a.w_hr = _ptr(inputs.xproj), _ptr(inputs.w_hh), _ptr(inputs.w_hr)
    a.h0, a.c0, a.resets, a.lengths = _ptr(inputs.h0), _ptr(inputs.c0), _ptr(inputs.resets), _ptr(inputs.lengths)
    a.y, a.h_n, a.c_n = _ptr(out.y), _ptr(out.h_n), _ptr(out.c_n)
    a.gates, a.cells, a.hidden = _ptr(out.gates), _ptr(out.cells), _ptr(out.hidden)
    _C.forward(_DTYPE_CODES[inputs.h0.dtype], a, torch.get_num_threads())


def _backward(inputs: Inputs, grads: OutputGrads, gates: Tensor, cells: Tensor, out: BackwardOutputs) -> None:
    a = _C.BackwardArgs()
    a.steps, a.batch, four_h = gates.shape
    a.hidden_size, a.out_size = four_h // 4, inputs.h0.shape[1]
    a.proj = 0 if inputs.w_hr is None else inputs.w_hr.shape[0]
    a.grad_y, a.grad_h_n, a.grad_c_n = map(_ptr, grads)
    a.w_hh, a.w_hr, a.c0 = _ptr(inputs.w_hh), _ptr(inputs.w_hr), _ptr(inputs.c0)
    a.resets, a.lengths = _ptr(inputs.resets), _ptr(inputs.lengths)
    a.gates, a.cells = _ptr(gates), _ptr(cells)
    a.dxproj, a.dh0, a.dc0, a.dy_total = map(_ptr, out)
    _C.backward(_DTYPE_CODES[gates.dtype], a, torch.get_num_threads())


# The packed step must check its source weights on every call (weight_cache.py). Above this
# many bytes of weights the source, its snapshot and the packed copy no longer share a core's
# L2, and the check costs more than the step saves (measured: 2x slower than torch's
# lstm_cell at H=512, B=1; even at H=256): such steps run torch's own lstm_cell on the
# weights as they are, which needs no check.
STEP_PACK_LIMIT_BYTES = 1 << 20


def _unpacked_cell(x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, resets):
    # (B, F) rows (LSTMCell's call) pass as they are: each reshape and view costs about as much
    # as a small step's arithmetic.
    rows = h.dim() == 2 and x.dim() == 2
    x2, h2, c2 = (x, h, c) if rows else (x.reshape(-1, x.shape[-1]), h.reshape(-1, h.shape[-1]),
                                          c.reshape(-1, c.shape[-1]))
    if resets is not None:
        reset = resets.reshape(-1, 1)
        h2, c2 = torch.where(reset, 0.0, h2), torch.where(reset, 0.0, c2)
    if w_hr is None:
        h_next, c_next = torch._VF.lstm_cell(x2, (h2, c2), w_ih, w_hh, b_ih, b_hh)
    else:  # lstm_cell takes no projection: h has proj_size columns
        gates = torch.nn.functional.linear(x2, w_ih, b_ih) + torch.nn.functional.linear(h2, w_hh, b_hh)
        i, f, g, o = gates.chunk(4, dim=1)
        c_next = torch.sigmoid(f) * c2 + torch.sigmoid(i) * torch.tanh(g)
        h_next = (torch.sigmoid(o) * torch.tanh(c_next)) @ w_hr.t()
    if rows:
        return h_next, c_next
    return h_next.view(h.shape), c_next.view(c.shape)


def _packs_step(w_ih, w_hh, w_hr) -> bool:
    weight_elements = w_ih.numel() + w_hh.numel() + (0 if w_hr is None else w_hr.numel())
    return weight_elements * w_hh.element_size() <= STEP_PACK_LIMIT_BYTES


def _cell_arguments(x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, resets):
    """What _C.cell takes, and the step's fresh outputs: (packed, arguments, h_out, c_out). The
    caller keeps `packed` referenced until the kernel has returned: another thread may replace
    the cache entry meanwhile."""
    x, h, c = x.contiguous(), h.contiguous(), c.contiguous()
    resets = None if resets is None else resets.contiguous()
    packed, weights = _cell_weights(w_ih, w_hh, b_ih, b_hh, w_hr)
    h_out = torch.empty_like(h)  # (empty_like costs a third of empty(shape, dtype=...) here)
    c_out = torch.empty_like(c)
    arguments = (_DTYPE_CODES[x.dtype], weights, c.numel() // c.shape[-1], x.data_ptr(), h.data_ptr(), c.data_ptr(),
                 _ptr(resets), h_out.data_ptr(), c_out.data_ptr())
    return packed, arguments, h_out, c_out


def _step(x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, resets=None):
    """One no-grad step with the input projection and the resets fused: a single C++ call
    on weights packed for its micro-kernel (up to STEP_PACK_LIMIT_BYTES of weights)."""
    if not _packs_step(w_ih, w_hh, w_hr):
        return _unpacked_cell(x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, resets)
    packed, arguments, h_out, c_out = _cell_arguments(x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, resets)
    _C.cell(*arguments, torch.get_num_threads())
    return h_out, c_out


def _step_heads(x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, resets, head_w, head_addend, num_actions):
    """_step with the readout and the greedy choice in the same C++ call (backends.cell_heads):
    _bind_step_heads' step, bound for this one call."""
    step = _bind_step_heads((w_ih, w_hh, b_ih, b_hh, w_hr), head_w, num_actions, c.numel() // c.shape[-1])
    if step is None:
        return composed_cell_heads(_unpacked_cell, x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, resets, head_w,
                                   head_addend, num_actions)
    x, head_addend = x.contiguous(), head_addend.contiguous()
    resets = None if resets is None else resets.contiguous()
    head_out = torch.empty_like(head_addend)
    actions = torch.empty(head_addend.shape[0], dtype=torch.int64)
    h_out, c_out = step(x.data_ptr(), h, c, _ptr(resets), head_addend.data_ptr(), head_out.data_ptr(),
                        actions.data_ptr())
    return h_out, c_out, head_out, actions


def _bind_step_heads(weights, head_w, num_actions, batch):
    """The fused step with its weights packed and its head fixed once (for a RolloutPlan, and
    for _step_heads' one call): returns step(x, h, c, resets, head_addend, head_out, actions)
    -> (h_next, c_next) on the addresses of x, resets (0 for none), head_addend, head_out and
    actions, h and c as tensors; None where the weights are too large to pack."""
    w_ih, w_hh, b_ih, b_hh, w_hr = weights
    if not _packs_step(w_ih, w_hh, w_hr):
        return None
    packed, cell_weights = _cell_weights(*weights)
    head_w = head_w.contiguous()
    code, head_address, head_size = _DTYPE_CODES[w_hh.dtype], head_w.data_ptr(), head_w.shape[1]

    def step(x, h, c, resets, head_addend, head_out, actions):
        h, c = h.contiguous(), c.contiguous()
        h_out, c_out = torch.empty_like(h), torch.empty_like(c)
        _C.cell_heads(code, cell_weights, batch, x, h.data_ptr(), c.data_ptr(), resets, h_out.data_ptr(),
                      c_out.data_ptr(), head_address, head_addend, head_size, num_actions, head_out, actions,
                      torch.get_num_threads())
        return h_out, c_out
    step.keeps = (packed, head_w)  # the tensors behind the addresses it launches on
    return step


LAUNCHER = Launcher(name="cpp", unsupported_reason=_unsupported_reason, forward=_forward, backward=_backward,
                    step=_step, weight_layout=_weight_layout, step_heads=_step_heads,
                    bind_step_heads=_bind_step_heads)
BACKEND = kernel_backend(LAUNCHER)
