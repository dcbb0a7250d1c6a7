"""`python -m bench gpu`: fastrnn's triton backend against cuDNN and the usual alternatives.

Measured per (dtype, H, B), sequence length T (default 100):
  seq_fwd       one layer over T steps, no grad
  seq_fwd_bwd   forward + backward of y.sum() through every parameter and the input
  step          one no-grad step (rollout), eager and replayed from a CUDA graph of 10 steps
Competitors: fastrnn triton, torch.nn.LSTM (cuDNN), an nn.LSTMCell loop, a torch.compile'd
cell loop, and the reference backend. Achieved FLOP rate (recurrent + input GEMMs) and
weight bandwidth are reported against peaks measured on the device at the start.

Designed to finish in about 3 minutes on an H200: CUDA events, warm-up, medians, each
measurement capped in repetitions and time, and a global budget after which the slow
competitors (cell loops, compile, reference) are skipped and recorded as skipped.
Writes gpu.json and gpu.md to the folder --out (default $OUT, else bench/results).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from agent.infra.output_paths import output_dir
from bench import RESULTS

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=output_dir, default=Path(os.environ["OUT"]) if os.environ.get("OUT") else RESULTS,
                        help="folder for gpu.json and gpu.md")
    parser.add_argument("--hidden", type=int, nargs="+", default=[48, 128, 256, 512, 1024])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 16, 256, 4096])
    # bf16 first: it is what GPU users run, and the call may end before fp32 is done.
    parser.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"], choices=sorted(DTYPES))
    parser.add_argument("--steps", type=int, default=100, help="sequence length T")
    parser.add_argument("--input-size", type=int, default=0, help="input features (default: H)")
    parser.add_argument("--budget-s", type=float, default=150.0,
                        help="after this many seconds only triton and cuDNN are measured")
    parser.add_argument("--max-reps", type=int, default=20)
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit (no GPU needed)")
    return parser.parse_args(argv)


def cases(args):
    for dtype in args.dtypes:
        for hidden in args.hidden:
            for batch in args.batch:
                yield dtype, hidden, batch


def time_ms(fn, max_reps: int, max_seconds: float = 0.4) -> float:
    """Median milliseconds of fn() by CUDA events, after a warm-up call."""
    fn()
    torch.cuda.synchronize()
    times = []
    started = time.perf_counter()
    for _ in range(max_reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
        if time.perf_counter() - started > max_seconds and len(times) >= 3:
            break
    return statistics.median(times)


def measure_peaks() -> dict:
    """Device peaks as achieved by large copies and GEMMs (the denominators of every ratio)."""
    n = 1 << 28  # 1 GiB of float32
    src = torch.empty(n, device="cuda")
    dst = torch.empty_like(src)
    copy_ms = time_ms(lambda: dst.copy_(src), 10)
    peaks = {"bandwidth_GBps": 2 * src.numel() * 4 / copy_ms / 1e6}
    del src, dst
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        a = torch.randn(8192, 8192, device="cuda", dtype=dtype)
        b = torch.randn(8192, 8192, device="cuda", dtype=dtype)
        ms = time_ms(lambda: a @ b, 10)
        peaks[f"matmul_{name}_TFLOPs"] = 2 * 8192 ** 3 / ms / 1e9
    return peaks


def flops(kind: str, steps: int, batch: int, hidden: int, inputs: int) -> float:
    forward = 2 * steps * batch * 4 * hidden * (hidden + inputs)
    return forward * (3 if kind == "seq_fwd_bwd" else 1) if kind != "step" else 2 * batch * 4 * hidden * (hidden + inputs)


def _cell_loop(cell, x, h, c):
    outputs = []
    for x_t in x:
        h, c = cell(x_t, (h, c))
        outputs.append(h)
    return torch.stack(outputs), h, c


def build(impl: str, kind: str, dtype, hidden: int, batch: int, steps: int, inputs: int):
    """A zero-argument callable running one measurement of `impl`, or None if not applicable."""
    import fastrnn

    device = "cuda"
    x = torch.randn(steps, batch, inputs, device=device, dtype=dtype)
    h0 = torch.zeros(batch, hidden, device=device, dtype=dtype)
    c0 = torch.zeros_like(h0)
    grad = kind == "seq_fwd_bwd"
    if kind != "step":
        x.requires_grad_(grad)
        if impl in ("triton", "cudnn", "reference"):
            cls = torch.nn.LSTM if impl == "cudnn" else fastrnn.LSTM
            extra = {} if impl == "cudnn" else {"backend": impl}
            model = cls(inputs, hidden, **extra).to(device, dtype)

            def run():
                with torch.set_grad_enabled(grad):
                    y, _ = model(x, (h0[None], c0[None]))
                    if grad:
                        y.sum().backward()
            return run
        cell = torch.nn.LSTMCell(inputs, hidden).to(device, dtype)
        loop = _cell_loop if impl == "cell_loop" else torch.compile(_cell_loop, dynamic=False)

        def run():
            with torch.set_grad_enabled(grad):
                y, _, _ = loop(cell, x, h0, c0)
                if grad:
                    y.sum().backward()
        return run
    # One no-grad step.
    if impl == "cudnn":
        return None  # nn.LSTM has no single-step API beyond T=1 calls; cell_loop covers it
    if impl in ("triton", "reference"):
        cell = fastrnn.LSTMCell(inputs, hidden, backend=impl).to(device, dtype)
    else:
        cell = torch.nn.LSTMCell(inputs, hidden).to(device, dtype)
    if impl == "compiled_cell":
        cell = torch.compile(cell, dynamic=False)
    x_t = x[0]

    def run():
        with torch.no_grad():
            cell(x_t, (h0, c0))
    return run


def graph_of(step_fn, repeats: int = 10):
    """A CUDA graph replaying step_fn `repeats` times, or None if it cannot be captured."""
    try:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            step_fn()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(repeats):
                step_fn()
        return graph
    except Exception:  # noqa: BLE001 - recorded as "not capturable"
        return None


IMPLS = ("triton", "cudnn", "cell_loop", "compiled_cell", "reference")
SLOW_IMPLS = ("cell_loop", "compiled_cell", "reference")
KINDS = ("seq_fwd", "seq_fwd_bwd", "step")
# The first pass measures what the targets are about over every case (triton against cuDNN,
# the step against an nn.LSTMCell step); the second, the slower competitors while budget lasts.
FIRST_PASS = {"seq_fwd": ("triton", "cudnn"), "seq_fwd_bwd": ("triton", "cudnn"), "step": ("triton", "cell_loop")}


def second_pass(kind: str) -> tuple[str, ...]:
    return tuple(impl for impl in IMPLS if impl not in FIRST_PASS[kind])


def run_case(args, started, dtype_name, hidden, batch, peaks, impls_of) -> list[dict]:
    dtype = DTYPES[dtype_name]
    inputs = args.input_size or hidden
    rows = []
    for kind in KINDS:
        for impl in impls_of(kind):
            row = dict(kind=kind, impl=impl, dtype=dtype_name, hidden=hidden, batch=batch,
                       steps=args.steps if kind != "step" else 1)
            over_budget = time.perf_counter() - started > args.budget_s
            # The slow competitors get small shapes only, and nothing once over budget.
            too_big = impl in SLOW_IMPLS and impl not in FIRST_PASS[kind] and (over_budget or (impl == "compiled_cell" and batch * hidden > 256 * 512))
            if too_big:
                row["skipped"] = "time budget" if over_budget else "compile cost: small shapes only"
                rows.append(row)
                continue
            try:
                fn = build(impl, kind, dtype, hidden, batch, args.steps, inputs)
                if fn is None:
                    continue
                reps = args.max_reps if impl not in SLOW_IMPLS else max(3, args.max_reps // 4)
                warm_started = time.perf_counter()
                fn()  # compiles on first use: its time is reported apart from the timed calls
                torch.cuda.synchronize()
                row["first_call_s"] = time.perf_counter() - warm_started
                ms = time_ms(fn, reps)
                row["ms"] = ms
                work = flops(kind, row["steps"], batch, hidden, inputs)
                row["TFLOPs"] = work / ms / 1e9
                peak = peaks.get(f"matmul_{'float32' if dtype == torch.float32 else 'bfloat16'}_TFLOPs")
                if peak:
                    row["flop_fraction"] = row["TFLOPs"] / peak
                weight_bytes = 4 * hidden * (hidden + inputs) * dtype.itemsize * row["steps"]
                row["weight_GBps"] = weight_bytes / ms / 1e6
                if kind == "step":
                    graph = graph_of(fn)
                    if graph is not None:
                        row["graph_ms_per_step"] = time_ms(graph.replay, reps) / 10
                    else:
                        row["graph_ms_per_step"] = None
            except Exception as error:  # noqa: BLE001 - one failing competitor must not stop the run
                row["error"] = f"{type(error).__name__}: {error}"[:300]
            rows.append(row)
    return rows


def _auto_choice(kind: str, dtype: str, hidden: int, batch: int) -> str:
    """What backend="auto" runs for this case (fastrnn/dispatch.py)."""
    if kind == "step":
        return "triton"
    from fastrnn.dispatch import cudnn_is_faster

    return "cudnn" if cudnn_is_faster(DTYPES[dtype], hidden, hidden, batch, torch.device("cuda")) else "triton"


def ratios(rows: list[dict]) -> list[dict]:
    """triton's speedup over each competitor, per (kind, dtype, H, B)."""
    table = {}
    for r in rows:
        table.setdefault((r["kind"], r["dtype"], r["hidden"], r["batch"]), {})[r["impl"]] = r
    out = []
    for (kind, dtype, hidden, batch), impls in sorted(table.items()):
        ours = impls.get("triton", {})
        entry = dict(kind=kind, dtype=dtype, hidden=hidden, batch=batch, triton_ms=ours.get("ms"),
                     auto=_auto_choice(kind, dtype, hidden, batch))
        for impl, r in impls.items():
            if impl != "triton" and ours.get("ms") and r.get("ms"):
                entry[f"vs_{impl}"] = r["ms"] / ours["ms"]
        if kind == "step" and ours.get("graph_ms_per_step") and impls.get("cell_loop", {}).get("ms"):
            entry["graph_vs_cell_eager"] = impls["cell_loop"]["ms"] / ours["graph_ms_per_step"]
        out.append(entry)
    return out


def markdown(meta: dict, rows: list[dict], speedups: list[dict]) -> str:
    def fmt(v, digits=3):
        return "-" if v is None else (f"{v:.{digits}g}" if isinstance(v, float) else str(v))

    lines = [f"# fastrnn GPU benchmark ({meta['date']}, {meta['device']})", "",
             f"torch {meta['torch']}, triton {meta['triton']}, T={meta['steps']}; peaks: "
             + ", ".join(f"{k} {v:.0f}" for k, v in meta["peaks"].items()), "",
             "## triton speedup (competitor time / triton time; > 1 means triton is faster)", "",
             "| kind | dtype | H | B | auto runs | triton ms | vs cuDNN | vs cell loop | vs compiled cell | vs reference | graph step vs cell loop |",
             "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for s in speedups:
        lines.append(f"| {s['kind']} | {s['dtype']} | {s['hidden']} | {s['batch']} | {s['auto']} | {fmt(s['triton_ms'])} | "
                     f"{fmt(s.get('vs_cudnn'))} | {fmt(s.get('vs_cell_loop'))} | {fmt(s.get('vs_compiled_cell'))} | "
                     f"{fmt(s.get('vs_reference'))} | {fmt(s.get('graph_vs_cell_eager'))} |")
    lines += ["", "## every measurement", "",
              "| kind | impl | dtype | H | B | ms | graph ms/step | TFLOP/s | of peak | weight GB/s | note |",
              "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        lines.append(f"| {r['kind']} | {r['impl']} | {r['dtype']} | {r['hidden']} | {r['batch']} | {fmt(r.get('ms'))} | "
                     f"{fmt(r.get('graph_ms_per_step'))} | {fmt(r.get('TFLOPs'))} | {fmt(r.get('flop_fraction'))} | "
                     f"{fmt(r.get('weight_GBps'))} | {r.get('skipped') or r.get('error') or ''} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    plan = list(cases(args))
    if args.dry_run:
        print(f"{len(plan)} cases x (seq_fwd, seq_fwd_bwd, step) x {IMPLS}; T={args.steps}; out={args.out}")
        for case in plan:
            print("  dtype={} H={} B={}".format(*case))
        return 0
    if not torch.cuda.is_available():
        print("bench gpu needs a CUDA device (use --dry-run to see the plan)", file=sys.stderr)
        return 2
    import triton

    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    peaks = measure_peaks()
    meta = dict(date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                device=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__,
                steps=args.steps, peaks=peaks, cudnn_allow_tf32=torch.backends.cudnn.allow_tf32)
    rows = []
    for name, impls_of in (("first", FIRST_PASS.get), ("second", second_pass)):
        for dtype_name, hidden, batch in plan:
            rows += run_case(args, started, dtype_name, hidden, batch, peaks, impls_of)
            print(f"{name} pass: {dtype_name} H={hidden} B={batch} done at {time.perf_counter() - started:.0f}s",
                  flush=True)
            # Intermediate results survive a timeout of the device call.
            (args.out / "gpu.json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))
    speedups = ratios(rows)
    meta["elapsed_s"] = time.perf_counter() - started
    (args.out / "gpu.json").write_text(json.dumps(dict(meta=meta, rows=rows, speedups=speedups), indent=1))
    (args.out / "gpu.md").write_text(markdown(meta, rows, speedups))
    print(markdown(meta, rows, speedups))
    return 0
