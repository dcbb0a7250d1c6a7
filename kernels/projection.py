"""The output projection of one step, y = h W_hr^T (proj_size > 0), for the fused step.

A separate launch because every output column needs all H hidden units, which the step
kernel's CTAs each hold a tile of. Grid (batch tiles, output tiles).
"""

import triton
import triton.language as tl

from .config import StepConfig


# Batch, step count and flags change per call: one compiled kernel serves them all.
@triton.jit(do_not_specialize=["batch"])
def projection_kernel(h_ptr, w_ptr, y_ptr, batch, in_size, out_size, PRECISION: tl.constexpr,
                      BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    row_ok = rows < batch
    col_ok = cols < out_size
    acc = tl.zeros((BLOCK_B, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, in_size, BLOCK_K):
        ks = k0 + offs_k
        k_ok = ks < in_size
        h = tl.load(h_ptr + rows[:, None] * in_size + ks[None, :], mask=row_ok[:, None] & k_ok[None, :], other=0.0)
        w = tl.load(w_ptr + cols[None, :] * in_size + ks[:, None], mask=k_ok[:, None] & col_ok[None, :], other=0.0)
        acc = tl.dot(h, w, acc, input_precision=PRECISION)
    tl.store(y_ptr + rows[:, None] * out_size + cols[None, :], acc.to(y_ptr.dtype.element_ty),
             mask=row_ok[:, None] & col_ok[None, :])


def launch_projection(h, w_hr, y, config: StepConfig, precision: str) -> None:
    """y (B, P) = h (B, H) @ w_hr (P, H)^T, all contiguous; allocates nothing."""
    batch, in_size = h.shape
    out_size = w_hr.shape[0]
    grid = (triton.cdiv(batch, config.block_b), triton.cdiv(out_size, config.block_h))
    projection_kernel[grid](
        h, w_hr, y, batch, in_size, out_size, PRECISION=precision,
        BLOCK_B=config.block_b, BLOCK_N=config.block_h, BLOCK_K=config.block_k,
        num_warps=config.num_warps, num_stages=config.num_stages,
    )
