"""Which implementation runs an LSTM or LSTMCell call: the one place that answers it.

A call is described by a few facts (``Call``). ``ROUTES`` is read top to bottom and the first
route whose condition holds runs the call; its name is what ``module.last_backend`` says
afterwards. The size thresholds the conditions read are the data below, each with the
measurement it came from.

================  ===========================================================================
implementation    what runs
================  ===========================================================================
torch             torch's own module forward: the call is being exported (torch.jit.trace,
                  torch.onnx.export record torch's standard op) or its state has another dtype
                  than the weights (torch raises or promotes; fastrnn's kernels take one dtype)
cudnn             torch.nn.LSTM's forward on CUDA (cuDNN), where it was measured faster
onednn            torch.nn.LSTM's forward on the CPU (oneDNN's RNN primitive for float32),
                  where it was measured faster
lstm_cell         torch's ATen lstm_cell on the weights as they are: a no-grad CPU step whose
                  weights are too large for the packed step (STEP_PACK_LIMIT_BYTES)
cpp               fastrnn's C++ kernels (csrc/): CPU, float32 and float64
triton            fastrnn's Triton kernels (kernels/): CUDA (CPU under TRITON_INTERPRET=1)
reference         fastrnn's plain-PyTorch recurrence (the oracle): any device and dtype
================  ===========================================================================

The measured routes (cudnn, onednn) apply to ``backend="auto"`` only: a backend named by the
user runs (or raises, saying why it cannot take the input) whatever the size. Calls with
``resets`` never leave fastrnn's own kernels (torch has no resets).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch

from fastrnn import backends
from fastrnn.torch_compat import constant_under_compile


class Call(NamedTuple):
    """The facts about one call that a route may depend on."""
    backend: str                  # the module's `backend` keyword
    device: torch.device
    dtype: torch.dtype            # the compute dtype (after autocast)
    mode: str = "sequence"        # "sequence": an LSTM call (any T; grad or not); "step": one
                                  # no-grad time step (LSTM with T == 1, LSTMCell): the fused
                                  # cell; "cell": an LSTMCell call autograd records;
                                  # "plan": no-grad steps bound once per weight update
                                  # (fastrnn.rl.rollout_plan), which check no weights per step
    grad: bool = False            # autograd records the call
    hidden_size: int = 0
    out_size: int = 0             # proj_size, or hidden_size without a projection
    batch: int = 0
    step_weight_bytes: int = 0    # bytes of one layer's W_ih, W_hh (and W_hr), the largest layer's
    resets: bool = False
    autocast: bool = False        # operands rounded by autocast: fastrnn's own routes only
    torch_only: str | None = None  # why only torch's own forward can take the call, or None


# ---------------------------------------------------------------------------------- the data

# The dtypes the cpp kernels take. auto runs calls in others (bfloat16, float16) on torch's own
# CPU kernels, where only the reference loop would take them: measured one thread, no-grad and
# forward+backward, torch/reference 0.08x-0.38x for bfloat16 LSTM sequences (T=50, B=16,
# H=48 and 256), 0.52x-0.83x for bfloat16 cells, 0.47x-1.29x for float16 (2026-12-08, AMD EPYC).
CPU_KERNEL_DTYPES = frozenset({torch.float32, torch.float64})

# The packed CPU step checks its weights' bytes on every call (weight_cache.py). Above this
# many bytes of weights the source, its snapshot and the packed copy no longer share a core's
# L2 and the check costs more than the step saves (measured: 2x slower than lstm_cell at
# H=512, B=1, and slower at H=256): such steps run torch's lstm_cell, which needs no check.
STEP_PACK_LIMIT_BYTES = 1 << 20
# Below that, the check is still a fixed cost per step while the packed kernel's gain grows with
# the batch: steps with more than STEP_CHECK_BYTES of weights and fewer than STEP_PACK_MIN_ROWS
# rows run lstm_cell too. Measured by `bench cpu` (2026-12-07, 2-core Intel Xeon, avx512) at
# H=128 (512 KiB of weights): the packed step 0.55x / 0.87x torch's at B=1 / 16, 1.08x / 1.31x
# at B=64 / 256; at H=48 (72 KiB) 1.23x at B=1. (On the AMD EPYC of 2026-11-28 it was 2.05x at
# H=128, B=1: that machine compares bytes about three times faster; lstm_cell is torch's own
# kernel, so this rule never runs slower than torch.)
STEP_CHECK_BYTES = 256 << 10
STEP_PACK_MIN_ROWS = 32

# CPU float32 sequences that torch's oneDNN LSTM ran faster than the cpp kernels, as corners
# (H, B): a call with hidden size >= H and batch >= B takes oneDNN; (H, B, B_max): the same with
# batch <= B_max too (a band: oneDNN's own speed is not monotonic in B). Keyed by the instruction
# set fastrnn._C runs (its kernels differ by vector width) and by whether autograd records the
# call. Measured by `python -m bench cpu` (torch.nn.LSTM against backend="cpp", T=100, input
# size H, 2 threads, 2-core AMD EPYC); cells under 0.95x of torch, H 48-512 x B 1-256:
#   avx512 (2026-11-28): forward 0.57-0.89x at H >= 256, 0.83-0.88x at H = 128 with B >= 16;
#                        forward+backward 0.78-0.98x at H >= 256.
#   avx2 (2026-11-29):   forward 0.66-0.86x at H = 256 with B = 16-64, 0.79-0.80x at H = 512
#                        with B <= 16; forward+backward 0.76-0.92x at H = 512 with B >= 16.
# `python -m bench cpu` measures backend="auto" against torch on the same grid, so it shows
# whether these corners still hold on the machine it runs on.
#   avx512, forward+backward at B=1, again (2026-12-07, 2-core Intel Xeon, five runs): cpp
#   1.09x-1.36x torch at H=256, 1.21x-1.33x at H=512, after the unit-split forward and backward
#   of 2026-11-29 (1.2x-1.6x at B=1 where they were measured); the AMD figures above predate
#   them. B=1 calls with grad therefore run cpp; B >= 16 at H >= 256 stays with oneDNN
#   (cpp 0.90x-0.99x at H=256, B=16), and H=128, B=256 joins it (cpp 1.08x, 0.98x, 0.95x,
#   0.91x in four grids that day: parity, where oneDNN is torch by definition).
#   Rechecked by `bench cpu` on AMD EPYCs with avx2 and with avx512 (2026-12-07): the corners stand
#   (docs/performance-log.md, the sixth and seventh sections of that day).
#   avx512, forward+backward at H = 128-192 with small batches (2026-12-08, AMD EPYC, three
#   `bench cpu` runs of 15-40 rounds): cpp 0.89x, 0.93x and 0.90x torch at H=128, B=16 (0.98x
#   the day before), 0.87x at B=32, but 1.14x-1.22x at B=64, where oneDNN slows down; 0.88x at
#   H=192, B=16, 1.12x at B=32. Hence the band H >= 128, B = 16-32 (H >= 256 was covered).
ONEDNN_FASTER: dict[tuple[str, bool], tuple[tuple[int, ...], ...]] = {
    ("avx512", False): ((128, 16), (256, 1)),
    ("avx512", True): ((128, 256), (256, 16), (128, 16, 32)),
    ("avx2", False): ((256, 16), (512, 1)),
    ("avx2", True): ((512, 16),),
}


def _in_corners(corners: tuple[tuple[int, ...], ...], hidden_size: int, batch: int) -> bool:
    return any(hidden_size >= h and batch >= b and batch <= (rest[0] if rest else batch)
               for h, b, *rest in corners)


@constant_under_compile  # a native call and an import Dynamo cannot trace: a constant of the graph
def _cpu_isa() -> str | None:
    """The instruction set fastrnn._C runs now (set_isa may change it), or None where the cpp
    backend cannot load. Importing fastrnn never loads it; the first CPU call routed here does,
    as the call would to run on it: read as None, the corners were empty for that first call's
    sizes, and the route memo kept cpp for them for the whole process (a model's one shape then
    never took oneDNN where bench cpu measured it faster)."""
    native = sys.modules.get("fastrnn._C")
    if native is None:
        try:
            backends.get_backend("cpp")
        except RuntimeError:
            return None
        native = sys.modules["fastrnn._C"]
    return native.isa()


def onednn_is_faster(call: Call) -> bool:
    """Whether torch's oneDNN LSTM beats what auto would run instead: the measured corners of
    the cpp kernels' instruction set, or anywhere if the cpp backend cannot load (auto would
    then run the reference loop)."""
    isa = _cpu_isa()
    if isa is None:
        return True
    return _in_corners(ONEDNN_FASTER.get((isa, call.grad), ()), call.hidden_size, call.batch)


# CUDA: measured on an H200 (bench gpu, 2026-11-28, T=100, forward and forward+backward).
# 16-bit dtypes: triton's persistent kernels win while one pass of CTA groups covers the batch
# (1.4-3.6x cuDNN at H <= 256, 1.1-1.9x at H = 512-1024 with B <= 16); a batch that needs
# several passes runs them one after another and loses (0.14-0.94x), so cuDNN takes it.
# float32: cuDNN's persistent kernel takes about 1.3 us a step where ours takes about 5 us, so
# triton wins only at H in TRITON_FLOAT32_HIDDEN with one pass (1.3-1.7x).
TRITON_FLOAT32_HIDDEN = (129, 256)  # inclusive range of H


def sequence_passes(dtype: torch.dtype, hidden_size: int, out_size: int, batch: int, device: torch.device) -> int:
    """How many passes of the triton forward kernel's CTA groups cover `batch` rows."""
    from fastrnn.kernels import config as kconfig
    from fastrnn.kernels.launch_plan import DTYPE_NAMES, cdiv, grid_sync_enabled, sequence_grid

    config = kconfig.forward_config(hidden_size, out_size, DTYPE_NAMES[dtype], grid_sync_enabled(device))
    n_groups, _ = sequence_grid(config, batch, max(hidden_size, out_size), device)
    return cdiv(cdiv(batch, config.block_b), n_groups)


def cudnn_is_faster(dtype: torch.dtype, hidden_size: int, out_size: int, batch: int, device: torch.device) -> bool:
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        return False
    if sequence_passes(dtype, hidden_size, out_size, batch, device) > 1:
        return True
    if dtype == torch.float32:
        low, high = TRITON_FLOAT32_HIDDEN
        return not low <= hidden_size <= high
    return False


# --------------------------------------------------------------------------------- the table

@dataclass(frozen=True)
class Route:
    implementation: str                  # "<backend>": the backend the keyword resolves to
    when: str                            # the condition in words
    applies: Callable[[Call], bool]


ROUTES: tuple[Route, ...] = (
    Route("torch", "the call is being exported, runs under forward-mode AD or torch.func.vmap (which fastrnn's "
                   "kernels do not implement), or its state's dtype differs from the weights'",
          lambda call: call.torch_only is not None),
    Route("cudnn", "auto, CUDA, an LSTM sequence, no resets, no autocast, and cudnn_is_faster(dtype, H, R, B)",
          lambda call: (call.backend == "auto" and call.device.type == "cuda" and call.mode == "sequence"
                        and not call.resets and not call.autocast and cudnn_is_faster(call.dtype, call.hidden_size, call.out_size,
                                                                 call.batch, call.device))),
    Route("onednn", "auto, CPU, an LSTM sequence, no resets, no autocast: float32 without projection with "
                    "(H, B) in ONEDNN_FASTER, or a 16-bit dtype (CPU_KERNEL_DTYPES lack it)",
          lambda call: (call.backend == "auto" and call.device.type == "cpu" and call.mode == "sequence"
                        and not call.resets and not call.autocast
                        and (call.dtype not in CPU_KERNEL_DTYPES
                             or (call.dtype == torch.float32 and call.out_size == call.hidden_size
                                 and onednn_is_faster(call))))),
    Route("lstm_cell", "auto or cpp, a no-grad CPU step, weights over STEP_PACK_LIMIT_BYTES, or (unbound "
                       "steps) over STEP_CHECK_BYTES with fewer than STEP_PACK_MIN_ROWS rows; or auto, a CPU "
                       "step or LSTMCell call in a 16-bit dtype",
          lambda call: call.device.type == "cpu" and (
              (call.mode in ("step", "plan") and call.backend in ("auto", "cpp")
               and (call.step_weight_bytes > STEP_PACK_LIMIT_BYTES
                    or (call.mode == "step" and call.step_weight_bytes > STEP_CHECK_BYTES
                        and call.batch < STEP_PACK_MIN_ROWS))
               and _backend_name(call) == "cpp")
              or (call.backend == "auto" and call.mode in ("step", "cell") and not call.autocast
                  and call.dtype not in CPU_KERNEL_DTYPES))),
    Route("<backend>", "otherwise: the named backend, or auto's first of AUTO_ORDER that takes the input",
          lambda call: True),
)

# The routes that run torch's own module forward instead of fastrnn's.
TORCH_FORWARD = frozenset({"torch", "cudnn", "onednn"})


def _backend_name(call: Call) -> str:
    return backends.resolve_backend(call.backend, call.device, call.dtype).name


def route(call: Call) -> str:
    """The implementation that runs `call`: the first route of ROUTES whose condition holds.
    A named backend that cannot take the input raises ValueError saying why."""
    return route_facts(*call)


def route_facts(*facts) -> str:
    """route(Call(*facts)), for the modules' per-call use: the facts in Call's field order."""
    if torch.compiler.is_compiling():
        return _first_route(Call(*facts))  # traced: the conditions become guards on the shapes
    # Evaluating the conditions costs about 3 us, a quarter of a small step: each distinct
    # call is evaluated once, while the data it read (above) stays the same objects.
    # (_C.set_isa, a knob for tests, is not watched: a switch leaves calls routed as before,
    # which changes only which of two correct implementations runs; clear_routes() re-reads.)
    global _memo, _memo_data
    data = (STEP_PACK_LIMIT_BYTES, STEP_CHECK_BYTES, STEP_PACK_MIN_ROWS, id(ONEDNN_FASTER), id(TRITON_FLOAT32_HIDDEN))
    if data != _memo_data or len(_memo) > 4096:
        _memo, _memo_data = {}, data
    implementation = _memo.get(facts)
    if implementation is None:
        implementation = _memo[facts] = _first_route(Call(*facts))
    return implementation


_memo: dict[tuple, str] = {}
_memo_data: tuple = ()


def clear_routes() -> None:
    """Forget the routes taken so far: the next call of each kind evaluates ROUTES again."""
    global _memo_data
    _memo_data = ()


def _first_route(call: Call) -> str:
    for candidate in ROUTES:
        if candidate.applies(call):
            return _backend_name(call) if candidate.implementation == "<backend>" else candidate.implementation
    raise AssertionError("the last route applies to every call")


def explain() -> str:
    """ROUTES as a table, in the order they are tried."""
    width = max(len(r.implementation) for r in ROUTES)
    return "\n".join(f"{r.implementation:<{width}}  {r.when}" for r in ROUTES)


def step_function(implementation: str) -> Callable:
    """cell(x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, resets) -> (h_next, c_next) for a step route."""
    cell = _step_functions.get(implementation)
    if cell is None:
        if implementation == "lstm_cell":
            from fastrnn.torch_step import lstm_cell_step as cell
        else:
            cell = backends.get_backend(implementation).cell
        _step_functions[implementation] = cell
    return cell


_step_functions: dict[str, Callable] = {}


def step_weight_bytes(w_ih: torch.Tensor, w_hh: torch.Tensor, w_hr: torch.Tensor | None) -> int:
    elements = w_ih.numel() + w_hh.numel() + (0 if w_hr is None else w_hr.numel())
    return elements * w_hh.element_size()
