"""What torch.autocast does to nn.LSTM / nn.LSTMCell, for fastrnn's modules to do the same.

Under autocast torch casts float32 operands of the RNN ops on its lower-precision lists and
returns results in the autocast dtype: ``lstm`` on the CPU list, cuDNN's RNN and ``lstm_cell``
on CUDA's. ``lstm_cell`` is not on the CPU list, so nn.LSTMCell stays float32 there.

fastrnn runs with autocast switched off inside its own modules (its F.linear input projection
would otherwise be cast behind its back) and casts explicitly: inputs, states and weights are
rounded to the autocast dtype (through differentiable casts, so gradients reach the float32
parameters as under torch's autocast), and the backend computes in that dtype where it runs it
natively (triton: bfloat16/float16 with float32 accumulation). Where it does not (the cpp
backend on the CPU) the rounded operands are computed on in float32 and the results rounded
to the autocast dtype: oneDNN's bfloat16 LSTM also accumulates in float32.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fastrnn.backends import resolve_backend


def autocast_on(device_type: str) -> bool:
    """torch.is_autocast_enabled(device_type), False for a device type autocast has no notion of
    (meta, used for shape inference), where torch's query raises."""
    try:
        return torch.is_autocast_enabled(device_type)
    except RuntimeError:
        return False


def autocast_dtype(device_type: str, dtype: torch.dtype, is_cell: bool) -> torch.dtype | None:
    """The dtype torch's module would compute in under the active autocast, or None when
    autocast is off here or leaves this call alone (float64 operands are never cast)."""
    if not autocast_on(device_type) or dtype == torch.float64 or not dtype.is_floating_point:
        return None
    if is_cell and device_type == "cpu":
        return None  # lstm_cell is not on CPU autocast's lower-precision list
    return torch.get_autocast_dtype(device_type)


def compute_dtype(requested_backend: str, device: torch.device, target: torch.dtype) -> torch.dtype:
    """target where the backend runs it natively, else float32 (a named backend that cannot
    take target computes in float32; `auto` prefers its fast backend in float32 to the
    reference backend in target)."""
    try:
        backend = resolve_backend(requested_backend, device, target)
    except ValueError:
        return torch.float32
    if requested_backend == "auto" and backend.name == "reference":
        return torch.float32
    return target


def rounded(tensor: Tensor | None, target: torch.dtype, compute: torch.dtype) -> Tensor | None:
    """tensor rounded to the autocast dtype, held in the compute dtype (differentiable)."""
    if tensor is None:
        return None
    return tensor.to(target).to(compute)
