"""scripts/ab.py, the A/B harness: its output's structure and its refusals (never its speed)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def ab(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/ab.py", *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_two_commands_interleaved_give_each_sides_statistics_and_the_ratio(tmp_path):
    out = tmp_path / "ab.json"
    done = ab("-n", "2", "--json", str(out), "--a", sys.executable, "-c", "pass",
              "--b", sys.executable, "-c", "import time; time.sleep(0.05)")
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["unit"] == "seconds per run (wall)" and result["repeats"] == 2
    for side, code in (("a", "pass"), ("b", "import time; time.sleep(0.05)")):
        r = result[side]
        assert r["variant"] == f"{sys.executable} -c {code}"
        assert len(r["samples"]) == 2 and r["min"] <= r["median"] <= r["max"]
        assert all(s > 0 for s in r["samples"])
    assert result["b_over_a"] == result["b"]["median"] / result["a"]["median"]
    pairs = result["pair_ratios"]
    assert pairs["all"] == [b / a for a, b in zip(result["a"]["samples"], result["b"]["samples"])]
    lines = done.stdout.splitlines()
    assert lines[2].startswith("A ") and lines[3].startswith("B ") and lines[4].startswith("B/A ")


def test_a_metric_from_the_output_and_functions_called_in_process(tmp_path):
    done = ab("-n", "2", "--metric", r"rate ([0-9.,]+)", "--a", "echo", "rate 1,000", "--b", "echo", "rate 2500")
    assert done.returncode == 0, done.stderr
    assert "B/A 2.500" in done.stdout
    out = tmp_path / "ab.json"
    done = ab("-n", "2", "--json", str(out), "--sample-seconds", "0.001", "--kwargs", '{"obj": [1, 2]}',
              "--b-set", "json.SENTINEL=1", "--b-kwargs", '{"indent": 1}', "--a", "json:dumps", "--b", "json:dumps")
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["unit"] == "seconds per call" and len(result["a"]["samples"]) == len(result["b"]["samples"]) == 2
    assert result["a"]["variant"] == "json:dumps"
    assert result["b"]["variant"] == 'json:dumps json.SENTINEL=1 {"indent": 1}'


@pytest.mark.parametrize("argv, named", [
    (["-n", "0", "--a", "true", "--b", "true"], "-n/--repeats"),
    (["--a", "true"], "--a/--b"),
    (["--a", "true", "--b"], "--b"),
    (["--a", "no-such-command-xyz", "--b", "true"], "--a"),
    (["--a", "true", "--b", "json:dumps"], "--b"),
    (["--metric", "(", "--a", "true", "--b", "true"], "--metric"),
    (["--metric", "no group", "--a", "true", "--b", "true"], "--metric"),
    (["--kwargs", "[1]", "--a", "json:dumps", "--b", "json:dumps"], "--kwargs"),
    (["--b-kwargs", "{}x", "--a", "json:dumps", "--b", "json:dumps"], "--b-kwargs"),
    (["--a-kwargs", '{"x": 1}', "--a", "true", "--b", "true"], "--a-kwargs"),
    (["--a-set", "json.X=not json", "--a", "json:dumps", "--b", "json:dumps"], "--a-set"),
    (["--b-cwd", "/no/such/folder", "--a", "true", "--b", "true"], "--b-cwd"),
])
def test_bad_arguments_get_one_line_naming_the_argument_and_exit_status_2(argv, named):
    done = ab(*argv)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("scripts/ab.py: error: argument ") and named in lines[0], lines


def test_a_failing_run_stops_the_harness_with_its_output():
    done = ab("-n", "1", "--a", sys.executable, "-c", "print('boom'); raise SystemExit(3)", "--b", "true")
    assert done.returncode == 1
    assert "A exited with 3" in done.stderr and "boom" in done.stderr
