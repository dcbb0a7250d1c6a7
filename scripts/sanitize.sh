#!/usr/bin/env bash
# The C++ core under AddressSanitizer and UndefinedBehaviorSanitizer (CI runs this after the suite).
#
#   bash scripts/sanitize.sh [PYTEST_ARGS ...]     extra arguments go to pytest (-x, -k EXPR, ...)
#
# About 3 CPU-minutes on 2 cores: 2 to build (its translation units run in parallel; a reused
# build saves them), 1.5 to test (6 min of wall time measured here with the 2 cores shared).
#
# 1. Copies the checkout's working tree (setup.py, csrc/, fastrnn/, kernels/, tests/, agent/,
#    bench/, without built files) to $FASTRNN_SANITIZE_DIR/tree (default build/sanitize/tree) and
#    builds fastrnn._C there with FASTRNN_SANITIZE (default address,undefined; see setup.py) into
#    $FASTRNN_SANITIZE_DIR/lib-<sanitizers>. The build is reused while no source is newer than it
#    (rm -rf build/sanitize to force one). .venv's own build, fastrnn/_C*.so, is left alone.
# 2. Checks the sanitizers are really live (the copy's fastrnn._C is the one imported, it was
#    compiled with them, and their runtimes are mapped), so this step cannot pass unsanitized.
# 3. Runs the C++-facing tests ($FASTRNN_SANITIZE_TESTS, default below) in the copy with .venv's
#    python and ASan's runtime (and libstdc++, see below) preloaded: python is not instrumented,
#    and ASan's runtime must be the first library loaded so that it replaces malloc/free for
#    everything, torch's tensor storage included (c10 allocates with posix_memalign and frees with
#    free): a kernel that reads a freed tensor then stops with heap-use-after-free. Any report
#    ends the run (exit status != 0).
#
# ASAN_OPTIONS (yours are appended, so they win):
#   detect_leaks=0   CPython and torch keep their interned objects, caches and thread pools until
#                    the process ends by design; LeakSanitizer would report all of them at exit.
#   abort_on_error=1 a report ends the process with SIGABRT, not exit(1), so pytest's faulthandler
#                    prints the Python stack: the report is followed by the test that made it.
# torch 2.13's CPU wheel needs no other option: it loads and runs its ops under the preloaded
# runtime without a report (no new/delete or ODR reports: torch itself is not instrumented).
# UBSAN_OPTIONS: print_stacktrace=1, halt_on_error=1 and abort_on_error=1 (the build already
# passes -fno-sanitize-recover=all, so any undefined behaviour found is fatal).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
PY="${PYTHON:-$REPO/.venv/bin/python}"
SANITIZE="${FASTRNN_SANITIZE:-address,undefined}"
DIR="${FASTRNN_SANITIZE_DIR:-$REPO/build/sanitize}"
TESTS="${FASTRNN_SANITIZE_TESTS:-tests/fastrnn/test_sanitizer.py tests/fastrnn/test_cpp_*.py tests/fastrnn/test_fused_projection.py tests/fastrnn/test_rollout_*.py tests/fastrnn/test_workspace.py tests/fastrnn/test_threads_and_weight_writes.py tests/fastrnn/test_nan_propagation.py tests/fastrnn/test_resets.py tests/fastrnn/test_differential_fuzz.py tests/agent/test_learner.py}"

if [ ! -x "$PY" ]; then
  echo "sanitize.sh: no $PY: run bash scripts/setup.sh first (or set PYTHON)" >&2
  exit 2
fi
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
tag="$(printf '%s' "$SANITIZE" | tr -c 'a-z0-9' '_')"
tree="$DIR/tree"
lib="$DIR/lib-$tag"
start=$SECONDS

# 1. The copy (tar keeps modification times, so an unchanged source does not rebuild) and its build.
rm -rf "$tree" && mkdir -p "$tree"
tar -C "$REPO" --exclude=__pycache__ --exclude='*.so' --exclude='*.egg-info' -cf - \
  setup.py pyproject.toml pytest.ini csrc fastrnn kernels tests agent bench | tar -C "$tree" -xf -
# fastrnn.kernels as setup.py's package_dir maps it, inside the copy's package.
cp -rp "$tree/kernels" "$tree/fastrnn/kernels"
echo "== building fastrnn._C with FASTRNN_SANITIZE=$SANITIZE in $lib (log: $DIR/build-$tag.log)"
# setup.py compiles its translation units one after another; pybind11's ParallelCompile runs
# them on every core.
if ! (cd "$tree" && FASTRNN_SANITIZE="$SANITIZE" "$PY" -c '
import os, runpy, sys
from pybind11.setup_helpers import ParallelCompile
ParallelCompile(default=os.cpu_count() or 1).install()
sys.argv = ["setup.py", "build_ext", "--build-lib", sys.argv[1], "--build-temp", sys.argv[2]]
runpy.run_path("setup.py", run_name="__main__")
' "$lib" "$DIR/temp-$tag") > "$DIR/build-$tag.log" 2>&1; then
  tail -n 40 "$DIR/build-$tag.log"
  echo "sanitize.sh: the sanitized build failed (log: $DIR/build-$tag.log)" >&2
  exit 1
fi
cp -p "$lib"/fastrnn/_C*.so "$tree/fastrnn/"
echo "   built in $((SECONDS - start)) s"

# The runtimes: ASan's must be preloaded (it has to be the first library loaded), and with it
# the C++ runtime: ASan wraps __cxa_throw when it starts, and python links no libstdc++, so
# without it the first C++ exception (any error _C raises) stops the process with "CHECK failed:
# ... real___cxa_throw != 0" (github.com/google/sanitizers/issues/934). UBSan's runtime loads
# with fastrnn._C, which links it.
preload=""
case ",$SANITIZE," in
  *,address,*)
    cxx="$("$PY" -c 'import sysconfig; print((sysconfig.get_config_var("CXX") or "g++").split()[0])')"
    for runtime in libasan.so libstdc++.so; do
      path="$("$cxx" -print-file-name="$runtime")"
      if [ ! -f "$path" ]; then
        echo "sanitize.sh: $cxx -print-file-name=$runtime gives '$path', not a file (GCC's runtimes are needed)" >&2
        exit 1
      fi
      preload="${preload:+$preload }$(realpath "$path")"
    done
    ;;
esac
export LD_PRELOAD="$preload"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:abort_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export FASTRNN_SANITIZED="$SANITIZE"  # tests/fastrnn/test_sanitizer.py runs its checks when it is set
export PYTHONUNBUFFERED=1
unset FASTRNN_CPU_ISA

# 2. The sanitizers are live in the copy's build (tests/fastrnn/test_sanitizer.py checks more, in pytest).
cd "$tree"
"$PY" - "$tree" "$SANITIZE" <<'EOF'
import sys
tree, sanitizers = sys.argv[1], sys.argv[2].split(",")
import fastrnn._C as C
problems = []
if not C.__file__.startswith(tree + "/"):
    problems.append(f"fastrnn._C is {C.__file__}, not the sanitized build in {tree}")
binary = open(C.__file__, "rb").read()
maps = open("/proc/self/maps").read()
for name, symbol, runtime in [("address", b"__asan_report_load", "libasan.so"),
                              ("undefined", b"__ubsan_handle_", "libubsan.so")]:
    if name in sanitizers:
        if symbol not in binary:
            problems.append(f"{C.__file__} has no {symbol.decode()}*: not built with -fsanitize={name}")
        if runtime not in maps:
            problems.append(f"{runtime} is not mapped in this process")
if problems:
    sys.exit("sanitize.sh: the sanitizers are not live:\n  " + "\n  ".join(problems))
print(f"   sanitizers live: {','.join(sanitizers)} in {C.__file__} ({C.isa()} kernels)")
EOF

# 3. The C++-facing tests. --capture=sys: a report is written to file descriptor 2, which
# pytest's default capture (fd) would swallow when the process stops. -k 'not triton': these files
# also run the triton backend in Triton's interpreter (Python and numpy, no fastrnn._C); a -k of
# your own replaces it.
files=()
for pattern in $TESTS; do
  for file in $pattern; do
    if [ -f "$file" ]; then files+=("$file"); fi
  done
done
if [ ${#files[@]} -eq 0 ]; then
  echo "sanitize.sh: no test file matches FASTRNN_SANITIZE_TESTS='$TESTS'" >&2
  exit 2
fi
echo "== ${#files[@]} test files under the sanitizers: ${files[*]}"
set +e
"$PY" -m pytest -q -p no:cacheprovider --capture=sys -k "not triton" "${files[@]}" "$@"
status=$?
set -e
echo "== scripts/sanitize.sh: pytest exit status $status, $((SECONDS - start)) s in all"
exit $status
