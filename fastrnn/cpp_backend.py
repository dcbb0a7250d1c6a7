"""The cpp backend: csrc/ kernels (fastrnn._C) for float32 and float64 tensors on the CPU."""

from __future__ import annotations

import torch
from torch import Tensor

from fastrnn import _C
from fastrnn.recurrence_op import BackwardOutputs, ForwardOutputs, Inputs, Launcher, OutputGrads, kernel_backend
from fastrnn.weight_cache import WeightCache

DTYPE_CODES = {torch.float32: 0, torch.float64: 1}

# Only the single no-grad step caches packed weights: there packing would cost as much as the
# step itself. Sequence calls pack inside C++ every call (see csrc/cpu_dispatch.h for why).
_packed = WeightCache(snapshots=_C.Snapshots)


def _unsupported_reason(device: torch.device, dtype: torch.dtype) -> str | None:
    if device.type != "cpu":
        return "the cpp backend runs on the CPU only"
    if dtype not in DTYPE_CODES:
        return "the cpp backend takes float32 and float64 only"
    return None


def _tensor(tensor: Tensor | None) -> Tensor | None:
    """A tensor argument for the kernels: None for none or for no elements (the kernels' "absent")."""
    return None if tensor is None or tensor.numel() == 0 else tensor


def _pack_gates(w: Tensor, hidden_size: int) -> Tensor:
    """W (4H, K) in the layout the fused gate micro-kernel reads."""
    code = DTYPE_CODES[w.dtype]
    w = w.detach().contiguous()
    out = torch.empty(_C.packed_gates_numel(code, hidden_size, w.shape[1]), dtype=w.dtype)
    _C.pack_gates(code, w, hidden_size, w.shape[1], out)
    return out


def _pack_panels(w: Tensor, transposed: bool) -> Tensor:
    """W as the right operand of `a @ W.T` (transposed) or of `a @ W`."""
    code = DTYPE_CODES[w.dtype]
    w = w.detach().contiguous()
    rows, cols = w.shape
    k, n = (cols, rows) if transposed else (rows, cols)
    out = torch.empty(_C.packed_panels_numel(code, k, n), dtype=w.dtype)
    _C.pack_panels(code, w, k, n, transposed, out)
    return out


def cell_weights(w_ih, w_hh, b_ih, b_hh, w_hr):
    """The step's packed weights and their _C.CellWeights, cached per weight contents."""
    def make(w_ih, w_hh, b_ih, b_hh, w_hr):
        hidden_size = w_hh.shape[0] // 4
        bias = None if b_ih is None else (b_ih + b_hh).detach().contiguous()
        packed = (_pack_gates(w_ih, hidden_size), _pack_gates(w_hh, hidden_size), bias,
                  None if w_hr is None else _pack_panels(w_hr, True))
        weights = _C.CellWeights()
        weights.input_size, weights.hidden_size, weights.out_size = w_ih.shape[1], hidden_size, w_hh.shape[1]
        weights.proj = 0 if w_hr is None else w_hr.shape[0]
        weights.w_ih_gates, weights.w_hh_gates, weights.bias, weights.w_proj = map(_tensor, packed)
        return weights  # it holds the packed tensors whose addresses it carries
    return _packed.get("cell", (w_ih, w_hh, b_ih, b_hh, w_hr), make, layout_key=_weight_layout(w_hh.dtype))


def _weight_layout(dtype: torch.dtype) -> int:
    # The packed layout depends on the vector width of the instruction set in use (set_isa).
    return _C.vector_width(DTYPE_CODES[dtype])


def _forward(inputs: Inputs, out: ForwardOutputs, save: bool) -> None:
    a = _forward_args(inputs, out)
    a.xproj = _tensor(inputs.xproj)
    _C.forward(DTYPE_CODES[inputs.h0.dtype], a, torch.get_num_threads())


# When the no-grad forward fuses the input projection into its steps (_fuses_projection).
# Fused, each step multiplies its rows by W_ih again; unfused, one GEMM over all T * B rows
# reads W_ih once but writes a (T, B, 4H) projection that the recurrence reads back, through
# memory once it outgrows the caches. Measured by `python -m bench cpu --modes fwd` (2026-12-07,
# 2-core Intel Xeon, avx512, T=100, I=H), torch/cpp unfused -> fused: B=1 2.30 -> 2.34 at H=48,
# 1.14 -> 0.74 at H=256, 1.00 -> 0.46 at H=512 (W_ih re-read every step); B=16 1.34 -> 1.68 at
# H=48, 0.91 -> 1.07 at H=128, 0.87 -> 0.94 at H=256, 0.96 -> 0.89 at H=512 (8 MiB of weights);
# B >= 64 better or equal at every H (0.98 -> 1.14 at H=48, B=256; 0.75 -> 1.02 at H=128, B=256).
# Only the AVX-512 kernels fuse: with the AVX2 kernels (forced on the same machine, against
# MKL's AVX-512 GEMM for the projection) the fused forward ran 0.71x-1.01x the unfused one at
# H=48-512, B=16-256; no AVX2-only machine was measured, so they keep the projection.
FUSED_PROJECTION_ISAS = frozenset({"avx512"})
FUSED_PROJECTION_MIN_ROWS = 2            # one row: the projection GEMM reuses W_ih over T rows
FUSED_PROJECTION_MAX_WEIGHT_BYTES = 2 << 20  # W_ih + W_hh, below FUSED_PROJECTION_ANY_WEIGHTS_ROWS
FUSED_PROJECTION_ANY_WEIGHTS_ROWS = 64


def _fuses_projection(batch: int, weight_bytes: int) -> bool:
    if batch < FUSED_PROJECTION_MIN_ROWS or _C.isa() not in FUSED_PROJECTION_ISAS:
        return False
    return batch >= FUSED_PROJECTION_ANY_WEIGHTS_ROWS or weight_bytes <= FUSED_PROJECTION_MAX_WEIGHT_BYTES


def _forward_projected(inputs: Inputs, projection: tuple[Tensor, Tensor, Tensor | None], out: ForwardOutputs) -> None:
    """_forward with the input projection fused into each step: projection = (x (T, B, I),
    W_ih (4H, I), bias (4H) or None), contiguous, in place of inputs.xproj."""
    a = _forward_args(inputs, out)
    x, w_ih, bias = projection
    a.input_size = x.shape[2]
    a.x, a.w_ih, a.bias = x, w_ih, _tensor(bias)
    _C.forward(DTYPE_CODES[inputs.h0.dtype], a, torch.get_num_threads())


def _forward_args(inputs: Inputs, out: ForwardOutputs):
    a = _C.ForwardArgs()
    a.steps, a.batch = out.y.shape[:2]
    a.hidden_size, a.out_size = inputs.c0.shape[1], inputs.h0.shape[1]
    a.proj = 0 if inputs.w_hr is None else inputs.w_hr.shape[0]
    a.w_hh, a.w_hr = _tensor(inputs.w_hh), _tensor(inputs.w_hr)
    a.h0, a.c0, a.resets, a.lengths = map(_tensor, (inputs.h0, inputs.c0, inputs.resets, inputs.lengths))
    a.y, a.h_n, a.c_n = _tensor(out.y), _tensor(out.h_n), _tensor(out.c_n)
    a.gates, a.cells, a.hidden = _tensor(out.gates), _tensor(out.cells), _tensor(out.hidden)
    return a


def _backward(inputs: Inputs, grads: OutputGrads, gates: Tensor, cells: Tensor, out: BackwardOutputs) -> None:
    a = _C.BackwardArgs()
    a.steps, a.batch, four_h = gates.shape
    a.hidden_size, a.out_size = four_h // 4, inputs.h0.shape[1]
    a.proj = 0 if inputs.w_hr is None else inputs.w_hr.shape[0]
    a.grad_y, a.grad_h_n, a.grad_c_n = map(_tensor, grads)
    a.w_hh, a.w_hr, a.c0 = _tensor(inputs.w_hh), _tensor(inputs.w_hr), _tensor(inputs.c0)
    a.resets, a.lengths = _tensor(inputs.resets), _tensor(inputs.lengths)
    a.gates, a.cells = _tensor(gates), _tensor(cells)
    a.dxproj, a.dh0, a.dc0, a.dy_total = map(_tensor, out)
    _C.backward(DTYPE_CODES[gates.dtype], a, torch.get_num_threads())


def _step(x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, resets=None):
    """One no-grad step with the input projection and the resets fused: a single C++ call
    on weights packed for its micro-kernel (fastrnn.dispatch sends steps with larger weights
    than STEP_PACK_LIMIT_BYTES to torch's lstm_cell instead). The tensors pass as objects:
    the call holds them, contiguous copies included, until it returns."""
    if not x.dtype == h.dtype == c.dtype == w_hh.dtype:  # the kernel reads them as one element type
        raise RuntimeError(f"fastrnn step: x, h and c must have the weights' dtype {w_hh.dtype}, "
                           f"got {x.dtype}, {h.dtype} and {c.dtype}")
    x, h, c = x.contiguous(), h.contiguous(), c.contiguous()
    resets = None if resets is None else resets.contiguous()
    weights = cell_weights(w_ih, w_hh, b_ih, b_hh, w_hr)
    h_out = torch.empty_like(h)  # (empty_like costs a third of empty(shape, dtype=...) here)
    c_out = torch.empty_like(c)
    _C.cell(DTYPE_CODES[x.dtype], weights, c.numel() // c.shape[-1], x, h, c, resets, h_out, c_out,
            torch.get_num_threads())
    return h_out, c_out


LAUNCHER = Launcher(name="cpp", unsupported_reason=_unsupported_reason, forward=_forward, backward=_backward,
                    step=_step, weight_layout=_weight_layout, forward_projected=_forward_projected,
                    fuses_projection=_fuses_projection)
BACKEND = kernel_backend(LAUNCHER)
