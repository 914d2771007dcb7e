"""Optimizers: trajectories against a float64 NumPy reference of PyTorch's documented algorithms
(and against torch.optim when installed), the flat-buffer mechanics, state_dict and resume,
argument checking, and the seed's user-written optimizer."""

import itertools
import math

import numpy as np
import pytest

import firefly
from firefly.nn import Linear, Module, MSELoss, Parameter
from firefly.nn.optimizers import SGD, Adagrad, Adam, AdamW, BaseOptimizer, RMSprop
from firefly.tensor import Tensor

try:
    import torch
except ImportError:  # torch is an optional oracle
    torch = None

needs_torch = pytest.mark.skipif(
    torch is None, reason="needs torch as the oracle: pip install torch==2.13.0"
)

SHAPES = [(3, 4), (4,), (), (2, 3, 2)]
STEPS = 6
RTOL = 1e-10  # the bar for float64 trajectories against the reference


# ----------------------------------------------------------------------------- references
def reference_sgd(
    params,
    grad_steps,
    lr,
    momentum=0.0,
    dampening=0.0,
    weight_decay=0.0,
    nesterov=False,
    maximize=False,
):
    """torch.optim.SGD's algorithm in float64. ``maximize`` negates the gradient before weight
    decay, as PyTorch's implementation does."""
    params = [p.astype(np.float64) for p in params]
    buffers = [None] * len(params)
    trajectory = []
    for grads in grad_steps:
        for i, (p, g) in enumerate(zip(params, grads)):
            g = -g if maximize else g.copy()
            if weight_decay:
                g = g + weight_decay * p
            if momentum:
                buffers[i] = (
                    g.copy() if buffers[i] is None else momentum * buffers[i] + (1 - dampening) * g
                )
                g = g + momentum * buffers[i] if nesterov else buffers[i]
            params[i] = p - lr * g
        trajectory.append([p.copy() for p in params])
    return trajectory, {"momentum_buffer": buffers}


def reference_adam(
    params,
    grad_steps,
    lr=1e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.0,
    amsgrad=False,
    maximize=False,
    decoupled=False,
):
    """torch.optim.Adam's documented algorithm in float64 (AdamW's with ``decoupled``). A
    gradient of None skips that parameter for the step, its step count included."""
    beta1, beta2 = betas
    params = [p.astype(np.float64) for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    v_max = [np.zeros_like(p) for p in params]
    steps = [0] * len(params)
    trajectory = []
    for grads in grad_steps:
        for i, (p, g) in enumerate(zip(params, grads)):
            if g is None:
                continue
            steps[i] += 1
            t = steps[i]
            g = -g if maximize else g
            if decoupled:
                p = p - lr * weight_decay * p
            elif weight_decay:
                g = g + weight_decay * p
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            m_hat = m[i] / (1 - beta1**t)
            if amsgrad:
                v_max[i] = np.maximum(v_max[i], v[i])
                v_hat = v_max[i] / (1 - beta2**t)
            else:
                v_hat = v[i] / (1 - beta2**t)
            params[i] = p - lr * m_hat / (np.sqrt(v_hat) + eps)
        trajectory.append([p.copy() for p in params])
    state = {"exp_avg": m, "exp_avg_sq": v, "step": steps}
    if amsgrad:
        state["max_exp_avg_sq"] = v_max
    return trajectory, state


# ----------------------------------------------------------------------------- helpers
def make_case(seed, shapes=SHAPES, steps=STEPS, dtype=np.float64):
    rng = np.random.default_rng(seed)
    values = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grad_steps = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(steps)]
    return values, grad_steps


def set_grads(optimizer, params, grads, mode):
    """Give each parameter its synthetic gradient: written into the installed view after
    ``zero_grad()`` ("view"), or assigned as a new Tensor behind the optimizer's back
    ("replace")."""
    if mode == "view":
        optimizer.zero_grad()
        for p, g in zip(params, grads):
            p.tensor.grad._data[...] += g
    else:
        for p, g in zip(params, grads):
            p.tensor.grad = None if g is None else Tensor(g.copy())


def run(optimizer_cls, values, grad_steps, mode="view", **options):
    params = [Parameter(v) for v in values]
    optimizer = optimizer_cls(params, **options)
    trajectory = []
    for grads in grad_steps:
        set_grads(optimizer, params, grads, mode)
        optimizer.step()
        trajectory.append([p.numpy().copy() for p in params])
    return trajectory, optimizer, params


def assert_trajectories_close(actual, expected, rtol=RTOL, atol=1e-12):
    for step, (got, want) in enumerate(zip(actual, expected)):
        for i, (a, b) in enumerate(zip(got, want)):
            np.testing.assert_allclose(
                a, b, rtol=rtol, atol=atol, err_msg=f"step {step + 1}, parameter {i}"
            )


def sgd_options():
    for momentum, dampening, nesterov, weight_decay, maximize in itertools.product(
        (0.0, 0.9), (0.0, 0.3), (False, True), (0.0, 0.1), (False, True)
    ):
        if nesterov and (momentum == 0.0 or dampening != 0.0):
            continue
        yield dict(
            lr=0.1,
            momentum=momentum,
            dampening=dampening,
            nesterov=nesterov,
            weight_decay=weight_decay,
            maximize=maximize,
        )


def adam_options():
    for cls, amsgrad, weight_decay, maximize in itertools.product(
        (Adam, AdamW), (False, True), (0.0, 0.1), (False, True)
    ):
        yield (
            cls,
            dict(
                lr=0.05,
                betas=(0.8, 0.95),
                eps=1e-6,
                weight_decay=weight_decay,
                amsgrad=amsgrad,
                maximize=maximize,
            ),
        )


SGD_OPTIONS = list(sgd_options())
ADAM_OPTIONS = list(adam_options())


def option_id(options):
    return ",".join(f"{k}={v}" for k, v in options.items() if k not in ("lr", "betas", "eps"))


# ----------------------------------------------------------------------------- trajectories
@pytest.mark.parametrize("mode", ["view", "replace"])
@pytest.mark.parametrize("options", SGD_OPTIONS, ids=option_id)
def test_sgd_matches_reference(options, mode):
    values, grad_steps = make_case(1)
    actual, optimizer, params = run(SGD, values, grad_steps, mode, **options)
    expected, state = reference_sgd(values, grad_steps, **options)
    assert_trajectories_close(actual, expected)
    saved = optimizer.state_dict()["state"]
    for i in range(len(params)):
        if options["momentum"]:
            np.testing.assert_allclose(
                saved[i]["momentum_buffer"], state["momentum_buffer"][i], rtol=RTOL, atol=1e-12
            )
        else:
            assert "momentum_buffer" not in saved[i]


@pytest.mark.parametrize("mode", ["view", "replace"])
@pytest.mark.parametrize(
    "cls,options", ADAM_OPTIONS, ids=lambda x: x.__name__ if isinstance(x, type) else option_id(x)
)
def test_adam_matches_reference(cls, options, mode):
    values, grad_steps = make_case(2)
    actual, optimizer, params = run(cls, values, grad_steps, mode, **options)
    expected, state = reference_adam(values, grad_steps, decoupled=cls is AdamW, **options)
    assert_trajectories_close(actual, expected)
    saved = optimizer.state_dict()["state"]
    for i in range(len(params)):
        assert saved[i]["step"] == STEPS
        for name in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            if name in state:
                np.testing.assert_allclose(
                    saved[i][name], state[name][i], rtol=RTOL, atol=1e-12, err_msg=name
                )
            else:
                assert name not in saved[i]


def test_defaults_are_pytorchs():
    values, grad_steps = make_case(3)
    params = [Parameter(v) for v in values]
    assert SGD(params).state_dict()["param_groups"][0] == dict(
        lr=0.01,
        momentum=0.0,
        dampening=0.0,
        weight_decay=0.0,
        nesterov=False,
        maximize=False,
        params=[0, 1, 2, 3],
    )
    adam = Adam(params).state_dict()["param_groups"][0]
    assert adam == dict(
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
        amsgrad=False,
        maximize=False,
        params=[0, 1, 2, 3],
    )
    assert AdamW(params).param_groups[0]["weight_decay"] == 1e-2
    for cls, reference, extra in [
        (SGD, reference_sgd, {"lr": 0.01}),
        (Adam, reference_adam, {}),
        (AdamW, reference_adam, {"decoupled": True, "weight_decay": 1e-2}),
    ]:
        actual, _, _ = run(cls, values, grad_steps)
        expected, _ = reference(values, grad_steps, **extra)
        assert_trajectories_close(actual, expected)


def test_adam_skips_parameters_without_gradient():
    """Like PyTorch: a parameter whose grad is None is not touched and its step count (and so
    its bias correction) does not advance."""
    values, grad_steps = make_case(4)
    grad_steps[0][1] = None
    grad_steps[1][1] = None
    grad_steps[3][0] = None
    actual, optimizer, _ = run(Adam, values, grad_steps, "replace", lr=0.05, amsgrad=True)
    expected, state = reference_adam(values, grad_steps, lr=0.05, amsgrad=True)
    assert_trajectories_close(actual, expected)
    np.testing.assert_array_equal(actual[1][1], values[1])
    steps = {i: entry["step"] for i, entry in optimizer.state_dict()["state"].items()}
    assert steps == {0: STEPS - 1, 1: STEPS - 2, 2: STEPS, 3: STEPS}


def test_large_parameters_take_the_parallel_kernels():
    """Above the _jit thresholds (firefly.kernels._jit) the prange builds run; runs cross the
    update kernels' chunk boundaries (firefly.kernels.optim.UPDATE_CHUNK)."""
    from firefly.kernels._jit import PARALLEL_MIN_MEMORY_BOUND
    from firefly.kernels.optim import UPDATE_CHUNK

    shapes = [(PARALLEL_MIN_MEMORY_BOUND // 1000 + 3, 1000), (7,), (UPDATE_CHUNK + 11,)]
    values, grad_steps = make_case(5, shapes=shapes, steps=2)
    for cls, reference, options in [
        (SGD, reference_sgd, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
        (Adam, reference_adam, dict(lr=0.01, amsgrad=True, weight_decay=0.01)),
        (RMSprop, reference_rmsprop, dict(lr=0.01, momentum=0.5, centered=True)),
        (Adagrad, reference_adagrad, dict(lr=0.1, lr_decay=0.1)),
    ]:
        actual, _, _ = run(cls, values, grad_steps, **options)
        expected, _ = reference(values, grad_steps, **options)
        assert_trajectories_close(actual, expected)


# ----------------------------------------------------------------------------- torch oracle
def run_torch(torch_cls, values, grad_steps, **options):
    params = [torch.tensor(v.copy(), requires_grad=True) for v in values]
    optimizer = torch_cls(params, **options)
    trajectory = []
    for grads in grad_steps:
        optimizer.zero_grad()
        for p, g in zip(params, grads):
            p.grad = None if g is None else torch.tensor(g.copy())
        optimizer.step()
        trajectory.append([p.detach().numpy().copy() for p in params])
    return trajectory


@needs_torch
@pytest.mark.parametrize("options", SGD_OPTIONS, ids=option_id)
def test_sgd_matches_torch(options):
    values, grad_steps = make_case(6)
    actual, _, _ = run(SGD, values, grad_steps, **options)
    assert_trajectories_close(
        actual, run_torch(torch.optim.SGD, values, grad_steps, **options), rtol=1e-13, atol=1e-14
    )


@needs_torch
@pytest.mark.parametrize(
    "cls,options", ADAM_OPTIONS, ids=lambda x: x.__name__ if isinstance(x, type) else option_id(x)
)
def test_adam_matches_torch(cls, options):
    values, grad_steps = make_case(7)
    grad_steps[2][0] = None  # skipped parameters too
    torch_cls = {Adam: torch.optim.Adam, AdamW: torch.optim.AdamW}[cls]
    actual, _, _ = run(cls, values, grad_steps, "replace", **options)
    assert_trajectories_close(
        actual, run_torch(torch_cls, values, grad_steps, **options), rtol=1e-12, atol=1e-14
    )


@needs_torch
@pytest.mark.parametrize(
    "cls,torch_name,options",
    [
        (SGD, "SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
        (Adam, "Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.01)),
        (AdamW, "AdamW", dict(lr=0.01)),
    ],
)
def test_float32_matches_torch(cls, torch_name, options):
    # Both compute in float32, in slightly different orders (torch's Adam uses lerp): ulps apart.
    values, grad_steps = make_case(8, dtype=np.float32)
    actual, _, params = run(cls, values, grad_steps, **options)
    assert all(p.dtype == np.float32 for p in params)
    expected = run_torch(getattr(torch.optim, torch_name), values, grad_steps, **options)
    assert_trajectories_close(actual, expected, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- dtypes and buffers
@pytest.mark.parametrize("cls", [SGD, Adam, AdamW])
def test_dtype_is_preserved(cls):
    values, grad_steps = make_case(9, dtype=np.float32)
    _, optimizer, params = (
        run(cls, values, grad_steps, momentum=0.9) if cls is SGD else run(cls, values, grad_steps)
    )
    for p in params:
        assert p.tensor.dtype == np.float32 and p.tensor.grad.dtype == np.float32
    for entry in optimizer.state_dict()["state"].values():
        for name, value in entry.items():
            if name != "step":
                assert value.dtype == np.float32, name


def test_mixed_dtypes_form_one_flat_group_each():
    values, grad_steps = make_case(10, shapes=[(3, 4), (4,), (5,), (2, 2)])
    values = [values[0], values[1].astype(np.float32), values[2], values[3].astype(np.float32)]
    grad_steps = [[g.astype(v.dtype) for g, v in zip(grads, values)] for grads in grad_steps]
    options = dict(lr=0.05, amsgrad=True, weight_decay=0.1)
    actual, _, params = run(Adam, values, grad_steps, **options)
    assert [p.dtype for p in params] == [np.float64, np.float32, np.float64, np.float32]
    bases = [p.numpy().base for p in params]
    assert bases[0] is bases[2] and bases[1] is bases[3] and bases[0] is not bases[1]
    assert bases[0].size == 12 + 5 and bases[1].size == 4 + 4
    expected, _ = reference_adam(values, grad_steps, **options)
    for step in range(STEPS):
        for i in (0, 2):
            np.testing.assert_allclose(actual[step][i], expected[step][i], rtol=RTOL, atol=1e-12)
        for i in (1, 3):
            np.testing.assert_allclose(actual[step][i], expected[step][i], rtol=1e-5, atol=1e-6)


def test_packing_keeps_values_and_grads_and_installs_views():
    values, _ = make_case(11)
    params = [Parameter(v) for v in values]
    existing_grad = np.full(values[1].shape, 3.0)
    params[1].tensor.grad = Tensor(existing_grad)
    optimizer = SGD(params, lr=0.5)
    for p, v in zip(params, values):
        np.testing.assert_array_equal(p.numpy(), v)
    # A gradient that existed before the optimizer is kept (copied into the flat buffer).
    np.testing.assert_array_equal(params[1].tensor.grad._data, existing_grad)
    optimizer.zero_grad()
    flat_grads = params[0].tensor.grad._data.base
    for p in params:
        assert p.tensor.grad._data.base is flat_grads
        assert not p.tensor.grad._data.any()
    params[1].tensor.grad._data[...] = 1.0
    optimizer.zero_grad()
    assert not flat_grads.any()
    optimizer.zero_grad(set_to_none=True)
    assert all(p.tensor.grad is None for p in params)


def test_backward_accumulates_into_the_flat_buffer():
    firefly.manual_seed(0)
    layer = Linear(3, 2, dtype=np.float64)
    optimizer = SGD(layer.get_parameters(), lr=0.1)
    x = Tensor(np.random.default_rng(0).standard_normal((4, 3)))
    optimizer.zero_grad()
    installed = layer.weight.tensor.grad
    layer(x).sum().backward()
    assert layer.weight.tensor.grad is installed  # accumulated in place, not reallocated
    np.testing.assert_allclose(installed._data, np.ones((2, 1)) * x.numpy().sum(0)[None, :])


# ----------------------------------------------------------------------------- behind the back
def seed_mlp(seed, dtype=np.float64):
    class MLP(Module):
        def __init__(self):
            super().__init__()
            self.fc1 = Linear(10, 32, dtype=dtype)
            self.fc2 = Linear(32, 1, dtype=dtype)

        def forward(self, x):
            return self.fc2(self.fc1(x).relu())

    firefly.manual_seed(seed)
    return MLP()


def seed_data(dtype=np.float64):
    rng = np.random.default_rng(42)
    x = rng.standard_normal((64, 10)).astype(dtype)
    y = (x @ rng.standard_normal((10, 1)) + 0.1 * rng.standard_normal((64, 1))).astype(dtype)
    return Tensor(x), Tensor(y)


def train(model, optimizer, steps, zero_grad):
    x, y = seed_data(model.fc1.weight.dtype)
    loss_fn = MSELoss()
    for _ in range(steps):
        zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()


@pytest.mark.parametrize("cls,options", [(SGD, dict(lr=0.05, momentum=0.9)), (Adam, dict(lr=0.01))])
def test_grads_cleared_another_way_give_the_same_trajectory(cls, options):
    """Module.zero_grad() (and Tensor.zero_grad()) set grads to None, so backward allocates new
    ones: step() must copy them in and give exactly what optimizer.zero_grad() gives."""
    reference_model, other_model = seed_mlp(0), seed_mlp(0)
    reference_optimizer = cls(reference_model.get_parameters(), **options)
    other_optimizer = cls(other_model.get_parameters(), **options)
    train(reference_model, reference_optimizer, 5, reference_optimizer.zero_grad)
    train(other_model, other_optimizer, 5, other_model.zero_grad)
    for (name, a), (_, b) in zip(
        reference_model.named_parameters(), other_model.named_parameters()
    ):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)
    # ...and the copied gradient is the flat buffer's view again.
    flat = other_model.fc1.weight.tensor.grad._data.base
    assert all(p.tensor.grad._data.base is flat for p in other_model.parameters())


def test_replaced_parameter_array_is_adopted():
    values, grad_steps = make_case(12, steps=2)
    params = [Parameter(v) for v in values]
    optimizer = SGD(params, lr=0.1)
    replacement = np.full(values[0].shape, 2.0)
    params[0].tensor._data = replacement  # not through Parameter.update
    set_grads(optimizer, params, grad_steps[0], "view")
    optimizer.step()
    np.testing.assert_allclose(params[0].numpy(), 2.0 - 0.1 * grad_steps[0][0], rtol=RTOL)
    assert params[0].numpy().base is params[1].numpy().base  # back in the flat buffer
    params[0].tensor._data = np.zeros((2, 2))
    with pytest.raises(
        ValueError, match=r"parameter 0 now has shape \(2, 2\).*create a new optimizer"
    ):
        optimizer.step()


def test_wrong_gradient_shape_is_refused():
    values, _ = make_case(13)
    params = [Parameter(v) for v in values]
    optimizer = Adam(params)
    params[2].tensor.grad = Tensor(np.ones(3))
    with pytest.raises(
        ValueError, match=r"gradient of parameter 2 \(shape \(\), float64\) has shape \(3,\)"
    ):
        optimizer.step()


def test_frozen_parameters_are_left_alone():
    values, grad_steps = make_case(14, steps=2)
    params = [Parameter(v) for v in values]
    params[1].trainable = False
    optimizer = SGD(params, lr=0.1, weight_decay=0.5)
    optimizer.zero_grad()
    assert params[1].tensor.grad is None
    for p, g in zip(params, grad_steps[0]):
        if p.trainable:
            p.tensor.grad._data[...] = g
    optimizer.step()
    np.testing.assert_array_equal(params[1].numpy(), values[1])
    np.testing.assert_allclose(
        params[0].numpy(), values[0] - 0.1 * (grad_steps[0][0] + 0.5 * values[0]), rtol=RTOL
    )


# ----------------------------------------------------------------------------- the seed
class SeedSGD(BaseOptimizer):
    """The seed's SGD, verbatim."""

    def __init__(self, parameters, lr=0.01):
        super().__init__(parameters)
        self.lr = Tensor(lr)

    def step(self):
        for param in self.parameters:
            if param.tensor.grad is None:
                raise ValueError("Parameter has no gradient.")
            param.update(param.tensor - self.lr * param.tensor.grad)


@pytest.mark.parametrize("lr,exact", [(2.0**-6, True), (0.01, False)])
def test_seed_style_optimizer_follows_builtin_sgd(lr, exact):
    """In float64 the seed's optimizer and the built-in SGD follow the same trajectory. The
    seed stores lr as Tensor(lr), a float32: bit-identical when lr is a float32 number, within
    float32 rounding of lr otherwise."""
    seed_model, builtin_model = seed_mlp(1), seed_mlp(1)
    seed_optimizer = SeedSGD(seed_model.get_parameters(), lr=lr)
    builtin_optimizer = SGD(builtin_model.get_parameters(), lr=lr)
    initial = [p.numpy().copy() for p in seed_model.parameters()]
    train(seed_model, seed_optimizer, 10, seed_optimizer.zero_grad)
    train(builtin_model, builtin_optimizer, 10, builtin_optimizer.zero_grad)
    for (name, a), (_, b), start in zip(
        seed_model.named_parameters(), builtin_model.named_parameters(), initial
    ):
        assert a.dtype == b.dtype == np.float64
        assert not np.array_equal(a.numpy(), start)  # it trained
        if exact:
            np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)
        else:
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-9, err_msg=name)


def test_base_optimizer_is_the_seeds():
    params = [Parameter(np.ones(2))]
    optimizer = BaseOptimizer(params)
    assert optimizer.parameters == params
    params[0].tensor.grad = Tensor(np.ones(2))
    optimizer.zero_grad()
    assert params[0].tensor.grad is None
    with pytest.raises(NotImplementedError, match="Step method not implemented."):
        optimizer.step()


def test_sgd_without_gradient_raises_the_seeds_error_naming_the_parameter():
    firefly.manual_seed(0)
    model = seed_mlp(2)
    optimizer = SGD(model.named_parameters(), lr=0.1)
    before = [p.numpy().copy() for p in model.parameters()]
    optimizer.zero_grad()
    model.fc2.bias.tensor.grad = None
    with pytest.raises(
        ValueError,
        match=r"^Parameter has no gradient\. .*parameter 3 'fc2\.bias' \(shape \(1,\), float64\)",
    ):
        optimizer.step()
    # Nothing was updated: the check comes before any kernel runs.
    for p, b in zip(model.parameters(), before):
        np.testing.assert_array_equal(p.numpy(), b)
    fresh = SGD([Parameter(np.ones(3))])
    with pytest.raises(
        ValueError, match=r"^Parameter has no gradient\. .*parameter 0 \(shape \(3,\), float64\)"
    ):
        fresh.step()


# ----------------------------------------------------------------------------- state and resume
@pytest.mark.parametrize(
    "cls,options",
    [
        (SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)),
        (SGD, dict(lr=0.05)),
        (Adam, dict(lr=0.01, amsgrad=True, weight_decay=1e-3)),
        (AdamW, dict(lr=0.01)),
    ],
)
@pytest.mark.parametrize("through_file", [False, True])
def test_resume_is_bit_identical(cls, options, through_file, tmp_path):
    """Train 10 steps, save model and optimizer, load both into fresh objects, train 10 more:
    exactly the parameters and state of 20 straight steps."""
    straight = seed_mlp(3, np.float32)
    straight_optimizer = cls(straight.get_parameters(), **options)
    train(straight, straight_optimizer, 20, straight_optimizer.zero_grad)

    first = seed_mlp(3, np.float32)
    first_optimizer = cls(first.get_parameters(), **options)
    train(first, first_optimizer, 10, first_optimizer.zero_grad)
    checkpoint = {
        "model": first.state_dict(),
        "optimizer": first_optimizer.state_dict(),
        "epoch": 10,
    }
    if through_file:
        firefly.save(checkpoint, tmp_path / "checkpoint.npz")
        checkpoint = firefly.load(tmp_path / "checkpoint.npz")

    resumed = seed_mlp(4, np.float32)  # a different init, overwritten by the checkpoint
    resumed_optimizer = cls(resumed.get_parameters())  # default hyperparameters, overwritten too
    resumed.load_state_dict(checkpoint["model"])
    resumed_optimizer.load_state_dict(checkpoint["optimizer"])
    train(resumed, resumed_optimizer, 10, resumed_optimizer.zero_grad)

    for (name, a), (_, b) in zip(straight.named_parameters(), resumed.named_parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)
    want, got = straight_optimizer.state_dict(), resumed_optimizer.state_dict()
    assert want["param_groups"] == got["param_groups"]
    assert want["state"].keys() == got["state"].keys()
    for index, entry in want["state"].items():
        assert entry.keys() == got["state"][index].keys()
        for name, value in entry.items():
            np.testing.assert_array_equal(
                got["state"][index][name], value, err_msg=f"{index}/{name}"
            )


def test_optimizer_built_after_loading_the_model_resumes_too():
    straight = seed_mlp(5)
    straight_optimizer = Adam(straight.get_parameters(), lr=0.01)
    train(straight, straight_optimizer, 6, straight_optimizer.zero_grad)
    first = seed_mlp(5)
    first_optimizer = Adam(first.get_parameters(), lr=0.01)
    train(first, first_optimizer, 3, first_optimizer.zero_grad)
    resumed = seed_mlp(6)
    resumed.load_state_dict(first.state_dict())
    resumed_optimizer = Adam(resumed.get_parameters())
    resumed_optimizer.load_state_dict(first_optimizer.state_dict())
    train(resumed, resumed_optimizer, 3, resumed_optimizer.zero_grad)
    for a, b in zip(straight.parameters(), resumed.parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_state_dict_is_a_copy_of_plain_values():
    values, grad_steps = make_case(15, steps=2)
    _, optimizer, _ = run(SGD, values, grad_steps, lr=0.1, momentum=0.9)
    state = optimizer.state_dict()
    saved = state["state"][0]["momentum_buffer"].copy()
    optimizer.step()
    np.testing.assert_array_equal(state["state"][0]["momentum_buffer"], saved)
    assert type(state["state"][0]["step"]) is int and state["state"][0]["step"] == 2
    assert all(type(v) in (float, bool, list, tuple) for v in state["param_groups"][0].values())


def test_state_before_any_step_is_empty_and_reloads():
    values, grad_steps = make_case(16, steps=3)
    params = [Parameter(v) for v in values]
    optimizer = Adam(params, lr=0.1)
    state = optimizer.state_dict()
    assert state["state"] == {}
    fresh = Adam([Parameter(v) for v in values])
    fresh.load_state_dict(state)
    assert fresh.param_groups[0]["lr"] == 0.1


@pytest.mark.parametrize(
    "change,match",
    [
        (
            lambda s: s["param_groups"][0].update(params=[0, 1]),
            "saved with 2 parameters, this optimizer's has 4",
        ),
        (lambda s: s["param_groups"][0].update(lr=-1.0), "invalid lr value -1.0"),
        (lambda s: s["param_groups"][0].pop("amsgrad"), "do not match Adam's"),
        (
            lambda s: s["state"][1].update(exp_avg=np.zeros(5)),
            r"state 'exp_avg' of parameter 1 \(shape \(4,\), float64\) must be",
        ),
        (
            lambda s: s["state"][1].update(momentum_buffer=np.zeros(4)),
            "unknown state 'momentum_buffer'",
        ),
        (lambda s: s["state"].update({7: {"step": 1}}), "state key 7 is out of range"),
        (lambda s: s["state"][0].update(step=0), "needs a 'step' count >= 1"),
        (lambda s: s.pop("state"), "expected a dict with keys 'state' and 'param_groups'"),
    ],
)
def test_load_state_dict_refuses_bad_state(change, match):
    values, grad_steps = make_case(17, steps=2)
    _, optimizer, params = run(Adam, values, grad_steps, lr=0.1)
    state = optimizer.state_dict()
    before = optimizer.state_dict()
    change(state)
    with pytest.raises(ValueError, match=match):
        optimizer.load_state_dict(state)
    # Nothing changed.
    assert optimizer.state_dict()["param_groups"] == before["param_groups"]
    np.testing.assert_array_equal(
        optimizer.state_dict()["state"][1]["exp_avg"], before["state"][1]["exp_avg"]
    )


def test_sgd_state_does_not_load_into_adam():
    values, grad_steps = make_case(18, steps=2)
    _, sgd, _ = run(SGD, values, grad_steps, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="another optimizer"):
        Adam([Parameter(v) for v in values]).load_state_dict(sgd.state_dict())


# ----------------------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    "cls,options,error,match",
    [
        (SGD, dict(lr=-0.1), ValueError, "invalid lr value -0.1"),
        (SGD, dict(momentum=-0.5), ValueError, "invalid momentum"),
        (SGD, dict(weight_decay=-1.0), ValueError, "invalid weight_decay"),
        (SGD, dict(nesterov=True), ValueError, "nesterov=True requires momentum > 0"),
        (SGD, dict(nesterov=True, momentum=0.9, dampening=0.1), ValueError, "and dampening == 0"),
        (SGD, dict(lr=float("nan")), ValueError, "invalid lr"),
        (SGD, dict(lr="0.1"), TypeError, "lr must be a number"),
        (SGD, dict(momentum=0.9, nesterov="yes"), TypeError, "nesterov must be True or False"),
        (Adam, dict(lr=-1e-3), ValueError, "invalid lr"),
        (Adam, dict(betas=(1.0, 0.999)), ValueError, r"invalid betas\[0\] value 1.0"),
        (Adam, dict(betas=(0.9, -0.1)), ValueError, r"invalid betas\[1\] value -0.1"),
        (Adam, dict(betas=0.9), ValueError, "betas must be a pair"),
        (Adam, dict(eps=-1e-8), ValueError, "invalid eps"),
        (Adam, dict(weight_decay=-0.1), ValueError, "invalid weight_decay"),
        (AdamW, dict(betas=(0.9, 1.5)), ValueError, r"invalid betas\[1\]"),
        (AdamW, dict(amsgrad=None), TypeError, "amsgrad must be True or False"),
    ],
)
def test_invalid_arguments_are_refused(cls, options, error, match):
    param = Parameter(np.arange(3.0))
    with pytest.raises(error, match=match):
        cls([param], **options)
    # The refused optimizer left the parameter alone (not packed into a buffer).
    assert param.numpy().base is None


@pytest.mark.parametrize(
    "parameters,error,match",
    [
        ([], ValueError, "empty parameter list"),
        (Parameter(np.ones(2)), TypeError, "got a single Parameter"),
        ([np.ones(2)], TypeError, "parameter 0 is a ndarray, not a Parameter"),
        (5, TypeError, "must be an iterable of Parameters"),
    ],
)
def test_invalid_parameter_lists_are_refused(parameters, error, match):
    with pytest.raises(error, match=match):
        SGD(parameters)


def test_duplicate_parameters_are_refused():
    param = Parameter(np.ones(2))
    with pytest.raises(ValueError, match="parameter 1 .* is the same parameter as parameter 0"):
        Adam([param, param])


def test_closure_is_called_and_its_loss_returned():
    param = Parameter(np.array([3.0]))
    optimizer = SGD([param], lr=0.25)

    def closure():
        optimizer.zero_grad()
        loss = (param.tensor * param.tensor).sum()
        loss.backward()
        return loss

    loss = optimizer.step(closure)
    assert loss.item() == 9.0
    assert param.numpy()[0] == 3.0 - 0.25 * 6.0


def test_exports():
    import firefly.nn.optimizers as optimizers
    import firefly.optim as optim

    for name in ("BaseOptimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad"):
        assert getattr(optim, name) is getattr(optimizers, name)
    assert issubclass(AdamW, BaseOptimizer) and issubclass(SGD, BaseOptimizer)
    assert math.isclose(AdamW([Parameter(np.ones(1))]).param_groups[0]["weight_decay"], 1e-2)


# ----------------------------------------------------------------------------- RMSprop, Adagrad
def reference_rmsprop(
    params,
    grad_steps,
    lr=1e-2,
    alpha=0.99,
    eps=1e-8,
    weight_decay=0.0,
    momentum=0.0,
    centered=False,
    maximize=False,
):
    """torch.optim.RMSprop's documented algorithm in float64; a None gradient skips the
    parameter."""
    params = [p.astype(np.float64) for p in params]
    square_avg = [np.zeros_like(p) for p in params]
    grad_avg = [np.zeros_like(p) for p in params]
    buf = [np.zeros_like(p) for p in params]
    trajectory = []
    for grads in grad_steps:
        for i, (p, g) in enumerate(zip(params, grads)):
            if g is None:
                continue
            g = -g if maximize else g
            if weight_decay:
                g = g + weight_decay * p
            square_avg[i] = alpha * square_avg[i] + (1 - alpha) * g * g
            v = square_avg[i]
            if centered:
                grad_avg[i] = alpha * grad_avg[i] + (1 - alpha) * g
                v = v - grad_avg[i] ** 2
            update = g / (np.sqrt(v) + eps)
            if momentum:
                buf[i] = momentum * buf[i] + update
                update = buf[i]
            params[i] = p - lr * update
        trajectory.append([p.copy() for p in params])
    state = {"square_avg": square_avg}
    if centered:
        state["grad_avg"] = grad_avg
    if momentum:
        state["momentum_buffer"] = buf
    return trajectory, state


def reference_adagrad(
    params,
    grad_steps,
    lr=1e-2,
    lr_decay=0.0,
    weight_decay=0.0,
    initial_accumulator_value=0.0,
    eps=1e-10,
    maximize=False,
):
    """torch.optim.Adagrad's documented algorithm in float64; a None gradient skips the
    parameter."""
    params = [p.astype(np.float64) for p in params]
    sums = [np.full_like(p, initial_accumulator_value) for p in params]
    steps = [0] * len(params)
    trajectory = []
    for grads in grad_steps:
        for i, (p, g) in enumerate(zip(params, grads)):
            if g is None:
                continue
            steps[i] += 1
            g = -g if maximize else g
            if weight_decay:
                g = g + weight_decay * p
            clr = lr / (1 + (steps[i] - 1) * lr_decay)
            sums[i] = sums[i] + g * g
            params[i] = p - clr * g / (np.sqrt(sums[i]) + eps)
        trajectory.append([p.copy() for p in params])
    return trajectory, {"sum": sums, "step": steps}


def rmsprop_options():
    for momentum, centered, weight_decay, maximize in itertools.product(
        (0.0, 0.9), (False, True), (0.0, 0.1), (False, True)
    ):
        yield dict(
            lr=0.01,
            alpha=0.9,
            eps=1e-6,
            momentum=momentum,
            centered=centered,
            weight_decay=weight_decay,
            maximize=maximize,
        )


def adagrad_options():
    for lr_decay, initial, weight_decay, maximize in itertools.product(
        (0.0, 0.1), (0.0, 0.5), (0.0, 0.1), (False, True)
    ):
        yield dict(
            lr=0.1,
            lr_decay=lr_decay,
            initial_accumulator_value=initial,
            weight_decay=weight_decay,
            maximize=maximize,
        )


RMSPROP_OPTIONS = list(rmsprop_options())
ADAGRAD_OPTIONS = list(adagrad_options())


@pytest.mark.parametrize("mode", ["view", "replace"])
@pytest.mark.parametrize("options", RMSPROP_OPTIONS, ids=option_id)
def test_rmsprop_matches_reference(options, mode):
    values, grad_steps = make_case(21)
    if mode == "replace":
        grad_steps[2][1] = None
    actual, optimizer, params = run(RMSprop, values, grad_steps, mode, **options)
    expected, state = reference_rmsprop(values, grad_steps, **options)
    assert_trajectories_close(actual, expected)
    saved = optimizer.state_dict()["state"]
    for i in range(len(params)):
        assert set(saved[i]) == {"step", *state}
        for name, arrays in state.items():
            np.testing.assert_allclose(
                saved[i][name], arrays[i], rtol=RTOL, atol=1e-12, err_msg=name
            )


@pytest.mark.parametrize("mode", ["view", "replace"])
@pytest.mark.parametrize("options", ADAGRAD_OPTIONS, ids=option_id)
def test_adagrad_matches_reference(options, mode):
    values, grad_steps = make_case(22)
    if mode == "replace":
        grad_steps[1][0] = None
    actual, optimizer, params = run(Adagrad, values, grad_steps, mode, **options)
    expected, state = reference_adagrad(values, grad_steps, **options)
    assert_trajectories_close(actual, expected)
    saved = optimizer.state_dict()["state"]
    for i in range(len(params)):
        assert saved[i]["step"] == state["step"][i]
        np.testing.assert_allclose(saved[i]["sum"], state["sum"][i], rtol=RTOL, atol=1e-12)


def test_adagrad_state_exists_from_construction_as_in_torch():
    values, _ = make_case(23)
    optimizer = Adagrad([Parameter(v) for v in values], initial_accumulator_value=0.25)
    state = optimizer.state_dict()["state"]
    assert sorted(state) == [0, 1, 2, 3]
    for i, v in enumerate(values):
        assert state[i]["step"] == 0
        np.testing.assert_array_equal(state[i]["sum"], np.full(v.shape, 0.25))


@needs_torch
@pytest.mark.parametrize(
    "cls,torch_name,options",
    [
        *[(RMSprop, "RMSprop", o) for o in RMSPROP_OPTIONS],
        *[(Adagrad, "Adagrad", o) for o in ADAGRAD_OPTIONS],
    ],
    ids=lambda x: (
        x if isinstance(x, str) else (x.__name__ if isinstance(x, type) else option_id(x))
    ),
)
def test_rmsprop_and_adagrad_match_torch(cls, torch_name, options):
    values, grad_steps = make_case(24)
    grad_steps[3][2] = None  # skipped parameters too
    actual, _, _ = run(cls, values, grad_steps, "replace", **options)
    expected = run_torch(getattr(torch.optim, torch_name), values, grad_steps, **options)
    assert_trajectories_close(actual, expected, rtol=1e-12, atol=1e-14)


@needs_torch
@pytest.mark.parametrize(
    "cls,torch_name,options",
    [
        (RMSprop, "RMSprop", dict(lr=0.01, momentum=0.9, centered=True, weight_decay=0.01)),
        (Adagrad, "Adagrad", dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1)),
    ],
)
def test_rmsprop_and_adagrad_float32_match_torch(cls, torch_name, options):
    values, grad_steps = make_case(25, dtype=np.float32)
    actual, _, params = run(cls, values, grad_steps, **options)
    assert all(p.dtype == np.float32 for p in params)
    expected = run_torch(getattr(torch.optim, torch_name), values, grad_steps, **options)
    assert_trajectories_close(actual, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "cls,options,error,match",
    [
        (RMSprop, dict(lr=-0.1), ValueError, "invalid lr value -0.1"),
        (RMSprop, dict(alpha=-0.5), ValueError, "invalid alpha"),
        (RMSprop, dict(eps=-1.0), ValueError, "invalid eps"),
        (RMSprop, dict(momentum=-0.1), ValueError, "invalid momentum"),
        (RMSprop, dict(centered=1), TypeError, "centered must be True or False"),
        (Adagrad, dict(lr_decay=-0.1), ValueError, "invalid lr_decay"),
        (
            Adagrad,
            dict(initial_accumulator_value=-1.0),
            ValueError,
            "invalid initial_accumulator_value",
        ),
        (Adagrad, dict(weight_decay=float("inf")), ValueError, "invalid weight_decay"),
    ],
)
def test_rmsprop_and_adagrad_arguments_are_checked(cls, options, error, match):
    with pytest.raises(error, match=match):
        cls([Parameter(np.ones(3))], **options)
