"""Backend registry and the rule that picks one for an input.

A backend offers two entry points that follow the contract in ``fastrnn.reference``:

- ``recurrence(xproj, w_hh, w_hr, h0, c0, resets, lengths) -> (y, h_n, c_n)``, differentiable
  with respect to ``xproj``, ``w_hh``, ``w_hr``, ``h0`` and ``c0``;
- ``cell(x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, resets=None) -> (h_next, c_next)``, one step
  with the input projection fused in, for callers that need no gradient; ``resets``, B bools
  under any leading shape ((B,) or (1, B)), zeroes those rows' state first. x, h, c hold B rows
  each under any leading shape ((B, F) or (1, B, F)); h_next and c_next come back shaped like
  h and c.

A kernel backend (cpp, triton) supplies only a ``fastrnn.recurrence_op.Launcher``; both entry
points are then the shared op's (``recurrence_op.kernel_backend``). The reference backend is
plain autograd.

Backends register lazily: importing fastrnn never compiles or imports triton; a backend whose
import fails stays listed with the reason, so ``backend="cpp"`` on a machine without the
extension says why instead of silently running something else.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

import torch

from fastrnn.torch_compat import constant_under_compile


@dataclass(frozen=True)
class Backend:
    name: str
    # Returns None when the backend can take tensors of this device and dtype, else why not.
    unsupported_reason: Callable[[torch.device, torch.dtype], str | None]
    recurrence: Callable
    cell: Callable
    launcher: object = None  # the kernel backend's recurrence_op.Launcher (None for the reference)
    # projected_forward(x, w_ih, bias, w_hh, w_hr, h0, c0, resets, lengths) -> (y, h_n, c_n) of one
    # layer that records no gradient, its input projection fused into the kernels, or None where
    # the backend's unfused forward is the faster one for these sizes. None: no such forward.
    projected_forward: Callable | None = None

    def __reduce__(self):
        # Pickled by name: a backend's functions and registered ops are process-wide objects.
        return get_backend, (self.name,)


# name -> module that defines BACKEND.
_BACKEND_MODULES = {
    "cpp": "fastrnn.cpp_backend",
    "triton": "fastrnn.triton_backend",
    "reference": "fastrnn.reference_backend",
}
BACKEND_NAMES = ("auto", *_BACKEND_MODULES)

# auto's preference per device type. Triton also takes CPU tensors under TRITON_INTERPRET=1,
# but only to test its kernels: on the CPU, auto never imports it.
_AUTO_ORDER = {"cpu": ("cpp", "reference"), "cuda": ("triton", "reference")}

_loaded: dict[str, Backend] = {}
_load_errors: dict[str, str] = {}


def get_backend(name: str) -> Backend:
    """The backend called `name`; raises RuntimeError naming the import failure if it has none."""
    if name in _loaded:
        return _loaded[name]
    if name not in _BACKEND_MODULES:
        raise ValueError(f"backend must be one of {BACKEND_NAMES}, got {name!r}")
    if name not in _load_errors:
        try:
            _loaded[name] = importlib.import_module(_BACKEND_MODULES[name]).BACKEND
            return _loaded[name]
        except Exception as error:  # recorded and re-raised on every request for it
            _load_errors[name] = f"{type(error).__name__}: {error}"
    raise RuntimeError(f"fastrnn backend {name!r} is not available: {_load_errors[name]}")


def available_backends() -> dict[str, str | None]:
    """Each backend's name mapped to None if it loads here, else the reason it does not."""
    status = {}
    for name in _BACKEND_MODULES:
        try:
            get_backend(name)
            status[name] = None
        except RuntimeError as error:
            status[name] = str(error)
    return status


_resolved: dict[tuple[str, torch.device, torch.dtype], Backend] = {}


def resolve_backend(requested: str, device: torch.device, dtype: torch.dtype) -> Backend:
    """The backend that runs tensors of `device` and `dtype` for the `requested` name.

    "auto" takes the first backend, in preference order, that loads and supports the input.
    A named backend that cannot take the input raises ValueError saying why, before any work.
    """
    if torch.compiler.is_compiling():
        return _loaded[_resolve_name(requested, device, dtype)]
    backend = _resolved.get((requested, device, dtype))  # the common case: one dict lookup
    if backend is None:
        backend = _loaded[_resolve_name(requested, device, dtype)]
    return backend


@constant_under_compile  # a constant to a compiled graph (torch_compat.py)
def _resolve_name(requested: str, device: torch.device, dtype: torch.dtype) -> str:
    # Imports a backend on first use; under torch.compile this runs eagerly at trace time
    # (a constant to the graph), since Dynamo cannot trace an import.
    if requested == "auto":
        backend = None
        for name in _AUTO_ORDER.get(device.type, ("reference",)):
            try:
                candidate = get_backend(name)
            except RuntimeError:
                continue
            if candidate.unsupported_reason(device, dtype) is None:
                backend = candidate
                break
        assert backend is not None, "the reference backend supports every device and dtype"
    else:
        backend = get_backend(requested)
        reason = backend.unsupported_reason(device, dtype)
        if reason is not None:
            raise ValueError(
                f"backend={requested!r} cannot run {dtype} tensors on {device}: {reason}"
            )
    _resolved[(requested, device, dtype)] = backend
    return backend.name


def check_backend_name(backend: object) -> str:
    if not isinstance(backend, str) or backend not in BACKEND_NAMES:
        raise ValueError(f"backend must be one of {BACKEND_NAMES}, got {backend!r}")
    return backend
