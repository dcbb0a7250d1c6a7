"""Which kernel configuration runs a shape: a fixed rule on (H, R, dtype), never on B.

Pure Python (no triton import), so the rule can be read, tested and enumerated anywhere.

Sequence kernels (forward and backward) run as groups of CTAs; a group owns BLOCK_B batch
rows and splits the hidden units into BLOCK_H-wide tiles (all four gates of a tile, so the
cell update is local to one CTA). The rule:

1. BLOCK_B (rows per CTA, the MMA M dimension) is 32 for 16-bit types and 16 for float32
   (whose exact-fp32 dot runs on FMA units, four times the work per row of a tensor core).
2. The recurrent weight slice a CTA multiplies with every step is 4 * BLOCK_H * K elements
   (K = R padded to a power of two forward, H padded backward). If it fits in
   RESIDENT_BYTES it is loaded once before the time loop and stays on chip ("resident"):
   the widest power-of-two BLOCK_H in [16, 64] that fits is taken (K padded to >= 64).
3. Otherwise the slice is streamed from L2 every step in BLOCK_K chunks ("tiled"), with
   BLOCK_H = 16 (when CTAs split a step: the most CTAs to share the weight traffic).
4. A resident slice needs one hidden tile per CTA, so it requires either grid sync (as many
   CTAs per group as tiles, see kernels/group_sync.py) or H fitting in one tile.

The step kernel (one launch per time step) and the projection kernel use one
fixed tile shape per dtype: at the small batches of step loops they are latency bound, and a small
BLOCK_B gives more CTAs to spread the weight reads over.
"""

from __future__ import annotations

from dataclasses import dataclass

ELEMENT_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}
RESIDENT_BYTES = 32 * 1024
MIN_BLOCK = 16  # tl.dot needs every dimension >= 16
MAX_RESIDENT_BLOCK_H = 64
# Resident tiles are at least 64 wide in both directions: below that a step is pure latency,
# so padding costs nothing measurable, and fewer distinct shapes mean fewer compilations.
MIN_RESIDENT_BLOCK = 64
TILED_BLOCK_K = {"fp32": 32, "fp16": 64, "bf16": 64}


def padded(n: int) -> int:
    """n rounded up to a power of two, at least MIN_BLOCK."""
    size = MIN_BLOCK
    while size < n:
        size *= 2
    return size


@dataclass(frozen=True)
class SequenceConfig:
    block_b: int    # batch rows per CTA
    block_h: int    # hidden units (and output columns) per tile
    block_k: int    # recurrent GEMM reduction chunk; the whole padded K when resident
    block_kp: int   # projection GEMM reduction chunk (proj_size only)
    resident: bool  # recurrent weight slice loaded once, before the time loop
    num_warps: int
    num_stages: int
    carry_h: bool = False  # forward: all of h in one resident tile, kept in registers across steps


@dataclass(frozen=True)
class StepConfig:
    block_b: int
    block_h: int
    block_k: int
    num_warps: int
    num_stages: int


def _warps(kernel: str, dtype: str, resident: bool, block_h: int, proj: bool) -> int:
    """num_warps per configuration, set by the sm_90 AOT resource check (python scripts/kernel_resources.py).

    Triton's register use per layout is not monotone in the warp count, and ptxas's choices
    change between Triton versions, so these are the smallest counts that compile with no
    spill on Triton 3.6 to 3.9 (scripts/triton_versions.sh), not a formula: forward at 8
    resident (16 for float32 32-wide without a projection) and 4 streamed (8 for float32 with
    a projection); backward at 8, 16 for 32-wide
    resident slices, 16-bit 16-wide ones and float32 streamed with a projection.
    """
    if kernel == "forward":
        if resident:
            # float32 32-wide without a projection: with the cell state in registers its TF32
            # variant spills at 8 warps (and at 4 under Triton 3.7), not at 16.
            return 16 if (dtype == "fp32" and block_h == 32 and not proj) else 8
        return 8 if (dtype == "fp32" and proj) else 4
    if resident:
        return 16 if block_h == 32 or (block_h == 16 and ELEMENT_BYTES[dtype] == 2) else 8
    return 16 if (dtype == "fp32" and proj) else 8


def _projection_chunk(kernel: str, dtype: str, resident: bool, block_h: int, proj: bool) -> int:
    """BLOCK_KP, the projection GEMM's reduction chunk: TILED_BLOCK_K, halved for the backward
    configurations that spill with it at every warp count under some Triton version (3.6 to
    3.9): 32-wide resident slices and float32 streamed."""
    if kernel == "backward" and proj and ((resident and block_h == 32) or (not resident and dtype == "fp32")):
        return TILED_BLOCK_K[dtype] // 2
    return TILED_BLOCK_K[dtype]


def _sequence_config(kernel: str, dtype: str, n_tiles_dim: int, k: int, grid_sync: bool, proj: bool) -> SequenceConfig:
    """n_tiles_dim: the dimension split into BLOCK_H tiles; k: the recurrent GEMM's K."""
    size = ELEMENT_BYTES[dtype]
    block_b = 32 if size == 2 else 16
    k_pad = max(padded(k), MIN_RESIDENT_BLOCK)
    block_h = MAX_RESIDENT_BLOCK_H
    while block_h > MIN_BLOCK and 4 * block_h * k_pad * size > RESIDENT_BYTES:
        block_h //= 2
    fits = 4 * block_h * k_pad * size <= RESIDENT_BYTES
    one_tile = block_h >= n_tiles_dim
    if fits and (grid_sync or one_tile):
        # One tile as wide as the padded K holds all of h: the forward keeps it in registers.
        carry_h = kernel == "forward" and not proj and one_tile and block_h == k_pad
        return SequenceConfig(block_b, block_h, k_pad, _projection_chunk(kernel, dtype, True, block_h, proj),
                              True, num_warps=_warps(kernel, dtype, True, block_h, proj), num_stages=1,
                              carry_h=carry_h)
    # Software pipelining of the streamed weights spills the float32 backward with a projection.
    stages = 1 if (kernel == "backward" and dtype == "fp32" and proj) else 2
    return SequenceConfig(block_b, MIN_BLOCK, TILED_BLOCK_K[dtype],
                          _projection_chunk(kernel, dtype, False, MIN_BLOCK, proj), False,
                          num_warps=_warps(kernel, dtype, False, MIN_BLOCK, proj), num_stages=stages)


def forward_config(hidden_size: int, out_size: int, dtype: str, grid_sync: bool) -> SequenceConfig:
    """Forward: tiles over H; the recurrent GEMM reduces over R (= proj_size or H)."""
    return _sequence_config("forward", dtype, hidden_size, out_size, grid_sync, out_size != hidden_size)


def backward_config(hidden_size: int, out_size: int, dtype: str, grid_sync: bool) -> SequenceConfig:
    """Backward: dh = dgates @ W_hh tiles over R and reduces over H (times four gates).

    Hidden tiles (dgates) and R tiles (dh) share BLOCK_H so that without a projection a CTA
    owns the same columns in both phases and needs one group barrier per step, not two.
    """
    return _sequence_config("backward", dtype, max(hidden_size, out_size), hidden_size, grid_sync,
                            out_size != hidden_size)


def step_config(dtype: str) -> StepConfig:
    # 8 warps for float32: at 4 the TF32 variants spill under Triton 3.9.
    return StepConfig(block_b=16, block_h=32, block_k=TILED_BLOCK_K[dtype],
                      num_warps=8 if dtype == "fp32" else 4, num_stages=2)


def projection_config(dtype: str) -> StepConfig:
    """The step's output projection: the step's tiles, 8 warps (at 4 the 16-bit ones spill under Triton 3.9)."""
    return StepConfig(block_b=16, block_h=32, block_k=TILED_BLOCK_K[dtype], num_warps=8, num_stages=2)


def sequence_shapes(max_hidden: int = 4096):
    """(H, R) pairs covering every configuration the rule can produce for H <= max_hidden.

    The rule depends on H and R only through padded(H) and padded(R), so powers of two and
    their successors (one more tile) cover it; R < H is the proj_size case.
    """
    sizes = []
    n = MIN_BLOCK
    while n <= max_hidden:
        sizes += [n, n + 1] if n + 1 <= max_hidden else [n]
        n *= 2
    sizes = [1] + sizes
    for hidden in sizes:
        yield hidden, hidden
        for out in sizes:
            if out < hidden:
                yield hidden, out
