"""`python -m agent verify`: the fast core and the reference core must run the same agent.

Per task, two Trainers with the same config and seeds (so the same initial weights, task
episodes and sampler draws) differ only in the core. Each collects one unroll (fused rollout
steps) and computes one A2C loss and its gradients as training does (Trainer.learn: the fast
core from its rollout's saved activations, the reference core by autograd over a sequence-mode
replay, resets at episode boundaries). Episodes are shortened so the unroll crosses several
episode boundaries. Checks, in order, each naming the first step or parameter that differs
beyond tolerance:
  1. rollout: hidden state h, cell state c and sampled action at every step, fast vs reference;
  2. each core's learning pass runs on its own rollout's hidden states (saved, or replayed);
  3. the loss, fast vs reference;
  4. every parameter's gradient, fast vs reference;
  5. every parameter after the optimizer step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

import fastrnn

from agent.core.config import resolve_config
from agent.core.trainer import Trainer
from agent.simulations.registry import get_task_class, task_names

STATE_ATOL = 2e-5  # float32: hidden and cell states are O(1) and pass through ~T steps of rounding
GRAD_RTOL, GRAD_ATOL = 1e-3, 1e-5
LOSS_RTOL, LOSS_ATOL = 1e-4, 1e-6


@dataclass
class VerifyResult:
    task: str
    ok: bool
    message: str
    details: dict = field(default_factory=dict)


def _first_bad_step(a: torch.Tensor, b: torch.Tensor, atol: float):
    """(step, row, max diff) of the first time step where |a - b| > atol, or None."""
    diff = (a - b).abs().reshape(a.shape[0], a.shape[1], -1).amax(dim=2)
    bad = (diff > atol).nonzero()
    if len(bad) == 0:
        return None
    step, row = int(bad[0, 0]), int(bad[0, 1])
    return step, row, float(diff[step, row])


def verify_task(task: str, device: str = "cpu", *, num_envs: int = 4, trials_per_episode: int = 4,
                episodes_in_unroll: float = 3.5, seed: int = 0) -> VerifyResult:
    task_class = get_task_class(task)
    unroll = max(2, int(episodes_in_unroll * trials_per_episode * task_class.steps_per_trial))
    trainers = {}
    for core in ("fast", "reference"):
        config = resolve_config({"task": task, "device": device, "core": core, "num_envs": num_envs,
                                 "unroll": unroll, "seed": seed})
        trainers[core] = Trainer(config, keep_hidden=True, trials_per_episode=trials_per_episode)
    fast, ref = trainers["fast"], trainers["reference"]
    ref.agent.load_state_dict(fast.agent.state_dict())
    for trainer in (fast, ref):
        trainer.collect()
    backend = fast.agent.core.last_backend
    details = {"fast_backend": backend, "reference_backend": ref.agent.core.last_backend,
               "num_envs": num_envs, "unroll": unroll,
               "episode_boundaries": int(fast.buffer.dones.sum())}

    def fail(what: str) -> VerifyResult:
        return VerifyResult(task, False, f"{task}: {what} (fast core ran backend {backend!r})", details)

    if backend == "reference":  # the comparison would hold trivially: the reference against itself
        return fail(f"the fast core resolved to the reference backend on {device!r}, so there is no fused "
                    f"kernel to check (fastrnn.available_backends(): {fastrnn.available_backends()})")

    fb, rb = fast.buffer, ref.buffer
    for t in range(unroll):
        for name, a, b in (("hidden state h", fb.hidden, rb.hidden), ("cell state c", fb.cells, rb.cells)):
            bad = _first_bad_step(a[t : t + 1], b[t : t + 1], STATE_ATOL)
            if bad is not None:
                return fail(f"rollout {name} differs at step {t} (row {bad[1]}): "
                            f"max |fast - reference| = {bad[2]:.3g} > {STATE_ATOL}")
        if not torch.equal(fb.actions[t], rb.actions[t]):
            row = int((fb.actions[t] != rb.actions[t]).nonzero()[0, 0])
            return fail(f"rollout action differs at step {t} (row {row}): "
                        f"fast {int(fb.actions[t, row])}, reference {int(rb.actions[t, row])}")

    losses = {}
    for core, trainer in trainers.items():
        losses[core], hidden = trainer.learn()  # as training runs it: the fast core's from its rollout
        bad = _first_bad_step(hidden.detach(), trainer.buffer.hidden, STATE_ATOL)
        if bad is not None:
            return fail(f"{core} core: learning-pass hidden state differs from its rollout at step {bad[0]} "
                        f"(row {bad[1]}): max diff {bad[2]:.3g} > {STATE_ATOL}")
    for part, a, b in zip(("total", "policy", "value", "entropy"), losses["fast"], losses["reference"]):
        if not math.isclose(a, b, rel_tol=LOSS_RTOL, abs_tol=LOSS_ATOL):
            return fail(f"loss ({part}) differs: fast {a:.8g}, reference {b:.8g}")
    worst = 0.0
    ref_params = dict(ref.agent.named_parameters())
    for name, param in fast.agent.named_parameters():
        a, b = param.grad, ref_params[name].grad
        if not torch.allclose(a, b, rtol=GRAD_RTOL, atol=GRAD_ATOL):
            diff = (a - b).abs()
            return fail(f"gradient of {name} differs: max |fast - reference| = {float(diff.max()):.3g} "
                        f"(max |reference| = {float(b.abs().max()):.3g})")
        worst = max(worst, float((a - b).abs().max()))
    for trainer in (fast, ref):
        trainer.optimizer.step()
    for name, param in fast.agent.named_parameters():
        if not torch.allclose(param, ref_params[name], rtol=GRAD_RTOL, atol=GRAD_ATOL):
            return fail(f"parameter {name} differs after the optimizer step: max |fast - reference| = "
                        f"{float((param - ref_params[name]).abs().max()):.3g}")
    details["max_grad_diff"] = worst
    details["parameters_compared"] = [name for name, _ in fast.agent.named_parameters()]
    details["loss"] = losses["fast"][0]
    trivial = " (fast core resolved to the reference backend: nothing faster installed)" if backend == "reference" else ""
    return VerifyResult(task, True, f"{task}: OK, fast core backend {backend!r}, {num_envs} envs x {unroll} steps, "
                        f"{details['episode_boundaries']} episode ends, max grad diff {worst:.2g}{trivial}", details)


def verify(task: str = "all", device: str = "cpu") -> list[VerifyResult]:
    names = task_names() if task == "all" else [task]
    return [verify_task(name, device) for name in names]
