#!/usr/bin/env bash
# Creates .venv (when missing) with everything the project needs and builds fastrnn into it
# (editable install: the C++ core is compiled into fastrnn/_C*.so). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  "${PYTHON:-python3}" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps -e .
.venv/bin/python -c "import fastrnn._C as c; print('fastrnn C++ core built:', c.isa(), 'kernels')"
