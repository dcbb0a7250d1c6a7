"""Registers a backend's recurrence kernels as torch custom ops with autograd and fake kernels.

A kernel backend supplies two functions over contiguous tensors:

    forward(xproj, w_hh, w_hr, h0, c0, resets, lengths, save)
        -> (y, h_n, c_n, gates, cells, hidden)
    backward(grad_y, grad_h_n, grad_c_n, w_hh, w_hr, c0, resets, lengths, gates, cells)
        -> (dxproj, dh0, dc0, dy_total)

``gates`` (T, B, 4H) are the activated gates, ``cells`` (T, B, H) the cell states and
``hidden`` (T, B, H) the pre-projection outputs (proj only), saved for backward when
``save``; ``dy_total`` (T, B, P) is the total gradient of each projected output (proj only).
Empty tensors stand for the ones that do not apply. This module turns them into the
``fastrnn::<name>`` and ``fastrnn::<name>_backward`` ops and adds the weight gradients as GEMMs
over all steps, shared by every backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def previous_outputs(y: Tensor, h0: Tensor, resets: Tensor | None) -> Tensor:
    """h_{t-1} as each step saw it: h0, then y[:-1], zero where a reset preceded the step."""
    prev = torch.cat([h0.unsqueeze(0), y[:-1]], dim=0)
    if resets is not None:
        prev = prev * (~resets).unsqueeze(2).to(prev.dtype)
    return prev


def weight_grads(dxproj, dy_total, y, hidden, h0, resets, has_proj):
    """dW_hh = sum_t dgates_t^T h_{t-1} and dW_hr = sum_t dy_t^T hidden_t, one GEMM each."""
    prev = previous_outputs(y, h0, resets)
    grad_w_hh = dxproj.flatten(0, 1).t().mm(prev.flatten(0, 1))
    if has_proj:
        grad_w_hr = dy_total.flatten(0, 1).t().mm(hidden.flatten(0, 1))
    else:
        grad_w_hr = dxproj.new_empty(0)
    return grad_w_hh, grad_w_hr


@dataclass(frozen=True)
class RecurrenceOps:
    forward: Callable         # the registered op: returns (y, h_n, c_n, gates, cells, hidden)
    backward: Callable        # the registered backward op
    eager: type               # the same kernels as an autograd.Function, for eager mode
    forward_kernel: Callable  # the backend's forward, called directly when nothing needs grad

    def __call__(self, xproj, w_hh, w_hr=None, h0=None, c0=None, resets=None, lengths=None, projection=None):
        """The recurrence contract of fastrnn.reference: (y, h_n, c_n), differentiable.

        Traced as the custom op under torch.compile. In eager mode the op dispatcher's Python
        layers cost more than a small LSTM's whole recurrence, so eager calls go through an
        autograd.Function over the same kernels, or straight to the forward kernel (saving
        nothing for backward) when no input needs a gradient.

        projection: optional (x, w_ih, bias) with ``xproj == F.linear(x, w_ih, bias)``. Only a
        double backward uses it, to rebuild xproj inside the graph; without it the Function
        keeps xproj alive instead (as large as the saved gates).
        """
        if torch.compiler.is_compiling() or torch.jit.is_tracing():
            # Both record the registered op: a traced graph must contain the kernel call.
            y, h_n, c_n, *_ = self.forward(xproj, w_hh, w_hr, h0, c0, resets, lengths)
            return y, h_n, c_n
        if torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (xproj, w_hh, w_hr, h0, c0)
        ):
            x, w_ih, bias = projection if projection is not None else (None, None, None)
            y, h_n, c_n, *_saved = self.eager.apply(xproj, w_hh, w_hr, h0, c0, resets, lengths, x, w_ih, bias)
            return y, h_n, c_n
        y, h_n, c_n, *_ = self.forward_kernel(xproj, w_hh, w_hr, h0, c0, resets, lengths, False)
        return y, h_n, c_n


def traced_cell(ops: RecurrenceOps, x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, resets):
    """A backend's no-grad cell as torch.compile sees it: the input GEMM and a one-step op."""
    bias = None if b_ih is None else b_ih + b_hh
    xproj = F.linear(x.reshape(-1, x.shape[-1]), w_ih, bias).unsqueeze(0)
    step_resets = None if resets is None else resets.reshape(1, -1)
    _, h_n, c_n = ops(xproj, w_hh, w_hr, h.reshape(-1, h.shape[-1]), c.reshape(-1, c.shape[-1]), step_resets, None)
    return h_n.view(h.shape), c_n.view(c.shape)


def differentiable_backward(grads, inputs, needs, resets, lengths):
    """The recurrence's first derivatives as a graph (for a double backward): the reference
    recurrence is rebuilt from the saved inputs and differentiated with create_graph=True.

    inputs: (xproj, w_hh, w_hr, h0, c0) as saved, so the graph reaches the caller's tensors.
    needs: which of them need a gradient. Returns one gradient (or None) per input.
    """
    from fastrnn.reference import lstm_recurrence

    wanted = [t for t, need in zip(inputs, needs) if need]
    with torch.enable_grad():
        outputs = lstm_recurrence(*inputs, resets, lengths)
    pairs = [(o, g) for o, g in zip(outputs, grads) if g is not None]
    found = iter(torch.autograd.grad([o for o, _ in pairs], wanted, [g for _, g in pairs],
                                     create_graph=True, allow_unused=True)) if pairs else iter(())
    result = []
    for tensor, need in zip(inputs, needs):
        grad = next(found, None) if need else None
        result.append(torch.zeros_like(tensor) if need and grad is None else grad)
    return result


def _eager_function(name: str, forward_kernel: Callable, backward_kernel: Callable) -> type:
    # forward + setup_context (not forward(ctx, ...)): torch.func transforms (grad, jacrev,
    # functional_call in MAML code) accept only this form. The saved intermediates are
    # returned as extra outputs, marked non-differentiable, and dropped by the caller.
    def forward(xproj, w_hh, w_hr, h0, c0, resets, lengths, x, w_ih, bias):
        return forward_kernel(xproj, w_hh, w_hr, h0, c0, resets, lengths, True)

    def setup_context(ctx, inputs, output):
        xproj, w_hh, w_hr, h0, c0, resets, lengths, x, w_ih, bias = inputs
        y, _, _, gates, cells, hidden = output
        # xproj is kept only when it cannot be rebuilt from (x, w_ih, bias), which the caller
        # keeps alive anyway (F.linear saves them): it would double the saved activations.
        kept_xproj = xproj if x is None else None
        ctx.save_for_backward(w_hh, w_hr, h0, c0, resets, lengths, y, gates, cells, hidden,
                              kept_xproj, x, w_ih, bias)
        ctx.mark_non_differentiable(gates, cells, hidden)
        ctx.set_materialize_grads(False)

    def backward(ctx, grad_y, grad_h_n, grad_c_n, *_saved_outputs):
        (w_hh, w_hr, h0, c0, resets, lengths, y, gates, cells, hidden,
         kept_xproj, x, w_ih, bias) = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: the gradients must be differentiable
            xproj = kept_xproj if x is None else F.linear(x, w_ih, bias)
            grads = differentiable_backward((grad_y, grad_h_n, grad_c_n), (xproj, w_hh, w_hr, h0, c0),
                                            ctx.needs_input_grad[:5], resets, lengths)
            return (*grads, None, None, None, None, None)
        dxproj, dh0, dc0, dy_total = backward_kernel(
            grad_y, grad_h_n, grad_c_n, w_hh, w_hr, c0, resets, lengths, gates, cells
        )
        grad_w_hh, grad_w_hr = weight_grads(dxproj, dy_total, y, hidden, h0, resets, w_hr is not None)
        return dxproj, grad_w_hh, (grad_w_hr if w_hr is not None else None), dh0, dc0, None, None, None, None, None

    return type(name, (torch.autograd.Function,), {
        "forward": staticmethod(forward), "setup_context": staticmethod(setup_context),
        "backward": staticmethod(backward)})


def define_recurrence_ops(name: str, forward_kernel: Callable, backward_kernel: Callable) -> RecurrenceOps:
    @torch.library.custom_op(f"fastrnn::{name}", mutates_args=())
    def recurrence(
        xproj: Tensor, w_hh: Tensor, w_hr: Tensor | None, h0: Tensor, c0: Tensor,
        resets: Tensor | None, lengths: Tensor | None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        return forward_kernel(xproj, w_hh, w_hr, h0, c0, resets, lengths, True)

    @recurrence.register_fake
    def _(xproj, w_hh, w_hr, h0, c0, resets, lengths):
        steps, batch, four_h = xproj.shape
        hidden_size = four_h // 4
        out = h0.shape[1]
        return (
            xproj.new_empty(steps, batch, out), h0.new_empty(h0.shape), c0.new_empty(c0.shape),
            xproj.new_empty(steps, batch, four_h), xproj.new_empty(steps, batch, hidden_size),
            xproj.new_empty(steps, batch, hidden_size) if w_hr is not None else xproj.new_empty(0),
        )

    @torch.library.custom_op(f"fastrnn::{name}_backward", mutates_args=())
    def recurrence_backward(
        grad_y: Tensor | None, grad_h_n: Tensor | None, grad_c_n: Tensor | None,
        w_hh: Tensor, w_hr: Tensor | None, h0: Tensor, c0: Tensor,
        resets: Tensor | None, lengths: Tensor | None,
        y: Tensor, gates: Tensor, cells: Tensor, hidden: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        dxproj, dh0, dc0, dy_total = backward_kernel(
            grad_y, grad_h_n, grad_c_n, w_hh, w_hr, c0, resets, lengths, gates, cells
        )
        grad_w_hh, grad_w_hr = weight_grads(dxproj, dy_total, y, hidden, h0, resets, w_hr is not None)
        return dxproj, dh0, dc0, grad_w_hh, grad_w_hr

    @recurrence_backward.register_fake
    def _(grad_y, grad_h_n, grad_c_n, w_hh, w_hr, h0, c0, resets, lengths, y, gates, cells, hidden):
        return (
            gates.new_empty(gates.shape), h0.new_empty(h0.shape), c0.new_empty(c0.shape),
            w_hh.new_empty(w_hh.shape),
            w_hr.new_empty(w_hr.shape) if w_hr is not None else w_hh.new_empty(0),
        )

    def setup_context(ctx, inputs, output):
        xproj, w_hh, w_hr, h0, c0, resets, lengths = inputs
        y, _, _, gates, cells, hidden = output
        ctx.save_for_backward(w_hh, w_hr, h0, c0, resets, lengths, y, gates, cells, hidden)

    def backward(ctx, grad_y, grad_h_n, grad_c_n, *_unused_saved_grads):
        w_hh, w_hr, h0, c0, resets, lengths, y, gates, cells, hidden = ctx.saved_tensors
        dxproj, dh0, dc0, grad_w_hh, grad_w_hr = recurrence_backward(
            grad_y, grad_h_n, grad_c_n, w_hh, w_hr, h0, c0, resets, lengths, y, gates, cells, hidden
        )
        return dxproj, grad_w_hh, (grad_w_hr if w_hr is not None else None), dh0, dc0, None, None

    recurrence.register_autograd(backward, setup_context=setup_context)
    eager = _eager_function(f"{name}_eager", forward_kernel, backward_kernel)
    return RecurrenceOps(forward=recurrence, backward=recurrence_backward, eager=eager, forward_kernel=forward_kernel)
