"""The agent's optimizer: torch.optim's RMSprop or Adam update, applied at once to flat buffers
that gather every parameter of the agent.

Why not torch.optim.RMSprop itself:
- constructing any torch.optim.Optimizer imports torch._dynamo (add_param_group, zero_grad,
  state_dict and load_state_dict are wrapped by torch._disable_dynamo, which imports it on its
  first call): 2.3 s of every `python -m agent train` process, measured with -X importtime,
  where training two_step for 2000 episodes takes 8-9 s;
- its per-parameter update issues about six small ops for each of the agent's tensors, each
  costing microseconds of dispatch at these sizes; on flat buffers a step takes about eight.

The arithmetic is torch's own: torch.optim.rmsprop.rmsprop and torch.optim.adam.adam, the
functional forms that torch.optim.RMSprop and Adam run on CPU tensors (their single-tensor
path), here given one tensor. state_dict() and load_state_dict() use torch.optim's format
(per-parameter state indexed by position, the hyperparameters in one param group), so a
checkpoint written with either optimizer resumes with the other
(tests/agent/test_agent_optimizer.py).

Each step gathers the parameters and their gradients into flat buffers (two cat ops),
updates there, and copies the results back in one foreach op. The copy is in place, so each
parameter's version counter moves as under torch.optim: fastrnn's packed-weight cache trusts
version counters during a rollout (fastrnn.trust_version_counters), and a parameter that
silently aliased the flat buffer (param.data = view) keeps its own counter, which would leave
the rollout stepping on stale weights. Gathering the parameters every step also picks up any
write made between steps (load_state_dict of the model, say).
A parameter without a gradient at a step takes a zero gradient (torch.optim would skip it):
every parameter of the agent receives one each update.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.optim.adam import adam
from torch.optim.rmsprop import rmsprop


class FlatOptimizer:
    """RMSprop (kind "rmsprop": lr, alpha, eps) or Adam (kind "adam": lr, betas, eps) over flat
    buffers. step(), zero_grad(), state_dict() and load_state_dict() as torch.optim's."""

    # Per kind: the hyperparameters (torch.optim's defaults) and the per-parameter state buffers.
    DEFAULTS = {
        "rmsprop": {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "weight_decay": 0, "momentum": 0, "centered": False},
        "adam": {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0, "amsgrad": False},
    }
    BUFFERS = {"rmsprop": ("square_avg",), "adam": ("exp_avg", "exp_avg_sq")}
    # The group entries torch.optim also records; fixed here (single-tensor path, CPU semantics).
    FIXED = {"rmsprop": {"capturable": False, "foreach": None, "maximize": False, "differentiable": False},
             "adam": {"maximize": False, "foreach": None, "capturable": False, "differentiable": False,
                      "fused": None, "decoupled_weight_decay": False}}

    def __init__(self, parameters, kind: str = "rmsprop", **hyper):
        if kind not in self.DEFAULTS:
            raise ValueError(f"kind: expected one of {', '.join(self.DEFAULTS)}, got {kind!r}")
        unknown = set(hyper) - set(self.DEFAULTS[kind])
        if unknown:
            raise ValueError(f"{kind} takes {', '.join(self.DEFAULTS[kind])}; got {', '.join(sorted(unknown))}")
        self.kind = kind
        self.hyper = {**self.DEFAULTS[kind], **hyper}
        for name in ("weight_decay", "momentum", "centered", "amsgrad"):
            if self.hyper.get(name):
                raise ValueError(f"{name}: this optimizer implements only the agent's update, without {name}")
        self.params = list(parameters)
        if not self.params:
            raise ValueError("parameters: expected at least one parameter, got none")
        first = self.params[0]
        if any(p.dtype != first.dtype or p.device != first.device for p in self.params):
            raise ValueError("parameters: expected every parameter on one device with one dtype")
        self.sizes = [p.numel() for p in self.params]
        self.flat = torch.cat([p.detach().reshape(-1) for p in self.params])
        self.flat_views = [view.view_as(p) for view, p in zip(self.flat.split(self.sizes), self.params)]
        self.flat_grad = torch.zeros_like(self.flat)
        self.grad_views = [view.view_as(p) for view, p in zip(self.flat_grad.split(self.sizes), self.params)]
        self._grad_view_of = dict(zip(self.params, self.grad_views))  # take_flat_gradients' answer
        self.step_count = torch.zeros((), dtype=torch.float32)  # torch.optim keeps steps in float32 on the CPU
        self.buffers = {name: torch.zeros_like(self.flat) for name in self.BUFFERS[kind]}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    def take_flat_gradients(self) -> dict:
        """Make each parameter's .grad its view of the flat gradient buffer and return them,
        {parameter: view}: gradients written there are where step() reads them, without the
        gathering (agent/core/learner.py writes them so). A later .grad assignment (an
        all-reduce's, autograd's after zero_grad) takes over as usual."""
        for p, view in zip(self.params, self.grad_views):
            p.grad = view
        return self._grad_view_of

    def _gradients_in_place(self) -> bool:
        return all(p.grad is view for p, view in zip(self.params, self.grad_views))

    @torch.no_grad()
    def clip_grad_norm_(self, max_norm: float) -> None:
        """torch.nn.utils.clip_grad_norm_(parameters, max_norm): every gradient scaled by
        min(1, max_norm / (total norm + 1e-6)); on the flat buffer in three ops where the
        gradients are in place (take_flat_gradients), else torch's own."""
        if not self._gradients_in_place():
            torch.nn.utils.clip_grad_norm_(self.params, max_norm)
            return
        scale = (max_norm / (self.flat_grad.norm() + 1e-6)).clamp_(max=1.0)
        self.flat_grad.mul_(scale)

    @torch.no_grad()
    def step(self) -> None:
        if not self._gradients_in_place():
            grads = [p.grad.reshape(-1) if p.grad is not None else self.flat_grad.new_zeros(n)
                     for p, n in zip(self.params, self.sizes)]
            torch.cat(grads, out=self.flat_grad)
        torch.cat([p.reshape(-1) for p in self.params], out=self.flat)
        h = self.hyper
        if self.kind == "rmsprop":
            rmsprop([self.flat], [self.flat_grad], [self.buffers["square_avg"]], [], [], [self.step_count],
                    foreach=False, lr=h["lr"], alpha=h["alpha"], eps=h["eps"], weight_decay=0, momentum=0,
                    centered=False)
        else:
            beta1, beta2 = h["betas"]
            adam([self.flat], [self.flat_grad], [self.buffers["exp_avg"]], [self.buffers["exp_avg_sq"]], [],
                 [self.step_count], foreach=False, amsgrad=False, beta1=beta1, beta2=beta2, lr=h["lr"],
                 weight_decay=0, eps=h["eps"], maximize=False)
        torch._foreach_copy_(self.params, self.flat_views)  # one op; bumps each version counter

    @torch.no_grad()
    def finite_after_step(self) -> tuple[bool, bool]:
        """(every gradient value of the last step was finite, every parameter it produced is
        finite): one reduction over each flat buffer and one sync, where a check per parameter
        tensor would cost a reduction and a sync each. The largest magnitude is finite exactly
        when every value is (amax propagates NaN); on the CPU it costs about a sixth of
        torch.isfinite(x).all(), which runs several elementwise ops. Measured for two_step's 11k
        parameters: 50-80 us, against an update of about 18 ms."""
        gradient_peak, parameter_peak = torch.stack([self.flat_grad.abs().amax(), self.flat.abs().amax()]).tolist()
        return math.isfinite(gradient_peak), math.isfinite(parameter_peak)

    def state_dict(self) -> dict:
        """torch.optim's format: per-parameter state by position, one param group."""
        state = {}
        if self.step_count.item() > 0:  # torch.optim creates state at the first step
            views = {name: buf.split(self.sizes) for name, buf in self.buffers.items()}
            for i, p in enumerate(self.params):
                state[i] = {"step": self.step_count.clone(),
                            **{name: views[name][i].view_as(p).clone() for name in self.buffers}}
        group = {**self.hyper, **self.FIXED[self.kind], "params": list(range(len(self.params)))}
        return {"state": state, "param_groups": [group]}

    def load_state_dict(self, state_dict: dict) -> None:
        groups = state_dict["param_groups"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(self.params):
            raise ValueError(f"optimizer state: expected one param group of {len(self.params)} parameters, got "
                             f"{[len(g['params']) for g in groups]}")
        group = groups[0]
        missing = [name for name in self.DEFAULTS[self.kind] if name not in group]
        if missing:
            raise ValueError(f"optimizer state: not a {self.kind} state (no {', '.join(missing)})")
        hyper = {name: group[name] for name in self.DEFAULTS[self.kind]}
        for name in ("weight_decay", "momentum", "centered", "amsgrad"):
            if hyper.get(name):
                raise ValueError(f"optimizer state: uses {name}, which this optimizer does not implement")
        state = state_dict["state"]
        with torch.no_grad():
            if not state:
                self.step_count.zero_()
                for buf in self.buffers.values():
                    buf.zero_()
            else:
                for name, buf in self.buffers.items():
                    for view, index in zip(buf.split(self.sizes), group["params"]):
                        view.copy_(state[index][name].reshape(-1))
                self.step_count.fill_(float(state[group["params"][0]]["step"]))
        self.hyper = {**hyper, "betas": tuple(hyper["betas"])} if self.kind == "adam" else hyper
