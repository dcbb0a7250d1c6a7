"""Builds fastrnn (and fastrnn.kernels from kernels/) with the C++ core in fastrnn._C.

The extension binds with pybind11 only, not torch's C++ API, so the same build runs with any
torch. Per-instruction-set kernels are compiled for the baseline target and selected at run
time (see csrc/cpu_dispatch.cpp), so a wheel built here runs on any x86-64 or aarch64 CPU.
"""

import os
import platform

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup

SOURCES = [
    "csrc/binding.cpp",
    "csrc/rl_heads.cpp",
    "csrc/rl_actor_critic.cpp",
    "csrc/rl_inputs.cpp",
    "csrc/cpu_dispatch.cpp",
    "csrc/isa_generic.cpp",
]
if platform.machine().lower() in ("x86_64", "amd64"):
    SOURCES += ["csrc/isa_avx2.cpp", "csrc/isa_avx512.cpp"]

# FASTRNN_SANITIZE=address,undefined (a comma list; unset or empty: none): fastrnn._C built with
# those sanitizers, for scripts/sanitize.sh. Their flags come after the others, so -O1 and -g
# replace -O3 and -g0; any error aborts the process (-fno-sanitize-recover). Python itself is not
# instrumented: an ASan build runs with its runtime preloaded (scripts/sanitize.sh shows how).
SANITIZERS = ("address", "undefined")


def sanitize_flags(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in SANITIZERS]
    if not names or unknown:
        raise SystemExit(f"FASTRNN_SANITIZE={value!r}: expected a comma list of {', '.join(SANITIZERS)} "
                         f"(e.g. FASTRNN_SANITIZE=address,undefined)"
                         + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
    # -Wno-maybe-uninitialized: at -O1 with the sanitizers GCC 12 warns on its own intrinsics
    # headers (avx512fintrin.h's `__m512 __Y = __Y;`), hundreds of times per build.
    return [f"-fsanitize={','.join(names)}", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g", "-O1",
            "-Wno-maybe-uninitialized"]


SANITIZE = os.environ.get("FASTRNN_SANITIZE", "")
SANITIZE_FLAGS = sanitize_flags(SANITIZE) if SANITIZE.strip() else []

extension = Pybind11Extension(
    "fastrnn._C",
    SOURCES,
    include_dirs=["csrc"],
    depends=["csrc/binding_util.h", "csrc/rl_inputs.h", "csrc/simd.h", "csrc/lstm_kernels.h", "csrc/lstm_api.h",
             "csrc/cpu_dispatch.h"],
    cxx_std=20,
    # fp-contract lets a*b+c become one FMA in the micro-kernels (ISO C++ mode disables it).
    # -fopenmp links libgomp.so.1, which resolves to the copy torch has already loaded (see
    # csrc/cpu_dispatch.cpp).
    extra_compile_args=["-O3", "-ffp-contract=fast", "-fno-math-errno", "-fopenmp", "-Wall", "-Wno-psabi"]
    + SANITIZE_FLAGS,
    extra_link_args=["-fopenmp"] + SANITIZE_FLAGS,
)

setup(
    name="fastrnn",
    version="0.1.0",
    description="Drop-in torch.nn.LSTM / LSTMCell on fused kernels: Triton on GPU, C++ on CPU",
    packages=["fastrnn", "fastrnn.rl", "fastrnn.kernels"],
    package_dir={"fastrnn": "fastrnn", "fastrnn.kernels": "kernels"},
    # FASTRNN_SKIP_EXTENSION=1: an editable install that reuses the fastrnn/_C*.so another venv
    # built from this checkout (scripts/setup.sh --neurogym), instead of rewriting it.
    ext_modules=[] if os.environ.get("FASTRNN_SKIP_EXTENSION") == "1" else [extension],
    cmdclass={"build_ext": build_ext},
    python_requires=">=3.10",
    install_requires=["torch>=2.4", "numpy"],
    extras_require={"gpu": ["triton>=3.0"]},
    zip_safe=False,
)
