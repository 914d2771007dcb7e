"""Optimizers, clipping and schedulers over ~1M float32 parameters (four tensors, a
1024-1000-24 MLP's worth) in three param groups: firefly beside a NumPy implementation of the
same maths that reuses its buffers, and torch when installed (``fused=True`` where torch has a
fused implementation, ``foreach=True`` otherwise).

    pytest benchmarks/bench_optimizers.py --benchmark-enable

- ``test_optimizer_step``: one ``step()`` of SGD with momentum, Adam, RMSprop, Adagrad,
  Adamax, Adadelta and ASGD.
  The groups: the big weight with weight decay, the small weight with another lr, the biases
  without decay. ``firefly-1group`` is the same step with every parameter in one group: what
  the groups cost (firefly updates all of them in one kernel call per dtype, with per-run
  hyperparameters; one call per (group, dtype) had cost SGD 30% here).
- ``test_lbfgs_step``: one ``LBFGS.step`` (10 iterations, history 10, with and without the
  strong-Wolfe line search) from the same start on a separable quadratic whose closure writes
  the gradients with NumPy in both libraries, so that only the optimizers differ.
- ``test_clip_grad_norm``: ``clip_grad_norm_`` (always clipping), over an optimizer's flat
  gradient buffer and over loose gradients.
- ``test_scheduler_step``: one scheduler ``step()`` on a three-group optimizer.

Each optimizer benchmark first checks that three steps agree with three NumPy steps, then
times ``step()`` with constant gradients (compilation and first-step allocation happen in the
untimed warm-up). Plain test runs (``--benchmark-disable``) run each timed function once.
"""

import math

import numpy as np
import pytest

from firefly.nn import Parameter
from firefly.nn.utils import clip_grad_norm_
from firefly.optim import (
    ASGD,
    LBFGS,
    SGD,
    Adadelta,
    Adagrad,
    Adam,
    Adamax,
    RMSprop,
    lr_scheduler,
)
from firefly.tensor import Tensor

try:
    import torch
except ImportError:  # torch is an optional comparison
    torch = None

SHAPES = [(1024, 1000), (1000,), (1000, 24), (24,)]  # 1,049,024 parameters
GROUPS = [  # (tensor indices, per-group options)
    ([0], dict(weight_decay=0.01)),
    ([2], dict(lr_scale=0.5)),
    ([1, 3], dict()),
]
CHECK_STEPS = 3

CONFIGS = {
    "sgd-momentum": ("SGD", dict(lr=0.01, momentum=0.9)),
    "adam": ("Adam", dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8)),
    "rmsprop": ("RMSprop", dict(lr=1e-3, alpha=0.99, eps=1e-8)),
    "adagrad": ("Adagrad", dict(lr=1e-2, eps=1e-10)),
    "adamax": ("Adamax", dict(lr=2e-3, betas=(0.9, 0.999), eps=1e-8)),
    "adadelta": ("Adadelta", dict(lr=1.0, rho=0.9, eps=1e-6)),
    "asgd": ("ASGD", dict(lr=1e-2, lambd=1e-4, alpha=0.75)),
}
FIREFLY_CLASSES = {
    "SGD": SGD,
    "Adam": Adam,
    "RMSprop": RMSprop,
    "Adagrad": Adagrad,
    "Adamax": Adamax,
    "Adadelta": Adadelta,
    "ASGD": ASGD,
}
TORCH_FUSED = {"SGD", "Adam"}  # torch 2.13 has fused CPU kernels for these


def problem():
    rng = np.random.default_rng(0)
    values = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    grads = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    return values, grads


def group_dicts(name, params, one_group=False):
    options = CONFIGS[name][1]
    if one_group:
        return [{"params": list(params)}]
    groups = []
    for indices, extra in GROUPS:
        group = {"params": [params[i] for i in indices]}
        if "lr_scale" in extra:
            group["lr"] = options["lr"] * extra["lr_scale"]
        if "weight_decay" in extra:
            group["weight_decay"] = extra["weight_decay"]
        groups.append(group)
    return groups


def tensor_options(name, one_group=False):
    """(lr, weight_decay) of each tensor, as the groups give them."""
    lr = CONFIGS[name][1]["lr"]
    per_tensor = [(lr, 0.0)] * len(SHAPES)
    if not one_group:
        for indices, extra in GROUPS:
            for i in indices:
                per_tensor[i] = (lr * extra.get("lr_scale", 1.0), extra.get("weight_decay", 0.0))
    return per_tensor


# ----------------------------------------------------------------------------- implementations
class NumpyOptimizer:
    """The same updates written with NumPy in-place ufuncs, one scratch array per tensor so no
    step allocates (large temporaries would be returned to the OS and page-faulted back)."""

    def __init__(self, name, values, grads, one_group=False):
        self.name, self.options = name, CONFIGS[name][1]
        self.per_tensor = tensor_options(name, one_group)
        self.params = [v.copy() for v in values]
        self.grads = grads
        self.scratch = [np.empty_like(v) for v in values]
        self.decayed = [np.empty_like(v) for v in values]
        self.buffers = [np.zeros_like(v) for v in values]  # momentum buffer, exp_avg or sum
        self.squares = [np.zeros_like(v) for v in values]  # exp_avg_sq or square_avg
        self.steps = 0

    def step(self):
        self.steps += 1
        o = self.options
        for p, g, tmp, d, buf, sq, (lr, wd) in zip(
            self.params,
            self.grads,
            self.scratch,
            self.decayed,
            self.buffers,
            self.squares,
            self.per_tensor,
        ):
            if wd:
                np.multiply(p, wd, out=d)
                d += g
                g = d
            if self.name == "sgd-momentum":
                if self.steps == 1:
                    buf[...] = g
                else:
                    buf *= o["momentum"]
                    buf += g
                np.multiply(buf, lr, out=tmp)
            elif self.name == "adam":
                beta1, beta2 = o["betas"]
                buf *= beta1
                np.multiply(g, 1.0 - beta1, out=tmp)
                buf += tmp
                sq *= beta2
                np.multiply(g, g, out=tmp)
                tmp *= 1.0 - beta2
                sq += tmp
                np.sqrt(sq, out=tmp)
                tmp *= 1.0 / np.sqrt(1.0 - beta2**self.steps)
                tmp += o["eps"]
                np.divide(buf, tmp, out=tmp)
                tmp *= lr / (1.0 - beta1**self.steps)
            elif self.name == "rmsprop":
                sq *= o["alpha"]
                np.multiply(g, g, out=tmp)
                tmp *= 1.0 - o["alpha"]
                sq += tmp
                np.sqrt(sq, out=tmp)
                tmp += o["eps"]
                np.divide(g, tmp, out=tmp)
                tmp *= lr
            elif self.name == "adamax":
                beta1, beta2 = o["betas"]
                buf *= beta1
                np.multiply(g, 1.0 - beta1, out=tmp)
                buf += tmp
                sq *= beta2  # the infinity norm
                np.abs(g, out=tmp)
                tmp += o["eps"]
                np.maximum(sq, tmp, out=sq)
                np.divide(buf, sq, out=tmp)
                tmp *= lr / (1.0 - beta1**self.steps)
            elif self.name == "adadelta":
                rho = o["rho"]
                sq *= rho  # square_avg; buf is acc_delta
                np.multiply(g, g, out=tmp)
                tmp *= 1.0 - rho
                sq += tmp
                np.add(buf, o["eps"], out=tmp)
                np.sqrt(tmp, out=tmp)
                tmp *= g
                np.add(sq, o["eps"], out=d)
                np.sqrt(d, out=d)
                np.divide(tmp, d, out=tmp)  # the delta
                buf *= rho
                np.multiply(tmp, tmp, out=d)
                d *= 1.0 - rho
                buf += d
                tmp *= lr
            elif self.name == "asgd":  # t0 = 1e6: ax is a copy of the parameter (buf)
                eta = lr / ((1.0 + o["lambd"] * lr * (self.steps - 1)) ** o["alpha"])
                p *= 1.0 - o["lambd"] * eta
                np.multiply(g, eta, out=tmp)
                p -= tmp
                buf[...] = p
                continue
            else:  # adagrad
                np.multiply(g, g, out=tmp)
                buf += tmp
                np.sqrt(buf, out=tmp)
                tmp += o["eps"]
                np.divide(g, tmp, out=tmp)
                tmp *= lr
            p -= tmp

    def values(self):
        return self.params


def firefly_optimizer(one_group):
    class FireflyOptimizer:
        def __init__(self, name, values, grads):
            self.params = [Parameter(v) for v in values]
            cls_name, options = CONFIGS[name]
            self.optimizer = FIREFLY_CLASSES[cls_name](
                group_dicts(name, self.params, one_group), **options
            )
            self.optimizer.zero_grad()
            for p, g in zip(self.params, grads):
                p.tensor.grad._data[...] = g
            self.step = self.optimizer.step

        def values(self):
            return [p.numpy() for p in self.params]

    return FireflyOptimizer


class TorchOptimizer:
    def __init__(self, name, values, grads):
        self.params = [torch.tensor(v.copy()) for v in values]
        for p, g in zip(self.params, grads):
            p.grad = torch.tensor(g)
        cls_name, options = CONFIGS[name]
        implementation = "fused" if cls_name in TORCH_FUSED else "foreach"
        self.optimizer = getattr(torch.optim, cls_name)(
            group_dicts(name, self.params), **options, **{implementation: True}
        )
        self.step = self.optimizer.step

    def values(self):
        return [p.numpy() for p in self.params]


IMPLEMENTATIONS = {
    "firefly": firefly_optimizer(one_group=False),
    "firefly-1group": firefly_optimizer(one_group=True),
    "numpy": NumpyOptimizer,
    "torch": TorchOptimizer if torch else None,
}


@pytest.fixture(scope="module")
def expected():
    """Each configuration's parameters after CHECK_STEPS steps of the NumPy implementation,
    with the three groups and with one."""
    values, grads = problem()
    results = {}
    for name in CONFIGS:
        for one_group in (False, True):
            reference = NumpyOptimizer(name, values, grads, one_group)
            for _ in range(CHECK_STEPS):
                reference.step()
            results[name, one_group] = reference.values()
    return results


@pytest.mark.parametrize("implementation", list(IMPLEMENTATIONS))
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(
            name, marks=pytest.mark.benchmark(group=f"optimizer-step-1M-f32-3groups-{name}")
        )
        for name in CONFIGS
    ],
)
def test_optimizer_step(benchmark, expected, name, implementation):
    factory = IMPLEMENTATIONS[implementation]
    if factory is None:
        pytest.skip("needs torch for the comparison: pip install torch==2.13.0")
    values, grads = problem()
    optimizer = factory(name, values, grads)
    for _ in range(CHECK_STEPS):  # also the warm-up: compiles and allocates state
        optimizer.step()
    want = expected[name, implementation == "firefly-1group"]
    for i, (got, reference) in enumerate(zip(optimizer.values(), want)):
        assert got.dtype == np.float32
        # float32 updates computed in different orders agree to a few ulps.
        np.testing.assert_allclose(
            got, reference, rtol=1e-5, atol=1e-6, err_msg=f"{implementation} {name}, tensor {i}"
        )
    before = [v.copy() for v in optimizer.values()]
    benchmark(optimizer.step)
    assert all(
        not np.array_equal(b, v) and np.isfinite(v).all()
        for b, v in zip(before, optimizer.values())
    )


# ----------------------------------------------------------------------------- LBFGS
LBFGS_CONFIGS = {
    "fixed-step": dict(max_iter=10, history_size=10),
    "strong-wolfe": dict(max_iter=10, history_size=10, line_search_fn="strong_wolfe"),
}


def lbfgs_runner(library, config):
    """A function that restores the start and runs one step of a fresh LBFGS, and one that
    reads the parameters. The loss is 0.5 sum(c p^2) - sum(b p) per tensor, c in [1, 10]."""
    values, _ = problem()
    rng = np.random.default_rng(1)
    curvature = [rng.uniform(1.0, 10.0, v.shape).astype(np.float32) for v in values]
    offset = [rng.standard_normal(v.shape).astype(np.float32) for v in values]
    if library == "torch":
        params = [torch.tensor(v.copy()) for v in values]
        for p in params:
            p.grad = torch.zeros_like(p)
        arrays = [p.numpy() for p in params]
        grads = [p.grad.numpy() for p in params]
        make_optimizer, wrap = torch.optim.LBFGS, torch.tensor
    else:
        params = [Parameter(v.copy()) for v in values]
        for p in params:
            p.grad = Tensor(np.zeros_like(p.numpy()))
        arrays = [p._data for p in params]
        grads = [p.grad._data for p in params]
        make_optimizer, wrap = LBFGS, Tensor

    def closure():
        loss = 0.0
        for x, g, c, b in zip(arrays, grads, curvature, offset):
            np.multiply(c, x, out=g)
            loss += 0.5 * float(np.dot(g.ravel(), x.ravel())) - float(np.dot(b.ravel(), x.ravel()))
            g -= b
        return wrap(np.float32(loss))

    def run():
        for x, v in zip(arrays, values):
            x[...] = v
        make_optimizer(params, **LBFGS_CONFIGS[config]).step(closure)

    def objective():
        return sum(
            0.5 * float(np.dot((c * x).ravel(), x.ravel())) - float(np.dot(b.ravel(), x.ravel()))
            for x, c, b in zip(arrays, curvature, offset)
        )

    return run, objective


@pytest.mark.parametrize("library", ["firefly", "torch"])
@pytest.mark.parametrize(
    "config",
    [
        pytest.param(name, marks=pytest.mark.benchmark(group=f"lbfgs-step-1M-f32-{name}"))
        for name in LBFGS_CONFIGS
    ],
)
def test_lbfgs_step(benchmark, config, library):
    if torch is None:
        pytest.skip("needs torch for the comparison: pip install torch==2.13.0")
    run, objective = lbfgs_runner(library, config)
    start = objective()
    run()  # also the warm-up
    other_run, other_objective = lbfgs_runner(
        "torch" if library == "firefly" else "firefly", config
    )
    other_run()
    # float32 runs of the same algorithm in two libraries reach the same level, not the same
    # bits (the line search's decisions amplify rounding differences).
    assert objective() == pytest.approx(other_objective(), rel=1e-3)
    assert objective() < start
    benchmark(run)


# ----------------------------------------------------------------------------- clipping
MAX_NORM = 1e-3  # below the norm after every call, so every call scales (as torch always does)


def clip_firefly_flat(values, grads):
    params = [Parameter(v) for v in values]
    optimizer = SGD(params)
    optimizer.zero_grad()
    for p, g in zip(params, grads):
        p.tensor.grad._data[...] = g
    return lambda: clip_grad_norm_(params, MAX_NORM).item(), lambda: [
        p.tensor.grad.numpy() for p in params
    ]


def clip_firefly_loose(values, grads):
    params = [Parameter(v) for v in values]
    for p, g in zip(params, grads):
        p.tensor.grad = Tensor(g.copy())
    return lambda: clip_grad_norm_(params, MAX_NORM).item(), lambda: [
        p.tensor.grad.numpy() for p in params
    ]


def clip_numpy(values, grads):
    grads = [g.copy() for g in grads]

    def clip():
        total = math.sqrt(sum(float(np.dot(g.ravel(), g.ravel())) for g in grads))
        coefficient = MAX_NORM / (total + 1e-6)
        if coefficient < 1.0:
            for g in grads:
                g *= np.float32(coefficient)
        return total

    return clip, lambda: grads


def clip_torch(values, grads):
    params = [torch.tensor(v.copy()) for v in values]
    for p, g in zip(params, grads):
        p.grad = torch.tensor(g.copy())
    return (
        lambda: torch.nn.utils.clip_grad_norm_(params, MAX_NORM).item(),
        lambda: [p.grad.numpy() for p in params],
    )


CLIPPERS = {
    "firefly-flat": clip_firefly_flat,
    "firefly-loose": clip_firefly_loose,
    "numpy": clip_numpy,
    "torch": clip_torch if torch else None,
}


@pytest.mark.benchmark(group="clip-grad-norm-1M-f32")
@pytest.mark.parametrize("implementation", list(CLIPPERS))
def test_clip_grad_norm(benchmark, implementation):
    factory = CLIPPERS[implementation]
    if factory is None:
        pytest.skip("needs torch for the comparison: pip install torch==2.13.0")
    values, grads = problem()
    clip, current = factory(values, grads)
    want = math.sqrt(
        sum(
            float(np.dot(g.astype(np.float64).ravel(), g.astype(np.float64).ravel())) for g in grads
        )
    )
    assert clip() == pytest.approx(want, rel=1e-5)  # also the warm-up
    scale = MAX_NORM / (want + 1e-6)
    for got, g in zip(current(), grads):
        np.testing.assert_allclose(got, g * scale, rtol=1e-5, atol=1e-12)
    benchmark(clip)
    assert all(np.isfinite(g).all() for g in current())


# ----------------------------------------------------------------------------- schedulers
SCHEDULERS = {
    "StepLR": lambda m, o: m.StepLR(o, step_size=1000, gamma=0.5),
    "CosineAnnealingLR": lambda m, o: m.CosineAnnealingLR(o, T_max=1000),
    "OneCycleLR": lambda m, o: m.OneCycleLR(o, max_lr=0.1, total_steps=10**9),
    "ReduceLROnPlateau": lambda m, o: m.ReduceLROnPlateau(o),
}


@pytest.mark.parametrize("implementation", ["firefly", "torch"])
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.benchmark(group=f"scheduler-step-{name}"))
        for name in SCHEDULERS
    ],
)
def test_scheduler_step(benchmark, name, implementation):
    if implementation == "torch" and torch is None:
        pytest.skip("needs torch for the comparison: pip install torch==2.13.0")
    values = [np.zeros(3, np.float32) for _ in range(3)]
    if implementation == "firefly":
        optimizer = SGD([{"params": [Parameter(v)]} for v in values], lr=0.01, momentum=0.9)
        module = lr_scheduler
    else:
        optimizer = torch.optim.SGD(
            [{"params": [torch.tensor(v, requires_grad=True)]} for v in values],
            lr=0.01,
            momentum=0.9,
        )
        module = torch.optim.lr_scheduler
        optimizer._opt_called = True  # silence torch's "step() before optimizer.step()" warning
    scheduler = SCHEDULERS[name](module, optimizer)
    step = (lambda: scheduler.step(1.0)) if name == "ReduceLROnPlateau" else scheduler.step
    benchmark(step)
    assert len(scheduler.get_last_lr()) == 3
