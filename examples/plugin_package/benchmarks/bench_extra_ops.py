"""The plugin ops beside the NumPy way of computing them and firefly's built-in ops of similar
cost (tanh, sigmoid): the families give a plugin's scalar math a built-in's speed.
``python -m pytest benchmarks --benchmark-enable`` times them; a plain run executes each once
and checks the result."""

import numpy as np
import pytest

import firefly

N = 1_000_000
SQRT_2_OVER_PI = np.float32(np.sqrt(2.0 / np.pi))


def numpy_softplus(x):
    return np.logaddexp(np.float32(0.0), x)


def numpy_gelu(x):
    return (
        np.float32(0.5)
        * x
        * (np.float32(1.0) + np.tanh(SQRT_2_OVER_PI * (x + np.float32(0.044715) * x**3)))
    )


def numpy_sigmoid(x):
    return np.float32(1.0) / (np.float32(1.0) + np.exp(-x))


# case: (op name, attrs, NumPy function)
CASES = {
    "extra_softplus": ("extra_softplus", {}, numpy_softplus),
    "extra_gelu": ("extra_gelu", {}, numpy_gelu),
    "extra_clamp": ("extra_clamp", {"min": -1.0, "max": 1.0}, lambda x: np.clip(x, -1.0, 1.0)),
    "tanh (built-in)": ("tanh", {}, np.tanh),
    "sigmoid (built-in)": ("sigmoid", {}, numpy_sigmoid),
}


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).standard_normal(N).astype(np.float32)


@pytest.mark.parametrize("case", list(CASES))
def test_forward_firefly(benchmark, x, case):
    name, attrs, numpy_fn = CASES[case]
    benchmark.group = f"forward {case}, {N:,} float32"
    firefly.ops.apply(name, x, **attrs)  # compile outside the timing
    with firefly.no_grad():
        out = benchmark(firefly.ops.apply, name, x, **attrs)
    np.testing.assert_allclose(out.numpy(), numpy_fn(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", list(CASES))
def test_forward_numpy(benchmark, x, case):
    _, _, numpy_fn = CASES[case]
    benchmark.group = f"forward {case}, {N:,} float32"
    assert benchmark(numpy_fn, x).shape == x.shape


@pytest.mark.parametrize("case", list(CASES))
def test_forward_backward_firefly(benchmark, x, case):
    name, attrs, _ = CASES[case]
    benchmark.group = f"forward+backward {case}, {N:,} float32"
    seed = np.ones_like(x)

    def step():
        t = firefly.Tensor(x, requires_grad=True)
        firefly.ops.apply(name, t, **attrs).backward(seed)
        return t.grad

    step()  # compile outside the timing
    grad = benchmark(step)
    assert grad.shape == x.shape and grad.dtype == np.float32
