"""Higher-order gradients beside torch eager, float64: a Hessian-vector product of an MLP's
loss (double backward), and one training step of a physics-informed MLP whose loss holds the
Laplacian from two nested ``grad(create_graph=True)`` calls.

    pytest benchmarks/bench_autograd.py --benchmark-enable --benchmark-columns=min,median,ops

Each benchmark first checks that firefly and torch compute the same numbers.
"""

import numpy as np
import pytest

import firefly
from firefly import Tensor, autograd, func

try:
    import torch
except ImportError:  # torch is an optional comparison
    torch = None

IMPLEMENTATIONS = ["firefly", "torch"]


def _library(impl):
    if impl == "torch" and torch is None:
        pytest.skip("torch is not installed")
    if impl == "torch":
        return lambda a, **kw: torch.tensor(a, dtype=torch.float64, **kw), torch.autograd.grad
    return lambda a, **kw: Tensor(np.array(a, dtype=np.float64), **kw), autograd.grad


# ----------------------------------------------------------------------------- HVP
HVP_SIZES = (64, 64, 1)
HVP_BATCH = 128


def _hvp_problem(impl):
    tensor, _ = _library(impl)
    rng = np.random.default_rng(0)
    data = tensor(rng.normal(size=(HVP_BATCH, HVP_SIZES[0])))
    target = tensor(rng.normal(size=(HVP_BATCH, 1)))
    shapes = [(HVP_SIZES[0], HVP_SIZES[1]), (HVP_SIZES[1],), (HVP_SIZES[1], 1), (1,)]
    params = tuple(tensor(rng.normal(size=s) / np.sqrt(s[0])) for s in shapes)
    vectors = tuple(tensor(rng.normal(size=s)) for s in shapes)

    def loss(w1, b1, w2, b2):
        out = (data @ w1 + b1).tanh() @ w2 + b2
        return ((out - target) ** 2).mean()

    if impl == "torch":
        return lambda: torch.autograd.functional.hvp(loss, params, vectors)[1]
    return lambda: func.hvp(loss, params, vectors)[1]


@pytest.mark.benchmark(group="autograd: HVP of an MLP loss (64-64-1, batch 128, float64)")
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_hvp(benchmark, impl):
    run = _hvp_problem(impl)
    result = benchmark(run)
    if torch is not None:
        expected = _hvp_problem("torch" if impl == "firefly" else "firefly")()
        for a, b in zip(result, expected):
            np.testing.assert_allclose(np.asarray(a.detach()), np.asarray(b.detach()), rtol=1e-10)


# ----------------------------------------------------------------------------- PINN step
PINN_POINTS = 256
PINN_WIDTH = 32


def _pinn_step(impl):
    """One Adam step of an MLP (tanh, sin) on -laplace(u) = f in the unit square, u = 0 on
    the boundary; returns the step and the loss series it produces."""
    tensor, grad = _library(impl)
    rng = np.random.default_rng(1)
    inside = rng.uniform(0, 1, size=(PINN_POINTS, 2))
    t = rng.uniform(0, 1, size=PINN_POINTS // 4)
    zeros, ones = np.zeros_like(t), np.ones_like(t)
    boundary = np.concatenate(
        [np.stack(p, 1) for p in ((t, zeros), (ones, t), (t, ones), (zeros, t))]
    )
    forcing = tensor(2 * np.pi**2 * np.sin(np.pi * inside[:, 0]) * np.sin(np.pi * inside[:, 1]))
    sizes = (2, PINN_WIDTH, PINN_WIDTH, 1)
    weights = [
        tensor(rng.uniform(-1, 1, size=(a, b)) / np.sqrt(a), requires_grad=True)
        for a, b in zip(sizes[:-1], sizes[1:])
    ]
    biases = [tensor(np.zeros(b), requires_grad=True) for b in sizes[1:]]
    params = [p for pair in zip(weights, biases) for p in pair]
    optimizer = (torch.optim.Adam if impl == "torch" else firefly.optim.Adam)(params, lr=1e-3)

    def net(x):
        x = (x @ weights[0] + biases[0]).tanh()
        x = (x @ weights[1] + biases[1]).sin()
        return x @ weights[2] + biases[2]

    boundary_points = tensor(boundary)

    def step():
        points = tensor(inside, requires_grad=True)
        u = net(points)
        (du,) = grad(u.sum(), points, create_graph=True)
        (d_ux,) = grad(du[:, 0].sum(), points, create_graph=True)
        (d_uy,) = grad(du[:, 1].sum(), points, create_graph=True)
        residual = -(d_ux[:, 0] + d_uy[:, 1]) - forcing
        edge = net(boundary_points)
        loss = (residual * residual).mean() + (edge * edge).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


@pytest.mark.benchmark(group="autograd: PINN step (2-32-32-1, 256 points, Laplacian, float64)")
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_pinn_step(benchmark, impl):
    step = _pinn_step(impl)
    losses = [step() for _ in range(3)]
    if torch is not None:
        other = _pinn_step("torch" if impl == "firefly" else "firefly")
        np.testing.assert_allclose(losses, [other() for _ in range(3)], rtol=1e-9)
    benchmark(step)
