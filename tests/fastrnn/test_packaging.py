"""The library as a package: `pip wheel .` from the source tree builds fastrnn with its C++ core
into a wheel that installs into a fresh virtual environment and works there (a smoke test run
by that environment's Python, outside the source tree)."""

import subprocess
import sys
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # starts subprocesses

ROOT = Path(__file__).resolve().parents[2]

SMOKE = """
import torch, fastrnn, fastrnn._C
assert fastrnn.__version__ == "0.1.0", fastrnn.__version__
assert "site-packages" in fastrnn.__file__, fastrnn.__file__  # the installed copy, not the source tree
torch.manual_seed(0)
ours = fastrnn.LSTM(5, 7, batch_first=True)
theirs = torch.nn.LSTM(5, 7, batch_first=True)
theirs.load_state_dict(ours.state_dict())
x = torch.randn(3, 4, 5)
with torch.no_grad():
    a, b = ours(x)[0], theirs(x)[0]
assert ours.last_backend == "cpp", ours.last_backend
assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
print("smoke ok", fastrnn._C.isa())
"""


def test_wheel_installs_into_a_fresh_venv_and_runs_the_cpp_core(tmp_path):
    """A wheel built from the tree installs into a fresh venv and runs the cpp core."""
    wheels = tmp_path / "wheels"
    # Without build isolation the build uses this venv's setuptools and pybind11 (pyproject.toml
    # names them for an isolated build; that only adds fetching them to the same build).
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                            "--quiet", "-w", str(wheels)], capture_output=True, text=True, cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = wheels.glob("fastrnn-0.1.0-*.whl")
    env = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env)  # sees nothing of .venv: torch comes from the install below
    python = env / "bin" / "python"
    # torch (the CPU build pinned in requirements.txt) and numpy, as a user would have them
    torch_pin = next(line for line in (ROOT / "requirements.txt").read_text().splitlines() if line.startswith("torch"))
    installed = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                                str(wheel), torch_pin, "numpy"], capture_output=True, text=True, cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr[-3000:]
    smoke = subprocess.run([str(python), "-c", SMOKE], capture_output=True, text=True, cwd=tmp_path)
    assert smoke.returncode == 0, smoke.stderr[-3000:]
    assert "smoke ok" in smoke.stdout
