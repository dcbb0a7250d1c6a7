"""The one LSTM recurrence op under every kernel backend.

A kernel backend is a ``Launcher``: it launches its kernels on buffers this module allocates,
and nothing else. Everything the backends share lives here, once:

- the contiguous inputs and the output buffers (``ForwardOutputs``, ``BackwardOutputs``);
- the empty sequence (``steps == 0``), which launches nothing;
- one custom op, ``fastrnn::lstm_recurrence`` (and its ``_backward``), with its fake kernel,
  taking the backend's name as its first argument;
- ONE autograd definition (``_setup_context`` and ``_backward``), registered on the op for
  torch.compile and used by the eager ``autograd.Function`` too, so gradcheck, opcheck and a
  compiled graph all exercise the same code;
- the no-grad step as torch.compile sees it (``projected_cell``), which the reference backend
  also uses as its own step.

The recurrence contract (shapes, resets, lengths) is the one documented in fastrnn.reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Hashable, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from fastrnn.backends import Backend
from fastrnn.dispatch import step_weight_bytes
from fastrnn.torch_compat import eager_apply, version


class Inputs(NamedTuple):
    """The recurrence's inputs, contiguous, on one device (xproj is None in backward)."""
    xproj: Tensor | None  # (T, B, 4H)
    w_hh: Tensor          # (4H, R)
    w_hr: Tensor | None   # (P, H)
    h0: Tensor            # (B, R)
    c0: Tensor            # (B, H)
    resets: Tensor | None   # (T, B) bool
    lengths: Tensor | None  # (B,) int64


class ForwardOutputs(NamedTuple):
    y: Tensor       # (T, B, R)
    h_n: Tensor     # (B, R)
    c_n: Tensor     # (B, H)
    gates: Tensor   # (T, B, 4H) activated gates when saved, else empty
    cells: Tensor   # (T, B, H) cell states when saved, else empty
    hidden: Tensor  # (T, B, H) o * tanh(c) before the projection when saved with one, else empty
    # Every backend saves zeros in gates, cells and hidden past a row's length.


class OutputGrads(NamedTuple):
    grad_y: Tensor | None    # (T, B, R)
    grad_h_n: Tensor | None  # (B, R)
    grad_c_n: Tensor | None  # (B, H)


class BackwardOutputs(NamedTuple):
    dxproj: Tensor    # (T, B, 4H) gradient of the gate pre-activations
    dh0: Tensor       # (B, R)
    dc0: Tensor       # (B, H)
    dy_total: Tensor  # (T, B, P) total gradient of each projected output (projection only), else empty


@dataclass(frozen=True)
class Launcher:
    """What a kernel backend supplies: launch code over the buffers given to it."""
    name: str
    # None when the backend can take tensors of this device and dtype, else why not.
    unsupported_reason: Callable[[torch.device, torch.dtype], str | None]
    # forward(inputs, outputs, save): fills outputs (gates, cells, hidden only when save).
    forward: Callable[[Inputs, ForwardOutputs, bool], None]
    # backward(inputs, grads, gates, cells, outputs): fills outputs.
    backward: Callable[[Inputs, OutputGrads, Tensor, Tensor, BackwardOutputs], None]
    # step(x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, resets) -> (h_next, c_next): one no-grad step
    # with the input projection fused (see fastrnn.backends for the shapes).
    step: Callable
    # The layout of the weights the step packs, for this dtype: part of the packed-weight
    # cache key (the cpp layout depends on the vector width of the instruction set in use).
    weight_layout: Callable[[torch.dtype], Hashable]
    # forward_projected(inputs, (x, w_ih, bias), outputs): the no-grad forward with the input
    # projection fused into its steps (inputs.xproj None), or None where the backend has none.
    forward_projected: Callable[[Inputs, tuple, ForwardOutputs], None] | None = None
    # fuses_projection(batch, bytes of W_ih and W_hh): whether forward_projected is the faster
    # forward for a call of that batch and those weights.
    fuses_projection: Callable[[int, int], bool] | None = None


def _launcher(name: str) -> Launcher:
    # The one registry is fastrnn.backends (which loads backend modules by name, and those
    # import this module): imported here, at call time, so that no import cycle exists.
    from fastrnn.backends import get_backend
    return get_backend(name).launcher


def _contiguous_inputs(xproj, w_hh, w_hr, h0, c0, resets, lengths) -> Inputs:
    device = w_hh.device
    _check_one_dtype(xproj, w_hh, w_hr, h0, c0)
    return Inputs(
        None if xproj is None else xproj.detach().contiguous(),
        w_hh.detach().contiguous(),
        None if w_hr is None else w_hr.detach().contiguous(),
        h0.detach().contiguous(), c0.detach().contiguous(),
        None if resets is None else resets.to(device).contiguous(),
        None if lengths is None else lengths.to(device=device, dtype=torch.int64).contiguous(),
    )


def _check_one_dtype(*tensors: Tensor | None) -> None:
    """The kernels read every operand as one element type: another dtype would be read with
    the wrong element size (out of bounds), so it is refused here, before any launch. (The
    modules route mixed states to torch's own forward before they get here.)"""
    dtypes = {t.dtype for t in tensors if t is not None}
    if len(dtypes) > 1:
        raise RuntimeError(f"fastrnn recurrence: expected every input, state and weight to have one dtype, "
                           f"got {sorted(map(str, dtypes))}")


def _forward_outputs(inputs: Inputs, steps: int, batch: int, save: bool) -> ForwardOutputs:
    """Fresh outputs of a forward over `steps` steps of `batch` rows (the saved intermediates
    only when `save`)."""
    h0, c0 = inputs.h0, inputs.c0
    hidden_size = c0.shape[1]
    empty = h0.new_empty(0)
    return ForwardOutputs(
        h0.new_empty(steps, batch, h0.shape[1]), torch.empty_like(h0), torch.empty_like(c0),
        h0.new_empty(steps, batch, 4 * hidden_size) if save else empty,
        h0.new_empty(steps, batch, hidden_size) if save else empty,
        h0.new_empty(steps, batch, hidden_size) if save and inputs.w_hr is not None else empty,
    )


def run_forward(backend: str, inputs: Inputs, save: bool) -> ForwardOutputs:
    xproj, h0, c0 = inputs.xproj, inputs.h0, inputs.c0
    steps, batch, _ = xproj.shape
    out = _forward_outputs(inputs, steps, batch, save)
    if steps == 0:
        out.h_n.copy_(h0)
        out.c_n.copy_(c0)
    else:
        _launcher(backend).forward(inputs, out, save)
    return out


def run_backward(backend: str, inputs: Inputs, grads: OutputGrads, gates: Tensor, cells: Tensor) -> BackwardOutputs:
    steps, batch, four_h = gates.shape
    out = BackwardOutputs(
        torch.empty_like(gates), torch.empty_like(inputs.h0), torch.empty_like(inputs.c0),
        gates.new_empty(steps, batch, inputs.w_hr.shape[0]) if inputs.w_hr is not None else gates.new_empty(0),
    )
    if steps == 0:
        for dstate, grad in ((out.dh0, grads.grad_h_n), (out.dc0, grads.grad_c_n)):
            if grad is None:
                dstate.zero_()
            else:
                dstate.copy_(grad)
    else:
        grads = OutputGrads(*(None if g is None else g.contiguous() for g in grads))
        _launcher(backend).backward(inputs, grads, gates, cells, out)
    return out


def previous_outputs(y: Tensor, h0: Tensor, resets: Tensor | None) -> Tensor:
    """h_{t-1} as each step saw it: h0, then y[:-1], zero where a reset preceded the step."""
    prev = torch.cat([h0.unsqueeze(0), y[:-1]], dim=0)
    if resets is not None:  # zero, not * 0: a NaN before a reset must not reach the weight gradient
        prev.masked_fill_(resets.unsqueeze(2), 0.0)
    return prev


def _first_order_grads(backend, grad_y, grad_h_n, grad_c_n, w_hh, w_hr, h0, c0, resets, lengths,
                       y, gates, cells, hidden):
    """(dxproj, dh0, dc0, dW_hh, dW_hr): the kernels' backward, then each weight gradient as
    one GEMM over all steps (shared by every backend)."""
    inputs = _contiguous_inputs(None, w_hh, w_hr, h0, c0, resets, lengths)
    dxproj, dh0, dc0, dy_total = run_backward(backend, inputs, OutputGrads(grad_y, grad_h_n, grad_c_n), gates, cells)
    prev = previous_outputs(y, h0, resets)
    grad_w_hh = dxproj.flatten(0, 1).t().mm(prev.flatten(0, 1))
    grad_w_hr = dy_total.flatten(0, 1).t().mm(hidden.flatten(0, 1)) if w_hr is not None else dxproj.new_empty(0)
    return dxproj, dh0, dc0, grad_w_hh, grad_w_hr


# ---------------------------------------------------------------- the custom op and its fake

@torch.library.custom_op("fastrnn::lstm_recurrence", mutates_args=())
def recurrence_op(
    backend: str, xproj: Tensor, w_hh: Tensor, w_hr: Tensor | None, h0: Tensor, c0: Tensor,
    resets: Tensor | None, lengths: Tensor | None, x: Tensor | None, w_ih: Tensor | None, bias: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(y, h_n, c_n, gates, cells, hidden). x, w_ih, bias: the input projection's operands
    (``xproj == F.linear(x, w_ih, bias)``) or None, kept only for a double backward."""
    return tuple(run_forward(backend, _contiguous_inputs(xproj, w_hh, w_hr, h0, c0, resets, lengths), save=True))


@recurrence_op.register_fake
def _(backend, xproj, w_hh, w_hr, h0, c0, resets, lengths, x, w_ih, bias):
    steps, batch, four_h = xproj.shape
    hidden_size = four_h // 4
    return (
        xproj.new_empty(steps, batch, h0.shape[1]), h0.new_empty(h0.shape), c0.new_empty(c0.shape),
        xproj.new_empty(steps, batch, four_h), xproj.new_empty(steps, batch, hidden_size),
        xproj.new_empty(steps, batch, hidden_size) if w_hr is not None else xproj.new_empty(0),
    )


@torch.library.custom_op("fastrnn::lstm_recurrence_backward", mutates_args=())
def recurrence_backward_op(
    backend: str, grad_y: Tensor | None, grad_h_n: Tensor | None, grad_c_n: Tensor | None,
    w_hh: Tensor, w_hr: Tensor | None, h0: Tensor, c0: Tensor, resets: Tensor | None, lengths: Tensor | None,
    y: Tensor, gates: Tensor, cells: Tensor, hidden: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(dxproj, dh0, dc0, dW_hh, dW_hr); dW_hr is empty without a projection."""
    return _first_order_grads(backend, grad_y, grad_h_n, grad_c_n, w_hh, w_hr, h0, c0, resets, lengths,
                              y, gates, cells, hidden)


@recurrence_backward_op.register_fake
def _(backend, grad_y, grad_h_n, grad_c_n, w_hh, w_hr, h0, c0, resets, lengths, y, gates, cells, hidden):
    return (
        gates.new_empty(gates.shape), h0.new_empty(h0.shape), c0.new_empty(c0.shape),
        w_hh.new_empty(w_hh.shape), w_hr.new_empty(w_hr.shape) if w_hr is not None else w_hh.new_empty(0),
    )


# ---------------------------------------------------------------- the one autograd definition

def _setup_context(ctx, inputs, output):
    backend, xproj, w_hh, w_hr, h0, c0, resets, lengths, x, w_ih, bias = inputs
    y, _, _, gates, cells, hidden = output
    ctx.backend = backend
    # xproj is kept only when it cannot be rebuilt from (x, w_ih, bias), which the caller
    # keeps alive anyway (F.linear saves them): it would double the saved activations.
    kept_xproj = xproj if x is None else None
    # What the first-order backward reads is saved (version-checked, as torch's own ops check
    # theirs), and only that, as torch's ops save only what a gradient needs: W_hh carries a
    # gradient only from a second step on, or into h0 (the first step's dgates are the
    # activations' derivatives alone). A write into W_hh between forward and backward then
    # raises where torch raises, and not where torch does not. What only a double backward
    # reads (W_hh otherwise; x, W_ih, bias) is held with its version, checked in that backward.
    # (A compiled graph never runs the double backward: it keeps W_hh saved and nothing else.)
    compiling = torch.compiler.is_compiling()
    checked_w_hh = xproj.shape[0] > 1 or h0.requires_grad or compiling
    ctx.save_for_backward(w_hh if checked_w_hh else None, w_hr, h0, c0, resets, lengths, y, gates, cells, hidden,
                          kept_xproj)
    rebuild = (None, None, None, None) if compiling else (None if checked_w_hh else w_hh, x, w_ih, bias)
    ctx.rebuild = rebuild
    ctx.rebuild_versions = [None if t is None else version(t) for t in rebuild]
    ctx.mark_non_differentiable(gates, cells, hidden)
    ctx.set_materialize_grads(False)


def _rebuild_operands(ctx):
    """(W_hh or None, x, W_ih, bias) as the forward saw them, for a double backward: raises
    torch's error if one was modified in place since (their values would differ)."""
    for tensor, expected in zip(ctx.rebuild, ctx.rebuild_versions):
        if tensor is not None and version(tensor) != expected:
            raise RuntimeError(
                "one of the variables needed for gradient computation has been modified by an inplace operation: "
                f"[{tensor.type()} {list(tensor.shape)}] is at version {version(tensor)}; expected version "
                f"{expected} instead.")
    return ctx.rebuild


def _backward(ctx, grad_y, grad_h_n, grad_c_n, *_saved_output_grads):
    (w_hh, w_hr, h0, c0, resets, lengths, y, gates, cells, hidden, kept_xproj) = ctx.saved_tensors
    if torch.is_grad_enabled() and not torch.compiler.is_compiling():  # create_graph=True
        unchecked_w_hh, x, w_ih, bias = _rebuild_operands(ctx)
        w_hh = w_hh if unchecked_w_hh is None else unchecked_w_hh
        xproj = kept_xproj if x is None else F.linear(x, w_ih, bias)
        grads = differentiable_backward((grad_y, grad_h_n, grad_c_n), (xproj, w_hh, w_hr, h0, c0),
                                        ctx.needs_input_grad[1:6], resets, lengths)
        return (None, *grads, None, None, None, None, None)
    if w_hh is None:  # one step, no gradient into h0: the kernel's dh0 (unused) is all it reads W_hh for
        w_hh = ctx.rebuild[0]
    # Through the op, a traced backward records the backward op (tracers hand it fake tensors,
    # which have no data to launch on); from the eager Function the same function runs without
    # the dispatcher, whose layers cost more than a small recurrence's backward.
    first_order = _first_order_grads if getattr(ctx, "eager", False) else recurrence_backward_op
    dxproj, dh0, dc0, grad_w_hh, grad_w_hr = first_order(
        ctx.backend, grad_y, grad_h_n, grad_c_n, w_hh, w_hr, h0, c0, resets, lengths, y, gates, cells, hidden)
    return (None, dxproj, grad_w_hh, grad_w_hr if w_hr is not None else None, dh0, dc0,
            None, None, None, None, None)


def differentiable_backward(grads, inputs, needs, resets, lengths):
    """The recurrence's first derivatives as a graph (for a double backward): the reference
    recurrence is rebuilt from the saved inputs and differentiated with create_graph=True.

    inputs: (xproj, w_hh, w_hr, h0, c0) as saved, so the graph reaches the caller's tensors.
    needs: which of them need a gradient. Returns one gradient (or None) per input.
    """
    from fastrnn.reference import lstm_recurrence

    # The recurrence is rebuilt on aliases of the inputs and differentiated with respect to the
    # aliases: their gradients are this call's partial derivatives. With respect to the inputs
    # themselves, autograd.grad would return total derivatives wherever one input depends on
    # another (h0 computed from w_hh by an earlier call of the same module; one tensor passed
    # as both h0 and c0), and the engine would then add those paths a second time. The aliases
    # keep the graph connected to the caller's tensors, so a second derivative still reaches them.
    with torch.enable_grad():
        aliases = [None if t is None else t.view_as(t) for t in inputs]
        wanted = [a for a, need in zip(aliases, needs) if need]
        if not all(a.requires_grad for a in wanted):
            # torch.func.jacrev runs this backward inside vmap with grad enabled, where the saved
            # inputs are plain tensors of the transform's level (nothing above depends on them),
            # which autograd.grad refuses and the native kernels cannot read (batched tensors
            # have no memory of their own): torch.func's own vjp of the recurrence gives them.
            return _transformed_backward(grads, inputs, needs, resets, lengths)
        outputs = lstm_recurrence(*aliases, resets, lengths)
    pairs = [(o, g) for o, g in zip(outputs, grads) if g is not None]
    found = iter(torch.autograd.grad([o for o, _ in pairs], wanted, [g for _, g in pairs],
                                     create_graph=True, allow_unused=True)) if pairs else iter(())
    result = []
    for tensor, need in zip(inputs, needs):
        grad = next(found, None) if need else None
        result.append(torch.zeros_like(tensor) if need and grad is None else grad)
    return result


def _transformed_backward(grads, inputs, needs, resets, lengths):
    """differentiable_backward under torch.func transforms: the needed inputs' gradients by
    torch.func.vjp of the reference recurrence (None for the others)."""
    from fastrnn.reference import lstm_recurrence

    needed = [i for i, need in enumerate(needs) if need]

    def recurrence_of(*wanted):
        operands = list(inputs)
        for i, tensor in zip(needed, wanted):
            operands[i] = tensor
        return lstm_recurrence(*operands, resets, lengths)

    outputs, pullback = torch.func.vjp(recurrence_of, *(inputs[i] for i in needed))
    found = iter(pullback(tuple(torch.zeros_like(o) if g is None else g for o, g in zip(outputs, grads))))
    return [next(found) if need else None for need in needs]


recurrence_op.register_autograd(_backward, setup_context=_setup_context)


class _EagerRecurrence(torch.autograd.Function):
    """The op's kernels and its autograd definition without the dispatcher, for eager calls.

    forward + setup_context (not forward(ctx, ...)): torch.func transforms (grad, jacrev,
    functional_call in MAML code) accept only this form. The saved intermediates are returned
    as extra outputs, marked non-differentiable, and dropped by the caller.
    """

    @staticmethod
    def forward(backend, xproj, w_hh, w_hr, h0, c0, resets, lengths, x, w_ih, bias):
        return tuple(run_forward(backend, _contiguous_inputs(xproj, w_hh, w_hr, h0, c0, resets, lengths), save=True))

    @staticmethod
    def setup_context(ctx, inputs, output):
        _setup_context(ctx, inputs, output)
        ctx.eager = True  # never traced: torch.compile and jit.trace call the op (recurrence())

    backward = staticmethod(_backward)


# _EagerRecurrence.apply(*args), every argument positional, without Function.apply's per-call
# inspect.signature binding outside torch.func (torch_compat.c_apply: 50-80 us a call here,
# more than a small recurrence's kernel, T=5, B=4, H=16: 12 us).
_apply_eager = eager_apply(_EagerRecurrence)


# ---------------------------------------------------------------- entry points

def recurrence(backend: str, xproj, w_hh, w_hr=None, h0=None, c0=None, resets=None, lengths=None, projection=None):
    """The recurrence contract of fastrnn.reference on `backend`'s kernels: (y, h_n, c_n).

    Traced as the custom op under torch.compile and torch.jit.trace. Eager calls take the
    same autograd definition without the dispatcher, or, when no input needs a gradient,
    the forward kernels alone, saving nothing.

    projection: optional (x, w_ih, bias) with ``xproj == F.linear(x, w_ih, bias)``. Only a
    double backward uses it, to rebuild xproj inside the graph; without it xproj is kept.
    """
    x, w_ih, bias = projection if projection is not None else (None, None, None)
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        y, h_n, c_n, *_ = recurrence_op(backend, xproj, w_hh, w_hr, h0, c0, resets, lengths, x, w_ih, bias)
        return y, h_n, c_n
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (xproj, w_hh, w_hr, h0, c0)):
        y, h_n, c_n, *_ = _apply_eager(backend, xproj, w_hh, w_hr, h0, c0, resets, lengths, x, w_ih, bias)
        return y, h_n, c_n
    y, h_n, c_n, *_ = run_forward(backend, _contiguous_inputs(xproj, w_hh, w_hr, h0, c0, resets, lengths), save=False)
    return y, h_n, c_n


def projected_forward(backend: str, x, w_ih, bias, w_hh, w_hr=None, h0=None, c0=None, resets=None, lengths=None):
    """recurrence(backend, F.linear(x, w_ih, bias), w_hh, ...) for an eager call that records
    no gradient, on kernels that add x_t W_ih^T + bias to each step's gates themselves: the
    (T, B, 4H) projection is never formed, which at large T * B costs more than its GEMM
    (written once and read once through memory). The same sums in another order: the results
    agree with the unfused forward to float rounding. (y, h_n, c_n)."""
    _check_one_dtype(x, w_ih, bias, w_hh)
    inputs = _contiguous_inputs(None, w_hh, w_hr, h0, c0, resets, lengths)
    out = _forward_outputs(inputs, x.shape[0], x.shape[1], save=False)
    projection = (x.detach().contiguous(), w_ih.detach().contiguous(), None if bias is None else bias.detach().contiguous())
    _launcher(backend).forward_projected(inputs, projection, out)
    return out.y, out.h_n, out.c_n


def projected_cell(recurrence: Callable, x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, resets):
    """One step as a recurrence of length one after the input GEMM: how torch.compile sees a
    kernel backend's step, and the reference backend's step."""
    bias = None if b_ih is None else b_ih + b_hh
    xproj = F.linear(x.flatten(0, -2), w_ih, bias).unsqueeze(0)
    step_resets = None if resets is None else resets.reshape(1, -1)
    _, h_n, c_n = recurrence(xproj, w_hh, w_hr, h.reshape(-1, h.shape[-1]), c.reshape(-1, c.shape[-1]), step_resets, None)
    return h_n.view(h.shape), c_n.view(c.shape)


def kernel_backend(launcher: Launcher) -> Backend:
    """The registry entry of a kernel backend: its launcher behind the shared op."""
    name = launcher.name

    def backend_recurrence(xproj, w_hh, w_hr=None, h0=None, c0=None, resets=None, lengths=None, projection=None):
        return recurrence(name, xproj, w_hh, w_hr, h0, c0, resets, lengths, projection)

    def cell(x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, resets=None):
        if torch.compiler.is_compiling():
            return projected_cell(backend_recurrence, x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, resets)
        return launcher.step(x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, resets)

    fused = None
    if launcher.forward_projected is not None:
        def fused(x, w_ih, bias, w_hh, w_hr=None, h0=None, c0=None, resets=None, lengths=None):
            """projected_forward on this backend, or None where its unfused forward is faster."""
            if not launcher.fuses_projection(x.shape[1], step_weight_bytes(w_ih, w_hh, None)):
                return None
            return projected_forward(name, x, w_ih, bias, w_hh, w_hr, h0, c0, resets, lengths)

    return Backend(name=name, unsupported_reason=launcher.unsupported_reason, recurrence=backend_recurrence,
                   cell=cell, launcher=launcher, projected_forward=fused)
