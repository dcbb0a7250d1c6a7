"""Every kernel configuration the dispatcher can choose, compiled for sm_90 on the CPU.

`python scripts/kernel_resources.py --check` runs in a subprocess without TRITON_INTERPRET (the
interpreter tests set it in this process, and it changes what @triton.jit returns): it
compiles each configuration with triton.compile(ASTSource, GPUTarget("cuda", 90, 32)) and reads
registers, shared memory and spills from the cubin with Triton's bundled cuobjdump.
"""

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # starts subprocesses

# Not importorskip: importing triton here, before tests/fastrnn/test_triton_interpret.py sets
# TRITON_INTERPRET, would fix triton's interpreter setting for the whole session.
if importlib.util.find_spec("triton") is None:
    pytest.skip("triton is not installed", allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]
SHARED_LIMIT_BYTES = 227 * 1024


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("resources") / "resources.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    run = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "kernel_resources.py"), "--check", "--json", str(out), "--write", os.devnull],
        cwd=out.parent, env=env, capture_output=True, text=True, timeout=900,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    return json.loads(out.read_text())


def test_every_configuration_compiles_for_sm90(compiled):
    from scripts.kernel_resources import all_variants

    assert len(compiled) == len(all_variants())


def test_no_configuration_spills(compiled):
    spilling = [(r["kernel"], r["dtype"], r["constexprs"], r["local"], r["stack"])
                for r in compiled if r["local"] or r["stack"]]
    assert not spilling


def test_shared_memory_and_registers_fit_one_cta_per_sm(compiled):
    for r in compiled:
        assert r["shared"] <= SHARED_LIMIT_BYTES, r
        assert r["registers"] * 32 * r["num_warps"] <= 64 * 1024, r


def test_committed_resource_table_is_what_this_compile_measures(compiled):
    """kernels/RESOURCES.md holds a row for every configuration this compile produced, in the
    same order with the same tile sizes; under the Triton version that wrote it, also the same
    registers, shared memory and spills (other versions allocate differently)."""
    import triton

    from scripts.kernel_resources import markdown

    committed = (REPO / "kernels" / "RESOURCES.md").read_text()
    measured = markdown(compiled)
    version = re.search(r"\(Triton ([^)]+)\)", committed).group(1)
    regenerate = "regenerate: python scripts/kernel_resources.py --write kernels/RESOURCES.md"
    if version == triton.__version__:
        assert committed == measured, regenerate
    else:  # the configuration columns only: kernel ... stages, and the example shape
        def configurations(table):
            rows = [line.split("|")[1:-1] for line in table.splitlines() if line.startswith("| ") and "---" not in line]
            return [row[:12] + row[-1:] for row in rows]
        assert configurations(committed) == configurations(measured), regenerate
