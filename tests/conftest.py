"""Shared set-up: Triton's interpreter on machines without a GPU, and the C++ kernels'
instruction sets, each selected in turn."""

import os

import torch

# TRITON_INTERPRET decides what @triton.jit returns when a module defining kernels is first
# imported, and importing torch._dynamo (any test module that decorates with its config)
# already imports triton. So it is set here, before any test module is collected.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

from fastrnn import _C  # noqa: E402


@pytest.fixture(params=_C.available_isas())
def cpu_isa(request):
    """Runs the test once per instruction set this CPU supports (avx512, avx2, generic)."""
    previous = _C.isa()
    _C.set_isa(request.param)
    yield request.param
    _C.set_isa(previous)

