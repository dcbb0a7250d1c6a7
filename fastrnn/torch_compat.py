"""Every private torch symbol fastrnn uses, in one place.

Each is used for a measured reason (given beside it) and pinned by a test in
tests/fastrnn/test_torch_compat.py that fails when a torch release changes it, so an upgrade breaks
one test with the symbol's name instead of a user's model in silence. Public torch API is
used everywhere else.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
from torch import Tensor

# ATen's fused LSTM cell, without nn.LSTMCell.forward's Python (its checks cost as much as a
# small step): the lstm_cell route of fastrnn.dispatch.
lstm_cell = torch._VF.lstm_cell

# Whether torch.jit.trace (or the TorchScript ONNX exporter) records this call: one flag read,
# checked on every call of a module.
is_jit_tracing: Callable[[], bool] = torch._C._is_tracing

# Whether a torch.func transform (vmap, grad, jacrev) wraps the tensors of this call: such
# calls take autograd.Function.apply's full path, and never the workspace.
functorch_transforms_active: Callable[[], bool] = torch._C._are_functorch_transforms_active


def forward_ad_active() -> bool:
    """Whether forward-mode AD is on (torch.func.jvp and jacfwd, torch.autograd.forward_ad's
    dual_level): fastrnn's autograd Functions define no jvp, so such calls run torch's own
    forward, which does. One module global read per call."""
    return torch.autograd.forward_ad._current_level >= 0


def vmap_active() -> bool:
    """Whether a torch.func.vmap is among the transforms around this call: fastrnn's kernels
    read tensors' memory, which vmap's batched tensors do not have."""
    return functorch_transforms_active() and any(
        interpreter.key() == torch._C._functorch.TransformType.Vmap
        for interpreter in torch._C._functorch.get_interpreter_stack() or ())


def c_apply(function_class: type) -> Callable:
    """What autograd.Function.apply ends in (the C++ apply), bound to function_class, with
    apply's remaining Python step (unwrapping dead functorch wrappers) in front of it.

    Function.apply binds its arguments with inspect.signature on every call, which cost
    50-80 us here, more than a small recurrence's kernel (T=5, B=4, H=16: 12 us); outside
    torch.func transforms that binding does nothing, so eager calls skip it."""
    apply = super(torch.autograd.Function, function_class).apply
    unwrap = torch._functorch.utils.unwrap_dead_wrappers

    def applied(*args):
        return apply(*unwrap(args))
    return applied


def eager_apply(function_class: type) -> Callable:
    """function_class.apply for positional arguments: Function.apply itself inside torch.func
    transforms (which need its argument binding), c_apply's path outside them."""
    direct, full = c_apply(function_class), function_class.apply

    def applied(*args):
        return full(*args) if functorch_transforms_active() else direct(*args)
    return applied


def constant_under_compile(fn: Callable) -> Callable:
    """torch.compiler.assume_constant_result, without its import of torch._dynamo: that import
    took 2-3 s of every `import fastrnn` (measured), and most users never compile. The
    decorator's whole effect is this attribute (torch 2.4-2.13)."""
    fn._dynamo_marked_constant = True
    return fn


def version(tensor: Tensor) -> int:
    """The tensor's version counter (bumped by every in-place write autograd sees)."""
    return tensor._version


def parametrized(module: nn.Module) -> bool:
    """Whether torch.nn.utils.parametrize computes some parameter of module."""
    return "parametrizations" in module._modules


def parameters(module: nn.Module) -> dict:
    """module's own parameters by name (a dict read where attribute access walks __getattr__)."""
    return module._parameters


def current_flat_weights(lstm: nn.LSTM) -> list[Tensor]:
    """nn.LSTM's flat weight list as its forward would read it now: torch's
    _update_flat_weights (a parameter swapped, as torch.func.functional_call does, or computed
    by a parametrization), with dict reads in place of attribute lookups, since it runs on
    every step of a step loop."""
    if parametrized(lstm):
        lstm._init_flat_weights()
        return lstm._flat_weights
    params = lstm._parameters
    for ref, name in zip(lstm._flat_weight_refs, lstm._flat_weights_names):
        if ref is not None and ref() is not params.get(name):
            lstm._init_flat_weights()
            break
    return lstm._flat_weights


def refreshed_flat_weights(lstm: nn.LSTM) -> list[Tensor]:
    """torch.nn.LSTM's own update of its flat weights, then the list."""
    lstm._update_flat_weights()
    return lstm._flat_weights
