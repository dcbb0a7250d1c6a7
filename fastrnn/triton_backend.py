"""The triton backend: kernels/ (fastrnn.kernels) for float32, float16 and bfloat16 tensors.

CUDA tensors; CPU tensors too when TRITON_INTERPRET=1, which makes Triton run the same
kernels in its interpreter, so they are tested on machines without a GPU. Importing this
module imports triton; fastrnn imports it only when the backend is asked for by name (or by
"auto" on a CUDA tensor).

Sequence mode is one persistent forward launch and one persistent backward launch per layer
(see kernels/README.md); no-grad steps are one fused launch (two with a projection).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

import torch
from torch import Tensor

from fastrnn.backends import Backend
from fastrnn.custom_ops import define_recurrence_ops, traced_cell


def _import_kernels():
    """fastrnn.kernels, also from a source checkout where kernels/ sits beside fastrnn/.

    setup.py installs kernels/ as fastrnn.kernels (package_dir); a checkout on PYTHONPATH
    has no fastrnn/kernels, so the directory is loaded under that name here.
    """
    try:
        return importlib.import_module("fastrnn.kernels")
    except ModuleNotFoundError as error:
        if error.name != "fastrnn.kernels":
            raise
    source = Path(__file__).resolve().parent.parent / "kernels" / "__init__.py"
    spec = importlib.util.spec_from_file_location("fastrnn.kernels", source, submodule_search_locations=[str(source.parent)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["fastrnn.kernels"] = module
    spec.loader.exec_module(module)
    return module


_import_kernels()
from fastrnn.kernels import config as kconfig  # noqa: E402
from fastrnn.kernels.launch_plan import DTYPE_NAMES, grid_sync_enabled, precision, sequence_grid  # noqa: E402
from fastrnn.kernels.projection import launch_projection  # noqa: E402
from fastrnn.kernels.sequence_backward import launch_sequence_backward  # noqa: E402
from fastrnn.kernels.sequence_forward import launch_sequence_forward  # noqa: E402
from fastrnn.kernels.step import launch_step  # noqa: E402


def _unsupported_reason(device: torch.device, dtype: torch.dtype) -> str | None:
    if dtype not in DTYPE_NAMES:
        return "the triton backend takes float32, float16 and bfloat16 only"
    if device.type == "cuda":
        return None
    if device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1":
        return None
    return "the triton backend runs CUDA tensors (CPU tensors only with TRITON_INTERPRET=1, for tests)"


def _as_u8(resets: Tensor | None, device: torch.device) -> Tensor | None:
    return None if resets is None else resets.to(device).contiguous().view(torch.uint8)


def _contiguous(tensor: Tensor | None) -> Tensor | None:
    return None if tensor is None else tensor.contiguous()


def _as_i64(lengths: Tensor | None, device: torch.device) -> Tensor | None:
    return None if lengths is None else lengths.to(device=device, dtype=torch.int64).contiguous()


def _forward_kernel(xproj, w_hh, w_hr, h0, c0, resets, lengths, save):
    steps, batch, four_h = xproj.shape
    hidden_size = four_h // 4
    out_size = h0.shape[1]
    device, dtype = xproj.device, xproj.dtype
    xproj, w_hh, h0, c0 = xproj.contiguous(), w_hh.contiguous(), h0.contiguous(), c0.contiguous()
    w_hr = None if w_hr is None else w_hr.contiguous()
    y = xproj.new_empty(steps, batch, out_size)
    h_n, c_n = h0.new_empty(h0.shape), c0.new_empty(c0.shape)
    gates = xproj.new_empty(steps, batch, four_h) if save else xproj.new_empty(0)
    cells = xproj.new_empty(steps, batch, hidden_size) if save else xproj.new_empty(0)
    if w_hr is None:
        hidden = xproj.new_empty(0)
    else:  # the pre-projection outputs: all steps when saved, else one step of scratch
        hidden = xproj.new_empty(steps if save else 1, batch, hidden_size)
    if steps == 0:
        h_n.copy_(h0)
        c_n.copy_(c0)
        return y, h_n, c_n, gates, cells, hidden
    config = kconfig.forward_config(hidden_size, out_size, DTYPE_NAMES[dtype], grid_sync_enabled(device))
    grid = sequence_grid(config, batch, max(hidden_size, out_size), device)
    launch_sequence_forward(
        xproj, w_hh, w_hr, h0, c0, _as_u8(resets, device), _as_i64(lengths, device),
        y, h_n, c_n, gates, cells, hidden, save, config, grid, precision(dtype, device, sequence=True),
    )
    return y, h_n, c_n, gates, cells, (hidden if save else xproj.new_empty(0))


def _state_grad(grad: Tensor | None, shape, device) -> Tensor:
    """A float32 copy the backward kernel may overwrite (zeros for an unused output)."""
    if grad is None:
        return torch.zeros(shape, dtype=torch.float32, device=device)
    return grad.to(dtype=torch.float32, copy=True).contiguous()


def _backward_kernel(grad_y, grad_h_n, grad_c_n, w_hh, w_hr, c0, resets, lengths, gates, cells):
    steps, batch, four_h = gates.shape
    hidden_size = four_h // 4
    out_size = w_hh.shape[1]
    device, dtype = gates.device, gates.dtype
    w_hh, c0 = w_hh.contiguous(), c0.contiguous()
    w_hr = None if w_hr is None else w_hr.contiguous()
    grad_y = None if grad_y is None else grad_y.contiguous()
    dh_state = _state_grad(grad_h_n, (batch, out_size), device)
    dc_state = _state_grad(grad_c_n, (batch, hidden_size), device)
    dxproj = gates.new_empty(gates.shape)
    dh0 = c0.new_empty(batch, out_size)
    dc0 = c0.new_empty(batch, hidden_size)
    dy_total = gates.new_empty(steps, batch, out_size) if w_hr is not None else gates.new_empty(0)
    if steps == 0:
        dh0.copy_(dh_state)
        dc0.copy_(dc_state)
        return dxproj, dh0, dc0, dy_total
    config = kconfig.backward_config(hidden_size, out_size, DTYPE_NAMES[dtype], grid_sync_enabled(device))
    grid = sequence_grid(config, batch, max(hidden_size, out_size), device)
    launch_sequence_backward(
        grad_y, w_hh, w_hr, c0, _as_u8(resets, device), _as_i64(lengths, device), gates.contiguous(),
        cells.contiguous(), dxproj, dh0, dc0, dy_total, dh_state, dc_state,
        config, grid, precision(dtype, device, sequence=True),
    )
    return dxproj, dh0, dc0, dy_total


OPS = define_recurrence_ops("triton_lstm_recurrence", _forward_kernel, _backward_kernel)


recurrence = OPS  # the recurrence contract of fastrnn.reference, on the Triton kernels


def cell(x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, resets=None):
    """One no-grad step with the input projection and resets fused: one launch (two with w_hr)."""
    if torch.compiler.is_compiling():
        return traced_cell(OPS, x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, resets)
    h_shape, c_shape = h.shape, c.shape
    x = x.reshape(-1, x.shape[-1]).contiguous()
    h = h.reshape(-1, h_shape[-1]).contiguous()
    c = c.reshape(-1, c_shape[-1]).contiguous()
    batch, hidden_size = c.shape
    step_config = kconfig.step_config(DTYPE_NAMES[x.dtype])
    matmul_precision = precision(x.dtype, x.device, sequence=False)
    c_out = torch.empty_like(c)
    hidden = torch.empty(batch, hidden_size, dtype=h.dtype, device=h.device)
    # The kernel reads b_ih and b_hh itself: nothing cached that a write through .data skips.
    launch_step(x, w_ih.contiguous(), _contiguous(b_ih), _contiguous(b_hh), None, h, c, w_hh.contiguous(),
                _as_u8(resets, x.device), hidden, c_out, step_config, matmul_precision)
    if w_hr is None:
        return hidden.view(h_shape), c_out.view(c_shape)
    h_out = torch.empty(batch, w_hr.shape[0], dtype=h.dtype, device=h.device)
    launch_projection(hidden, w_hr.contiguous(), h_out, kconfig.projection_config(DTYPE_NAMES[x.dtype]),
                      matmul_precision)
    return h_out.view(h_shape), c_out.view(c_shape)


BACKEND = Backend(name="triton", unsupported_reason=_unsupported_reason, recurrence=recurrence, cell=cell)
