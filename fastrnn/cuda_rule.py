"""When `auto` gives a CUDA sequence to cuDNN (torch's own nn.LSTM kernels) instead of triton.

Measured on an H200 (bench/results/gpu.md, 2026-11-28, T=100, forward and forward+backward):

- 16-bit dtypes: triton's persistent kernels win while one pass of CTA groups covers the batch
  (1.4-3.6x cuDNN at H <= 256, 1.1-1.9x at H = 512-1024 with B <= 16). A batch that needs
  several passes runs them one after another and loses (0.14-0.94x), so cuDNN takes it.
- float32: cuDNN's persistent kernel takes about 1.3 us a step where ours takes about 5 us, so
  triton wins only at H in (128, 256] with one pass (1.3-1.7x); elsewhere cuDNN takes it.

Only `backend="auto"` follows this rule; it is visible as ``module.last_backend == "cudnn"``.
Calls with ``resets`` (which cuDNN cannot express) and no-grad single steps (a step loop, which
stays on the capturable triton step kernel) always run triton.
"""

from __future__ import annotations

import torch

from fastrnn.kernels import config as kconfig
from fastrnn.kernels.launch_plan import DTYPE_NAMES, cdiv, grid_sync_enabled, sequence_grid


def sequence_passes(dtype: torch.dtype, hidden_size: int, out_size: int, batch: int, device: torch.device) -> int:
    """How many passes of the forward kernel's CTA groups cover `batch` rows."""
    config = kconfig.forward_config(hidden_size, out_size, DTYPE_NAMES[dtype], grid_sync_enabled(device))
    n_groups, _ = sequence_grid(config, batch, max(hidden_size, out_size), device)
    return cdiv(cdiv(batch, config.block_b), n_groups)


def cudnn_is_faster(dtype: torch.dtype, hidden_size: int, out_size: int, batch: int, device: torch.device) -> bool:
    if dtype not in DTYPE_NAMES:
        return False
    if sequence_passes(dtype, hidden_size, out_size, batch, device) > 1:
        return True
    if dtype == torch.float32:
        return not 128 < hidden_size <= 256
    return False
