"""The gate GEMM shared by the step and sequence kernels: acc_g += a W_g^T for all four gates."""

import triton
import triton.language as tl


@triton.jit
def accumulate_gates(acc_i, acc_f, acc_g, acc_o, a_ptr, w_ptr, rows, row_ok, zero_rows, cols, col_ok,
                     k_size, hidden_size, PRECISION: tl.constexpr, BLOCK_K: tl.constexpr,
                     FROM_L2: tl.constexpr):
    """acc_g += a W_g^T for a (B, K) and W (4H, K), in BLOCK_K chunks, streaming W from memory;
    zero_rows read as zeros. FROM_L2 loads `a` through L2 only (".cg"): a sequence kernel's
    h_{t-1} was written by other CTAs, which the non-coherent L1 may not have seen."""
    offs_k = tl.arange(0, BLOCK_K)
    gate_stride = hidden_size * k_size
    for k0 in range(0, k_size, BLOCK_K):
        ks = k0 + offs_k
        k_ok = ks < k_size
        a_tile = a_ptr + rows[:, None] * k_size + ks[None, :]
        a_mask = row_ok[:, None] & k_ok[None, :] & ~zero_rows[:, None]
        if FROM_L2:
            a = tl.load(a_tile, mask=a_mask, other=0.0, cache_modifier=".cg")
        else:
            a = tl.load(a_tile, mask=a_mask, other=0.0)
        w_tile = w_ptr + cols[None, :] * k_size + ks[:, None]
        w_mask = k_ok[:, None] & col_ok[None, :]
        acc_i = tl.dot(a, tl.load(w_tile, mask=w_mask, other=0.0), acc_i, input_precision=PRECISION)
        acc_f = tl.dot(a, tl.load(w_tile + gate_stride, mask=w_mask, other=0.0), acc_f, input_precision=PRECISION)
        acc_g = tl.dot(a, tl.load(w_tile + 2 * gate_stride, mask=w_mask, other=0.0), acc_g, input_precision=PRECISION)
        acc_o = tl.dot(a, tl.load(w_tile + 3 * gate_stride, mask=w_mask, other=0.0), acc_o, input_precision=PRECISION)
    return acc_i, acc_f, acc_g, acc_o
