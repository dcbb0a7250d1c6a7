"""Fused LSTM step: one launch computes h_t, c_t for every row (one step of a step loop).

Grid (batch tiles, hidden tiles); each CTA owns BLOCK_B rows x BLOCK_H hidden units, all four
gates of them, so no CTA needs another's result and no barrier is involved:

    gates = (xproj | x W_ih^T + b_ih + b_hh) + h W_hh^T,  then  c' = f c + i g,  h' = o tanh(c')

optionally after zeroing the rows marked in `resets` (an episode boundary). With a projection
h' is written to a (B, H) scratch that kernels/projection.py turns into the (B, P) output.

The launcher allocates nothing and never synchronises with the host when the output buffers
are passed, so a loop of steps can be captured in a CUDA graph.
"""

import torch
import triton
import triton.language as tl

from .activations import sigmoid, tanh
from .config import StepConfig
from .flags import and_flag
from .gate_gemm import accumulate_gates


@triton.jit
def _bias(b_ih_ptr, b_hh_ptr, cols, col_ok, BLOCK_B: tl.constexpr):
    """b_ih + b_hh of these columns in float32, broadcast over BLOCK_B rows."""
    bias = tl.load(b_ih_ptr + cols, mask=col_ok, other=0.0).to(tl.float32) + \
        tl.load(b_hh_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
    return tl.broadcast_to(bias[None, :], (BLOCK_B, cols.shape[0]))


# Batch, step count and flags change per call: one compiled kernel serves them all.
@triton.jit(do_not_specialize=["batch", "has_resets"])
def lstm_step_kernel(
    x_ptr, w_ih_ptr, b_ih_ptr, b_hh_ptr, xproj_ptr, h_ptr, c_ptr, w_hh_ptr, resets_ptr, h_out_ptr, c_out_ptr,
    batch, input_size, hidden_size, out_size, has_resets,
    FUSED_INPUT: tl.constexpr, HAS_BIAS: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    cols = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    row_ok = rows < batch
    col_ok = cols < hidden_size
    tile_mask = row_ok[:, None] & col_ok[None, :]
    reset = tl.load(resets_ptr + rows, mask=and_flag(row_ok, has_resets), other=0) != 0
    if FUSED_INPUT:
        # The module's own biases, read every step (no cached sum that a write through
        # .data could leave stale), added in float32.
        if HAS_BIAS:
            acc_i = _bias(b_ih_ptr, b_hh_ptr, cols, col_ok, BLOCK_B)
            acc_f = _bias(b_ih_ptr + hidden_size, b_hh_ptr + hidden_size, cols, col_ok, BLOCK_B)
            acc_g = _bias(b_ih_ptr + 2 * hidden_size, b_hh_ptr + 2 * hidden_size, cols, col_ok, BLOCK_B)
            acc_o = _bias(b_ih_ptr + 3 * hidden_size, b_hh_ptr + 3 * hidden_size, cols, col_ok, BLOCK_B)
        else:
            acc_i = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
            acc_f = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
            acc_g = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
            acc_o = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
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


def launch_step(x, w_ih, b_ih, b_hh, xproj, h, c, w_hh, resets_u8, h_out, c_out,
                config: StepConfig, precision: str) -> None:
    """One step over contiguous tensors, into h_out (B, H) and c_out (B, H).

    Either x (B, I) with w_ih (4H, I) and the biases b_ih, b_hh (4H,) (both None without
    bias), or xproj (B, 4H) precomputed (then w_ih and the biases are ignored and may be None).
    resets_u8 (B,) uint8 or None zeroes those rows' h and c first.
    Absent operands are replaced by views of tensors already passed, never by new buffers.
    """
    batch, hidden_size = c.shape
    fused = x is not None
    has_bias = fused and b_ih is not None
    grid = (triton.cdiv(batch, config.block_b), triton.cdiv(hidden_size, config.block_h))
    lstm_step_kernel[grid](
        x if fused else xproj, w_ih if fused else w_hh,
        b_ih if has_bias else None, b_hh if has_bias else None,
        xproj if not fused else x, h, c, w_hh,
        resets_u8 if resets_u8 is not None else h_out.view(torch.uint8), h_out, c_out,
        batch, x.shape[1] if fused else 0, hidden_size, h.shape[1], int(resets_u8 is not None),
        FUSED_INPUT=fused, HAS_BIAS=has_bias, PRECISION=precision,
        BLOCK_B=config.block_b, BLOCK_H=config.block_h, BLOCK_K=config.block_k,
        num_warps=config.num_warps, num_stages=config.num_stages,
    )
