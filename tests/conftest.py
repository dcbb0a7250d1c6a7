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


def _available_isas() -> list[str]:
    # Imported here, not at module level: on a GPU machine whose optional C++ build failed,
    # the Triton tests must still run (a module-level import would error every test).
    from fastrnn import _C

    return _C.available_isas()


def pytest_generate_tests(metafunc):
    if "cpu_isa" in metafunc.fixturenames:
        metafunc.parametrize("cpu_isa", _available_isas(), indirect=True)


@pytest.fixture
def cpu_isa(request):
    """Runs the test once per instruction set this CPU supports (avx512, avx2, generic)."""
    from fastrnn import _C

    previous = _C.isa()
    _C.set_isa(request.param)
    yield request.param
    _C.set_isa(previous)

