"""fastrnn.LSTM and fastrnn.LSTMCell: subclasses of torch's modules with fused backends.

They keep torch's constructor arguments, parameters, initialization, state_dict keys,
argument checks and error messages (they call torch's own check methods), and add one
constructor keyword, ``backend``, and one LSTM.forward keyword, ``resets``.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from fastrnn import dispatch
from fastrnn.autocast import autocast_dtype, autocast_on, compute_dtype, rounded
from fastrnn.backends import check_backend_name, get_backend
from fastrnn.layers import input_projection, run_layers
from fastrnn.packing import pack_padded_output, unpack_to_padded
from fastrnn.torch_compat import (current_flat_weights, forward_ad_active, is_jit_tracing, lstm_cell, parameters,
                                  vmap_active)


def _needs_grad(tensors) -> bool:
    if not torch.is_grad_enabled():
        return False
    return any(t is not None and t.requires_grad for t in tensors)


def _state_dtype_differs(hx, weight: Tensor) -> bool:
    """Whether a given (h, c) holds a tensor of another dtype than the weights (torch checks
    no state dtype before its kernels, which then raise or promote)."""
    return (isinstance(hx, (tuple, list)) and len(hx) == 2 and isinstance(hx[0], Tensor) and isinstance(hx[1], Tensor)
            and (hx[0].dtype != weight.dtype or hx[1].dtype != weight.dtype))


# Why only torch's own forward can take a call (dispatch's "torch" route), and what resets,
# which torch's forward lacks, are told then.
_TORCH_ONLY = {
    "export": "torch.jit.trace and torch.onnx.export record torch's standard LSTM, which has no resets; "
              "export with torch.export (fastrnn's op), or split the episodes",
    "forward AD": "forward-mode AD (torch.func.jvp or jacfwd, torch.autograd.forward_ad) runs torch's "
                  "standard LSTM, which has no resets; split the episodes, or use reverse mode",
    "vmap": "torch.func.vmap runs torch's standard LSTM, which has no resets",
}


def _torch_only_reason() -> str | None:
    """A key of _TORCH_ONLY when only torch's own forward can take this call, else None:
    torch.jit.trace or torch.onnx.export (either exporter) records it, or it runs under a
    transform fastrnn's autograd Functions do not implement (forward-mode AD, vmap), where
    torch's forward computes what torch computes or raises what torch raises.

    Checked on every call, so in this order: an eager call reads four flags (compiling, the
    TorchScript tracer of jit.trace and the TorchScript ONNX exporter, forward AD's level,
    functorch's); the dynamo ONNX exporter runs non-strict torch.export (compiling, but not
    Dynamo), and only then is its flag looked up (which costs microseconds of imports).
    """
    if torch.compiler.is_compiling():
        if torch.compiler.is_dynamo_compiling():
            return None  # torch.compile traces fastrnn's own op
        return "export" if is_jit_tracing() or torch.onnx.is_in_onnx_export() else None
    if is_jit_tracing():
        return "export"
    if forward_ad_active():
        return "forward AD"
    return "vmap" if vmap_active() else None


@functools.cache
def _torch_scripts(torch_class: type) -> bool:
    """Whether this torch's TorchScript compiles torch_class with a callable forward."""
    try:
        scripted = torch.jit.script(torch_class(1, 1))
        scripted(torch.zeros(1, 1, 1) if torch_class is nn.LSTM else torch.zeros(1, 1))
        return True
    except Exception:  # noqa: BLE001 - any failure means "cannot script"
        return False


class _Call(NamedTuple):
    """An LSTM call normalized for the routes: time-major, batched, with a state."""
    x: Tensor                     # (T, B, I)
    h0: Tensor                    # (layers * directions, B, R)
    c0: Tensor                    # (layers * directions, B, H)
    resets: Tensor | None         # (T, B)
    lengths: Tensor | None        # (B,) for packed input
    packed_input: PackedSequence | None
    is_batched: bool


class _BackendChoice:
    """Mixin: the `backend` keyword, its resolution per input, and the name of what ran."""

    backend: str
    last_backend: str | None

    def _init_backend(self, backend: str) -> None:
        self.backend = check_backend_name(backend)
        self.last_backend = None

    def _route(self, *facts) -> str:
        """The implementation fastrnn.dispatch picks for a call with these facts (dispatch.Call's
        fields after `backend`), recorded as last_backend (written around nn.Module.__setattr__,
        which would cost a microsecond per step)."""
        implementation = dispatch.route_facts(self.backend, *facts)
        self.__dict__["last_backend"] = implementation
        return implementation

    def _route_torch_only(self, tensor: Tensor, reason: str) -> str:
        return self._route(*dispatch.Call(self.backend, tensor.device, tensor.dtype, torch_only=reason)[1:])

    def __setattr__(self, name, value):
        # A new backend name must be checked here too: dispatch trusts it.
        if name == "backend":
            value = check_backend_name(value)
        super().__setattr__(name, value)

    def __prepare_scriptable__(self):
        """torch.jit.script compiles torch's own module in place of this one: TorchScript cannot
        compile fastrnn's forward (its backends are Python). The scripted module shares this
        module's parameters and runs torch's standard kernels. Where torch cannot script its own
        module either (nn.LSTM in torch 2.13 scripts without a forward), say so and what works."""
        if not _torch_scripts(self._torch_class):
            raise RuntimeError(
                f"torch.jit.script cannot compile fastrnn.{type(self).__name__}, and this torch "
                f"({torch.__version__}) cannot script nn.{self._torch_class.__name__} either. Use "
                "torch.jit.trace(model, example_inputs) (records torch's standard op), torch.export, "
                "or torch.compile.")
        standard = self._torch_class.__new__(self._torch_class)
        ours = {"backend", "last_backend"}
        standard.__dict__.update({k: v for k, v in self.__dict__.items() if k not in ours})
        return standard

    def _backend_repr(self) -> str:
        return "" if self.backend == "auto" else f", backend={self.backend!r}"


class LSTM(_BackendChoice, nn.LSTM):
    """Drop-in ``torch.nn.LSTM`` running on a fastrnn backend.

    Extra keyword arguments:
        backend: "auto" (default: the fastest implementation measured for the input, torch's
            own kernels included), "cpp", "triton" or "reference". ``module.last_backend``
            names the implementation that ran last (fastrnn/dispatch.py lists them).
        resets (forward): bool tensor shaped like the input without its feature dimension,
            (T, B), or (B, T) with ``batch_first``, or (T,) unbatched. ``True`` at step t
            returns that row's state to zero before step t, so concatenated episodes run as
            one sequence with no state or gradient crossing their boundaries.
            Unidirectional LSTMs and tensor (not packed) input only.
    """

    _torch_class = nn.LSTM

    def __init__(self, *args, backend: str = "auto", **kwargs):
        super().__init__(*args, **kwargs)
        self._init_backend(backend)

    def extra_repr(self) -> str:
        return super().extra_repr() + self._backend_repr()

    def _layer_weights(self, flat_weights: list[Tensor], index: int) -> tuple:
        """(w_ih, w_hh, b_ih, b_hh, w_hr) of layer-direction `index`, None where absent."""
        per_direction = 2 + 2 * self.bias + (self.proj_size > 0)
        start = index * per_direction
        w_ih, w_hh = flat_weights[start], flat_weights[start + 1]
        b_ih, b_hh = (flat_weights[start + 2], flat_weights[start + 3]) if self.bias else (None, None)
        w_hr = flat_weights[start + per_direction - 1] if self.proj_size > 0 else None
        return w_ih, w_hh, b_ih, b_hh, w_hr

    def _weights_by_layer(self, flat_weights: list[Tensor]) -> list[tuple]:
        directions = 2 if self.bidirectional else 1
        return [self._layer_weights(flat_weights, i) for i in range(self.num_layers * directions)]

    # resets is positional-or-keyword: the TorchScript ONNX exporter passes every parameter
    # of forward positionally, defaults included.
    def forward(self, input, hx=None, resets: Tensor | None = None):
        probe = input.data if isinstance(input, PackedSequence) else input
        reason = _torch_only_reason()
        if reason is not None:
            self._route_torch_only(probe, reason)
            return self._standard_forward(input, hx, resets, reason)
        target = autocast_dtype(probe.device.type, probe.dtype, is_cell=False)
        if target is not None:
            return self._autocast_forward(target, input, hx, resets)
        flat_weights = current_flat_weights(self)
        if _state_dtype_differs(hx, flat_weights[0]):
            self._route_torch_only(probe, "state dtype")
            return self._forward_mixed_state(input, hx, resets)
        return self._forward(input, hx, resets, flat_weights)

    def _forward_mixed_state(self, input, hx, resets):
        """A state whose dtype differs from the weights': torch's own forward, which raises
        where torch raises and promotes where torch promotes (float64 weights take a float32
        c0; float32 weights refuse a float64 one). The kernels take one dtype for every operand."""
        if resets is not None:
            raise RuntimeError(f"resets: hx must have the weights' dtype {current_flat_weights(self)[0].dtype}, "
                               f"got {hx[0].dtype} and {hx[1].dtype}")
        return super().forward(input, hx)

    def _standard_forward(self, input, hx, resets, reason: str):
        """torch.nn.LSTM's own forward, for exporters (torch.jit.trace, torch.onnx.export:
        their graphs then hold the standard LSTM op, which runs and exports anywhere) and for
        the transforms fastrnn's kernels do not implement (_torch_only_reason)."""
        if resets is not None:
            raise RuntimeError(f"resets: {_TORCH_ONLY[reason]}")
        return super().forward(input, hx)

    def _autocast_forward(self, target: torch.dtype, input, hx, resets):
        """As nn.LSTM under autocast: operands rounded to `target`, results in `target`."""
        probe = input.data if isinstance(input, PackedSequence) else input
        compute = compute_dtype(self.backend, probe.device, target)
        with torch.autocast(probe.device.type, enabled=False):
            if isinstance(input, PackedSequence):
                input = input._replace(data=rounded(input.data, target, compute))
            else:
                input = rounded(input, target, compute)
            if hx is not None:
                hx = tuple(rounded(state, target, compute) for state in hx)
            weights = [rounded(w, target, compute) for w in current_flat_weights(self)]
            output, (h_n, c_n) = self._forward(input, hx, resets, weights, under_autocast=True)
        if isinstance(output, PackedSequence):
            output = output._replace(data=output.data.to(target))
        else:
            output = output.to(target)
        return output, (h_n.to(target), c_n.to(target))

    def _forward(self, input, hx, resets, flat_weights: list[Tensor], under_autocast: bool = False):
        """Normalize the call (time-major, batched, with a state; torch's checks and errors),
        ask fastrnn.dispatch which implementation runs it, run it, and give the result the
        caller's layout."""
        if isinstance(input, PackedSequence) and resets is None and not under_autocast \
                and self._packed_runs_torch(input, hx, flat_weights):
            return super().forward(input, hx)
        call = self._normalize(input, hx, resets, flat_weights, under_autocast)
        grad = _needs_grad((call.x, call.h0, call.c0, *flat_weights))
        step = call.x.shape[0] == 1 and call.lengths is None and not self.bidirectional and not grad
        implementation = self._layer_route(call.x, grad, call.x.shape[1], call.resets is not None, under_autocast,
                                           self._step_weight_bytes(flat_weights) if step else None)
        if implementation in dispatch.TORCH_FORWARD:  # cudnn, onednn: measured faster, no resets
            return super().forward(input, hx)
        if step:
            y, h_n, c_n = self._step(dispatch.step_function(implementation), call, flat_weights)
        else:
            y, h_n, c_n = run_layers(
                get_backend(implementation), call.x, call.h0, call.c0, self._weights_by_layer(flat_weights),
                self.num_layers, self.bidirectional, self.dropout, self.training, call.resets, call.lengths,
            )
        return self._restore_layout(call, y, h_n, c_n)

    def _packed_runs_torch(self, input: PackedSequence, hx, flat_weights: list[Tensor]) -> bool:
        """Whether a PackedSequence call takes a route that runs torch's own forward, decided
        before _normalize unpacks it to a padded tensor, which that forward does not use (the
        unpacking took 3-8% of a oneDNN call at H=128-512). A packed call is never a step."""
        states = () if not isinstance(hx, (tuple, list)) else tuple(t for t in hx if isinstance(t, Tensor))
        grad = _needs_grad((input.data, *states, *flat_weights))
        return self._layer_route(input.data, grad, int(input.batch_sizes[0])) in dispatch.TORCH_FORWARD

    def _layer_route(self, probe: Tensor, grad: bool, batch: int, resets: bool = False, under_autocast: bool = False,
                     step_weight_bytes: int | None = None) -> str:
        """The route of a call on tensors like probe: a no-grad step when step_weight_bytes (its
        largest layer's) is given, else a sequence."""
        step = step_weight_bytes is not None
        return self._route(probe.device, probe.dtype, "step" if step else "sequence", grad, self.hidden_size,
                           self.proj_size or self.hidden_size, batch, step_weight_bytes if step else 0, resets,
                           under_autocast)

    def _step_weight_bytes(self, flat_weights: list[Tensor]) -> int:
        """The largest layer's step weights (W_ih, W_hh, W_hr), in bytes."""
        if self.num_layers == 1:
            w_ih, w_hh, _, _, w_hr = self._layer_weights(flat_weights, 0)
            return dispatch.step_weight_bytes(w_ih, w_hh, w_hr)
        return max(dispatch.step_weight_bytes(w[0], w[1], w[4]) for w in self._weights_by_layer(flat_weights))

    def _normalize(self, input, hx, resets, flat_weights, under_autocast: bool) -> _Call:
        """The call as the routes take it, after torch's own checks and errors, before any work.

        A batched tensor with a state that already has exactly the shapes, dtype and device
        torch's checks demand (every step of a step loop) skips them: at small sizes they cost as
        much as the step."""
        if (type(input) is Tensor and input.dim() == 3 and hx is not None
                and self._state_fits(input, hx, flat_weights[0])):
            x = input.transpose(0, 1) if self.batch_first else input
            if resets is not None:
                resets = self._check_resets(resets, input, is_batched=True)
            return _Call(x, hx[0], hx[1], resets, None, None, True)
        directions = 2 if self.bidirectional else 1
        real_hidden = self.proj_size if self.proj_size > 0 else self.hidden_size
        packed = isinstance(input, PackedSequence)
        if packed:
            if resets is not None:
                raise ValueError("resets: not supported with PackedSequence input; pass a padded tensor")
            data, batch_sizes, sorted_indices, _ = input
            batch = int(batch_sizes[0])
            is_batched = True
            if hx is not None:
                hx = self.permute_hidden(hx, sorted_indices)
            probe = data
        else:
            if input.dim() not in (2, 3):
                raise ValueError(f"LSTM: Expected input to be 2D or 3D, got {input.dim()}D instead")
            batch_sizes = None
            is_batched = input.dim() == 3
            batch_dim = 0 if self.batch_first else 1
            if not is_batched:
                input = input.unsqueeze(batch_dim)
            batch = input.size(batch_dim)
            if hx is not None:
                if is_batched and (hx[0].dim() != 3 or hx[1].dim() != 3):
                    raise RuntimeError(
                        "For batched 3-D input, hx and cx should also be 3-D but got "
                        f"({hx[0].dim()}-D, {hx[1].dim()}-D) tensors"
                    )
                if not is_batched:
                    if hx[0].dim() != 2 or hx[1].dim() != 2:
                        raise RuntimeError(
                            "For unbatched 2-D input, hx and cx should also be 2-D but got "
                            f"({hx[0].dim()}-D, {hx[1].dim()}-D) tensors"
                        )
                    hx = (hx[0].unsqueeze(1), hx[1].unsqueeze(1))
            probe = input
        if hx is None:
            shape = (self.num_layers * directions, batch)
            hx = (
                torch.zeros(*shape, real_hidden, dtype=probe.dtype, device=probe.device),
                torch.zeros(*shape, self.hidden_size, dtype=probe.dtype, device=probe.device),
            )
        if under_autocast:  # torch skips its input-vs-weight dtype check under autocast
            with torch.autocast(probe.device.type):
                self.check_forward_args(probe if packed else input, hx, batch_sizes)
        else:
            self.check_forward_args(probe if packed else input, hx, batch_sizes)
        if not packed and input.shape[1 if self.batch_first else 0] == 0:
            raise RuntimeError("Expected sequence length to be larger than 0 in RNN")  # torch's own, from C++
        if resets is not None:
            resets = self._check_resets(resets, input, is_batched)
        if packed:
            x, lengths = unpack_to_padded(data, batch_sizes)
            return _Call(x, hx[0], hx[1], None, lengths, input, True)
        x = input.transpose(0, 1) if self.batch_first else input
        return _Call(x, hx[0], hx[1], resets, None, None, is_batched)

    def _state_fits(self, input: Tensor, hx, weight: Tensor) -> bool:
        """Whether torch's checks would pass this batched input and state as they are (and
        they are on one device)."""
        h, c = hx
        if type(h) is not Tensor or type(c) is not Tensor:
            return False
        batch = input.shape[0 if self.batch_first else 1]
        layers = self.num_layers * (2 if self.bidirectional else 1)
        return (input.shape[2] == self.input_size and input.shape[1 if self.batch_first else 0] > 0
                and h.shape == (layers, batch, self.proj_size or self.hidden_size)
                and c.shape == (layers, batch, self.hidden_size)
                and input.dtype == h.dtype == c.dtype == weight.dtype
                and input.device == h.device == c.device == weight.device)

    def _restore_layout(self, call: _Call, y, h_n, c_n):
        if call.packed_input is not None:
            _, batch_sizes, sorted_indices, unsorted_indices = call.packed_input
            output = PackedSequence(pack_padded_output(y, batch_sizes), batch_sizes, sorted_indices, unsorted_indices)
            return output, self.permute_hidden((h_n, c_n), unsorted_indices)
        if self.batch_first:
            y = y.transpose(0, 1)
        if not call.is_batched:
            y = y.squeeze(0 if self.batch_first else 1)
            h_n, c_n = h_n.squeeze(1), c_n.squeeze(1)
        return y, (h_n, c_n)

    def _step(self, cell, call: _Call, flat_weights: list[Tensor]):
        """One no-grad time step: `cell` (dispatch.step_function) per layer, no autograd bookkeeping."""
        # x (1, B, I) and resets (1, B) as they are: backends' cells take B rows under any
        # leading shape (a reshape or an index would cost microseconds a step).
        layer_input, resets = call.x, call.resets
        single = self.num_layers == 1
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            h0 = call.h0 if single else call.h0[layer : layer + 1]
            c0 = call.c0 if single else call.c0[layer : layer + 1]
            h, c = cell(layer_input, h0, c0, *self._layer_weights(flat_weights, layer), resets)
            h_n.append(h)
            c_n.append(c)
            layer_input = h
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, p=self.dropout, training=True)
        if single:
            # The output gets its own storage, as from nn.LSTM: an in-place edit of it must
            # not change the state the caller carries to the next step.
            return layer_input.clone(), h_n[0], c_n[0]
        return layer_input, torch.cat(h_n), torch.cat(c_n)

    def _check_resets(self, resets: Tensor, input: Tensor, is_batched: bool) -> Tensor:
        """Validate resets and return them time-major (T, B)."""
        if self.bidirectional:
            raise ValueError("resets: only unidirectional LSTMs take resets (bidirectional=True here)")
        if not isinstance(resets, Tensor) or resets.dtype != torch.bool:
            raise TypeError(f"resets: expected a bool tensor, got {type(resets).__name__}"
                            + (f" of dtype {resets.dtype}" if isinstance(resets, Tensor) else ""))
        if not is_batched:
            resets = resets.unsqueeze(0 if self.batch_first else 1)
        expected = tuple(input.shape[:2])
        if tuple(resets.shape) != expected:
            layout = "(B, T)" if self.batch_first else "(T, B)"
            raise ValueError(
                f"resets: expected shape {layout} = {expected} matching the input, got {tuple(resets.shape)}"
            )
        if resets.device != input.device:
            raise ValueError(f"resets: expected a tensor on {input.device}, got one on {resets.device}")
        return resets.transpose(0, 1).contiguous() if self.batch_first else resets


class LSTMCell(_BackendChoice, nn.LSTMCell):
    """Drop-in ``torch.nn.LSTMCell`` running on a fastrnn backend (see LSTM for `backend`).

    Without gradients (one step of a step loop) a call is one fused kernel launch; the Python
    around it is kept to plain attribute reads, since at small sizes it is most of the cost.
    """

    _torch_class = nn.LSTMCell

    def __init__(self, *args, backend: str = "auto", **kwargs):
        super().__init__(*args, **kwargs)
        self._init_backend(backend)

    def extra_repr(self) -> str:
        return super().extra_repr() + self._backend_repr()

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        reason = _torch_only_reason()
        if reason is not None:
            self._route_torch_only(input, reason)
            return super().forward(input, hx)  # the standard lstm_cell op (see LSTM._standard_forward)
        # One flag read for the common case (torch's rnn.py reads it too); the device's own
        # flag only when some autocast is on.
        if torch._C._is_any_autocast_enabled() and autocast_on(input.device.type):
            return self._autocast_forward(input, hx)
        weights = self._weights()
        if _state_dtype_differs(hx, weights[0]):
            # torch's own forward raises or promotes as torch does (see LSTM._forward_mixed_state)
            self._route_torch_only(input, "state dtype")
            return super().forward(input, hx)
        return self._forward(input, hx, weights)

    def _weights(self) -> tuple:
        params = parameters(self)
        try:  # the common case: plain dict reads
            return params["weight_ih"], params["weight_hh"], params["bias_ih"], params["bias_hh"]
        except KeyError:  # parametrize and weight_norm replace a parameter by a computed value
            return self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh

    def _autocast_forward(self, input: Tensor, hx):
        """As nn.LSTMCell under autocast (see fastrnn/autocast.py): on CUDA operands rounded to
        the autocast dtype and results in it; on the CPU float32, autocast or not."""
        target = autocast_dtype(input.device.type, input.dtype, is_cell=True)
        with torch.autocast(input.device.type, enabled=False):
            if target is None:
                return self._forward(input, hx, self._weights())
            compute = compute_dtype(self.backend, input.device, target)
            input = rounded(input, target, compute)
            if hx is not None:
                hx = tuple(rounded(state, target, compute) for state in hx)
            weights = tuple(rounded(w, target, compute) for w in self._weights())
            h, c = self._forward(input, hx, weights, under_autocast=True)
        return h.to(target), c.to(target)

    def _forward(self, input: Tensor, hx, weights: tuple, under_autocast: bool = False) -> tuple[Tensor, Tensor]:
        dims = input.dim()
        if dims not in (1, 2):
            raise ValueError(f"LSTMCell: Expected input to be 1D or 2D, got {dims}D instead")
        if hx is not None and not (dims == 2 and hx[0].dim() == 2 and hx[1].dim() == 2):  # a step loop's call passes
            for idx, value in enumerate(hx):
                if value.dim() not in (1, 2):
                    raise ValueError(
                        f"LSTMCell: Expected hx[{idx}] to be 1D or 2D, got {value.dim()}D instead"
                    )
        is_batched = dims == 2
        if not is_batched:
            input = input.unsqueeze(0)
        if hx is None:
            zeros = torch.zeros(input.shape[0], self.hidden_size, dtype=input.dtype, device=input.device)
            hx = (zeros, zeros)
        elif not is_batched:
            hx = (hx[0].unsqueeze(0), hx[1].unsqueeze(0))
        w_ih, w_hh, b_ih, b_hh = weights
        grad = _needs_grad((input, hx[0], hx[1], w_ih, w_hh, b_ih, b_hh))
        implementation = self._route(
            input.device, input.dtype, "cell" if grad else "step", grad, self.hidden_size, self.hidden_size,
            input.shape[0], 0 if grad else dispatch.step_weight_bytes(w_ih, w_hh, None), False, under_autocast)
        if implementation == "lstm_cell":  # ATen's cell as nn.LSTMCell calls it: it checks its arguments
            h, c = lstm_cell(input, hx, w_ih, w_hh, b_ih, b_hh)  # itself, with the messages below
            return (h, c) if is_batched else (h.squeeze(0), c.squeeze(0))
        self._check_cell_args(input, hx, w_ih)
        if grad:
            bias = None if b_ih is None else b_ih + b_hh
            steps = input.unsqueeze(0)
            xproj = input_projection(steps, w_ih, bias)
            _, h, c = get_backend(implementation).recurrence(xproj, w_hh, None, hx[0], hx[1], None, None,
                                                             projection=(steps, w_ih, bias))
        else:
            h, c = dispatch.step_function(implementation)(input, hx[0], hx[1], w_ih, w_hh, b_ih, b_hh, None)
        if not is_batched:
            h, c = h.squeeze(0), c.squeeze(0)
        return h, c

    def _check_cell_args(self, input: Tensor, hx: tuple[Tensor, Tensor], weight: Tensor) -> None:
        """The checks torch's lstm_cell makes in C++, with the same messages, before any work."""
        h, c = hx
        state = (input.shape[0], self.hidden_size)
        if (input.shape[1] == self.input_size and h.shape == state and c.shape == state  # a step loop's
                and input.dtype == h.dtype == c.dtype == weight.dtype                    # call: one pass
                and input.device == h.device == c.device == weight.device):
            return
        batch, features = input.shape
        if features != self.input_size:
            raise RuntimeError(f"input has inconsistent input_size: got {features} expected {self.input_size}")
        for idx, value in enumerate(hx):
            rows, width = value.shape
            if rows != batch:
                raise RuntimeError(f"Input batch size {batch} doesn't match hidden{idx} batch size {rows}")
            if width != self.hidden_size:
                raise RuntimeError(
                    f"hidden{idx} has inconsistent hidden_size: got {width}, expected {self.hidden_size}"
                )
        dtype, device = weight.dtype, weight.device
        for name, value in (("input", input), ("hx", hx[0]), ("cx", hx[1])):
            if value.dtype != dtype:
                raise RuntimeError(f"LSTMCell: {name} must have dtype {dtype} like the weights, got {value.dtype}")
            if value.device != device:
                raise RuntimeError(f"LSTMCell: {name} must be on {device} like the weights, got {value.device}")
