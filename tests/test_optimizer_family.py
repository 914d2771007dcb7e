"""The fused optimizer family (firefly.optim.optimizer.FusedOptimizer with
firefly.kernels.optim.update_kernel): what an optimizer's declarations generate (constructor,
param-group checks, state), registration, and a new optimizer written as docs/writing-an-
optimizer.md describes, checked against a float64 NumPy reference."""

import inspect

import numpy as np
import pytest

from firefly import warmup
from firefly.kernels.optim import decayed_gradient
from firefly.nn import Parameter
from firefly.optim import (
    ASGD,
    SGD,
    Adadelta,
    Adagrad,
    Adam,
    Adamax,
    AdamW,
    NAdam,
    RAdam,
    RMSprop,
    Rprop,
)
from firefly.optim.optimizer import Flag, FusedOptimizer, Number, State, fused_optimizers
from firefly.tensor import Tensor


class SignMomentum(FusedOptimizer):
    """``SignMomentum(params, lr=1e-3, beta=0.9, weight_decay=0, *, maximize=False)``: a
    test optimizer in the documented shape. buf = beta buf + (1 - beta) g,
    param -= lr * sign(buf)."""

    hyperparameters = dict(
        lr=Number(1e-3, minimum=0.0),
        beta=Number(0.9, minimum=0.0, below=1.0),
        weight_decay=Number(0.0, minimum=0.0),
        maximize=Flag(False, keyword_only=True),
    )
    state_buffers = (State("momentum_buffer"),)
    coefficients = ("lr", "beta", "one_minus_beta", "weight_decay")
    flags = ("maximize",)
    cost = "memory"

    def fields(self, group, step, split):
        return self.Fields(
            lr=group["lr"],
            beta=group["beta"],
            one_minus_beta=1.0 - group["beta"],
            weight_decay=group["weight_decay"],
            maximize=group["maximize"],
        )

    @staticmethod
    def update(fields, grad, states, start, stop, param):
        (momentum_buffer,) = states
        buffer = momentum_buffer[start:stop]
        lr, beta, one_minus_beta = fields.lr, fields.beta, fields.one_minus_beta
        weight_decay, maximize = fields.weight_decay, fields.maximize
        for i in range(grad.size):
            p = param[i]
            b = beta * buffer[i] + one_minus_beta * decayed_gradient(
                grad[i], p, weight_decay, maximize
            )
            buffer[i] = b
            param[i] = p - lr * ((b > 0) - (b < 0))


def reference(values, grad_steps, lr, beta, weight_decay=0.0, maximize=False):
    params = [v.astype(np.float64) for v in values]
    buffers = [np.zeros_like(p) for p in params]
    for grads in grad_steps:
        for i, g in enumerate(grads):
            g = (-g if maximize else g) + weight_decay * params[i]
            buffers[i] = beta * buffers[i] + (1 - beta) * g
            params[i] = params[i] - lr * np.sign(buffers[i])
    return params, buffers


def test_builtin_optimizers_are_registered():
    registered = fused_optimizers()
    for cls in (
        SGD,
        Adam,
        AdamW,
        RMSprop,
        Adagrad,
        Adamax,
        Adadelta,
        NAdam,
        RAdam,
        Rprop,
        ASGD,
        SignMomentum,
    ):
        assert registered[f"{cls.__module__}.{cls.__qualname__}"] is cls

    class SGD_(SGD):  # a user's subclass, declaring new defaults, registers beside the built-in
        hyperparameters = dict(SGD.hyperparameters, lr=Number(0.5, minimum=0.0))

    assert fused_optimizers()["firefly.optim.sgd.SGD"] is SGD
    assert (
        SGD_(  # the generated constructor of the subclass
            [Parameter(np.zeros(2))]
        ).param_groups[0]["lr"]
        == 0.5
    )


def test_constructor_is_generated_from_the_declaration():
    signature = inspect.signature(SignMomentum)
    assert list(signature.parameters) == ["params", "lr", "beta", "weight_decay", "maximize"]
    assert signature.parameters["maximize"].kind is inspect.Parameter.KEYWORD_ONLY
    assert signature.parameters["beta"].default == 0.9
    # torch's defaults, declared once, also in the signatures help() shows
    assert inspect.signature(AdamW).parameters["weight_decay"].default == 1e-2
    assert inspect.signature(Adam).parameters["weight_decay"].default == 0.0
    p = Parameter(np.zeros(3))
    optimizer = SignMomentum([p], 0.5, 0.8)  # positional, as torch allows
    assert optimizer.param_groups[0]["lr"] == 0.5 and optimizer.param_groups[0]["beta"] == 0.8
    assert list(optimizer.defaults) == ["lr", "beta", "weight_decay", "maximize"]
    with pytest.raises(TypeError, match=r"SignMomentum\(\): .*unexpected keyword.*momentum"):
        SignMomentum([p], momentum=0.9)
    with pytest.raises(TypeError, match=r"SignMomentum\(\): too many positional arguments"):
        SignMomentum([p], 0.1, 0.9, 0.0, True)  # maximize is keyword-only


@pytest.mark.parametrize(
    "options, error, match",
    [
        (dict(lr=-1.0), ValueError, "SignMomentum: invalid lr value -1.0; lr must be a finite"),
        (dict(beta=1.0), ValueError, r"invalid beta value 1.0; it must be in \[0, 1\)"),
        (dict(beta="0.9"), TypeError, "beta must be a number"),
        (dict(maximize=1), TypeError, "maximize must be True or False"),
    ],
)
def test_group_checks_are_generated_from_the_declaration(options, error, match):
    p = Parameter(np.zeros(3))
    with pytest.raises(error, match=match):
        SignMomentum([p], **options)
    optimizer = SignMomentum([Parameter(np.zeros(3))])
    key, value = next(iter(options.items()))
    optimizer.param_groups[0][key] = value
    optimizer.zero_grad()
    with pytest.raises(error, match=match):  # the same message at the next step
        optimizer.step()
    with pytest.raises(ValueError, match="unknown key"):
        SignMomentum([{"params": [p], "momentum": 0.9}])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_new_optimizer_matches_its_reference(dtype):
    rng = np.random.default_rng(0)
    shapes = [(3, 4), (5,), ()]
    values = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grad_steps = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(4)]
    params = [Parameter(v.copy()) for v in values]
    optimizer = SignMomentum(
        [{"params": params[:2], "weight_decay": 0.1}, {"params": params[2:], "maximize": True}],
        lr=0.01,
        beta=0.5,
    )
    for grads in grad_steps:
        optimizer.zero_grad()
        for p, g in zip(params, grads):
            p.grad = Tensor(g)
        optimizer.step()
    expected_first, buffers_first = reference(
        values[:2], [g[:2] for g in grad_steps], 0.01, 0.5, 0.1
    )
    expected_last, buffers_last = reference(
        values[2:], [g[2:] for g in grad_steps], 0.01, 0.5, maximize=True
    )
    tolerance = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=0)
    state = optimizer.state_dict()["state"]
    for i, (p, want, buffer) in enumerate(
        zip(params, expected_first + expected_last, buffers_first + buffers_last)
    ):
        assert p.dtype == dtype
        np.testing.assert_allclose(p.data, want, **tolerance, err_msg=f"parameter {i}")
        np.testing.assert_allclose(state[i]["momentum_buffer"], buffer, **tolerance)
        assert state[i]["step"] == len(grad_steps)


def test_warmup_steps_every_builtin_optimizer_and_no_other(monkeypatch):
    stepped = []
    original = FusedOptimizer.step

    def step(self, *args, **kwargs):
        stepped.append(type(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(FusedOptimizer, "step", step)
    warmup._warm_optimizers(np.dtype(np.float32))
    assert set(stepped) == {
        SGD,
        Adam,
        AdamW,
        RMSprop,
        Adagrad,
        Adamax,
        Adadelta,
        NAdam,
        RAdam,
        Rprop,
        ASGD,
    }


def test_state_with_an_initial_value_exists_from_construction():
    p = Parameter(np.zeros(3))
    optimizer = Adagrad([p], initial_accumulator_value=0.25)
    state = optimizer.state_dict()["state"]
    assert state[0]["step"] == 0
    np.testing.assert_array_equal(state[0]["sum"], np.full(3, 0.25))


def test_sgd_picks_its_kernel_without_momentum_only_when_no_run_has_momentum():
    # Both kernels give torch's SGD; the one without momentum lacks update's momentum loops.
    calls = []

    class Counting(SGD):
        def _kernel_for(self, runs):
            kernel = super()._kernel_for(runs)
            calls.append(kernel is SGD._kernel_without_momentum)
            return kernel

    rng = np.random.default_rng(0)
    start = [rng.normal(size=4), rng.normal(size=3)]
    grads = [rng.normal(size=4), rng.normal(size=3)]
    for momenta, plain in (((0.0, 0.0), True), ((0.0, 0.9), False)):
        params = [Parameter(p.copy()) for p in start]
        opt = Counting([{"params": [p], "momentum": m} for p, m in zip(params, momenta)], lr=0.1)
        values = [p.copy() for p in start]
        buffers = [None, None]
        for _ in range(3):
            for p, g in zip(params, grads):
                p.grad = Tensor(g.copy())
            opt.step()
            for k, (g, m) in enumerate(zip(grads, momenta)):
                step = g
                if m:
                    buffers[k] = g.copy() if buffers[k] is None else m * buffers[k] + g
                    step = buffers[k]
                values[k] = values[k] - 0.1 * step
        assert calls[-1] is plain
        for p, want in zip(params, values):
            np.testing.assert_allclose(p.numpy(), want, rtol=1e-12)
