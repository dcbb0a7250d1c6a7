"""fastrnn.LSTM and LSTMCell on PyTorch's own module test inputs.

torch ships the inputs its module tests (pytorch's test/test_modules.py) feed nn.LSTM and
nn.LSTMCell: `torch.testing._internal.common_modules.module_db`, 32 LSTM configurations
(two layers; projections, bidirectional, batch_first and bias on and off; with and without
a state) and the LSTMCell ones, all unbatched inputs, plus the error inputs whose messages
torch promises. Here every one of those samples runs through fastrnn's class in place of torch's,
with the checks of that suite that apply on a CPU, stated in our own terms:

- forward: the same outputs as torch's module on the same weights (stronger than the suite's
  own forward test, which has no reference for RNNs), and after .float() / .double(); on every
  backend, the same parameter gradients too;
- factory kwargs: device= and dtype= reach every parameter;
- repr, pickling (torch.save of the whole module), construction under torch.device("meta");
- non-contiguous inputs, state and upstream gradients: same outputs and gradients;
- gradcheck and gradgradcheck in float64 (see CHECKS for how far each sample goes);
- the forward reads `training` only where torch's ModuleInfo says train and eval differ;
- error inputs: the same exception type, matching torch's message.

Train and eval modes both run, as the suite's do, except for the gradient checks (see
CHECKS). The samples are torch's: if a later torch
adds configurations or errors, they are checked here without an edit.
"""

from __future__ import annotations

import io

import pytest
import torch
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

import fastrnn

# Needs expecttest (requirements.txt), which torch's test helpers import.
from torch.testing._internal import common_modules

OURS = {torch.nn.LSTM: fastrnn.LSTM, torch.nn.LSTMCell: fastrnn.LSTMCell}
INFOS = [info for info in common_modules.module_db if info.module_cls in OURS]
MODES = {"train": True, "eval": False}


def _samples(info, dtype, requires_grad, training):
    samples = info.module_inputs_func(info, device="cpu", dtype=dtype, requires_grad=requires_grad,
                                      training=training)
    return [s for s in samples if s.forward_input is not None]


def _build(cls, sample, dtype, training, **options):
    """The sample's module of class cls; options: extra constructor keywords (backend=...)."""
    module = cls(*sample.constructor_input.args, **sample.constructor_input.kwargs, **options).to(dtype)
    return module.train(training)


def _pair(info, sample, dtype, training, **options):
    """(torch's module, ours with the same weights); options: ours' extra constructor keywords."""
    theirs = _build(info.module_cls, sample, dtype, training)
    ours = _build(OURS[info.module_cls], sample, dtype, training, **options)
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


def _run(module, sample):
    return module(*sample.forward_input.args, **sample.forward_input.kwargs)


def _ids(info):
    return info.name


def test_torch_ships_the_lstm_samples():
    # The tests below iterate over torch's samples: an empty list would pass them silently.
    names = {info.name for info in INFOS}
    assert names == {"nn.LSTM", "nn.LSTMCell"}
    for info in INFOS:
        assert len(_samples(info, torch.float64, False, True)) >= 2


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("info", INFOS, ids=_ids)
def test_forward_matches_torch_on_its_samples(info, dtype, mode):
    for sample in _samples(info, dtype, False, MODES[mode]):
        theirs, ours = _pair(info, sample, dtype, MODES[mode])
        torch.testing.assert_close(_run(ours, sample), _run(theirs, sample))
        # The suite then converts by method and runs again: parameters follow the dtype.
        getattr(ours, "float" if dtype == torch.float32 else "double")()
        _run(ours, sample)
        assert all(p.dtype == dtype for p in ours.parameters())


# Every backend a user can name (triton under its interpreter on this CPU; it takes no float64
# and says so, next test): outputs and parameter gradients against torch's.
BACKEND_DTYPES = [("auto", torch.float64), ("cpp", torch.float32), ("reference", torch.float64),
                  ("triton", torch.float32)]


@pytest.mark.parametrize("backend, dtype", BACKEND_DTYPES, ids=[b for b, _ in BACKEND_DTYPES])
@pytest.mark.parametrize("info", INFOS, ids=_ids)
def test_every_backend_matches_torch_outputs_and_gradients_on_its_samples(info, backend, dtype):
    for sample in _samples(info, dtype, True, True):
        theirs, ours = _pair(info, sample, dtype, True, backend=backend)
        outputs = [tree_flatten(_run(module, sample))[0] for module in (ours, theirs)]
        torch.testing.assert_close(outputs[0], outputs[1])
        grads = [torch.autograd.grad(sum(o.sum() for o in out), list(module.parameters()))
                 for out, module in zip(outputs, (ours, theirs))]
        torch.testing.assert_close(grads[0], grads[1])
        assert ours.last_backend == ("cpp" if backend == "auto" else backend)


@pytest.mark.parametrize("info", INFOS, ids=_ids)
def test_triton_refuses_float64_samples_by_name(info):
    for sample in _samples(info, torch.float64, False, True):
        module = _build(OURS[info.module_cls], sample, torch.float64, True, backend="triton")
        with pytest.raises(ValueError, match=r"backend='triton' cannot run torch.float64 tensors on cpu: "
                                             r"the triton backend takes float32, float16 and bfloat16 only"):
            _run(module, sample)


@pytest.mark.parametrize("info", INFOS, ids=_ids)
def test_factory_kwargs_reach_every_parameter(info):
    for sample in _samples(info, torch.float64, False, True):
        module = OURS[info.module_cls](*sample.constructor_input.args, **sample.constructor_input.kwargs,
                                       device="cpu", dtype=torch.float64)  # not _build: no .to() after
        assert [(p.device.type, p.dtype) for p in module.parameters()] == \
            [("cpu", torch.float64)] * len(list(module.parameters()))


@pytest.mark.parametrize("info", INFOS, ids=_ids)
def test_repr_pickle_and_meta_construction_work_on_every_sample(info):
    for sample in _samples(info, torch.float32, False, True):
        theirs, ours = _pair(info, sample, torch.float32, True)
        assert repr(ours) == repr(theirs) and str(ours) == str(theirs)
        out = _run(ours, sample)
        buffer = io.BytesIO()
        torch.save(ours, buffer)
        buffer.seek(0)
        torch.testing.assert_close(_run(torch.load(buffer, weights_only=False), sample), out)
        with torch.device("meta"):
            meta = OURS[info.module_cls](*sample.constructor_input.args, **sample.constructor_input.kwargs)
        for p_meta, p_cpu in zip(meta.parameters(), ours.parameters(), strict=True):
            assert p_meta.is_meta and p_meta.shape == p_cpu.shape and p_meta.dtype == p_cpu.dtype


def _non_contiguous(tensor):
    # The suite's construction: every element twice along the last dim, then every other one.
    if not isinstance(tensor, torch.Tensor) or tensor.dim() == 0:
        return tensor
    out = torch.repeat_interleave(tensor, 2, dim=-1)[..., ::2].detach()
    return out.requires_grad_(tensor.requires_grad)


def _gradients(module, args, grad_outputs):
    outputs = tree_flatten(module(*args))[0]
    pairs = [(o, g) for o, g in zip(outputs, grad_outputs) if o.requires_grad]
    wanted = [t for t in tree_flatten(args)[0] if isinstance(t, torch.Tensor) and t.requires_grad]
    wanted += list(module.parameters())
    grads = torch.autograd.grad([o for o, _ in pairs], wanted, [g for _, g in pairs], allow_unused=True)
    return outputs, grads


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("info", INFOS, ids=_ids)
def test_non_contiguous_inputs_give_the_same_outputs_and_gradients(info, mode):
    generator = torch.Generator().manual_seed(0)
    for sample in _samples(info, torch.float64, True, MODES[mode]):
        module = _build(OURS[info.module_cls], sample, torch.float64, MODES[mode])
        args = sample.forward_input.args
        outputs = tree_flatten(module(*args))[0]
        grad_outputs = [torch.randn(o.shape, generator=generator, dtype=o.dtype) for o in outputs]
        expected = _gradients(module, args, grad_outputs)
        assert any(not t.is_contiguous() for t in tree_flatten(tree_map(_non_contiguous, args))[0]
                   if isinstance(t, torch.Tensor))
        for in_args, g_out in ((tree_map(_non_contiguous, args), grad_outputs),
                               (args, [_non_contiguous(g) for g in grad_outputs]),
                               (tree_map(_non_contiguous, args), [_non_contiguous(g) for g in grad_outputs])):
            got = _gradients(module, in_args, g_out)
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def _check_gradients(check, module, args, partials: bool = True):
    """The suite's helper: check over the inputs and all parameters, then (partials) each
    parameter alone."""
    params = tuple(module.parameters())
    flat, spec = tree_flatten(tuple(args) + params)

    def fn(*flat_inputs):
        rebuilt = tree_unflatten(list(flat_inputs), spec)
        return tuple(tree_flatten(module(*rebuilt[: len(args)]))[0])

    assert check(fn, tuple(flat))
    if not partials:
        return
    for p in params:
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
        assert check(fn, tuple(flat))
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)


# Gradient checks in train mode only (without dropout the modes run the same forward, which
# the tests above compare to torch in both). Full numerical Jacobians of every sample with each
# parameter alone, as the suite runs them, cost over 4 minutes here (gradgradcheck 4-5 s per
# LSTM sample), so: every sample in fast mode (random projections of the Jacobian, which PyTorch's
# own CI uses for its slow checks), with the suite's partial derivatives for gradcheck; the
# richest sample of each module with full Jacobians.
def _fast(check, partials):
    return lambda module, args: _check_gradients(lambda fn, inputs: check(fn, inputs, fast_mode=True), module, args,
                                                 partials)


CHECKS = {"gradcheck-fast": _fast(torch.autograd.gradcheck, partials=True),
          "gradgradcheck-fast": _fast(torch.autograd.gradgradcheck, partials=False)}


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("info", INFOS, ids=_ids)
def test_gradients_pass_gradcheck_and_gradgradcheck_on_every_sample(info, check):
    for sample in _samples(info, torch.float64, True, True):
        CHECKS[check](_build(OURS[info.module_cls], sample, torch.float64, True), sample.forward_input.args)


def _richest(samples):
    """The sample with the most options on (projection, both directions, bias, a given state)."""
    def score(sample):
        kwargs = sample.constructor_input.kwargs
        return (kwargs.get("proj_size", 0) > 0, kwargs.get("bidirectional", False), kwargs.get("bias", True),
                len(sample.forward_input.args))
    return max(samples, key=score)


@pytest.mark.parametrize("check", ["gradcheck", "gradgradcheck"])
@pytest.mark.parametrize("info", INFOS, ids=_ids)
def test_full_jacobians_on_the_richest_sample(info, check):
    sample = _richest(_samples(info, torch.float64, True, True))
    module = _build(OURS[info.module_cls], sample, torch.float64, True)
    _check_gradients(getattr(torch.autograd, check), module, sample.forward_input.args, partials=check == "gradcheck")


@pytest.mark.parametrize("info", [info for info in INFOS if not info.train_and_eval_differ], ids=_ids)
def test_forward_ignores_training_where_torch_says_modes_agree(info):
    """Forward does not read training where torch says the modes do not differ."""
    # The suite's check of ModuleInfo.train_and_eval_differ: False for nn.LSTMCell (nn.LSTM's
    # dropout makes it True there, so its forward may read `training`).
    for sample in _samples(info, torch.float32, False, True):
        module = _build(OURS[info.module_cls], sample, torch.float32, True)
        del module.training
        _run(module, sample)


@pytest.mark.parametrize("info", INFOS, ids=_ids)
def test_error_inputs_raise_torchs_error(info):
    errors = info.module_error_inputs_func(info, device="cpu", dtype=torch.float32, requires_grad=False,
                                           training=True)
    assert errors
    for error in errors:
        sample = error.module_error_input
        args, kwargs = sample.constructor_input.args, sample.constructor_input.kwargs
        if error.error_on == common_modules.ModuleErrorEnum.CONSTRUCTION_ERROR:
            with pytest.raises(error.error_type, match=error.error_regex):
                OURS[info.module_cls](*args, **kwargs)
        else:
            module = OURS[info.module_cls](*args, **kwargs)
            with pytest.raises(error.error_type, match=error.error_regex):
                _run(module, sample)
