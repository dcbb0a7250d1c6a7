"""Fused LSTM step: one launch computes h_t, c_t for every row (an RL rollout step).

Grid (batch tiles, hidden tiles); each CTA owns BLOCK_B rows x BLOCK_H hidden units, all four
gates of them, so no CTA needs another's result and no barrier is involved:

    gates = (xproj | x W_ih^T + bias) + h W_hh^T,  then  c' = f c + i g,  h' = o tanh(c')

optionally after zeroing the rows marked in `resets` (an episode boundary). With a projection
h' is written to a (B, H) scratch that kernels/projection.py turns into the (B, P) output.

The launcher allocates nothing and never synchronises with the host when the output buffers
are passed, so a rollout loop of steps can be captured in a CUDA graph.
"""

import torch
import triton
import triton.language as tl

from .activations import sigmoid, tanh
from .config import StepConfig
from .gate_gemm import accumulate_gates


# Batch, step count and flags change per call: one compiled kernel serves them all.
@triton.jit(do_not_specialize=["batch", "has_resets"])
def lstm_step_kernel(
    x_ptr, w_ih_ptr, bias_ptr, xproj_ptr, h_ptr, c_ptr, w_hh_ptr, resets_ptr, h_out_ptr, c_out_ptr,
    batch, input_size, hidden_size, out_size, has_resets,
    FUSED_INPUT: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    cols = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    row_ok = rows < batch
    col_ok = cols < hidden_size
    tile_mask = row_ok[:, None] & col_ok[None, :]
    reset = tl.load(resets_ptr + rows, mask=row_ok & (has_resets != 0), other=0) != 0
    if FUSED_INPUT:
        bias = bias_ptr + cols
        bias_ok = col_ok
        acc_i = tl.broadcast_to(tl.load(bias, mask=bias_ok, other=0.0).to(tl.float32)[None, :], (BLOCK_B, BLOCK_H))
        acc_f = tl.broadcast_to(tl.load(bias + hidden_size, mask=bias_ok, other=0.0).to(tl.float32)[None, :], (BLOCK_B, BLOCK_H))
        acc_g = tl.broadcast_to(tl.load(bias + 2 * hidden_size, mask=bias_ok, other=0.0).to(tl.float32)[None, :], (BLOCK_B, BLOCK_H))
        acc_o = tl.broadcast_to(tl.load(bias + 3 * hidden_size, mask=bias_ok, other=0.0).to(tl.float32)[None, :], (BLOCK_B, BLOCK_H))
        no_rows = rows < 0
        acc_i, acc_f, acc_g, acc_o = accumulate_gates(
            acc_i, acc_f, acc_g, acc_o, x_ptr, w_ih_ptr, rows, row_ok, no_rows, cols, col_ok,
            input_size, hidden_size, PRECISION, BLOCK_K, False)
    else:
        x_tile = xproj_ptr + rows[:, None] * (4 * hidden_size) + cols[None, :]
        acc_i = tl.load(x_tile, mask=tile_mask, other=0.0).to(tl.float32)
        acc_f = tl.load(x_tile + hidden_size, mask=tile_mask, other=0.0).to(tl.float32)
        acc_g = tl.load(x_tile + 2 * hidden_size, mask=tile_mask, other=0.0).to(tl.float32)
        acc_o = tl.load(x_tile + 3 * hidden_size, mask=tile_mask, other=0.0).to(tl.float32)
    acc_i, acc_f, acc_g, acc_o = accumulate_gates(
        acc_i, acc_f, acc_g, acc_o, h_ptr, w_hh_ptr, rows, row_ok, reset, cols, col_ok,
        out_size, hidden_size, PRECISION, BLOCK_K, False)
    state_tile = rows[:, None] * hidden_size + cols[None, :]
    c = tl.load(c_ptr + state_tile, mask=tile_mask & ~reset[:, None], other=0.0).to(tl.float32)
    c_new = sigmoid(acc_f) * c + sigmoid(acc_i) * tanh(acc_g)
    h_new = sigmoid(acc_o) * tanh(c_new)
    tl.store(c_out_ptr + state_tile, c_new.to(c_out_ptr.dtype.element_ty), mask=tile_mask)
    tl.store(h_out_ptr + state_tile, h_new.to(h_out_ptr.dtype.element_ty), mask=tile_mask)


def launch_step(x, w_ih, bias, xproj, h, c, w_hh, resets_u8, h_out, c_out,
                config: StepConfig, precision: str) -> None:
    """One step over contiguous tensors, into h_out (B, H) and c_out (B, H).

    Either x (B, I) with w_ih (4H, I) and a float32 bias (4H,) (b_ih + b_hh, zeros without
    bias), or xproj (B, 4H) precomputed (then w_ih and bias are ignored and may be None).
    resets_u8 (B,) uint8 or None zeroes those rows' h and c first.
    Absent operands are replaced by views of tensors already passed, never by new buffers.
    """
    batch, hidden_size = c.shape
    fused = x is not None
    grid = (triton.cdiv(batch, config.block_b), triton.cdiv(hidden_size, config.block_h))
    lstm_step_kernel[grid](
        x if fused else xproj, w_ih if fused else w_hh, bias if fused else None,
        xproj if not fused else x, h, c, w_hh,
        resets_u8 if resets_u8 is not None else h_out.view(torch.uint8), h_out, c_out,
        batch, x.shape[1] if fused else 0, hidden_size, h.shape[1], int(resets_u8 is not None),
        FUSED_INPUT=fused, PRECISION=precision,
        BLOCK_B=config.block_b, BLOCK_H=config.block_h, BLOCK_K=config.block_k,
        num_warps=config.num_warps, num_stages=config.num_stages,
    )
