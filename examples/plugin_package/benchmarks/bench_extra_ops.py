"""The plugin ops against the NumPy way of computing them, with firefly's built-in tanh (a
kernel of the same kind) as a yardstick. ``python -m pytest benchmarks --benchmark-enable``
times them; a plain run executes each once and checks the result."""
import numpy as np
import pytest
from scipy.special import erf

import firefly

N = 1_000_000
SQRT_2_OVER_PI = np.sqrt(2.0 / np.pi)


def numpy_softplus(x):
    return np.logaddexp(np.float32(0.0), x)


def numpy_gelu(x):
    return 0.5 * x * (1.0 + erf(x / np.float32(np.sqrt(2.0))))


def numpy_gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x**3)))


CASES = {
    "softplus": ("softplus", {}, numpy_softplus),
    "gelu": ("gelu", {}, numpy_gelu),
    "gelu_tanh": ("gelu", {"approximate": "tanh"}, numpy_gelu_tanh),
    "tanh (built-in)": ("tanh", {}, np.tanh),
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
