"""Stacked and bidirectional LSTMs composed from one backend's single-layer recurrence.

Everything here is backend-agnostic PyTorch: the input projection of every step is one GEMM
(``input_projection`` over the whole sequence; a backend's projected_forward may fuse it into
its kernels for a call that records no gradient), reverse directions run the forward recurrence on
inputs reversed within each row's length, and dropout sits between layers as in nn.LSTM.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from fastrnn.backends import Backend
from fastrnn.packing import valid_steps
from fastrnn.torch_compat import eager_apply
from fastrnn.workspace import workspace, workspace_applies


def reverse_within_lengths(seq: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each row of a (T, B, ...) sequence over its first lengths[b] steps only."""
    if lengths is None:
        return seq.flip(0)
    steps = seq.shape[0]
    t = torch.arange(steps, device=seq.device).unsqueeze(1)
    lengths = lengths.to(seq.device).unsqueeze(0)
    index = torch.where(t < lengths, lengths - 1 - t, t)
    index = index.view(steps, -1, *([1] * (seq.dim() - 2))).expand_as(seq)
    return seq.gather(0, index)


# Inputs at most this wide are projected by input_projection's addmm form (see there).
NARROW_INPUT = 12

# Projections smaller than this many bytes go into a fresh tensor, not the workspace. The
# workspace saves the page faults of a fresh block that glibc maps from the kernel (blocks
# above its mmap threshold: 128 KiB, rising to at most 32 MiB as mapped blocks are freed), at
# 2.9 us per 4 KiB page here; but its route costs 30-100 us more per call than F.linear's
# (forward alone and forward+backward, measured at T=5, B=4, H=16: 0.72x and 0.85x with it),
# and in a process whose threshold has risen no fault is saved below 32 MiB (0.87x-1.10x,
# noise, at 1-26 MB). At 1 MiB a call takes milliseconds, so that cost is a few percent, while
# a fresh projection that does fault costs 256 pages, about 0.75 ms.
WORKSPACE_MIN_BYTES = 1 << 20


def input_projection(seq: Tensor, w_ih: Tensor, bias: Tensor | None) -> Tensor:
    """seq W_ih^T + bias over a whole (T, B, I) sequence: one GEMM.

    For a narrow input (RL observations: a few numbers), F.linear's backward forms W_ih's
    gradient as grad^T seq, a product only I columns wide, which MKL runs several times slower
    than seq^T grad (measured on the CPU: 375 us against 55 us at T*B = 640, 4H = 192, I = 6).
    autograd keeps the layout of the operand it differentiates, so multiplying by a contiguous
    copy of W_ih^T (4H x I elements) makes it compute seq^T grad instead: F.linear's forward+
    backward at those sizes ran 1.2x-1.9x faster this way (I = 6-10), and not faster from
    I = 16 on (measured), hence NARROW_INPUT."""
    projection_bytes = math.prod(seq.shape[:-1]) * w_ih.shape[0] * seq.element_size()
    if seq.is_contiguous() and projection_bytes >= WORKSPACE_MIN_BYTES and workspace_applies(seq, w_ih, bias):
        if not (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (seq, w_ih, bias))):
            return _linear_into_workspace(seq, w_ih, bias)
        if w_ih.shape[1] > NARROW_INPUT:  # the narrow ones take the addmm form below
            return _LinearIntoWorkspace.apply(seq, w_ih, bias)
    if w_ih.shape[1] > NARROW_INPUT or not (torch.is_grad_enabled() and w_ih.requires_grad):
        return F.linear(seq, w_ih, bias)
    rows = seq.flatten(0, -2)  # not reshape(-1, I): ambiguous when I == 0 (LSTMCell(0, H))
    out = _narrow_linear(rows, w_ih, bias)
    return out.view(*seq.shape[:-1], out.shape[-1])


class _NarrowLinear(torch.autograd.Function):
    """rows W_ih^T + bias as a product with a contiguous copy of W_ih^T (input_projection says
    why), differentiated op for op as autograd differentiates that form (the same bits), but
    saving W_ih itself rather than the copy, and only where a gradient needs it, as F.linear
    does: a write into W_ih between forward and backward then raises torch's own error where
    torch's raises, instead of differentiating the old copy in silence. Written with torch ops,
    so a double backward differentiates it; forward + setup_context, so torch.func takes it."""

    @staticmethod
    def forward(rows: Tensor, w_ih: Tensor, bias: Tensor | None) -> Tensor:
        w_t = w_ih.t().contiguous()
        return torch.mm(rows, w_t) if bias is None else torch.addmm(bias, rows, w_t)

    @staticmethod
    def setup_context(ctx, inputs, output):
        rows, w_ih, bias = inputs
        needs_rows, needs_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        ctx.save_for_backward(rows if needs_w else None, w_ih if needs_rows else None)
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx, grad: Tensor):
        rows, w_ih = ctx.saved_tensors
        grad_rows = grad.mm(w_ih.t().contiguous().t()) if ctx.needs_input_grad[0] else None
        grad_w = rows.t().mm(grad).t() if ctx.needs_input_grad[1] else None
        grad_bias = grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_rows, grad_w, grad_bias


# _NarrowLinear.apply without the per-call argument binding (30-50 us of a two_step update's
# 1 ms loss pass; torch_compat.c_apply says why it is safe outside torch.func).
_narrow_linear = eager_apply(_NarrowLinear)


def _linear_into_workspace(seq: Tensor, w_ih: Tensor, bias: Tensor | None) -> Tensor:
    """F.linear(seq, w_ih, bias) for a contiguous (T, B, I) seq, written into this thread's
    workspace (workspace.py): the addmm (mm without bias) F.linear runs on such a sequence, so
    the same bits."""
    rows = seq.flatten(0, -2)
    out = workspace((rows.shape[0], w_ih.shape[0]), seq.dtype)
    if bias is None:
        torch.mm(rows, w_ih.t(), out=out)
    else:
        torch.addmm(bias, rows, w_ih.t(), out=out)
    return out.view(*seq.shape[:-1], w_ih.shape[0])


class _LinearIntoWorkspace(torch.autograd.Function):
    """_linear_into_workspace under autograd: the projection may still live in the workspace,
    since the recurrence reads it and the graph keeps its operands, never the projection (the
    recurrence op saves (seq, w_ih, bias) instead). Its backward is the one autograd derives for
    F.linear on a contiguous 3-D input (addmm of the flattened rows and W^T: the rows' gradient
    grad W, W's grad^T rows, the bias' the column sums), op for op, so the gradients are the
    same bits; written with torch ops, so a double backward differentiates it."""

    @staticmethod
    def forward(ctx, seq: Tensor, w_ih: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(seq, w_ih)
        ctx.has_bias = bias is not None
        return _linear_into_workspace(seq, w_ih, bias)

    @staticmethod
    def backward(ctx, grad: Tensor):
        seq, w_ih = ctx.saved_tensors
        grad_rows = grad.flatten(0, -2)
        grad_seq = grad_rows.mm(w_ih).view(seq.shape) if ctx.needs_input_grad[0] else None
        grad_w = grad_rows.t().mm(seq.flatten(0, -2)) if ctx.needs_input_grad[1] else None
        grad_bias = grad_rows.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_seq, grad_w, grad_bias


def _may_fuse_projection(backend: Backend, seq: Tensor, operands) -> bool:
    """Whether this layer may run on the backend's projected_forward: an eager call (traced
    calls record the recurrence op) that records no gradient, with steps and input features."""
    if backend.projected_forward is None or seq.shape[0] == 0 or seq.shape[-1] == 0:
        return False
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return False
    return not (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in operands))


def run_layers(
    backend: Backend,
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    weights: list[list[Tensor | None]],
    num_layers: int,
    bidirectional: bool,
    dropout: float,
    training: bool,
    resets: Tensor | None = None,
    lengths: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Run a stacked LSTM over x (T, B, I).

    weights[layer * directions + direction] = [w_ih, w_hh, b_ih, b_hh, w_hr] (None where the
    module has no such parameter). h0, c0: (layers * directions, B, R / H).
    resets (T, B) apply to unidirectional stacks only (the caller checks).
    Returns y (T, B, directions * R), h_n, c_n stacked like h0, c0.
    """
    directions = 2 if bidirectional else 1
    layer_input = x
    h_n, c_n = [], []
    for layer in range(num_layers):
        outputs = []
        for direction in range(directions):
            index = layer * directions + direction
            w_ih, w_hh, b_ih, b_hh, w_hr = weights[index]
            seq = layer_input if direction == 0 else reverse_within_lengths(layer_input, lengths)
            bias = None if b_ih is None else b_ih + b_hh
            fused = None
            if _may_fuse_projection(backend, seq, (seq, w_ih, bias, w_hh, w_hr, h0, c0)):
                fused = backend.projected_forward(seq, w_ih, bias, w_hh, w_hr, h0[index], c0[index], resets, lengths)
            if fused is not None:
                y, h, c = fused
            else:
                xproj = input_projection(seq, w_ih, bias)
                y, h, c = backend.recurrence(xproj, w_hh, w_hr, h0[index], c0[index], resets, lengths,
                                             projection=(seq, w_ih, bias))
            outputs.append(y if direction == 0 else reverse_within_lengths(y, lengths))
            h_n.append(h)
            c_n.append(c)
        layer_input = outputs[0] if directions == 1 else torch.cat(outputs, dim=2)
        if dropout > 0 and training and layer < num_layers - 1:
            layer_input = _dropout(layer_input, dropout, lengths)
    return layer_input, torch.stack(h_n), torch.stack(c_n)


def _dropout(layer_output: Tensor, p: float, lengths: Tensor | None) -> Tensor:
    """The dropout between layers, drawing what nn.LSTM draws: over the (T, B, F) output, or,
    for packed input (lengths: (B,), descending, as unpacked), over its packed data only, the
    valid rows in time-major order as a PackedSequence holds them. Same masks for the same seed,
    and the generator left where torch leaves it."""
    if lengths is None:
        return F.dropout(layer_output, p=p, training=True)
    valid = valid_steps(lengths, layer_output.shape[0], layer_output.device)
    return layer_output.index_put((valid,), F.dropout(layer_output[valid], p=p, training=True))
