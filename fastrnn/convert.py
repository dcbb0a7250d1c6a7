"""fastrnn.convert: swap torch's LSTM modules inside a model for fastrnn's, in place."""

from __future__ import annotations

import torch.nn as nn

from fastrnn.backends import check_backend_name
from fastrnn.modules import LSTM, LSTMCell


def _converted(module: nn.Module, backend: str) -> nn.Module | None:
    if type(module) is nn.LSTM:
        target = LSTM
    elif type(module) is nn.LSTMCell:
        target = LSTMCell
    else:
        return None
    # Re-class the module object itself: parameters, hooks, device and dtype stay untouched,
    # and anything holding a reference to it (an optimizer's param groups) stays valid.
    module.__class__ = target
    module._init_backend(backend)
    return module


def convert(model: nn.Module, backend: str = "auto") -> nn.Module:
    """Make every ``nn.LSTM`` / ``nn.LSTMCell`` in `model` (itself included) a fastrnn module.

    Weights, buffers, hooks and optimizer references are kept: the modules are converted in
    place, not copied. Subclasses of torch's modules are left alone, since their forward may
    differ. Returns `model`.
    """
    check_backend_name(backend)
    for module in model.modules():
        _converted(module, backend)
    return model
