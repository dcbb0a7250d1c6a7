"""`python -m bench cpu`: fastrnn's cpp backend against what CPU users would otherwise run.

Competitors, measured interleaved in one run (bench/timing.py):
  torch      torch.nn.LSTM / nn.LSTMCell (oneDNN/MKL kernels inside torch)
  auto       fastrnn.LSTM / LSTMCell with backend "auto": what fastrnn.dispatch routes the call
             to (its route is reported: cpp, onednn, lstm_cell)
  fastrnn    fastrnn.LSTM / LSTMCell, backend "cpp": the kernels' own speed
  reference  fastrnn's plain-PyTorch oracle (a Python loop over time)
Modes: sequence forward without grad, sequence forward+backward (T=100, input size = H),
and one no-grad step (the RL rollout call). Ratios are torch time / fastrnn time, the median
of the ratios within each round (bench/timing.paired_ratio); times are medians.
"""

from __future__ import annotations

import argparse
import contextlib
import json

import torch

import fastrnn
from agent.infra.output_paths import output_dir
from bench import RESULTS
from bench.machine import describe, measured_gemm_gflops
from bench.timing import interleaved_samples, medians, paired_ratio

HIDDEN = (48, 128, 256, 512)
BATCH = (1, 16, 64, 256)
STEPS = 100


def _same_weights(torch_cls, fastrnn_cls, hidden: int, with_reference: bool) -> dict:
    """The competitors as modules of one size holding the same weights."""
    torch.manual_seed(0)
    theirs = torch_cls(hidden, hidden)
    modules = {"torch": theirs, "auto": fastrnn_cls(hidden, hidden), "fastrnn": fastrnn_cls(hidden, hidden, backend="cpp")}
    if with_reference:
        modules["reference"] = fastrnn_cls(hidden, hidden, backend="reference")
    for module in modules.values():
        module.load_state_dict(theirs.state_dict())
    return modules


def _sequence_candidates(hidden: int, batch: int, steps: int, backward: bool, with_reference: bool):
    modules = _same_weights(torch.nn.LSTM, fastrnn.LSTM, hidden, with_reference)
    x = torch.randn(steps, batch, hidden, requires_grad=backward)

    def runner(module):
        if backward:
            def run():
                y, (h, c) = module(x)
                y.sum().backward()
        else:
            def run():
                with torch.no_grad():
                    module(x)
        return run

    return {name: runner(module) for name, module in modules.items()}, modules["auto"]


def sequence_call(hidden: int, batch: int, steps: int = STEPS, backward: bool = True, impl: str = "fastrnn",
                  threads: int | None = None):
    """One competitor's sequence call (I = H) as a callable: scripts/ab.py's MODULE:FUNCTION."""
    if threads:
        torch.set_num_threads(threads)
    return _sequence_candidates(hidden, batch, steps, backward, impl == "reference")[0][impl]


def step_call(hidden: int, batch: int, way: str = "packed", threads: int | None = None):
    """One no-grad step (I = H) as a callable, for scripts/ab.py's MODULE:FUNCTION: "packed"
    (the cpp kernel on its packed weights, the per-call weight check skipped as under
    trust_version_counters), "checked" (the same with the check), or "own_layout" (ATen's
    lstm_cell reading the weights as torch stores them): the measurement behind keeping the
    packed-weight cache (fastrnn/weight_cache.py)."""
    from fastrnn import cpp_backend
    from fastrnn.torch_step import lstm_cell_step

    if way not in ("packed", "checked", "own_layout"):
        raise ValueError(f"way: expected 'packed', 'checked' or 'own_layout', got {way!r}")
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    w_ih, w_hh = torch.randn(4 * hidden, hidden), torch.randn(4 * hidden, hidden)
    b_ih, b_hh = torch.randn(4 * hidden), torch.randn(4 * hidden)
    x, h, c = torch.randn(batch, hidden), torch.randn(batch, hidden), torch.randn(batch, hidden)
    step = lstm_cell_step if way == "own_layout" else cpp_backend._step
    trusted = way == "packed"

    def run():
        with torch.no_grad(), (fastrnn.trust_version_counters() if trusted else contextlib.nullcontext()):
            step(x, h, c, w_ih, w_hh, b_ih, b_hh, None)
    return run


def _step_candidates(hidden: int, batch: int, with_reference: bool):
    cells = _same_weights(torch.nn.LSTMCell, fastrnn.LSTMCell, hidden, with_reference)
    x = torch.randn(batch, hidden)
    state = (torch.randn(batch, hidden), torch.randn(batch, hidden))

    def runner(cell):
        def run():
            with torch.no_grad():
                cell(x, state)
        return run

    return {name: runner(cell) for name, cell in cells.items()}, cells["auto"]


def _flops(mode: str, hidden: int, batch: int, steps: int) -> float:
    """Multiply-adds x 2 of the LSTM's matrix products (input and recurrent, I = H)."""
    forward = 2.0 * batch * 4 * hidden * (hidden + hidden)
    if mode == "step":
        return forward
    forward *= steps
    return 3 * forward if mode == "fwd+bwd" else forward


# Rounds per cell. Where `auto` runs torch's own kernel, the per-round ratios of two timings of
# one kernel spread 0.93x-1.12x over a 7-round grid on the shared 2-core VM (2026-12-07): the
# median of more rounds moves less. The largest cell (fwd+bwd H=512, B=256: about 4.5 s a
# round for the three candidates) makes its 15 rounds within --max-seconds-per-case's 75 s;
# with 20 s it made 4 and read 0.94x, against 1.01x with 15 rounds in the same hour.
ROUNDS = 15


def run(hidden_sizes, batch_sizes, steps, modes, with_reference, max_seconds_per_case, rounds=ROUNDS) -> list[dict]:
    rows = []
    for mode in modes:
        for hidden in hidden_sizes:
            for batch in batch_sizes:
                if mode == "step":
                    candidates, auto = _step_candidates(hidden, batch, with_reference)
                else:
                    candidates, auto = _sequence_candidates(hidden, batch, steps, mode == "fwd+bwd", with_reference)
                samples = interleaved_samples(candidates, rounds=rounds, max_total_seconds=max_seconds_per_case)
                seconds = medians(samples)
                flops = _flops(mode, hidden, batch, steps)
                row = {
                    "mode": mode, "H": hidden, "B": batch, "T": 1 if mode == "step" else steps,
                    "rounds": len(samples["torch"]), "seconds": seconds,
                    "gflops": {name: flops / s / 1e9 for name, s in seconds.items()},
                    # ratios: medians of the per-round ratios (bench/timing.paired_ratio)
                    "torch_over_fastrnn": paired_ratio(samples, "torch", "fastrnn"),
                    "auto_route": auto.last_backend,
                    "torch_over_auto": paired_ratio(samples, "torch", "auto"),
                }
                if "reference" in seconds:
                    row["reference_over_fastrnn"] = paired_ratio(samples, "reference", "fastrnn")
                rows.append(row)
                print(_format_row(row), flush=True)
    return rows


def _format_time(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.1f} us"


def _format_row(row: dict) -> str:
    s = row["seconds"]
    ref = f"| {_format_time(s['reference'])} | {row['reference_over_fastrnn']:.1f}x " if "reference" in s else "| - | - "
    return (f"| {row['mode']} | {row['H']} | {row['B']} | {_format_time(s['torch'])} | {_format_time(s['auto'])} "
            f"| {row['auto_route']} | **{row['torch_over_auto']:.2f}x** | {_format_time(s['fastrnn'])} "
            f"| {row['torch_over_fastrnn']:.2f}x {ref}| {row['gflops']['fastrnn']:.1f} | {row['gflops']['torch']:.1f} |")


TABLE_HEADER = (
    "| mode | H | B | torch | fastrnn auto | auto ran | torch/auto | fastrnn cpp | torch/cpp | reference "
    "| reference/cpp | cpp GFLOP/s | torch GFLOP/s |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def _parse(argv):
    parser = argparse.ArgumentParser(prog="python -m bench cpu", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, nargs="+", default=list(HIDDEN), help="hidden sizes H")
    parser.add_argument("--batch", type=int, nargs="+", default=list(BATCH), help="batch sizes B")
    parser.add_argument("--steps", type=int, default=STEPS, help="sequence length T")
    parser.add_argument("--modes", nargs="+", default=["fwd+bwd", "fwd", "step"], choices=["fwd+bwd", "fwd", "step"])
    parser.add_argument("--no-reference", action="store_true", help="skip the slow reference backend")
    parser.add_argument("--rounds", type=int, default=ROUNDS,
                        help="interleaved rounds per cell, each ratio the median of the per-round ratios")
    parser.add_argument("--max-seconds-per-case", type=float, default=75.0,
                        help="rounds stop once a cell has taken this long (at least two are made)")
    parser.add_argument("--out", type=output_dir, default=RESULTS, help="folder for cpu.json and cpu.md")
    args = parser.parse_args(argv)
    for name in ("hidden", "batch"):
        if any(v < 1 for v in getattr(args, name)):
            parser.error(f"--{name}: expected positive integers, got {getattr(args, name)}")
    if args.steps < 1:
        parser.error(f"--steps: expected a positive integer, got {args.steps}")
    if args.rounds < 2:
        parser.error(f"--rounds: expected an integer >= 2 (a ratio needs two rounds to be a median), got {args.rounds}")
    return args


def main(argv: list[str]) -> int:
    args = _parse(argv)

    machine = describe()
    machine["gemm_gflops_1024"] = measured_gemm_gflops()
    print(f"machine: {machine}")
    print(TABLE_HEADER)
    rows = run(args.hidden, args.batch, args.steps, args.modes, not args.no_reference, args.max_seconds_per_case,
               args.rounds)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cpu.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=1))
    table = "\n".join([TABLE_HEADER] + [_format_row(r) for r in rows])
    (args.out / "cpu.md").write_text(
        f"# `python -m bench cpu` ({machine['date']})\n\n{machine['cpu']}, {machine['cores']} cores, "
        f"torch {machine['torch']} with {machine['torch_threads']} threads, fastrnn ISA {machine['fastrnn_cpu_isa']}; "
        f"torch 1024^3 GEMM: {machine['gemm_gflops_1024']:.0f} GFLOP/s\n\n{table}\n"
    )
    print(f"wrote {args.out / 'cpu.json'} and {args.out / 'cpu.md'}")
    return 0
