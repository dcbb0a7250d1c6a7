"""Interleaved A/B timing of two variants, A B, B A, A B, ... (the order alternates every
repetition, so drift on a shared machine hits both alike): each side's median, min and max,
the ratio of the medians B/A and the per-pair ratios' median, min and max; --json writes them.

A variant is a command, run in a process of its own per repetition and measured by its wall
time or, with --metric REGEX, by the number REGEX's group 1 finds in its output (last match).
--a-cwd/--b-cwd run it in a checkout or worktree; `env NAME=VALUE ...` gives it environment
settings; "{tmp}" in a word is a fresh empty folder per run. Or a variant is MODULE:FUNCTION,
imported in this process from the current directory and called with --kwargs (JSON,
updated by --a-kwargs/--b-kwargs): if that returns a callable, the callable is timed, else the
function is (seconds per call, samples of about --sample-seconds); --a-set/--b-set
MODULE.NAME=JSON set an attribute before each of that side's samples. --a and --b come last:
A's words run up to the first --b, B's to the end.

  python scripts/ab.py -n 10 --a-cwd /tmp/before --b-cwd . --metric 'fast +\\(.*\\) +([0-9.]+) env steps/s' \\
      --a python -m bench agent --cores fast --updates 50 --repeats 1 --ranks none --out {tmp}/r.json \\
      --b python -m bench agent --cores fast --updates 50 --repeats 1 --ranks none --out {tmp}/r.json
  python scripts/ab.py -n 9 --kwargs '{"hidden": 16, "batch": 4, "steps": 5, "threads": 1}' \\
      --a-set fastrnn.layers.WORKSPACE_MIN_BYTES=0 --b-set fastrnn.layers.WORKSPACE_MIN_BYTES=1048576 \\
      --a bench.cpu:sequence_call --b bench.cpu:sequence_call
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CALL = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


def checked(convert, what: str):
    def parse(text: str):
        try:
            return convert(text)
        except (ValueError, re.error) as error:
            raise argparse.ArgumentTypeError(f"{what}: {text!r} ({error})") from None
    return parse


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line naming the argument, exit status 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = Parser(prog="scripts/ab.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--repeats", type=int, default=5, help="measured runs of each side (default 5)")
    parser.add_argument("--warmup", type=int, default=0, help="unmeasured runs of each side first")
    parser.add_argument("--json", type=Path, help="write the samples and statistics here")
    parser.add_argument("--metric", type=checked(re.compile, "bad regular expression"),
                        help="commands: measure group 1, not wall time")
    parser.add_argument("--kwargs", type=checked(json.loads, "not JSON"), default={},
                        help="MODULE:FUNCTION's keyword arguments")
    parser.add_argument("--sample-seconds", type=float, default=0.05, help="MODULE:FUNCTION: one sample's length")
    for side in "ab":
        parser.add_argument(f"--{side}-cwd", type=Path, help=f"commands: run {side.upper()} in this folder")
        parser.add_argument(f"--{side}-set", action="append", default=[], metavar="MODULE.NAME=JSON")
        parser.add_argument(f"--{side}-kwargs", type=checked(json.loads, "not JSON"), default={})
        parser.add_argument(f"--{side}", nargs="+", metavar="WORD", help="a command or MODULE:FUNCTION")
    cut = argv.index("--a") if "--a" in argv else len(argv)  # A's and B's words are not argparse's
    args = parser.parse_args(argv[:cut])
    if "--b" not in argv[cut:]:
        parser.error("argument --a/--b: both are required, last: --a A's words --b B's words")
    split = argv.index("--b", cut)
    args.a, args.b = argv[cut + 1:split], argv[split + 1:]
    args.calls = len(args.a) == 1 and CALL.fullmatch(args.a[0]) is not None
    for side in "ab":
        words, cwd, settings = getattr(args, side), getattr(args, f"{side}_cwd"), getattr(args, f"{side}_set")
        if not words or (len(words) == 1 and CALL.fullmatch(words[0]) is not None) != args.calls:
            parser.error(f"argument --{side}: expected a command or MODULE:FUNCTION, as for the other side")
        if not args.calls and shutil.which(words[0]) is None:
            parser.error(f"argument --{side}: no such command: {words[0]}")
        if cwd is not None and (args.calls or not cwd.is_dir()):
            parser.error(f"argument --{side}-cwd: not a folder, or given with MODULE:FUNCTION: {cwd}")
        for i, item in enumerate(settings):
            target, _, value = item.partition("=")
            module, _, name = target.rpartition(".")
            try:
                settings[i] = (module, name, json.loads(value))
            except ValueError:
                module = ""
            if not args.calls or not module:
                parser.error(f"argument --{side}-set: expected MODULE.NAME=JSON, with MODULE:FUNCTION: {item!r}")
    if args.repeats < 1 or args.warmup < 0:
        parser.error("argument -n/--repeats: must be >= 1 (and --warmup >= 0)")
    if args.metric is not None and (args.calls or args.metric.groups < 1):
        parser.error("argument --metric: needs a group, (...), and commands")
    for name in ("kwargs", "a_kwargs", "b_kwargs"):
        if not isinstance(getattr(args, name), dict) or (getattr(args, name) and not args.calls):
            parser.error(f"argument --{name.replace('_', '-')}: expected a JSON object, with MODULE:FUNCTION")
    return args


def command_runner(args: argparse.Namespace, side: str):
    words, cwd = getattr(args, side), getattr(args, f"{side}_cwd")

    def run() -> float:
        with tempfile.TemporaryDirectory(prefix="ab-") as tmp:
            start = time.perf_counter()
            done = subprocess.run([w.replace("{tmp}", tmp) for w in words], cwd=cwd, capture_output=True, text=True)
            seconds = time.perf_counter() - start
        output = done.stdout + done.stderr
        found = [m.group(1) for m in args.metric.finditer(output)] if args.metric else [seconds]
        if done.returncode or not found:
            raise RuntimeError(f"{side.upper()} exited with {done.returncode}"
                               f"{'' if found else ', --metric found nothing'}: {' '.join(words)}\n{output[-2000:]}")
        return float(str(found[-1]).replace(",", ""))
    return run


def call_runner(args: argparse.Namespace, side: str):
    def apply() -> None:
        for module, name, value in getattr(args, f"{side}_set"):
            setattr(importlib.import_module(module), name, value)
    module, name = getattr(args, side)[0].split(":")
    apply()
    function = getattr(importlib.import_module(module), name)
    kwargs = {**args.kwargs, **getattr(args, f"{side}_kwargs")}
    made = function(**kwargs)
    fn = made if callable(made) else (lambda: function(**kwargs))
    start = time.perf_counter()
    fn()  # warm-up, and how many calls make a sample
    calls = max(1, int(args.sample_seconds / max(time.perf_counter() - start, 1e-7)))

    def run() -> float:
        apply()
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - start) / calls
    return run


def label(args: argparse.Namespace, side: str) -> str:
    cwd, kwargs = getattr(args, f"{side}_cwd"), getattr(args, f"{side}_kwargs")
    extra = [f"{module}.{name}={json.dumps(value)}" for module, name, value in getattr(args, f"{side}_set")]
    return " ".join(getattr(args, side) + extra + [json.dumps(kwargs)] * bool(kwargs) + [f"(in {cwd})"] * bool(cwd))


def stats(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main(argv: list[str]) -> int:
    args = parse(argv)
    if args.calls:
        sys.path.insert(0, os.getcwd())  # as `python -m` imports: bench, fastrnn from here
    samples: dict[str, list[float]] = {"a": [], "b": []}
    try:
        runners = {side: (call_runner if args.calls else command_runner)(args, side) for side in "ab"}
        for i in range(args.warmup + args.repeats):
            for side in ("a", "b") if i % 2 == 0 else ("b", "a"):
                value = runners[side]()
                if i >= args.warmup:
                    samples[side].append(value)
    except (RuntimeError, ImportError, AttributeError, TypeError, ValueError) as error:
        print(f"scripts/ab.py: error: {error}", file=sys.stderr)
        return 1
    unit = "seconds per call" if args.calls else "--metric value" if args.metric else "seconds per run (wall)"
    pairs = [b / a for a, b in zip(samples["a"], samples["b"])]
    result = {"unit": unit, "repeats": args.repeats,
              **{side: {"variant": label(args, side), **stats(samples[side]), "samples": samples[side]}
                 for side in "ab"},
              "b_over_a": statistics.median(samples["b"]) / statistics.median(samples["a"]),
              "pair_ratios": {**stats(pairs), "all": pairs}}
    print(f"{unit}, {args.repeats} runs each, order alternating\n   {'median':>11s} {'min':>11s} {'max':>11s}")
    for side in "ab":
        r = result[side]
        print(f"{side.upper()}  {r['median']:11.5g} {r['min']:11.5g} {r['max']:11.5g}  {r['variant']}")
    p = result["pair_ratios"]
    print(f"B/A {result['b_over_a']:.3f} (medians); per pair: median {p['median']:.3f}, "
          f"min {p['min']:.3f}, max {p['max']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
