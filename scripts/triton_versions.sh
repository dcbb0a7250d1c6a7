#!/usr/bin/env bash
# Runs the Triton tests that need no GPU (tests/fastrnn/test_triton_interpret.py: the kernels in the
# interpreter; tests/fastrnn/test_triton_aot.py: every configuration compiled for sm_90, no spills) under
# other Triton versions, each in a venv of its own, and prints one summary line per version.
# requirements.txt keeps the pinned Triton in .venv; this is how a new release is tried first.
#
# Usage (from anywhere):  bash scripts/triton_versions.sh [VERSION ...]
#   VERSION: 3.9.0, or 3.9 for the newest 3.9.x; none: the newest Triton on PyPI.
# Venvs are made once and reused, under $FASTRNN_TRITON_VENVS (default /tmp/fastrnn-triton-venvs),
# with the torch that requirements.txt pins. Nothing is built (these tests do not use fastrnn._C)
# and .venv is left alone: the package runs from a tree of links laid out as installed
# (fastrnn/ with kernels/ as fastrnn/kernels, as setup.py maps it) on PYTHONPATH.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
PY="${PYTHON:-python3}"
VENVS="${FASTRNN_TRITON_VENVS:-/tmp/fastrnn-triton-venvs}"
TORCH_PIN="$(grep -E '^torch==' requirements.txt | head -n 1)"

newest_triton() {
  "$PY" -m pip index versions triton 2>/dev/null | sed -n 's/^triton (\(.*\))$/\1/p' | head -n 1
}

versions=("$@")
if [ ${#versions[@]} -eq 0 ]; then
  newest="$(newest_triton)"
  if [ -z "$newest" ]; then
    echo "could not ask PyPI for the newest triton: name a version (bash $0 3.9.0)" >&2
    exit 2
  fi
  versions=("$newest")
fi

mkdir -p "$VENVS"
links="$VENVS/package-links"
rm -rf "$links" && mkdir -p "$links/fastrnn"
ln -s "$REPO"/fastrnn/*.py "$links/fastrnn/"
ln -s "$REPO/kernels" "$links/fastrnn/kernels"
summary=()
status=0
for version in "${versions[@]}"; do
  case "$version" in
    *.*.*) spec="triton==$version" ;;
    *) spec="triton==$version.*" ;;
  esac
  venv="$VENVS/triton-$version"
  log="$venv/tests.log"
  if [ ! -x "$venv/bin/python" ]; then
    "$PY" -m venv "$venv"
  fi
  # Installed once per spec: a reused venv starts its tests at once.
  if [ "$(cat "$venv/.fastrnn-spec" 2>/dev/null)" != "$spec $TORCH_PIN" ]; then
    if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "$TORCH_PIN" "$spec" numpy pytest pybind11 setuptools > "$venv/install.log" 2>&1; then
      summary+=("triton $version: install failed (see $venv/install.log)")
      status=1
      continue
    fi
    echo "$spec $TORCH_PIN" > "$venv/.fastrnn-spec"
  fi
  installed="$("$venv/bin/python" -c 'import triton; print(triton.__version__)')"
  echo "== triton $installed ($venv)"
  set +e
  # From $links, so that the linked package, not the checkout's fastrnn/, is the one imported.
  (cd "$links" && env -u TRITON_INTERPRET PYTHONPATH="$links" "$venv/bin/python" -m pytest -q -p no:cacheprovider \
    "$REPO/tests/fastrnn/test_triton_interpret.py" "$REPO/tests/fastrnn/test_triton_aot.py") > "$log" 2>&1
  rc=$?
  set -e
  if [ $rc -ne 0 ]; then
    tail -n 40 "$log"
    status=1
  fi
  result="$(grep -E '(passed|failed|error)' "$log" | tail -n 1 | sed 's/^=* *//; s/ *=*$//')"
  summary+=("triton $installed: ${result:-no pytest summary} (rc=$rc, log $log)")
done

echo
printf '%s\n' "${summary[@]}"
exit $status
