"""The learning pass from the rollout's own activations, without autograd.

A2C's learning pass runs on the weights that collected the unroll (the optimizer steps after
it), so the recurrence it would replay in sequence mode is the one the rollout already ran.
Where the rollout's fused steps saved their activations (fastrnn.rl.rollout_plan with
save_for_backward=True: the fast core on the cpp backend), the pass takes them instead of a
second forward, and computes every gradient directly, in a fixed handful of calls:

    head outputs     = h W_heads^T + b_heads                        one GEMM over the T * B rows
    loss, d outputs  = fastrnn.rl.actor_critic_loss                 one native call (closed form)
    heads' gradients = d outputs^T h, column sums; d h = d outputs W_heads
    core's gradients = plan.backward(d h)                           the backward kernel, three products

The gradients land in the optimizer's flat gradient buffer (FlatOptimizer.take_flat_gradients),
which its step then reads without gathering them. The autograd pass (Trainer.compute_loss)
stays for every other agent: an encoder's or a readout's gradients, the reference core, torch.nn.LSTM,
and the verify command, which checks that both passes give one gradient (tests/agent/test_learner.py).
"""

from __future__ import annotations

import torch
from torch import Tensor

from fastrnn import rl
from fastrnn.rl.actor_critic import ActorCriticLoss

from agent.core.model import MetaRLAgent
from agent.infra.timing import PhaseTimer


def learns_from_rollout(agent: MetaRLAgent) -> bool:
    """Whether the agent's parameters are the core's one layer and the linear heads alone, the
    ones this pass differentiates (an encoder or a readout needs autograd)."""
    core = agent.core
    expected = {core.weight_ih_l0, core.weight_hh_l0, agent.heads.weight, agent.heads.bias}
    if core.bias:
        expected |= {core.bias_ih_l0, core.bias_hh_l0}
    return (agent.encoder is None and agent.readout is None and core.num_layers == 1 and not core.proj_size
            and {id(p) for p in agent.parameters()} == {id(p) for p in expected})


def learn_from_rollout(agent: MetaRLAgent, plan, actions: Tensor, returns: Tensor, value_coef: float,
                       entropy_coef: float, policy_mask: Tensor | None, value_mask: Tensor | None,
                       grads: dict, timer: PhaseTimer) -> ActorCriticLoss:
    """Write the A2C loss's gradient of every parameter into grads[parameter] and return the
    loss (agent.core.a2c.a2c_loss's, as Python floats). plan: the unroll's, saving for backward;
    actions, returns, masks (T, B) as a2c_loss takes them. Phases "learn forward" (the heads and
    the loss) and "learn backward" (the gradients)."""
    hidden = plan.saved.hidden
    steps, batch, size = hidden.shape
    rows = hidden.view(steps * batch, size)
    weight, bias = agent.heads.weight.detach(), agent.heads.bias.detach()
    with timer.phase("learn forward"):
        head_out = torch.addmm(bias, rows, weight.t()).view(steps, batch, -1)
        loss, grad_out = rl.actor_critic_loss(head_out, actions, returns, agent.num_actions, value_coef,
                                              entropy_coef, policy_mask, value_mask)
    with timer.phase("learn backward"):
        grad_rows = grad_out.view(steps * batch, -1)
        torch.mm(grad_rows.t(), rows, out=grads[agent.heads.weight])
        torch.sum(grad_rows, 0, out=grads[agent.heads.bias])
        grad_hidden = torch.mm(grad_rows, weight).view(steps, batch, size)
        core = agent.core
        biases = (grads[core.bias_ih_l0], grads[core.bias_hh_l0]) if core.bias else (None, None)
        plan.backward(grad_hidden, grads=(grads[core.weight_ih_l0], grads[core.weight_hh_l0], *biases))
    return loss
