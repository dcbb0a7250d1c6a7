"""Shared fixtures: the C++ kernels' instruction sets, each selected in turn."""

import pytest

from fastrnn import _C


@pytest.fixture(params=_C.available_isas())
def cpu_isa(request):
    """Runs the test once per instruction set this CPU supports (avx512, avx2, generic)."""
    previous = _C.isa()
    _C.set_isa(request.param)
    yield request.param
    _C.set_isa(previous)
