"""Runs two LSTM modules with equal weights on equal inputs and compares everything."""

from __future__ import annotations

import torch

from lstm_cases import leaves, outputs_of


def run_with_grads(module, x, hx, upstream_seed: int):
    """Outputs of module(x, hx) and the gradients of a random projection of them with respect
    to the inputs, hx and every parameter (in named_parameters order)."""
    x, hx, inputs = leaves(x, hx)
    outputs = outputs_of(module(x, hx) if hx is not None else module(x))
    generator = torch.Generator().manual_seed(upstream_seed)
    loss = sum((out * torch.randn(out.shape, dtype=out.dtype, generator=generator)).sum() for out in outputs)
    params = [p for _, p in module.named_parameters()]
    grads = torch.autograd.grad(loss, inputs + params)
    return [o.detach() for o in outputs], list(grads)


def assert_same_run(expected_module, actual_module, x, hx, tolerance: dict, upstream_seed: int = 0):
    expected_out, expected_grads = run_with_grads(expected_module, x, hx, upstream_seed)
    actual_out, actual_grads = run_with_grads(actual_module, x, hx, upstream_seed)
    for name, exp, act in zip(["output", "h_n", "c_n"], expected_out, actual_out):
        torch.testing.assert_close(act, exp, **tolerance, msg=lambda m: f"{name}: {m}")
    names = ["input"] + (["h0", "c0"] if hx is not None else []) + [n for n, _ in expected_module.named_parameters()]
    for name, exp, act in zip(names, expected_grads, actual_grads):
        torch.testing.assert_close(act, exp, **tolerance, msg=lambda m: f"grad of {name}: {m}")


def assert_gradients_as_accurate_as_torch(ours, x, factor: float, floor: float):
    """Each parameter gradient of ours(x) (y.sum() + c_n.sum()) is at most factor x torch's own
    error in x's dtype plus floor, both errors measured against torch.nn.LSTM in float64 on the
    same weights (for inputs whose rounding noise dominates, such as saturated gates)."""
    theirs = torch.nn.LSTM(ours.input_size, ours.hidden_size).to(device=x.device, dtype=x.dtype)
    theirs.load_state_dict(ours.state_dict())
    exact = torch.nn.LSTM(ours.input_size, ours.hidden_size).to(device=x.device, dtype=torch.float64)
    exact.load_state_dict(theirs.state_dict())
    for module, inputs in ((ours, x), (theirs, x), (exact, x.double())):
        y, (_, c) = module(inputs)
        (y.sum() + c.sum()).backward()
    for (name, got), same_dtype, truth in zip(ours.named_parameters(), theirs.parameters(), exact.parameters()):
        our_error = (got.grad.double() - truth.grad).abs().max().item()
        torch_error = (same_dtype.grad.double() - truth.grad).abs().max().item()
        assert our_error <= factor * torch_error + floor, (name, our_error, torch_error)
