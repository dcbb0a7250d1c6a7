"""The sanitized run (scripts/sanitize.sh) is really sanitized: fastrnn._C was compiled with the
sanitizers it names, their runtimes are loaded, and a read of a freed tensor's memory (what a
kernel does when the tensor behind an address it was given has been freed: issue class 1) stops
the process with heap-use-after-free. Skipped outside that run (FASTRNN_SANITIZED unset)."""

import os
import subprocess
import sys
import textwrap

import pytest

SANITIZERS = [name for name in os.environ.get("FASTRNN_SANITIZED", "").split(",") if name]

pytestmark = pytest.mark.skipif(not SANITIZERS, reason="runs under bash scripts/sanitize.sh (FASTRNN_SANITIZED)")

SYMBOLS = {"address": (b"__asan_report_load", "libasan.so"), "undefined": (b"__ubsan_handle_", "libubsan.so")}


def test_extension_has_the_sanitizers_and_their_runtimes_loaded():
    """The extension is built with the sanitizers and their runtimes are loaded."""
    from fastrnn import _C

    with open(_C.__file__, "rb") as f:
        binary = f.read()
    with open("/proc/self/maps") as f:
        maps = f.read()
    for name in SANITIZERS:
        symbol, runtime = SYMBOLS[name]
        assert symbol in binary, f"{_C.__file__} was not built with -fsanitize={name}"
        assert runtime in maps, f"{runtime} is not loaded"


def _run(code):
    # The child inherits LD_PRELOAD and ASAN_OPTIONS from the sanitized run.
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.slow
@pytest.mark.skipif("address" not in SANITIZERS, reason="an AddressSanitizer check")
def test_reading_a_freed_tensor_stops_the_process_with_heap_use_after_free():
    """torch frees a tensor's storage with free(), which ASan's runtime keeps poisoned for a while
    (its quarantine): a read of that memory, here by memmove through ctypes, must be reported."""
    result = _run("""
        import ctypes, torch
        import fastrnn._C  # loads the sanitized build, as the tests do
        x = torch.randn(8, 4).t().contiguous()  # a copy, as the step made of a strided input
        address, size = x.data_ptr(), x.numel() * x.element_size()
        del x
        out = ctypes.create_string_buffer(size)
        ctypes.memmove(out, address, size)
        print("read freed memory unnoticed")
    """)
    assert result.returncode != 0, result.stdout + result.stderr
    assert "ERROR: AddressSanitizer: heap-use-after-free" in result.stderr, result.stderr[-4000:]
    assert "read freed memory unnoticed" not in result.stdout


def test_torch_and_the_extension_run_a_step_and_raise_without_a_report():
    """The control, in this (sanitized) process: a step forward and backward gives no report (no
    false positive from torch under the preloaded runtime), and a C++ exception reaches Python as
    an exception (with ASan preloaded into python, that needs libstdc++ preloaded too: see
    scripts/sanitize.sh; without it this process stops with "CHECK failed: ... real___cxa_throw")."""
    import torch

    import fastrnn
    from fastrnn import _C

    with pytest.raises(Exception):
        _C.set_isa("no such isa")
    lstm = fastrnn.LSTM(8, 16, backend="cpp")
    with torch.no_grad():
        lstm(torch.randn(3, 2, 8))
    y, _ = lstm(torch.randn(3, 2, 8).requires_grad_())
    y.sum().backward()
    assert lstm.weight_hh_l0.grad is not None
