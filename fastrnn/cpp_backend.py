"""The cpp backend: csrc/ kernels (fastrnn._C) for float32 and float64 tensors on the CPU."""

from __future__ import annotations

import torch
from torch import Tensor

from fastrnn import _C
from fastrnn.backends import Backend
from fastrnn.custom_ops import define_recurrence_ops, traced_cell
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


class _Packed:
    """Packed weights and their raw addresses, kept together so a cache hit costs no lookups."""

    def __init__(self, *tensors: Tensor | None):
        self.tensors = tensors
        self.ptrs = tuple(_ptr(t) for t in tensors)


def _cell_weights(w_ih, w_hh, b_ih, b_hh, w_hr) -> _Packed:
    def make(w_ih, w_hh, b_ih, b_hh, w_hr):
        hidden_size = w_hh.shape[0] // 4
        bias = None if b_ih is None else (b_ih + b_hh).detach().contiguous()
        return _Packed(
            _pack_gates(w_ih, hidden_size), _pack_gates(w_hh, hidden_size), bias,
            None if w_hr is None else _pack_panels(w_hr, True),
        )
    # The packed layout depends on the vector width of the instruction set in use (set_isa).
    return _packed.get("cell", (w_ih, w_hh, b_ih, b_hh, w_hr), make, layout_key=_C.vector_width(_DTYPE_CODES[w_hh.dtype]))


def _forward_kernel(xproj, w_hh, w_hr, h0, c0, resets, lengths, save):
    steps, batch, four_h = xproj.shape
    hidden_size = four_h // 4
    out_size = h0.shape[1]
    proj = 0 if w_hr is None else w_hr.shape[0]
    # Locals keep any contiguous copies alive until the kernel has returned.
    xproj, h0, c0 = xproj.contiguous(), h0.contiguous(), c0.contiguous()
    w_hh = w_hh.detach().contiguous()
    w_hr = None if w_hr is None else w_hr.detach().contiguous()
    resets = None if resets is None else resets.contiguous()
    lengths = None if lengths is None else lengths.to(torch.int64).contiguous()
    y = xproj.new_empty(steps, batch, out_size)
    h_n, c_n = h0.new_empty(h0.shape), c0.new_empty(c0.shape)
    gates = xproj.new_empty(steps, batch, four_h) if save else xproj.new_empty(0)
    cells = xproj.new_empty(steps, batch, hidden_size) if save else xproj.new_empty(0)
    hidden = xproj.new_empty(steps, batch, hidden_size) if save and proj else xproj.new_empty(0)
    _C.forward(
        _DTYPE_CODES[xproj.dtype], steps, batch, hidden_size, out_size, proj,
        xproj.data_ptr(), w_hh.data_ptr(), _ptr(w_hr),
        h0.data_ptr(), c0.data_ptr(), _ptr(resets), _ptr(lengths),
        y.data_ptr(), h_n.data_ptr(), c_n.data_ptr(), _ptr(gates), _ptr(cells), _ptr(hidden),
        torch.get_num_threads(),
    )
    return y, h_n, c_n, gates, cells, hidden


def _backward_kernel(grad_y, grad_h_n, grad_c_n, w_hh, w_hr, c0, resets, lengths, gates, cells):
    steps, batch, four_h = gates.shape
    hidden_size = four_h // 4
    out_size = w_hh.shape[1]
    proj = 0 if w_hr is None else w_hr.shape[0]
    contiguous = [None if t is None else t.contiguous() for t in (grad_y, grad_h_n, grad_c_n, c0, resets, w_hh, w_hr)]
    grad_y, grad_h_n, grad_c_n, c0, resets, w_hh, w_hr = contiguous
    lengths = None if lengths is None else lengths.to(torch.int64).contiguous()
    dxproj = gates.new_empty(gates.shape)
    dh0 = c0.new_empty(batch, out_size)
    dc0 = c0.new_empty(batch, hidden_size)
    dy_total = gates.new_empty(steps, batch, proj) if proj else gates.new_empty(0)
    _C.backward(
        _DTYPE_CODES[gates.dtype], steps, batch, hidden_size, out_size, proj,
        _ptr(grad_y), _ptr(grad_h_n), _ptr(grad_c_n),
        w_hh.data_ptr(), _ptr(w_hr),
        c0.data_ptr(), _ptr(resets), _ptr(lengths), gates.data_ptr(), cells.data_ptr(),
        dxproj.data_ptr(), dh0.data_ptr(), dc0.data_ptr(), _ptr(dy_total), torch.get_num_threads(),
    )
    return dxproj, dh0, dc0, dy_total


OPS = define_recurrence_ops("cpp_lstm_recurrence", _forward_kernel, _backward_kernel)


recurrence = OPS  # the recurrence contract of fastrnn.reference, on the C++ kernels


# The packed step must check its source weights on every call (weight_cache.py). Above this
# many bytes of weights the source, its snapshot and the packed copy no longer share a core's
# L2, and the check costs more than the step saves (measured: 2x slower than torch's
# lstm_cell at H=512, B=1; even at H=256): such steps run torch's own lstm_cell on the
# weights as they are, which needs no check.
STEP_PACK_LIMIT_BYTES = 1 << 20


def _unpacked_cell(x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, resets):
    x2, h2, c2 = x.reshape(-1, x.shape[-1]), h.reshape(-1, h.shape[-1]), c.reshape(-1, c.shape[-1])
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
    return h_next.view(h.shape), c_next.view(c.shape)


def cell(x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, resets=None):
    """One no-grad step with the input projection and the resets fused: a single C++ call
    on weights packed for its micro-kernel (up to STEP_PACK_LIMIT_BYTES of weights)."""
    if torch.compiler.is_compiling():
        return traced_cell(OPS, x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, resets)
    weight_elements = w_ih.numel() + w_hh.numel() + (0 if w_hr is None else w_hr.numel())
    if weight_elements * w_hh.element_size() > STEP_PACK_LIMIT_BYTES:
        return _unpacked_cell(x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, resets)
    input_size, hidden_size, out_size = x.shape[-1], c.shape[-1], h.shape[-1]
    batch = c.numel() // hidden_size
    x, h, c = x.contiguous(), h.contiguous(), c.contiguous()
    resets = None if resets is None else resets.contiguous()
    # The packed weights stay referenced until the kernel has returned: another thread may
    # replace the cache entry meanwhile.
    packed = _cell_weights(w_ih, w_hh, b_ih, b_hh, w_hr)
    w_ih_p, w_hh_p, bias_p, w_hr_p = packed.ptrs
    h_out = torch.empty_like(h)  # (empty_like costs a third of empty(shape, dtype=...) here)
    c_out = torch.empty_like(c)
    _C.cell(
        _DTYPE_CODES[x.dtype], batch, input_size, hidden_size, out_size, 0 if w_hr is None else w_hr.shape[0],
        x.data_ptr(), w_ih_p, h.data_ptr(), w_hh_p, bias_p, c.data_ptr(), w_hr_p, _ptr(resets),
        h_out.data_ptr(), c_out.data_ptr(), torch.get_num_threads(),
    )
    return h_out, c_out


BACKEND = Backend(name="cpp", unsupported_reason=_unsupported_reason, recurrence=recurrence, cell=cell)
