"""fastrnn.rl: the opt-in reinforcement-learning piece over fastrnn's LSTM.

The LSTM library (fastrnn.LSTM, LSTMCell, the backends and kernels) knows nothing of policies,
actions or rollouts. What an RL agent adds per environment step, the policy and value
readout of the LSTM's output and the action sample, lives here, with its own native call
(csrc/rl_heads.cpp):

    from fastrnn import rl
    actions, head_out, state = rl.rollout_step(lstm, x, state, head_weight, head_addend, num_actions)
    plan = rl.rollout_plan(lstm, inputs, head_weight, head_addends, num_actions, resets)
    state = plan.step(t, state, reset)   # fills plan.actions[t], plan.head_out[t]
    # the learning pass without a second forward: plan made with save_for_backward=True
    loss, grad_heads = rl.actor_critic_loss(head_out, actions, returns, num_actions, value_coef, entropy_coef)
    grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh = plan.backward(grad_hidden)
    # the next step's input row [obs, one-hot action, reward], zeros after obs where reset
    rl.write_next_input(inputs[t + 1], obs, actions, (reward,), num_actions, reset)

`lstm` is a fastrnn.LSTM (fused on the cpp backend) or a torch.nn.LSTM (composed).
"""

from fastrnn.rl.actor_critic import ActorCriticLoss, actor_critic_loss, discounted_returns
from fastrnn.rl.inputs import write_next_input
from fastrnn.rl.plan import RolloutPlan
from fastrnn.rl.step import layer_weights, rollout_plan, rollout_step

__all__ = ["ActorCriticLoss", "RolloutPlan", "actor_critic_loss", "discounted_returns", "layer_weights",
           "rollout_plan", "rollout_step", "write_next_input"]
