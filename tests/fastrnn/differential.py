"""Differential fuzzing of fastrnn.LSTM / fastrnn.LSTMCell against torch.nn.LSTM / nn.LSTMCell.

One case is a `Case`: a module configuration, input/state/resets layouts, a call pattern, a grad
mode and the knobs fastrnn routes on (backend, instruction set, threads, size thresholds). It is
drawn from `random.Random(f"{seed}:{index}")`, so (seed, index) replays it exactly, and its repr
is eval-able, so a shrunk case replays too. `check_case` builds torch's module and fastrnn's with
identical weights (load_state_dict), runs the same calls on both from the same random inputs,
and compares outputs, gradients and raised exception types.

Oracles: torch's module; with `resets` (a fastrnn-only keyword) torch's module run one step at a
time with the state zeroed where resets is True before that step.

The long profile (cases run in a child process, so a crash is reported as a failure too):

    .venv/bin/python -m tests.fastrnn.differential --cases 10000 --seed 1 [--seed 2 ...]
    .venv/bin/python -m tests.fastrnn.differential --replay 1:1234                        # one generated case
    .venv/bin/python -m tests.fastrnn.differential --replay "Case(module='cell', ...)"   # a printed case

It prints the number of cases, the failures grouped by the features of their shrunk case (with
a guess at which known issue class each group belongs to) and one replayable repro per group,
and exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass, fields, replace
from typing import Callable

import torch
import torch.nn as nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import fastrnn
import fastrnn._C
import fastrnn.dispatch
import fastrnn.layers

LAYOUTS = ("contiguous", "transposed", "expanded", "sliced", "gapped", "offset")
GRAD_MODES = ("grad", "no_grad", "inference", "create_graph", "second_order",
              "no_grad_then_grad", "inference_then_grad")  # the mixed: call/step 1 without autograd
FROZEN = ("none", "params", "inputs", "all")  # which of them take no gradient
NONFINITE = ("none", "nan_input", "inf_input", "nan_state", "inf_state", "inf_state_saturated")
INVALID = ("none", "wrong_input_size", "wrong_state_batch", "wrong_state_width", "dtype_mismatch",
           "h_dtype_mismatch", "c_dtype_mismatch", "zero_steps", "state_dims")
ISAS = ("", "avx512", "avx2", "generic")  # "" = whatever fastrnn picked at import
DTYPES = {"float32": torch.float32, "float64": torch.float64}
# Module-level size thresholds of fastrnn, forced to each side of their routes.
THRESHOLD_VALUES = {
    "step_pack_limit": (fastrnn.dispatch, "STEP_PACK_LIMIT_BYTES", {"default": None, "zero": 0}),
    "workspace_min": (fastrnn.layers, "WORKSPACE_MIN_BYTES", {"default": None, "zero": 0}),
    "narrow_input": (fastrnn.layers, "NARROW_INPUT", {"default": None, "none": -1, "all": 1 << 30}),
    # The oneDNN route runs torch's own LSTM, but fastrnn's glue around it (states, layouts,
    # packing, batch_first) only at H >= 128, sizes the generated cases never reach: "everywhere"
    # sends every auto float32 sequence call there.
    "onednn": (fastrnn.dispatch, "ONEDNN_FASTER", {"default": None, "everywhere": {
        (isa, grad): ((0, 0),) for isa in ("avx512", "avx2", "generic") for grad in (False, True)}}),
}


@dataclass(frozen=True)
class Case:
    """One differential check. The defaults are the simplest choice of each field: shrinking
    moves fields towards them, and repr lists only the fields that differ."""
    module: str = "lstm"                 # "lstm" | "cell"
    input_size: int = 3
    hidden_size: int = 4
    num_layers: int = 1
    bias: bool = True
    batch_first: bool = False
    bidirectional: bool = False
    proj_size: int = 0
    dropout_eval: bool = False           # dropout=0.5 and both modules in eval()
    dtype: str = "float64"
    steps: int = 1                       # LSTM sequence length; LSTMCell steps of the unrolled loop
    batch: int = 2
    unbatched: bool = False
    packed: bool = False
    enforce_sorted: bool = True
    with_hx: bool = True
    shared_state: bool = False           # one tensor passed as both h0 and c0
    x_layout: str = "contiguous"
    h_layout: str = "contiguous"
    c_layout: str = "contiguous"
    resets_layout: str = "contiguous"
    resets: bool = False
    pattern: str = "single"              # "single" | "chained" (LSTM) | "unrolled" (cell)
    grad_mode: str = "grad"
    frozen: str = "none"                 # with a grad mode: "params", "inputs" or "all" need no grad
    weight_write: str = "none"           # "add_" | "data": write a weight in place on both (through
                                         # the parameter under no_grad, or through .data, which
                                         # bumps no version counter), then call again;
                                         # "isa_switch": call again under another instruction set
    nonfinite: str = "none"
    invalid: str = "none"
    backend: str = "auto"
    isa: str = ""
    threads: int = 1
    step_pack_limit: str = "default"
    workspace_min: str = "default"
    narrow_input: str = "default"
    data_seed: int = 0
    onednn: str = "default"              # drawn after data_seed: earlier seeds' other fields stay
    dropout_train: bool = False          # drawn last: dropout=0.5 in training mode, both sides seeded
                                         # alike; their generator's next draws are compared too

    def __repr__(self) -> str:
        changed = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)
                   if getattr(self, f.name) != f.default or f.name == "module"]
        return f"Case({', '.join(changed)})"

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def out_size(self) -> int:
        return self.proj_size or self.hidden_size

    @property
    def needs_grad(self) -> bool:
        return self.grad_mode not in ("no_grad", "inference")

    @property
    def first_call_context(self):
        """The context of the first call (LSTM) or step (unrolled cell) in the mixed grad modes."""
        return {"no_grad_then_grad": torch.no_grad, "inference_then_grad": torch.inference_mode}.get(
            self.grad_mode, contextlib.nullcontext)


@dataclass
class Failure:
    case: Case
    phase: str      # "error" (a raise on one side, or different types), "forward", "grad"
    detail: str
    origin: str = ""  # "SEED:INDEX" of the generated case


# ---------------------------------------------------------------- case generation

def generate_case(seed: int, index: int) -> Case:
    """The case (seed, index) stands for: a random draw, then made consistent."""
    rng = random.Random(f"{seed}:{index}")
    module = "cell" if rng.random() < 0.3 else "lstm"
    wide = rng.random() < 0.05  # large enough for the kernels to use two threads
    hidden = rng.choice([32, 40, 48]) if wide else rng.choice([1, 2, 3, 4, 5, 7, 8, 16, 17])
    grad_mode = rng.choice(GRAD_MODES + ("no_grad", "grad"))
    case = Case(
        module=module,
        input_size=rng.choice([0, 1, 2, 5] if module == "cell" else [1, 2, 3, 5]) if rng.random() < 0.7
        else rng.choice([8, 12, 13, 19]),
        hidden_size=hidden,
        num_layers=rng.choice([1, 1, 2, 3]),
        bias=rng.random() < 0.8,
        batch_first=rng.random() < 0.4,
        bidirectional=rng.random() < 0.3,
        proj_size=rng.choice([0, 0, 0, 1, hidden // 2]) if hidden > 1 else 0,
        dropout_eval=rng.random() < 0.1,
        dtype=rng.choice(["float32", "float64"]),
        steps=rng.choice([1, 1, 1, 2, 3, 5]),
        batch=16 if wide else rng.choice([0, 1, 1, 2, 3, 5, 8]) if rng.random() > 0.03 else 0,
        unbatched=rng.random() < 0.12,
        packed=rng.random() < 0.15,
        enforce_sorted=rng.random() < 0.5,
        with_hx=rng.random() < 0.7,
        shared_state=rng.random() < 0.1,
        x_layout=_draw_layout(rng),
        h_layout=_draw_layout(rng),
        c_layout=_draw_layout(rng),
        resets_layout=_draw_layout(rng),
        resets=rng.random() < 0.25,
        pattern=rng.choice(["single", "single", "chained" if module == "lstm" else "unrolled"]),
        grad_mode=grad_mode,
        weight_write=rng.choice(["add_", "data", "isa_switch"]) if rng.random() < 0.15 else "none",
        frozen=rng.choice(FROZEN[1:]) if rng.random() < 0.1 else "none",
        nonfinite=rng.choice(NONFINITE[1:]) if rng.random() < 0.1 else "none",
        invalid=rng.choice(INVALID[1:]) if rng.random() < 0.04 else "none",
        backend=rng.choice(["auto", "auto", "cpp", "cpp", "reference"]),
        isa=rng.choice(ISAS),
        threads=2 if wide or rng.random() < 0.1 else 1,
        step_pack_limit=rng.choice(["default", "default", "zero"]),
        workspace_min=rng.choice(["default", "zero"]),
        narrow_input=rng.choice(["default", "default", "none", "all"]),
        data_seed=rng.randrange(1 << 30),
        onednn=rng.choice(["default", "default", "default", "everywhere"]),
        dropout_train=rng.random() < 0.1,
    )
    return make_consistent(case)


def _draw_layout(rng: random.Random) -> str:
    return "contiguous" if rng.random() < 0.5 else rng.choice(LAYOUTS[1:])


def make_consistent(case: Case) -> Case:
    """The nearest case whose options go together (a cell has one layer, resets need a
    unidirectional LSTM on a padded tensor, ...)."""
    c = case
    if c.module == "cell":
        c = replace(c, num_layers=1, batch_first=False, bidirectional=False, proj_size=0, dropout_eval=False,
                    packed=False, resets=False, pattern="unrolled" if c.pattern == "chained" else c.pattern)
        if c.pattern == "single":
            c = replace(c, steps=1)
    else:
        c = replace(c, input_size=max(c.input_size, 1), pattern="single" if c.pattern == "unrolled" else c.pattern)
    if c.num_layers == 1:
        c = replace(c, dropout_eval=False, dropout_train=False)
    if c.dropout_train:  # training mode; resets have no torch counterpart that draws alike (the oracle steps)
        c = replace(c, dropout_eval=False, resets=False)
    if c.proj_size >= c.hidden_size:
        c = replace(c, proj_size=0)
    if c.unbatched:
        c = replace(c, packed=False, batch=1)
    if c.packed:
        c = replace(c, resets=False, batch=max(c.batch, 1))
    if c.bidirectional:
        c = replace(c, resets=False)
    if not c.resets:
        c = replace(c, resets_layout="contiguous")
    if not c.with_hx:
        c = replace(c, shared_state=False, h_layout="contiguous", c_layout="contiguous")
    if c.shared_state:
        c = replace(c, c_layout=c.h_layout)
        if c.proj_size:
            c = replace(c, shared_state=False)
    if c.grad_mode.endswith("_then_grad"):
        c = replace(c, pattern="chained" if c.module == "lstm" else "unrolled", steps=max(c.steps, 2)
                    if c.module == "cell" else c.steps)
    if c.grad_mode == "inference_then_grad":
        # The resets oracle's torch.where turns the inference-mode state into a normal tensor,
        # so torch would accept what its LSTM (and fastrnn) rightly refuse.
        c = replace(c, resets=False)
    if not c.needs_grad:
        c = replace(c, frozen="none")
    if c.nonfinite == "inf_state_saturated":
        # float64 only: in float32 the 1e5-1e6 pre-activations' rounding alone moves the
        # partly saturated gates by more than any useful tolerance.
        c = replace(c, dtype="float64")
    if c.nonfinite != "none":
        c = replace(c, grad_mode=c.grad_mode if c.grad_mode in ("grad", "no_grad", "inference") else "no_grad")
        if "state" in c.nonfinite and not c.with_hx:
            c = replace(c, nonfinite="nan_input")
    if c.invalid != "none":
        c = _consistent_invalid(c)
    if not c.packed:
        c = replace(c, enforce_sorted=True)
    if c.backend != "auto":  # only auto takes the oneDNN route
        c = replace(c, onednn="default")
    if c.backend == "reference":  # knobs of the cpp backend only
        c = replace(c, isa="", step_pack_limit="default", weight_write="none" if c.weight_write == "isa_switch"
                    else c.weight_write)
    return c


def _consistent_invalid(c: Case) -> Case:
    c = replace(c, packed=False, pattern="single", weight_write="none", nonfinite="none", frozen="none",
                grad_mode="grad" if c.needs_grad else "no_grad", resets=False, resets_layout="contiguous")
    if c.invalid in ("wrong_state_batch", "wrong_state_width", "state_dims", "h_dtype_mismatch", "c_dtype_mismatch"):
        c = replace(c, with_hx=True, shared_state=False)
    if c.invalid == "wrong_state_batch" and c.unbatched:
        c = replace(c, invalid="state_dims")
    if c.invalid == "state_dims" and c.module == "cell":
        # torch 2.13's nn.LSTMCell segfaults on a 1-D input with 2-D states (and the cell
        # never sees 3-D states otherwise): the batched form only.
        c = replace(c, unbatched=False, batch=max(c.batch, 1))
    if c.invalid == "zero_steps" and c.module == "cell":
        c = replace(c, invalid="wrong_input_size")
    return c


# ---------------------------------------------------------------- inputs and their layouts

@dataclass
class Operand:
    """A tensor argument: `base` holds the values in the memory layout chosen, `view(leaf)`
    turns a copy of base into the argument the module sees (for gradients, the copy is the
    leaf, so a gradient reaches it through the view)."""
    base: torch.Tensor
    view: Callable[[torch.Tensor], torch.Tensor]

    def materialize(self, requires_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
        leaf = self.base.clone()
        if requires_grad and leaf.is_floating_point():
            leaf.requires_grad_()
        return leaf, self.view(leaf)


def layout_operand(values: torch.Tensor, layout: str, stride_zero_dim: int | None) -> Operand:
    """An Operand whose view equals `values` in the given memory layout. For "expanded" the
    values are taken from index 0 along stride_zero_dim (the batch, else the first) dimension."""
    shape = tuple(values.shape)
    if layout == "transposed" and values.dim() < 2:
        layout = "sliced"
    if layout == "transposed":
        return Operand(values.transpose(-1, -2).contiguous(), lambda t: t.transpose(-1, -2))
    if layout == "expanded" and values.dim() >= 1 and shape[stride_zero_dim or 0] > 0:
        dim = stride_zero_dim or 0
        return Operand(values.narrow(dim, 0, 1).contiguous(), lambda t: t.expand(shape))
    if layout == "sliced":
        wide = torch.stack([values, _filler_like(values)], dim=-1).flatten(-2)
        return Operand(wide, lambda t: t[..., ::2])
    if layout == "gapped":
        pad = values.new_full((*shape[:-1], 1), _fill_value(values))
        width = shape[-1]
        return Operand(torch.cat([pad, values, pad, pad], dim=-1), lambda t: t[..., 1:1 + width])
    if layout == "offset":
        flat = torch.cat([values.new_full((5,), _fill_value(values)), values.reshape(-1)])
        return Operand(flat, lambda t: t[5:].view(shape))
    return Operand(values.contiguous(), lambda t: t)


def _fill_value(values: torch.Tensor):
    return True if values.dtype == torch.bool else 123.0


def _filler_like(values: torch.Tensor) -> torch.Tensor:
    """Values a correct kernel never reads (they sit in the gaps of a layout)."""
    return torch.full_like(values, _fill_value(values))


@dataclass
class Inputs:
    """Every tensor argument of a case, for each call (call 2 only for the chained pattern)."""
    x: list[Operand]
    h0: Operand | None
    c0: Operand | None
    resets: list[Operand | None]
    lengths: list[torch.Tensor | None]


def make_inputs(case: Case) -> Inputs:
    generator = torch.Generator().manual_seed(case.data_seed + 1)
    calls = 2 if case.pattern == "chained" else 1
    xs, resets, lengths = [], [], []
    for _ in range(calls):
        xs.append(layout_operand(_input_values(case, generator), case.x_layout, _x_batch_dim(case)))
        resets.append(_resets_operand(case, generator))
        lengths.append(_lengths(case, generator) if case.packed else None)
    h0 = c0 = None
    if case.with_hx:
        h_values, c_values = _state_values(case, generator)
        h0 = layout_operand(h_values, case.h_layout, _state_batch_dim(case))
        c0 = layout_operand(c_values, case.c_layout, _state_batch_dim(case))
    return Inputs(xs, h0, c0, resets, lengths)


def _input_shape(case: Case) -> tuple[int, ...]:
    features = case.input_size + (1 if case.invalid == "wrong_input_size" else 0)
    steps = 0 if case.invalid == "zero_steps" else case.steps
    if case.module == "cell":
        rows = () if case.unbatched else (case.batch,)
        return (*((steps,) if case.pattern == "unrolled" else ()), *rows, features)
    if case.unbatched:
        return (steps, features)
    return (case.batch, steps, features) if case.batch_first else (steps, case.batch, features)


def _x_batch_dim(case: Case) -> int | None:
    if case.unbatched:
        return None
    if case.module == "cell":
        return 1 if case.pattern == "unrolled" else 0
    return 0 if case.batch_first else 1


def _state_batch_dim(case: Case) -> int | None:
    if case.unbatched:
        return None
    return 0 if case.module == "cell" else 1


def _input_values(case: Case, generator: torch.Generator) -> torch.Tensor:
    dtype = case.torch_dtype
    if case.invalid == "dtype_mismatch":
        dtype = torch.float32 if dtype == torch.float64 else torch.float64
    x = torch.randn(_input_shape(case), dtype=dtype, generator=generator)
    if case.nonfinite == "inf_state_saturated":
        x = x * 1e4
    if case.nonfinite in ("nan_input", "inf_input"):
        x = _poison(x, float("nan") if case.nonfinite == "nan_input" else float("inf"), generator)
    return x


def _state_shapes(case: Case) -> tuple[tuple[int, ...], tuple[int, ...]]:
    rows = () if case.unbatched else (case.batch,)
    lead = () if case.module == "cell" else (case.num_layers * case.directions,)
    h_rows = (case.batch + 1,) if case.invalid == "wrong_state_batch" else rows
    h_shape = (*lead, *h_rows, case.out_size)
    c_shape = (*lead, *rows, case.hidden_size + (1 if case.invalid == "wrong_state_width" else 0))
    if case.invalid == "state_dims":
        h_shape, c_shape = (1, *h_shape), (1, *c_shape)
    return h_shape, c_shape


def _state_values(case: Case, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    h_shape, c_shape = _state_shapes(case)
    h = torch.randn(h_shape, dtype=case.torch_dtype, generator=generator)
    c = torch.randn(c_shape, dtype=case.torch_dtype, generator=generator)
    other = torch.float32 if case.torch_dtype == torch.float64 else torch.float64
    if case.invalid == "h_dtype_mismatch":
        h = h.to(other)
    if case.invalid == "c_dtype_mismatch":
        c = c.to(other)
    if case.nonfinite == "nan_state":
        h = _poison(h, float("nan"), generator)
    if case.nonfinite in ("inf_state", "inf_state_saturated"):
        c = _poison(c, float("inf"), generator, signed=True)
    return h, c


def _poison(values: torch.Tensor, bad: float, generator: torch.Generator, signed: bool = False) -> torch.Tensor:
    """values with about a third of the entries (at least one) replaced by `bad`."""
    if values.numel() == 0:
        return values
    mask = torch.rand(values.shape, generator=generator) < 0.33
    mask.view(-1)[int(torch.randint(values.numel(), (1,), generator=generator))] = True
    sign = torch.where(torch.rand(values.shape, generator=generator) < 0.5, -1.0, 1.0).to(values.dtype)
    return torch.where(mask, bad * (sign if signed else 1.0), values)


def _resets_operand(case: Case, generator: torch.Generator) -> Operand | None:
    if not case.resets:
        return None
    shape = (case.steps,) if case.unbatched else (
        (case.batch, case.steps) if case.batch_first else (case.steps, case.batch))
    values = torch.rand(shape, generator=generator) < 0.35
    batch_dim = None if case.unbatched else (0 if case.batch_first else 1)
    return layout_operand(values, case.resets_layout, batch_dim)


def _lengths(case: Case, generator: torch.Generator) -> torch.Tensor:
    lengths = torch.randint(1, case.steps + 1, (case.batch,), generator=generator)
    lengths[int(torch.randint(case.batch, (1,), generator=generator))] = case.steps
    return lengths.sort(descending=True).values if case.enforce_sorted else lengths


# ---------------------------------------------------------------- modules

def build_modules(case: Case) -> tuple[nn.Module, nn.Module]:
    """(torch's module, fastrnn's module) with identical weights."""
    dtype = case.torch_dtype
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(case.data_seed)
        if case.module == "cell":
            expected = nn.LSTMCell(case.input_size, case.hidden_size, bias=case.bias, dtype=dtype)
            actual = fastrnn.LSTMCell(case.input_size, case.hidden_size, bias=case.bias, backend=case.backend,
                                      dtype=dtype)
        else:
            kwargs = dict(num_layers=case.num_layers, bias=case.bias, batch_first=case.batch_first,
                          dropout=0.5 if case.dropout_eval or case.dropout_train else 0.0,
                          bidirectional=case.bidirectional,
                          proj_size=case.proj_size, dtype=dtype)
            expected = nn.LSTM(case.input_size, case.hidden_size, **kwargs)
            actual = fastrnn.LSTM(case.input_size, case.hidden_size, backend=case.backend, **kwargs)
    if case.nonfinite == "inf_state_saturated":
        with torch.no_grad():
            for p in expected.parameters():
                p.mul_(30.0)
    actual.load_state_dict(expected.state_dict())
    if case.frozen in ("params", "all"):
        expected.requires_grad_(False)
        actual.requires_grad_(False)
    if case.dropout_eval:
        expected.eval()
        actual.eval()
    return expected, actual


def write_a_weight(case: Case, modules: tuple[nn.Module, nn.Module]) -> None:
    """The same in-place write into one parameter (picked by the case's seed) of both modules."""
    names = [name for name, _ in modules[0].named_parameters()]
    name = names[case.data_seed % len(names)]
    delta = torch.randn(getattr(modules[0], name).shape, dtype=case.torch_dtype,
                        generator=torch.Generator().manual_seed(case.data_seed + 2)) * 0.1
    with torch.no_grad():
        for module in modules:
            parameter = getattr(module, name)
            (parameter.data if case.weight_write == "data" else parameter).add_(delta)


# ---------------------------------------------------------------- running a call pattern

@dataclass
class Result:
    """What one side produced: named outputs and named gradients, or the exception raised."""
    outputs: list[tuple[str, torch.Tensor]]
    grads: list[tuple[str, torch.Tensor]]
    error: BaseException | None = None


def run_side(case: Case, module: nn.Module, inputs: Inputs, is_fastrnn: bool) -> Result:
    try:
        return _run_side(case, module, inputs, is_fastrnn)
    except Exception as error:  # noqa: BLE001 - a raise is a result to compare
        return Result([], [], error)


def _run_side(case: Case, module: nn.Module, inputs: Inputs, is_fastrnn: bool) -> Result:
    leaves: list[tuple[str, torch.Tensor]] = []
    args = _materialize(case, inputs, leaves)
    context = {"no_grad": torch.no_grad, "inference": torch.inference_mode}.get(case.grad_mode, contextlib.nullcontext)
    with torch.random.fork_rng(devices=[], enabled=case.dropout_train):
        if case.dropout_train:  # the same dropout masks on both sides, if both draw as torch does
            torch.manual_seed(case.data_seed + 5)
        with context():
            outputs = _call_pattern(case, module, args, is_fastrnn)
        if case.dropout_train:  # and the generator left in the same place
            outputs.append(("next_draws", torch.rand(4, dtype=torch.float64)))
    outputs = [(name, t.data if isinstance(t, PackedSequence) else t) for name, t in outputs]
    if not case.needs_grad:
        return Result(outputs, [])
    return Result(outputs, _gradients(case, module, outputs, leaves))


def _materialize(case: Case, inputs: Inputs, leaves: list) -> dict:
    """The call arguments (views of fresh leaves); the leaves that take gradients go in leaves."""
    grad = case.needs_grad and case.frozen not in ("inputs", "all")

    def make(name, operand):
        if operand is None:
            return None
        leaf, view = operand.materialize(grad)
        if leaf.requires_grad:
            leaves.append((name, leaf))
        return view

    xs = [make(f"x{i}", op) for i, op in enumerate(inputs.x)]
    h0 = make("h0", inputs.h0)
    c0 = h0 if case.shared_state else make("c0", inputs.c0)
    resets = [None if op is None else op.materialize(False)[1] for op in inputs.resets]
    return dict(xs=xs, hx=None if h0 is None else (h0, c0), resets=resets, lengths=inputs.lengths)


def _call_pattern(case: Case, module: nn.Module, args: dict, is_fastrnn: bool) -> list[tuple[str, torch.Tensor]]:
    if case.module == "cell":
        return _cell_pattern(case, module, args)
    outputs, state = [], args["hx"]
    for call, x in enumerate(args["xs"]):
        if args["lengths"][call] is not None:
            x = pack_padded_sequence(x, args["lengths"][call], batch_first=case.batch_first,
                                     enforce_sorted=case.enforce_sorted)
        with case.first_call_context() if call == 0 else contextlib.nullcontext():
            y, state = _lstm_call(case, module, x, state, args["resets"][call], is_fastrnn)
        outputs += [(f"y{call}", y), (f"h_n{call}", state[0]), (f"c_n{call}", state[1])]
    return outputs


def _lstm_call(case: Case, module: nn.Module, x, hx, resets, is_fastrnn: bool):
    if resets is None:
        return module(x) if hx is None else module(x, hx)
    if is_fastrnn:
        return module(x, hx, resets=resets)
    return torch_lstm_with_resets(module, x, hx, resets)


def torch_lstm_with_resets(module: nn.LSTM, x: torch.Tensor, hx, resets: torch.Tensor):
    """The resets oracle: torch's LSTM one step at a time, each row's state (every layer)
    set to zero before a step whose resets entry is True."""
    batched = x.dim() == 3
    if not batched:
        x = x.unsqueeze(0 if module.batch_first else 1)
        resets = resets.unsqueeze(0 if module.batch_first else 1)
        hx = None if hx is None else (hx[0].unsqueeze(1), hx[1].unsqueeze(1))
    if module.batch_first:
        x, resets = x.transpose(0, 1), resets.transpose(0, 1)
    steps, batch = x.shape[:2]
    if hx is None:
        layers = module.num_layers * (2 if module.bidirectional else 1)
        hx = (x.new_zeros(layers, batch, module.proj_size or module.hidden_size),
              x.new_zeros(layers, batch, module.hidden_size))
    h, c = hx
    ys = []
    for t in range(steps):
        reset = resets[t].view(1, batch, 1)
        h, c = torch.where(reset, 0.0, h), torch.where(reset, 0.0, c)
        step = x[t:t + 1].transpose(0, 1) if module.batch_first else x[t:t + 1]
        y, (h, c) = module(step, (h, c))
        ys.append(y.transpose(0, 1) if module.batch_first else y)
    y = torch.cat(ys)
    if module.batch_first:
        y = y.transpose(0, 1)
    if not batched:
        y, h, c = y.squeeze(0 if module.batch_first else 1), h.squeeze(1), c.squeeze(1)
    return y, (h, c)


def _cell_pattern(case: Case, cell: nn.Module, args: dict) -> list[tuple[str, torch.Tensor]]:
    x, state = args["xs"][0], args["hx"]
    if case.pattern == "single":
        h, c = cell(x) if state is None else cell(x, state)
        return [("h", h), ("c", c)]
    outputs = []
    for t in range(x.shape[0]):
        with case.first_call_context() if t == 0 else contextlib.nullcontext():
            state = cell(x[t]) if state is None else cell(x[t], state)
        outputs += [(f"h{t}", state[0]), (f"c{t}", state[1])]
    return outputs


def _gradients(case: Case, module: nn.Module, outputs, leaves) -> list[tuple[str, torch.Tensor]]:
    """Gradients of a random projection of the outputs (create_graph and second_order: as the
    mode says) with respect to the input leaves and every parameter."""
    generator = torch.Generator().manual_seed(case.data_seed + 3)
    loss = sum((t * torch.randn(t.shape, dtype=t.dtype, generator=generator)).sum() for _, t in outputs)
    trained = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    names = [n for n, _ in leaves] + [n for n, _ in trained]
    targets = [t for _, t in leaves] + [p for _, p in trained]
    if case.grad_mode == "second_order":
        params = [p for _, p in trained]
        first = _grad(loss, params, create_graph=True)
        loss = sum((g * g).sum() for g in first)
    grads = _grad(loss, targets, create_graph=case.grad_mode == "create_graph")
    return list(zip(names, (g.detach() for g in grads)))


def _grad(loss, targets, create_graph: bool) -> list[torch.Tensor]:
    if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
        return [torch.zeros_like(t) for t in targets]
    grads = torch.autograd.grad(loss, targets, create_graph=create_graph, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for g, t in zip(grads, targets)]


# ---------------------------------------------------------------- fastrnn's knobs

@contextlib.contextmanager
def fastrnn_knobs(case: Case):
    """The case's instruction set, thread count and size thresholds, restored afterwards."""
    saved = {key: getattr(module, attr) for key, (module, attr, _) in THRESHOLD_VALUES.items()}
    previous_isa = fastrnn._C.isa()
    try:
        for key, (module, attr, values) in THRESHOLD_VALUES.items():
            value = values[getattr(case, key)]
            if value is not None:
                setattr(module, attr, value)
        if case.isa:
            fastrnn._C.set_isa(case.isa)
        with torch_threads(case.threads):
            yield
    finally:
        for key, (module, attr, _) in THRESHOLD_VALUES.items():
            setattr(module, attr, saved[key])
        fastrnn._C.set_isa(previous_isa)


@contextlib.contextmanager
def torch_threads(count: int):
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def isa_available(case: Case) -> bool:
    return not case.isa or case.isa in fastrnn._C.available_isas()


# ---------------------------------------------------------------- comparison

def tolerance(case: Case, what: str) -> dict:
    """Forward: float64 1e-10, float32 1e-5 (atol is scaled by the reference's magnitude);
    gradients looser, second-order gradients loosest."""
    if case.dtype == "float64":
        return {"forward": dict(rtol=1e-10, atol=1e-10), "grad": dict(rtol=1e-8, atol=1e-8)}.get(
            what, dict(rtol=1e-7, atol=1e-7))
    return {"forward": dict(rtol=1e-5, atol=1e-5), "grad": dict(rtol=1e-4, atol=1e-4)}.get(
        what, dict(rtol=1e-3, atol=1e-3))


def compare_tensor(expected: torch.Tensor, actual: torch.Tensor, tol: dict) -> str | None:
    """None when equal within tol (NaN where and only where torch has NaN), else why not."""
    if tuple(actual.shape) != tuple(expected.shape):
        return f"shape {tuple(actual.shape)} != torch's {tuple(expected.shape)}"
    if actual.dtype != expected.dtype:
        return f"dtype {actual.dtype} != torch's {expected.dtype}"
    finite = expected[torch.isfinite(expected)]
    scale = max(1.0, float(finite.abs().max())) if finite.numel() else 1.0
    try:
        torch.testing.assert_close(actual, expected, rtol=tol["rtol"], atol=tol["atol"] * scale, equal_nan=True)
    except AssertionError as error:
        return _first_lines(str(error), 4)
    return None


def _first_lines(text: str, count: int) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[:count] if line.strip())


def compare_results(case: Case, expected: Result, actual: Result) -> tuple[str, str] | None:
    """(phase, detail) of the first difference, or None when fastrnn behaved as torch."""
    if expected.error is not None or actual.error is not None:
        return _compare_errors(expected.error, actual.error)
    mismatch = _compare_named(expected.outputs, actual.outputs, tolerance(case, "forward"))
    if mismatch:
        return "forward", mismatch
    what = "second_order" if case.grad_mode == "second_order" else "grad"
    mismatch = _compare_named(expected.grads, actual.grads, tolerance(case, what))
    return ("grad", mismatch) if mismatch else None


def _compare_errors(expected: BaseException | None, actual: BaseException | None) -> tuple[str, str] | None:
    if expected is None:
        return "error", f"fastrnn raised where torch returned: {type(actual).__name__}: {_first_lines(str(actual), 2)}"
    if actual is None:
        return "error", f"torch raised, fastrnn returned: {type(expected).__name__}: {_first_lines(str(expected), 2)}"
    if type(actual) is not type(expected):
        return "error", (f"fastrnn raised {type(actual).__name__} ({_first_lines(str(actual), 1)}), torch "
                         f"{type(expected).__name__} ({_first_lines(str(expected), 1)})")
    return None


def _compare_named(expected, actual, tol: dict) -> str | None:
    if [n for n, _ in expected] != [n for n, _ in actual]:
        return f"different outputs: {[n for n, _ in actual]} vs torch's {[n for n, _ in expected]}"
    for (name, exp), (_, act) in zip(expected, actual):
        why = compare_tensor(exp, act, tol)
        if why:
            return f"{name}: {why}"
    return None


# ---------------------------------------------------------------- one case

def check_case(case: Case) -> tuple[str, str] | None:
    """(phase, detail) where fastrnn differs from torch on this case, None where it agrees (or
    the case's instruction set is not available here)."""
    if not isa_available(case):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected_module, actual_module = build_modules(case)
        inputs = make_inputs(case)
        with torch_threads(case.threads):
            expected = run_side(case, expected_module, inputs, is_fastrnn=False)
        with fastrnn_knobs(case):
            actual = run_side(case, actual_module, inputs, is_fastrnn=True)
        difference = compare_results(case, expected, actual)
        if difference or case.weight_write == "none" or expected.error is not None:
            return difference
        if case.weight_write == "isa_switch":
            case = replace(case, isa=_another_isa(case.isa))
        else:
            write_a_weight(case, (expected_module, actual_module))
        with torch_threads(case.threads):
            expected = run_side(case, expected_module, inputs, is_fastrnn=False)
        with fastrnn_knobs(case):
            actual = run_side(case, actual_module, inputs, is_fastrnn=True)
        difference = compare_results(case, expected, actual)
        return None if difference is None else (difference[0], f"after {case.weight_write}: {difference[1]}")


def _another_isa(isa: str) -> str:
    available = fastrnn._C.available_isas()
    current = isa or fastrnn._C.isa()
    return next((name for name in available if name != current), current)


def run_cases(seed: int, count: int, start: int = 0, progress: Callable[[int], None] | None = None) -> list[Failure]:
    failures = []
    for index in range(start, start + count):
        case = generate_case(seed, index)
        difference = check_case(case)
        if difference:
            failures.append(Failure(case, *difference, origin=f"{seed}:{index}"))
        if progress:
            progress(index - start + 1)
    return failures


# ---------------------------------------------------------------- crash isolation
#
# A kernel that writes out of bounds can abort or kill the process (and torch itself segfaults
# on some invalid calls), so the runners below check cases in a child process that reports each
# case as one JSON line: a case after which the child died is a "crash" failure, and the next
# child carries on after it.

def run_cases_isolated(seed: int, count: int, start: int = 0) -> list[Failure]:
    """run_cases in child processes; a case that kills its child is a failure of phase "crash"."""
    failures, index, end = [], start, start + count
    while index < end:
        lines, returncode, stderr = _run_child(["--worker", "--seed", str(seed), "--start", str(index),
                                                "--cases", str(end - index)])
        for record in lines:
            index = record["index"] + 1
            if "phase" in record:
                failures.append(Failure(generate_case(seed, record["index"]), record["phase"], record["detail"],
                                        origin=f"{seed}:{record['index']}"))
        if returncode != 0 and index < end:
            failures.append(Failure(generate_case(seed, index), "crash", _crash_detail(returncode, stderr),
                                    origin=f"{seed}:{index}"))
            index += 1
    return failures


def _run_child(arguments: list[str]) -> tuple[list[dict], int, str]:
    command = [sys.executable, "-m", "tests.fastrnn.differential", *arguments]
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run(command, cwd=root, capture_output=True, text=True)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return lines, done.returncode, done.stderr


def _crash_detail(returncode: int, stderr: str) -> str:
    cause = f"signal {-returncode}" if returncode < 0 else f"exit code {returncode}"
    tail = [line for line in stderr.strip().splitlines() if line.strip()][-2:]
    return f"the process died ({cause}): " + " | ".join(tail)


def _worker(seed: int, start: int, count: int) -> None:
    """The child's side of run_cases_isolated: one JSON line per case, flushed."""
    torch.set_num_threads(1)
    for index in range(start, start + count):
        difference = check_case(generate_case(seed, index))
        record = {"index": index} if difference is None else {"index": index, "phase": difference[0],
                                                                "detail": difference[1]}
        print(json.dumps(record), flush=True)


def shrink_isolated(case: Case, phase: str) -> Case:
    """shrink in a child process; the last simpler case it reported if it died meanwhile."""
    lines, _, _ = _run_child(["--shrink", repr(case), "--phase", phase])
    return parse_replay(lines[-1]["case"]) if lines else case


def _shrink_worker(case: Case, phase: str) -> None:
    torch.set_num_threads(1)
    shrink(case, phase, report=lambda smaller: print(json.dumps({"case": repr(smaller)}), flush=True))


# ---------------------------------------------------------------- shrinking and grouping

SIZE_FIELDS = ("input_size", "hidden_size", "num_layers", "proj_size", "steps", "batch", "threads", "data_seed")


def shrink(case: Case, phase: str, budget: int = 80, report: Callable[[Case], None] | None = None) -> Case:
    """A simpler case that still fails in the same phase: each field moved towards its default
    (sizes towards small ones) while the failure stays, greedily. report(case) hears of each
    simpler case found."""
    checks = 0
    changed = True
    while changed and checks < budget:
        changed = False
        for candidate in _simplifications(case):
            if candidate == case or checks >= budget:
                continue
            checks += 1
            try:
                difference = check_case(candidate)
            except Exception:  # noqa: BLE001 - a candidate the harness cannot build is no simpler case
                continue
            if difference and difference[0] == phase:
                case, changed = candidate, True
                if report:
                    report(case)
                break
    return case


def _simplifications(case: Case):
    defaults = Case(module=case.module)
    for f in fields(Case):
        if f.name in ("module", "data_seed") or getattr(case, f.name) == f.default:
            continue
        if f.name in SIZE_FIELDS:
            for smaller in _smaller_values(f.name, getattr(case, f.name)):
                yield make_consistent(replace(case, **{f.name: smaller}))
        elif f.name == "grad_mode":
            for mode in ("grad", "no_grad"):
                yield make_consistent(replace(case, grad_mode=mode))
        else:
            yield make_consistent(replace(case, **{f.name: getattr(defaults, f.name)}))


def _smaller_values(name: str, value: int) -> list[int]:
    floor = {"input_size": 0, "hidden_size": 1, "num_layers": 1, "proj_size": 0, "steps": 1, "batch": 0,
             "threads": 1}[name]
    options = {v for v in (floor, 1, 2, 3, value // 2) if floor <= v < value}
    return sorted(options, key=lambda v: (v == 0, v))  # zero last: an edge case of its own


def signature(case: Case, phase: str) -> tuple:
    """What a shrunk failure is about: its phase and its non-default options (sizes only where
    they are edge values)."""
    features = [phase]
    for f in fields(Case):
        value = getattr(case, f.name)
        if f.name == "data_seed" or (value == f.default and f.name != "module"):
            continue
        if f.name in SIZE_FIELDS:
            if value == 0 or (f.name == "steps" and value > 1):
                features.append(f"{f.name}={'>1' if value > 1 else value}")
            continue
        features.append(f"{f.name}={value}")
    return tuple(features)


def known_class(case: Case, phase: str) -> str:
    """Which class of the issue a (shrunk) failure looks like, or "NEW"."""
    non_contiguous = any(layout != "contiguous" for layout in
                         (case.x_layout, case.h_layout, case.c_layout, case.resets_layout))
    single_step = case.module == "cell" or (case.steps == 1 and not case.packed and not case.bidirectional)
    if case.module == "cell" and case.input_size == 0 and phase == "error":
        return "5 (LSTMCell(0, H) raises where torch returns)"
    if "dtype_mismatch" in case.invalid and case.invalid != "dtype_mismatch":
        return "NEW: h0/c0 of another dtype than the weights"
    if case.grad_mode in ("no_grad", "inference") and single_step and non_contiguous and phase == "forward":
        return "1 (no-grad single step, non-contiguous operand)"
    if case.grad_mode in ("create_graph", "second_order") and case.shared_state:
        return "3 (create_graph, one tensor as h0 and c0)"
    if case.grad_mode in ("create_graph", "second_order") and (
            case.pattern in ("chained", "unrolled") or case.packed):
        return "2 (create_graph, state/input depends on the module's weights)"
    if case.nonfinite in ("inf_state", "inf_state_saturated"):
        return "4 (inf cell state, saturated forget gate)"
    return "NEW"


def group_failures(failures: list[Failure], shrink_per_group: int = 3,
                   isolated: bool = True) -> "OrderedDict[tuple, list]":
    """Failures grouped by the signature of their shrunk case. Only the first few failures of
    each coarse group (phase, module, grad mode, pattern) are shrunk (in a child process when
    isolated; crashes are never re-run in this one); the others join the group their first
    shrunk member landed in."""
    coarse: "OrderedDict[tuple, list[Failure]]" = OrderedDict()
    for failure in failures:
        key = (failure.phase, failure.case.module, failure.case.grad_mode, failure.case.pattern)
        coarse.setdefault(key, []).append(failure)
    groups: "OrderedDict[tuple, list]" = OrderedDict()
    for members in coarse.values():
        first_signature = None
        for position, failure in enumerate(members):
            if position < shrink_per_group and (isolated or failure.phase != "crash"):
                small = (shrink_isolated if isolated else shrink)(failure.case, failure.phase)
                detail = None if isolated else check_case(small)
                sig = signature(small, failure.phase)
                first_signature = first_signature or sig
                groups.setdefault(sig, []).append((failure, small, detail[1] if detail else failure.detail))
            else:
                first_signature = first_signature or signature(failure.case, failure.phase)
                groups.setdefault(first_signature, []).append((failure, failure.case, failure.detail))
    return groups


def format_groups(groups) -> str:
    lines = []
    for number, (sig, members) in enumerate(sorted(groups.items(), key=lambda kv: -len(kv[1])), 1):
        failure, small, detail = members[0]
        lines.append(f"[{number}] {len(members)} failure(s); class {known_class(small, failure.phase)}")
        lines.append(f"    signature: {', '.join(sig)}")
        lines.append(f"    replay:    python -m tests.fastrnn.differential --replay {failure.origin}")
        lines.append(f"    shrunk:    {small!r}")
        lines.append(f"    detail:    {detail}")
    return "\n".join(lines)


# ---------------------------------------------------------------- command line

def parse_replay(spec: str) -> Case:
    """A case from "SEED:INDEX" or from a printed Case(...) repr."""
    if spec.strip().startswith("Case("):
        return eval(spec, {"Case": Case})  # noqa: S307 - a repr this module printed
    seed, index = spec.split(":")
    return generate_case(int(seed), int(index))


def replay(spec: str) -> int:
    case = parse_replay(spec)
    print(repr(case))
    difference = check_case(case)
    if difference is None:
        print("OK: fastrnn agrees with torch" + ("" if isa_available(case) else " (ISA not available: skipped)"))
        return 0
    print(f"FAIL [{difference[0]}] {difference[1]}")
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fastrnn.differential", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=2000, help="cases per seed")
    parser.add_argument("--seed", type=int, action="append", help="seed (repeatable; default 1)")
    parser.add_argument("--start", type=int, default=0, help="first case index")
    parser.add_argument("--replay", help="run one case: SEED:INDEX or a printed Case(...)")
    parser.add_argument("--shrink-per-group", type=int, default=3)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--shrink", help=argparse.SUPPRESS)
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker((args.seed or [1])[0], args.start, args.cases)
        return 0
    if args.shrink:
        _shrink_worker(parse_replay(args.shrink), args.phase)
        return 0
    if args.replay:
        return replay(args.replay)
    torch.set_num_threads(1)
    failures, started = [], time.perf_counter()
    seeds = args.seed or [1]
    for seed in seeds:
        failures += run_cases_isolated(seed, args.cases, args.start)
    elapsed = time.perf_counter() - started
    print(f"\n{len(seeds) * args.cases} cases (seeds {seeds}), {len(failures)} failure(s), {elapsed:.0f} s")
    if not failures:
        return 0
    groups = group_failures(failures, args.shrink_per_group)
    print(format_groups(groups))
    return 1


if __name__ == "__main__":
    sys.exit(main())
