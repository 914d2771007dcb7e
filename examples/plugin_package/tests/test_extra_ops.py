"""Tests of the installed plugin, through firefly's registry exactly as users reach it."""
import importlib.metadata

import numpy as np
import pytest
from scipy.special import erf

import firefly
from firefly.testing import check_op, gradcheck


def softplus_reference(arrays, attrs):
    (x,) = arrays
    beta = attrs.get("beta", 1.0)
    return np.logaddexp(0.0, beta * x) / beta


def gelu_reference(arrays, attrs):
    (x,) = arrays
    if attrs.get("approximate", "none") == "tanh":
        return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


@pytest.mark.parametrize("name", ["softplus", "gelu"])
def test_found_through_the_entry_point(name):
    version = importlib.metadata.version("firefly-extra-ops")
    assert name in firefly.ops.names()
    assert firefly.ops.origin(name) == f"firefly-extra-ops {version}"


@pytest.mark.parametrize("name, reference", [("softplus", softplus_reference), ("gelu", gelu_reference)])
def test_check_op_battery(name, reference):
    assert check_op(name, reference=reference)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("beta", [0.5, 1.0, 3.0])
def test_softplus_matches_numpy_without_overflow(dtype, beta):
    x = np.concatenate([np.linspace(-6.0, 6.0, 101), [-1e4, -100.0, 100.0, 1e4]]).astype(dtype)
    out = firefly.ops.apply("softplus", x, beta=beta).numpy()
    assert out.dtype == dtype and np.all(np.isfinite(out))
    np.testing.assert_allclose(out, softplus_reference((x.astype(np.float64),), {"beta": beta}), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("beta", [0.5, 3.0])
def test_softplus_beta_gradcheck(beta):
    x = np.random.default_rng(1).uniform(-3.0, 3.0, size=(3, 4))
    assert gradcheck("softplus", x, attrs={"beta": beta})


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gelu_matches_numpy(approximate, dtype):
    x = np.linspace(-8.0, 8.0, 201).astype(dtype)
    out = firefly.ops.apply("gelu", x, approximate=approximate).numpy()
    assert out.dtype == dtype
    expected = gelu_reference((x.astype(np.float64),), {"approximate": approximate})
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_gradcheck(approximate):
    x = np.random.default_rng(2).uniform(-4.0, 4.0, size=(2, 3, 4))
    assert gradcheck("gelu", x, attrs={"approximate": approximate})


def test_gelu_tanh_approximation_is_close_to_exact():
    x = np.linspace(-6.0, 6.0, 1001)
    exact = firefly.ops.apply("gelu", x).numpy()
    approx = firefly.ops.apply("gelu", x, approximate="tanh").numpy()
    assert 0 < np.max(np.abs(exact - approx)) < 1e-3


def test_backward_through_a_tensor_graph():
    x = firefly.Tensor(np.array([-2.0, 0.0, 2.0]), requires_grad=True)
    firefly.ops.apply("softplus", x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 1.0 / (1.0 + np.exp(-x.numpy())), rtol=1e-12)


@pytest.mark.parametrize("beta", [0.0, -1.0, float("inf"), float("nan"), "1", True])
def test_softplus_rejects_bad_beta(beta):
    with pytest.raises(ValueError, match="softplus: beta must be a positive finite number"):
        firefly.ops.apply("softplus", np.ones(3), beta=beta)


def test_gelu_rejects_unknown_approximation():
    with pytest.raises(ValueError, match=r"gelu: approximate must be one of \('none', 'tanh'\), got 'erf'"):
        firefly.ops.apply("gelu", np.ones(3), approximate="erf")
