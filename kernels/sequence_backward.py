"""Persistent sequence backward: the reverse recurrence of one LSTM layer in one launch.

Same grid as the forward (kernels/sequence_forward.py): groups of n_split CTAs own BLOCK_B
rows; members split hidden units (phase A) and output columns (phase B) into BLOCK_H tiles.
The running state gradients live in float32 scratch: dh_state (B, R) and dc_state (B, H),
initialised by the launcher from grad_h_n / grad_c_n.

Per step t = T-1 ... 0, for rows inside their length (other rows pass dh, dc through and get
zero dgates, as their state was frozen):
  phase A, per hidden tile j:
      dhid = grad_y[t] + dh                   (no projection: columns j of it)
      dhid = (grad_y[t] + dh) W_hr[:, j]      (projection: needs all of dh, hence a barrier)
      dc  += dhid * o * (1 - tanh(c_t)^2)
      dgates = (dc g, dc c_{t-1}, dc i, dhid tanh(c_t)) times each activation's derivative,
      stored as dxproj[t]; dc <- dc f (zero on a reset row).
  group barrier: phase B needs every tile's dgates.
  phase B, per output tile q:  dh[:, q] = sum_g dgates_g W_hh[g*H:(g+1)*H, q]  (zero on reset)
      (with a projection, dy_total[t][:, q] = grad_y[t] + dh first: its weight gradient input).
Without a projection a member owns the same columns in both phases, so phase A of step t-1
reads only what its own phase B wrote: a CTA barrier suffices there instead of a group one.

With RESIDENT the CTA's W_hh column slice, 4 x (BLOCK_K = padded H) x BLOCK_H, stays on chip.
"""

import torch
import triton
import triton.language as tl

from .config import SequenceConfig
from .launch_plan import cooperative_launch
from .flags import and_flag
from .group_sync import COUNTER_STRIDE, group_barrier


# Batch, step count and flags change per call: one compiled kernel serves them all.
@triton.jit(do_not_specialize=["steps", "batch", "has_grad_y", "has_resets", "has_lengths"])
def lstm_sequence_backward_kernel(
    grad_y_ptr, w_hh_ptr, w_hr_ptr, c0_ptr, resets_ptr, lengths_ptr, gates_ptr, cells_ptr,
    dxproj_ptr, dh0_ptr, dc0_ptr, dy_total_ptr, dh_state_ptr, dc_state_ptr, sync_ptr,
    steps, batch, hidden_size, out_size, has_grad_y, has_resets, has_lengths,
    HAS_PROJ: tl.constexpr, RESIDENT: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_KP: tl.constexpr,
):
    group = tl.program_id(0)
    n_groups = tl.num_programs(0)
    member = tl.program_id(1)
    n_split = tl.num_programs(1)
    counter = sync_ptr + group * COUNTER_STRIDE
    four_h = 4 * hidden_size
    gate_rows = hidden_size * out_size  # elements of W_hh per gate
    n_h_tiles = tl.cdiv(hidden_size, BLOCK_H)
    n_out_tiles = tl.cdiv(out_size, BLOCK_H)
    offs_b = tl.arange(0, BLOCK_B)
    offs_h = tl.arange(0, BLOCK_H)
    offs_k = tl.arange(0, BLOCK_K)
    offs_kp = tl.arange(0, BLOCK_KP)
    dtype = dxproj_ptr.dtype.element_ty

    if RESIDENT:
        # This member's only output tile; element [k, q] = W_hh[g*H + k, q0 + q].
        res_cols = member * BLOCK_H + offs_h
        res_mask = (offs_k[:, None] < hidden_size) & (res_cols[None, :] < out_size)
        res_tile = w_hh_ptr + offs_k[:, None] * out_size + res_cols[None, :]
        w_i = tl.load(res_tile, mask=res_mask, other=0.0)
        w_f = tl.load(res_tile + gate_rows, mask=res_mask, other=0.0)
        w_g = tl.load(res_tile + 2 * gate_rows, mask=res_mask, other=0.0)
        w_o = tl.load(res_tile + 3 * gate_rows, mask=res_mask, other=0.0)

    phase = 0
    for b_tile in range(group, tl.cdiv(batch, BLOCK_B), n_groups):
        rows = b_tile * BLOCK_B + offs_b
        row_ok = rows < batch
        length = tl.load(lengths_ptr + rows, mask=and_flag(row_ok, has_lengths), other=steps)
        # Running pointers to step t's slices, starting at the last step.
        last = steps - 1
        last_rows = tl.cast(last, tl.int64) * batch  # 64-bit: T * B * 4H can pass 2**31
        gates_t = gates_ptr + last_rows * four_h
        cells_t = cells_ptr + last_rows * hidden_size
        dxproj_t = dxproj_ptr + last_rows * four_h
        grad_y_t = grad_y_ptr + last_rows * out_size
        dy_total_t = dy_total_ptr + last_rows * out_size
        resets_t = resets_ptr + last_rows
        for step in range(0, steps):
            t = last - step
            valid = row_ok & (t < length)
            reset = tl.load(resets_t + rows, mask=and_flag(valid, has_resets), other=0) != 0
            for h_tile in range(member, n_h_tiles, n_split):
                cols = h_tile * BLOCK_H + offs_h
                col_ok = cols < hidden_size
                tile_mask = row_ok[:, None] & col_ok[None, :]
                state_tile = rows[:, None] * hidden_size + cols[None, :]
                if HAS_PROJ:
                    d_hid = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
                    for k0 in range(0, out_size, BLOCK_KP):
                        ks = k0 + offs_kp
                        k_ok = ks < out_size
                        dy_tile = rows[:, None] * out_size + ks[None, :]
                        dy_mask = row_ok[:, None] & k_ok[None, :]
                        dy = tl.load(dh_state_ptr + dy_tile, mask=dy_mask, other=0.0, cache_modifier=".cg")
                        dy += tl.load(grad_y_t + dy_tile, mask=and_flag(dy_mask, has_grad_y), other=0.0).to(tl.float32)
                        w = tl.load(w_hr_ptr + ks[:, None] * hidden_size + cols[None, :],
                                    mask=k_ok[:, None] & col_ok[None, :], other=0.0)
                        d_hid = tl.dot(dy.to(w.dtype), w, d_hid, input_precision=PRECISION)
                else:
                    d_hid = tl.load(dh_state_ptr + state_tile, mask=tile_mask, other=0.0)
                    d_hid += tl.load(grad_y_t + state_tile, mask=and_flag(tile_mask, has_grad_y), other=0.0).to(tl.float32)
                g_tile = gates_t + rows[:, None] * four_h + cols[None, :]
                gate_i = tl.load(g_tile, mask=tile_mask, other=0.0).to(tl.float32)
                gate_f = tl.load(g_tile + hidden_size, mask=tile_mask, other=0.0).to(tl.float32)
                gate_g = tl.load(g_tile + 2 * hidden_size, mask=tile_mask, other=0.0).to(tl.float32)
                gate_o = tl.load(g_tile + 3 * hidden_size, mask=tile_mask, other=0.0).to(tl.float32)
                c_t = tl.load(cells_t + state_tile, mask=tile_mask, other=0.0).to(tl.float32)
                if t == 0:
                    c_prev = tl.load(c0_ptr + state_tile, mask=tile_mask, other=0.0).to(tl.float32)
                else:
                    c_prev = tl.load(cells_t - batch * hidden_size + state_tile, mask=tile_mask, other=0.0).to(tl.float32)
                c_prev = tl.where(reset[:, None], 0.0, c_prev)
                dc = tl.load(dc_state_ptr + state_tile, mask=tile_mask, other=0.0)
                tanh_c = 2.0 / (1.0 + tl.exp(-2.0 * c_t)) - 1.0
                dc_t = dc + d_hid * gate_o * (1.0 - tanh_c * tanh_c)
                da_i = dc_t * gate_g * gate_i * (1.0 - gate_i)
                da_f = dc_t * c_prev * gate_f * (1.0 - gate_f)
                da_g = dc_t * gate_i * (1.0 - gate_g * gate_g)
                da_o = d_hid * tanh_c * gate_o * (1.0 - gate_o)
                keep = valid[:, None]
                d_tile = dxproj_t + rows[:, None] * four_h + cols[None, :]
                tl.store(d_tile, tl.where(keep, da_i, 0.0).to(dtype), mask=tile_mask)
                tl.store(d_tile + hidden_size, tl.where(keep, da_f, 0.0).to(dtype), mask=tile_mask)
                tl.store(d_tile + 2 * hidden_size, tl.where(keep, da_g, 0.0).to(dtype), mask=tile_mask)
                tl.store(d_tile + 3 * hidden_size, tl.where(keep, da_o, 0.0).to(dtype), mask=tile_mask)
                dc_prev = tl.where(reset[:, None], 0.0, dc_t * gate_f)
                dc_next = tl.where(keep, dc_prev, dc)
                tl.store(dc_state_ptr + state_tile, dc_next, mask=tile_mask)
                if t == 0:
                    tl.store(dc0_ptr + state_tile, dc_next.to(dc0_ptr.dtype.element_ty), mask=tile_mask)
            phase += 1
            group_barrier(counter, phase, n_split)
            for out_tile in range(member, n_out_tiles, n_split):
                out_cols = out_tile * BLOCK_H + offs_h
                out_ok = out_cols < out_size
                out_mask = row_ok[:, None] & out_ok[None, :]
                out_tile_offs = rows[:, None] * out_size + out_cols[None, :]
                dh_old = tl.load(dh_state_ptr + out_tile_offs, mask=out_mask, other=0.0)
                if HAS_PROJ:
                    dy = dh_old + tl.load(grad_y_t + out_tile_offs, mask=and_flag(out_mask, has_grad_y), other=0.0).to(tl.float32)
                    tl.store(dy_total_t + out_tile_offs, tl.where(valid[:, None], dy, 0.0).to(dtype), mask=out_mask)
                acc = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
                d_rows = dxproj_t + rows[:, None] * four_h
                if RESIDENT:
                    k_mask = row_ok[:, None] & (offs_k[None, :] < hidden_size)
                    d_tile = d_rows + offs_k[None, :]
                    acc = tl.dot(tl.load(d_tile, mask=k_mask, other=0.0, cache_modifier=".cg"), w_i, acc, input_precision=PRECISION)
                    acc = tl.dot(tl.load(d_tile + hidden_size, mask=k_mask, other=0.0, cache_modifier=".cg"), w_f, acc, input_precision=PRECISION)
                    acc = tl.dot(tl.load(d_tile + 2 * hidden_size, mask=k_mask, other=0.0, cache_modifier=".cg"), w_g, acc, input_precision=PRECISION)
                    acc = tl.dot(tl.load(d_tile + 3 * hidden_size, mask=k_mask, other=0.0, cache_modifier=".cg"), w_o, acc, input_precision=PRECISION)
                else:
                    for k0 in range(0, hidden_size, BLOCK_K):
                        ks = k0 + offs_k
                        k_ok = ks < hidden_size
                        k_mask = row_ok[:, None] & k_ok[None, :]
                        w_mask = k_ok[:, None] & out_ok[None, :]
                        d_tile = d_rows + ks[None, :]
                        w_tile = w_hh_ptr + ks[:, None] * out_size + out_cols[None, :]
                        for gate in range(4):
                            d = tl.load(d_tile + gate * hidden_size, mask=k_mask, other=0.0, cache_modifier=".cg")
                            w = tl.load(w_tile + gate * gate_rows, mask=w_mask, other=0.0)
                            acc = tl.dot(d, w, acc, input_precision=PRECISION)
                dh_new = tl.where(reset[:, None], 0.0, acc)
                dh_next = tl.where(valid[:, None], dh_new, dh_old)
                tl.store(dh_state_ptr + out_tile_offs, dh_next, mask=out_mask)
                if t == 0:
                    tl.store(dh0_ptr + out_tile_offs, dh_next.to(dh0_ptr.dtype.element_ty), mask=out_mask)
            if HAS_PROJ:
                phase += 1
                group_barrier(counter, phase, n_split)
            else:
                tl.debug_barrier()
            gates_t -= batch * four_h
            cells_t -= batch * hidden_size
            dxproj_t -= batch * four_h
            grad_y_t -= batch * out_size
            dy_total_t -= batch * out_size
            resets_t -= batch


def launch_sequence_backward(grad_y, w_hh, w_hr, c0, resets_u8, lengths, gates, cells,
                             dxproj, dh0, dc0, dy_total, dh_state, dc_state,
                             config: SequenceConfig, grid: tuple[int, int], precision: str) -> None:
    """Launch over contiguous tensors; grad_y, resets_u8, lengths may be None.

    dh_state (B, R) and dc_state (B, H) are float32 and hold grad_h_n / grad_c_n on entry.
    """
    steps, batch, four_h = gates.shape
    hidden_size = four_h // 4
    out_size = w_hh.shape[1]
    device = gates.device
    counters = torch.zeros(grid[0] * COUNTER_STRIDE.value, dtype=torch.int32, device=device)
    no_resets = torch.empty(1, dtype=torch.uint8, device=device) if resets_u8 is None else resets_u8
    no_lengths = torch.empty(1, dtype=torch.int64, device=device) if lengths is None else lengths
    lstm_sequence_backward_kernel[grid](
        grad_y if grad_y is not None else gates, w_hh, w_hr if w_hr is not None else w_hh, c0,
        no_resets, no_lengths, gates, cells,
        dxproj, dh0, dc0, dy_total if w_hr is not None else gates, dh_state, dc_state, counters,
        steps, batch, hidden_size, out_size,
        int(grad_y is not None), int(resets_u8 is not None), int(lengths is not None),
        HAS_PROJ=w_hr is not None, RESIDENT=config.resident, PRECISION=precision,
        BLOCK_B=config.block_b, BLOCK_H=config.block_h, BLOCK_K=config.block_k, BLOCK_KP=config.block_kp,
        num_warps=config.num_warps, num_stages=config.num_stages, **cooperative_launch(grid, device),
    )
