"""The triton backend: kernels/ (fastrnn.kernels) for float32, float16 and bfloat16 tensors.

CUDA tensors; CPU tensors too when TRITON_INTERPRET=1, which makes Triton run the same
kernels in its interpreter, so they are tested on machines without a GPU. Importing this
module imports triton; fastrnn imports it only when the backend is asked for by name (or by
"auto" on a CUDA tensor).

Sequence mode is one persistent forward launch and one persistent backward launch per layer
(see kernels/README.md); no-grad steps are one fused launch (two with a projection).
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from fastrnn.kernels import config as kconfig
from fastrnn.kernels.launch_plan import DTYPE_NAMES, grid_sync_enabled, precision, sequence_grid
from fastrnn.kernels.projection import launch_projection
from fastrnn.kernels.sequence_backward import launch_sequence_backward
from fastrnn.kernels.sequence_forward import launch_sequence_forward
from fastrnn.kernels.step import launch_step
from fastrnn.recurrence_op import BackwardOutputs, ForwardOutputs, Inputs, Launcher, OutputGrads, kernel_backend


def _unsupported_reason(device: torch.device, dtype: torch.dtype) -> str | None:
    if dtype not in DTYPE_NAMES:
        return "the triton backend takes float32, float16 and bfloat16 only"
    if device.type == "cuda":
        return None
    if device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1":
        return None
    return "the triton backend runs CUDA tensors (CPU tensors only with TRITON_INTERPRET=1, for tests)"


def _as_u8(resets: Tensor | None) -> Tensor | None:
    return None if resets is None else resets.view(torch.uint8)


def _contiguous(tensor: Tensor | None) -> Tensor | None:
    return None if tensor is None else tensor.contiguous()


def _forward(inputs: Inputs, out: ForwardOutputs, save: bool) -> None:
    xproj, h0 = inputs.xproj, inputs.h0
    steps, batch, four_h = xproj.shape
    hidden_size, out_size = four_h // 4, h0.shape[1]
    device, dtype = xproj.device, xproj.dtype
    hidden = out.hidden
    if inputs.w_hr is not None and not save:  # the projection reads one step of scratch
        hidden = xproj.new_empty(1, batch, hidden_size)
    config = kconfig.forward_config(hidden_size, out_size, DTYPE_NAMES[dtype], grid_sync_enabled(device))
    grid = sequence_grid(config, batch, max(hidden_size, out_size), device)
    launch_sequence_forward(
        xproj, inputs.w_hh, inputs.w_hr, h0, inputs.c0, _as_u8(inputs.resets), inputs.lengths,
        out.y, out.h_n, out.c_n, out.gates, out.cells, hidden, save, config, grid,
        precision(dtype, device, sequence=True),
    )


def _state_grad(grad: Tensor | None, like: Tensor) -> Tensor:
    """A float32 copy the backward kernel may overwrite (zeros for an unused output)."""
    if grad is None:
        return torch.zeros(like.shape, dtype=torch.float32, device=like.device)
    return grad.to(dtype=torch.float32, copy=True).contiguous()


def _backward(inputs: Inputs, grads: OutputGrads, gates: Tensor, cells: Tensor, out: BackwardOutputs) -> None:
    steps, batch, four_h = gates.shape
    hidden_size, out_size = four_h // 4, inputs.h0.shape[1]
    device, dtype = gates.device, gates.dtype
    config = kconfig.backward_config(hidden_size, out_size, DTYPE_NAMES[dtype], grid_sync_enabled(device))
    grid = sequence_grid(config, batch, max(hidden_size, out_size), device)
    launch_sequence_backward(
        grads.grad_y, inputs.w_hh, inputs.w_hr, inputs.c0, _as_u8(inputs.resets), inputs.lengths,
        gates.contiguous(), cells.contiguous(), out.dxproj, out.dh0, out.dc0, out.dy_total,
        _state_grad(grads.grad_h_n, out.dh0), _state_grad(grads.grad_c_n, out.dc0),
        config, grid, precision(dtype, device, sequence=True),
    )


def _weight_layout(dtype: torch.dtype) -> None:
    return None  # the step reads the weights as torch stores them: nothing packed, nothing cached


def _step(x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, resets=None):
    """One no-grad step with the input projection and resets fused: one launch (two with w_hr)."""
    h_shape, c_shape = h.shape, c.shape
    x = x.flatten(0, -2).contiguous()
    h = h.reshape(-1, h_shape[-1]).contiguous()
    c = c.reshape(-1, c_shape[-1]).contiguous()
    batch, hidden_size = c.shape
    step_config = kconfig.step_config(DTYPE_NAMES[x.dtype])
    matmul_precision = precision(x.dtype, x.device, sequence=False)
    c_out = torch.empty_like(c)
    hidden = torch.empty(batch, hidden_size, dtype=h.dtype, device=h.device)
    # The kernel reads b_ih and b_hh itself: nothing cached that a write through .data skips.
    launch_step(x, w_ih.contiguous(), _contiguous(b_ih), _contiguous(b_hh), None, h, c, w_hh.contiguous(),
                _as_u8(None if resets is None else resets.to(x.device).contiguous()), hidden, c_out, step_config, matmul_precision)
    if w_hr is None:
        return hidden.view(h_shape), c_out.view(c_shape)
    h_out = torch.empty(batch, w_hr.shape[0], dtype=h.dtype, device=h.device)
    launch_projection(hidden, w_hr.contiguous(), h_out, kconfig.projection_config(DTYPE_NAMES[x.dtype]),
                      matmul_precision)
    return h_out.view(h_shape), c_out.view(c_shape)


LAUNCHER = Launcher(name="triton", unsupported_reason=_unsupported_reason, forward=_forward, backward=_backward,
                    step=_step, weight_layout=_weight_layout)
BACKEND = kernel_backend(LAUNCHER)
