"""`python -m bench rollout`: one RL rollout step (LSTM step, linear heads, greedy choice on
Gumbel-noised logits) on the CPU, four ways, interleaved in one process:

  plan      fastrnn.rl.rollout_plan(lstm, ...).step: checks, packed weights, buffers bound once
  step      fastrnn.rl.rollout_step(lstm, ...): everything checked and looked up on every call
  composed  fastrnn LSTM one-step forward, then torch.addmm and torch.argmax
  torch     torch.nn.LSTM one-step forward, then torch.addmm and torch.argmax

Every way runs under torch.no_grad() and fastrnn.trust_version_counters(), as the agent's
rollout does, on B rows of an I-wide input with A + 1 head outputs. Ratios are each way's
time over the plan's.
"""

from __future__ import annotations

import argparse
import json

import torch

import fastrnn
from fastrnn import rl
from agent.infra.output_paths import output_file
from bench import RESULTS
from bench.machine import describe
from bench.timing import interleaved_medians

STEPS = 20  # the plan's rollout length (the agent's default unroll)


def _parse(argv):
    parser = argparse.ArgumentParser(prog="python -m bench rollout", description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 32, 256], help="rows B (default: 1 32 256)")
    parser.add_argument("--hidden", type=int, nargs="+", default=[48, 128], help="hidden sizes H (default: 48 128)")
    parser.add_argument("--inputs", type=int, default=6, help="input features (default: 6, two_step's)")
    parser.add_argument("--actions", type=int, default=2, help="actions (default: 2); the heads add a value column")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=output_file, default=RESULTS / "rollout.json")
    args = parser.parse_args(argv)
    for name in ("batch", "hidden"):  # as bench cpu checks its grid
        if min(getattr(args, name)) < 1:
            parser.error(f"--{name}: expected positive integers, got {getattr(args, name)}")
    for name in ("inputs", "actions", "threads", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name}: expected a positive integer, got {getattr(args, name)}")
    return args


def measure_cell(batch: int, hidden: int, inputs: int, actions: int, rounds: int) -> dict:
    """Median µs per step of each way at one size, and their ratios to the plan."""
    torch.manual_seed(0)
    lstm = fastrnn.LSTM(inputs, hidden)
    theirs = torch.nn.LSTM(inputs, hidden)
    theirs.load_state_dict(lstm.state_dict())
    x = torch.randn(STEPS + 1, batch, inputs)
    resets = torch.zeros(STEPS + 1, batch, dtype=torch.bool)
    weight, addends = torch.randn(hidden, actions + 1), torch.randn(STEPS, batch, actions + 1)
    state = (torch.zeros(1, batch, hidden), torch.zeros(1, batch, hidden))

    def composed(module):
        y, _ = module(x[3].unsqueeze(0), state)
        return torch.addmm(addends[3], y[0], weight)[:, :actions].argmax(dim=-1)

    with torch.no_grad(), fastrnn.trust_version_counters():
        plan = rl.rollout_plan(lstm, x, weight, addends, actions, resets)
        ways = {
            "plan": lambda: plan.step(3, state),
            "step": lambda: rl.rollout_step(lstm, x[3], state, weight, addends[3], actions),
            "composed": lambda: composed(lstm),
            "torch": lambda: composed(theirs),
        }
        seconds = interleaved_medians(ways, rounds=rounds)
    micros = {name: value * 1e6 for name, value in seconds.items()}
    return {"batch": batch, "hidden": hidden, "us": micros,
            "vs_plan": {name: micros[name] / micros["plan"] for name in ways if name != "plan"}}


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    torch.set_num_threads(args.threads)
    cells = [measure_cell(b, h, args.inputs, args.actions, args.rounds) for h in args.hidden for b in args.batch]
    print(f"rollout step, {args.inputs} inputs, {args.actions} actions + value, {args.threads} thread(s); "
          "us per step (ratio: way / plan)")
    print(f"{'H':>5} {'B':>5} {'plan':>8} {'step':>16} {'composed':>16} {'torch':>16}")
    for cell in cells:
        us, ratio = cell["us"], cell["vs_plan"]
        others = " ".join(f"{us[name]:8.1f} ({ratio[name]:4.2f}x)" for name in ("step", "composed", "torch"))
        print(f"{cell['hidden']:5d} {cell['batch']:5d} {us['plan']:8.1f} {others}")
    result = {"machine": {**describe(), "threads": args.threads}, "inputs": args.inputs,
              "actions": args.actions, "cells": cells}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0
