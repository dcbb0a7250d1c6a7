#!/usr/bin/env bash
# Creates .venv (when missing) with everything the project needs and builds fastrnn into it
# (editable install: the C++ core is compiled into fastrnn/_C*.so). Safe to run again.
#
#   bash scripts/setup.sh              .venv: the project (Gymnasium 1.x)
#   bash scripts/setup.sh --neurogym   .venv-neurogym as well: NeuroGym's tasks for `--task gym:ENV_ID`
#                                      (NeuroGym pins gymnasium 0.29 and numpy 2.2: its own venv,
#                                      requirements-neurogym.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  "") neurogym=0 ;;
  --neurogym) neurogym=1 ;;
  *) echo "usage: bash scripts/setup.sh [--neurogym]" >&2; exit 2 ;;
esac

if [ ! -x .venv/bin/python ]; then
  "${PYTHON:-python3}" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps -e .
.venv/bin/python -c "import fastrnn._C as c; print('fastrnn C++ core built:', c.isa(), 'kernels')"

if [ "$neurogym" = 1 ]; then
  if [ ! -x .venv-neurogym/bin/python ]; then
    "${PYTHON:-python3}" -m venv .venv-neurogym
  fi
  .venv-neurogym/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-neurogym.txt
  # fastrnn as .venv built it (same torch, same Python): an editable install that builds nothing,
  # so the C++ core is compiled once and a second build never rewrites the _C*.so that .venv's
  # processes have loaded; it maps fastrnn.kernels to kernels/ as every install does.
  site=$(.venv-neurogym/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  rm -f "$site/fastrnn_checkout.pth"
  FASTRNN_SKIP_EXTENSION=1 .venv-neurogym/bin/python -m pip install --quiet --disable-pip-version-check \
    --no-build-isolation --no-deps -e .
  .venv-neurogym/bin/python -c "import fastrnn._C, fastrnn.kernels, neurogym, gymnasium; print('.venv-neurogym: neurogym', neurogym.__version__, 'gymnasium', gymnasium.__version__, '(fastrnn from', fastrnn._C.__file__ + ')')"
fi
