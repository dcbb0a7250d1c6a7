"""Persistent sequence forward: one launch runs all T steps of one LSTM layer.

Grid (n_groups, n_split). A group owns BLOCK_B batch rows at a time (looping over batch
tiles g, g + n_groups, ...); its n_split members split the hidden units into BLOCK_H tiles
(member m takes tiles m, m + n_split, ...), all four gates of a tile, so the cell update of a
tile is local to one CTA. Each step needs all of h_{t-1}, so members meet at a group barrier
(kernels/group_sync.py) after each phase; with n_split == 1 the barrier is a CTA barrier.

Per step t (the contract of fastrnn/reference.py):
  phase A, per hidden tile:  gates = xproj[t] + h_{t-1} W_hh^T  (h_{t-1} zeroed on reset rows),
      activations, c_t = f c + i g, h_t = o tanh(c_t); saves gates and c_t for backward;
      writes y[t] (no projection) or hidden[t] (projection).
  phase B, projection only, per output tile:  y[t] = hidden[t] W_hr^T.
h_{t-1} is read back from y[t-1] (or h0): for a row still inside its length that is its
state, and rows past their length store zeros (outputs and saved tensors) and nothing else:
they keep their state, and h_n/c_n are stored at each row's last valid step (step 0
for a zero-length row, which then stores h0/c0).

With RESIDENT the CTA's W_hh slice, 4 x (BLOCK_K = padded R) x BLOCK_H, is loaded once
before the time loop and stays on chip; the CTA owns that one hidden tile for the whole
launch, so its float32 cell state stays in registers (without a projection: with one there
are no registers to spare). With CARRY_H as well (all of h in that
tile: H <= BLOCK_H == BLOCK_K, no projection) h stays in registers too, and the next step's
input projection is loaded during this one: a step's critical path then never leaves the
CTA (no barrier, no global round trip). Streamed configurations keep the cell state in
c_state (B, H) float32, written and read by the CTA that owns the tile.
"""

import torch
import triton
import triton.language as tl

from .activations import sigmoid, tanh
from .config import SequenceConfig
from .launch_plan import cooperative_launch
from .gate_gemm import accumulate_gates
from .flags import and_flag
from .group_sync import COUNTER_STRIDE, group_barrier


@triton.jit
def _gate_inputs(xproj_t, rows, cols, mask, four_h, hidden_size):
    """Step t's input projection for a tile's four gates, in float32."""
    x_tile = xproj_t + rows[:, None] * four_h + cols[None, :]
    x_i = tl.load(x_tile, mask=mask, other=0.0).to(tl.float32)
    x_f = tl.load(x_tile + hidden_size, mask=mask, other=0.0).to(tl.float32)
    x_g = tl.load(x_tile + 2 * hidden_size, mask=mask, other=0.0).to(tl.float32)
    x_o = tl.load(x_tile + 3 * hidden_size, mask=mask, other=0.0).to(tl.float32)
    return x_i, x_f, x_g, x_o


@triton.jit
def _cell_state(c0_ptr, c_state_ptr, t, state_tile, mask):
    """c_{t-1} of a tile kept in memory: c0 at the first step, then the float32 c_state."""
    if t == 0:
        c = tl.load(c0_ptr + state_tile, mask=mask, other=0.0).to(tl.float32)
    else:
        c = tl.load(c_state_ptr + state_tile, mask=mask, other=0.0)
    return c


# Batch, step count and flags change per call: one compiled kernel serves them all.
@triton.jit(do_not_specialize=["steps", "batch", "has_resets", "has_lengths", "save", "hidden_step_stride"])
def lstm_sequence_forward_kernel(
    xproj_ptr, w_hh_ptr, w_hr_ptr, h0_ptr, c0_ptr, resets_ptr, lengths_ptr,
    y_ptr, h_n_ptr, c_n_ptr, gates_ptr, cells_ptr, hidden_ptr, c_state_ptr, sync_ptr,
    steps, batch, hidden_size, out_size, has_resets, has_lengths, save, hidden_step_stride,
    HAS_PROJ: tl.constexpr, RESIDENT: tl.constexpr, CARRY_H: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_KP: tl.constexpr,
):
    group = tl.program_id(0)
    n_groups = tl.num_programs(0)
    member = tl.program_id(1)
    n_split = tl.num_programs(1)
    counter = sync_ptr + group * COUNTER_STRIDE
    four_h = 4 * hidden_size
    gate_stride = hidden_size * out_size
    n_h_tiles = tl.cdiv(hidden_size, BLOCK_H)
    n_out_tiles = tl.cdiv(out_size, BLOCK_H)
    offs_b = tl.arange(0, BLOCK_B)
    offs_h = tl.arange(0, BLOCK_H)
    offs_k = tl.arange(0, BLOCK_K)
    offs_kp = tl.arange(0, BLOCK_KP)

    if RESIDENT:
        # This member's only hidden tile; W_g^T[k, j] = W_hh[g*H + j0 + j, k].
        res_cols = member * BLOCK_H + offs_h
        res_mask = (offs_k[:, None] < out_size) & (res_cols[None, :] < hidden_size)
        res_tile = w_hh_ptr + res_cols[None, :] * out_size + offs_k[:, None]
        w_i = tl.load(res_tile, mask=res_mask, other=0.0)
        w_f = tl.load(res_tile + gate_stride, mask=res_mask, other=0.0)
        w_g = tl.load(res_tile + 2 * gate_stride, mask=res_mask, other=0.0)
        w_o = tl.load(res_tile + 3 * gate_stride, mask=res_mask, other=0.0)

    phase = 0
    for b_tile in range(group, tl.cdiv(batch, BLOCK_B), n_groups):
        rows = b_tile * BLOCK_B + offs_b
        row_ok = rows < batch
        length = tl.load(lengths_ptr + rows, mask=and_flag(row_ok, has_lengths), other=steps)
        # The step whose state is the row's final one: its last valid step, or step 0 for a
        # zero-length row (whose state never changes from h0, c0).
        final_step = tl.maximum(tl.minimum(length, steps), 1) - 1
        keeps_h0 = row_ok & (length <= 0)
        # Running pointers to step t's slices: 64-bit pointer arithmetic, no int32 overflow.
        xproj_t = xproj_ptr
        y_t = y_ptr
        prev_ptr = h0_ptr
        gates_t = gates_ptr
        cells_t = cells_ptr
        hidden_t = hidden_ptr
        resets_t = resets_ptr
        # Register state carried across steps (RESIDENT: the CTA's one tile, columns of member).
        own_cols = member * BLOCK_H + offs_h
        own_mask = row_ok[:, None] & (own_cols[None, :] < hidden_size)
        c_reg = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
        x_i = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
        x_f = x_i
        x_g = x_i
        x_o = x_i
        h_reg = tl.zeros((BLOCK_B, BLOCK_K), dtype=y_ptr.dtype.element_ty)
        if RESIDENT and not HAS_PROJ:
            c_reg = tl.load(c0_ptr + rows[:, None] * hidden_size + own_cols[None, :], mask=own_mask,
                            other=0.0).to(tl.float32)
        if CARRY_H:
            x_i, x_f, x_g, x_o = _gate_inputs(xproj_t, rows, own_cols, own_mask, four_h, hidden_size)
            h_reg = tl.load(h0_ptr + rows[:, None] * out_size + offs_k[None, :],
                            mask=row_ok[:, None] & (offs_k[None, :] < out_size), other=0.0).to(y_ptr.dtype.element_ty)
        for t in range(0, steps):
            valid = row_ok & (t < length)
            reset = tl.load(resets_t + rows, mask=and_flag(valid, has_resets), other=0) != 0
            for h_tile in range(member, n_h_tiles, n_split):
                cols = h_tile * BLOCK_H + offs_h
                col_ok = cols < hidden_size
                tile_mask = row_ok[:, None] & col_ok[None, :]
                state_tile = rows[:, None] * hidden_size + cols[None, :]
                if RESIDENT:
                    if CARRY_H:
                        h = tl.where(reset[:, None], 0.0, h_reg).to(w_i.dtype)
                    else:
                        x_i, x_f, x_g, x_o = _gate_inputs(xproj_t, rows, cols, tile_mask, four_h, hidden_size)
                        h = tl.load(prev_ptr + rows[:, None] * out_size + offs_k[None, :],
                                    mask=row_ok[:, None] & (offs_k[None, :] < out_size) & ~reset[:, None],
                                    other=0.0, cache_modifier=".cg")
                    acc_i = tl.dot(h, w_i, x_i, input_precision=PRECISION)
                    acc_f = tl.dot(h, w_f, x_f, input_precision=PRECISION)
                    acc_g = tl.dot(h, w_g, x_g, input_precision=PRECISION)
                    acc_o = tl.dot(h, w_o, x_o, input_precision=PRECISION)
                    if CARRY_H:
                        # The next step's input projection does not depend on this one: load it
                        # now (nothing after the last step). Wider tiles have no registers for it.
                        x_i, x_f, x_g, x_o = _gate_inputs(xproj_t + batch * four_h, rows, cols,
                                                          and_flag(tile_mask, steps - 1 - t), four_h, hidden_size)
                    if HAS_PROJ:  # no registers to spare for the cell state: it stays in c_state
                        c_prev = _cell_state(c0_ptr, c_state_ptr, t, state_tile, tile_mask)
                    else:
                        c_prev = c_reg
                else:
                    acc_i, acc_f, acc_g, acc_o = _gate_inputs(xproj_t, rows, cols, tile_mask, four_h, hidden_size)
                    acc_i, acc_f, acc_g, acc_o = accumulate_gates(
                        acc_i, acc_f, acc_g, acc_o, prev_ptr, w_hh_ptr, rows, row_ok, reset, cols, col_ok,
                        out_size, hidden_size, PRECISION, BLOCK_K, True)
                    # Loaded after the GEMM: not held in registers through it.
                    c_prev = _cell_state(c0_ptr, c_state_ptr, t, state_tile, tile_mask)
                gate_i = sigmoid(acc_i)
                gate_f = sigmoid(acc_f)
                gate_g = tanh(acc_g)
                gate_o = sigmoid(acc_o)
                c_prev = tl.where(reset[:, None], 0.0, c_prev)
                c_new = gate_f * c_prev + gate_i * gate_g
                h_new = gate_o * tanh(c_new)
                c_keep = tl.where(valid[:, None], c_new, c_prev)
                if RESIDENT and not HAS_PROJ:
                    c_reg = c_keep
                else:
                    tl.store(c_state_ptr + state_tile, c_keep, mask=tile_mask)
                if CARRY_H:
                    # As if stored in y and read back: rounded to the output dtype. Rows past
                    # their length store nothing more, so what they carry does not matter.
                    h_reg = h_new.to(y_ptr.dtype.element_ty)
                is_final = row_ok & (t == final_step)
                tl.store(c_n_ptr + state_tile, c_keep.to(c_n_ptr.dtype.element_ty), mask=is_final[:, None] & col_ok[None, :])
                if save != 0:
                    # Rows past their length save zeros, as every backend does (recurrence_op.py).
                    g_tile = gates_t + rows[:, None] * four_h + cols[None, :]
                    dtype = gates_ptr.dtype.element_ty
                    tl.store(g_tile, tl.where(valid[:, None], gate_i, 0.0).to(dtype), mask=tile_mask)
                    tl.store(g_tile + hidden_size, tl.where(valid[:, None], gate_f, 0.0).to(dtype), mask=tile_mask)
                    tl.store(g_tile + 2 * hidden_size, tl.where(valid[:, None], gate_g, 0.0).to(dtype), mask=tile_mask)
                    tl.store(g_tile + 3 * hidden_size, tl.where(valid[:, None], gate_o, 0.0).to(dtype), mask=tile_mask)
                    tl.store(cells_t + state_tile, tl.where(valid[:, None], c_new, 0.0).to(dtype), mask=tile_mask)
                if HAS_PROJ:
                    tl.store(hidden_t + state_tile, tl.where(valid[:, None], h_new, 0.0).to(hidden_ptr.dtype.element_ty),
                             mask=tile_mask)
                else:
                    y_tile = rows[:, None] * out_size + cols[None, :]
                    tl.store(y_t + y_tile, tl.where(valid[:, None], h_new, 0.0).to(y_ptr.dtype.element_ty), mask=tile_mask)
                    h_first = tl.load(h0_ptr + y_tile, mask=keeps_h0[:, None] & col_ok[None, :], other=0.0).to(tl.float32)
                    h_keep = tl.where(valid[:, None], h_new, h_first)
                    tl.store(h_n_ptr + y_tile, h_keep.to(h_n_ptr.dtype.element_ty), mask=is_final[:, None] & col_ok[None, :])
            if not CARRY_H:  # with CARRY_H no step reads what another thread stored
                phase += 1
                group_barrier(counter, phase, n_split)
            if HAS_PROJ:
                for out_tile in range(member, n_out_tiles, n_split):
                    out_cols = out_tile * BLOCK_H + offs_h
                    out_ok = out_cols < out_size
                    acc = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
                    for k0 in range(0, hidden_size, BLOCK_KP):
                        ks = k0 + offs_kp
                        k_ok = ks < hidden_size
                        hid = tl.load(hidden_t + rows[:, None] * hidden_size + ks[None, :],
                                      mask=row_ok[:, None] & k_ok[None, :], other=0.0, cache_modifier=".cg")
                        w = tl.load(w_hr_ptr + out_cols[None, :] * hidden_size + ks[:, None],
                                    mask=k_ok[:, None] & out_ok[None, :], other=0.0)
                        acc = tl.dot(hid, w, acc, input_precision=PRECISION)
                    y_tile = rows[:, None] * out_size + out_cols[None, :]
                    out_mask = row_ok[:, None] & out_ok[None, :]
                    tl.store(y_t + y_tile, tl.where(valid[:, None], acc, 0.0).to(y_ptr.dtype.element_ty), mask=out_mask)
                    is_final = row_ok & (t == final_step)
                    h_first = tl.load(h0_ptr + y_tile, mask=keeps_h0[:, None] & out_ok[None, :], other=0.0).to(tl.float32)
                    h_keep = tl.where(valid[:, None], acc, h_first)
                    tl.store(h_n_ptr + y_tile, h_keep.to(h_n_ptr.dtype.element_ty), mask=is_final[:, None] & out_ok[None, :])
                phase += 1
                group_barrier(counter, phase, n_split)
            prev_ptr = y_t
            xproj_t += batch * four_h
            y_t += batch * out_size
            gates_t += batch * four_h
            cells_t += batch * hidden_size
            hidden_t += hidden_step_stride
            resets_t += batch


def launch_sequence_forward(xproj, w_hh, w_hr, h0, c0, resets_u8, lengths, y, h_n, c_n,
                            gates, cells, hidden, save: bool, config: SequenceConfig,
                            grid: tuple[int, int], precision: str) -> None:
    """Launch over contiguous tensors. resets_u8 (T, B) uint8 and lengths (B,) int64 may be None.

    gates/cells are (T, B, 4H)/(T, B, H) when save; hidden is (T, B, H) when save and
    projecting, (1, B, H) as scratch when projecting without save. grid = (n_groups, n_split).
    """
    steps, batch, four_h = xproj.shape
    hidden_size = four_h // 4
    out_size = h0.shape[1]
    device = xproj.device
    c_state = torch.empty(batch, hidden_size, dtype=torch.float32, device=device)
    counters = torch.zeros(grid[0] * COUNTER_STRIDE.value, dtype=torch.int32, device=device)
    no_resets = torch.empty(1, dtype=torch.uint8, device=device) if resets_u8 is None else resets_u8
    no_lengths = torch.empty(1, dtype=torch.int64, device=device) if lengths is None else lengths
    lstm_sequence_forward_kernel[grid](
        xproj, w_hh, w_hr if w_hr is not None else w_hh, h0, c0, no_resets, no_lengths,
        y, h_n, c_n,
        gates if save else xproj, cells if save else xproj, hidden if w_hr is not None else xproj,
        c_state, counters,
        steps, batch, hidden_size, out_size,
        int(resets_u8 is not None), int(lengths is not None), int(save),
        batch * hidden_size if (save and w_hr is not None) else 0,
        HAS_PROJ=w_hr is not None, RESIDENT=config.resident, CARRY_H=config.carry_h, PRECISION=precision,
        BLOCK_B=config.block_b, BLOCK_H=config.block_h, BLOCK_K=config.block_k, BLOCK_KP=config.block_kp,
        num_warps=config.num_warps, num_stages=config.num_stages, **cooperative_launch(grid, device),
    )
