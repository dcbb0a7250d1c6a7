"""Observation encoders: trained end to end by the A2C loss, between a task's observation and
the LSTM core (a task opts in through BatchedTask.make_encoder)."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor


class SlotImageEncoder(nn.Module):
    """Observation = [flags, image slot 1, ..., image slot S]: every slot goes through one shared
    MLP (the same weights at every position, so an object means the same wherever it appears),
    the flags pass through. (ours) An MLP, not a convolution: on 8x8 images a throwaway
    prototype learned Harlow as well with the MLP and ran 2.5-3x faster than with a small conv.
    activation: of the features, relu (default) or tanh (signed and bounded in [-1, 1]).
    """

    ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}

    def __init__(self, image_size: int, slots: int, flags: int, hidden: int = 64, features: int = 32,
                 activation: str = "relu"):
        super().__init__()
        self.image_size, self.slots, self.flags = image_size, slots, flags
        self.mlp = nn.Sequential(nn.Linear(image_size, hidden), nn.ReLU(), nn.Linear(hidden, features),
                                 self.ACTIVATIONS[activation]())
        self.out_size = flags + slots * features

    def forward(self, obs: Tensor) -> Tensor:
        flags = obs[..., : self.flags]
        images = obs[..., self.flags :].unflatten(-1, (self.slots, self.image_size))
        return torch.cat([flags, self.mlp(images).flatten(-2)], dim=-1)


class SlotReadout(nn.Module):
    """Per-object policy logits: the action that picks slot k gets q(h) . phi_k, where q(h) is
    a linear map of the LSTM's hidden state and phi_k the encoder's features of the object in
    slot k. (ours) The LSTM still has to learn, within each episode, which object to want (the
    query); the readout only spares it comparing that want with each image through its gates,
    the same comparison at both positions. Added to the linear heads' logits."""

    def __init__(self, hidden_size: int, encoder: SlotImageEncoder, slot_actions: tuple[int, ...], num_actions: int):
        super().__init__()
        # the encoder's layout only (holding the encoder itself would save its weights twice)
        self.flags, self.slots = encoder.flags, encoder.slots
        self.features = (encoder.out_size - encoder.flags) // encoder.slots
        self.query = nn.Linear(hidden_size, self.features)
        # row k of the scatter puts slot k's score on the action that picks it
        scatter = torch.zeros(encoder.slots, num_actions)
        scatter[torch.arange(encoder.slots), torch.tensor(slot_actions)] = 1.0
        self.register_buffer("scatter", scatter, persistent=False)

    def forward(self, hidden: Tensor, core_input: Tensor) -> Tensor:
        slots = core_input[..., self.flags : self.flags + self.slots * self.features]
        slots = slots.unflatten(-1, (self.slots, self.features))
        scores = (slots * self.query(hidden).unsqueeze(-2)).sum(-1)  # (..., slots)
        return scores @ self.scatter
