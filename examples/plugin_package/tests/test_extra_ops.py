"""Tests of the installed plugin, through firefly's registry exactly as users reach it."""

import importlib.metadata

import numpy as np
import pytest

import firefly
from firefly.testing import check_op, gradcheck

NAMES = ["extra_softplus", "extra_gelu", "extra_clamp"]


def softplus_reference(arrays, attrs):
    return np.logaddexp(0.0, arrays[0])


def gelu_reference(arrays, attrs):
    (x,) = arrays
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def clamp_reference(arrays, attrs):
    return np.clip(arrays[0], attrs["min"], attrs["max"])


REFERENCES = {
    "extra_softplus": softplus_reference,
    "extra_gelu": gelu_reference,
    "extra_clamp": clamp_reference,
}


@pytest.mark.parametrize("name", NAMES)
def test_found_through_the_entry_point(name):
    version = importlib.metadata.version("firefly-extra-ops")
    assert name in firefly.ops.names()
    assert firefly.ops.origin(name) == f"firefly-extra-ops {version}"


@pytest.mark.parametrize("name", NAMES)
def test_check_op_battery(name):
    # Values against NumPy, gradients against finite differences, errors for bad inputs, and
    # that forward and backward run exactly the kernels each op declares.
    assert check_op(name, reference=REFERENCES[name])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softplus_matches_numpy_without_overflow(dtype):
    x = np.concatenate([np.linspace(-30.0, 30.0, 1001), [-1e4, -100.0, 100.0, 1e4]]).astype(dtype)
    out = firefly.ops.apply("extra_softplus", x).numpy()
    assert out.dtype == dtype and np.all(np.isfinite(out))
    expected = softplus_reference((x.astype(np.float64),), {})
    # Within a few ulps; subnormal results (x = -100 in float32) within one subnormal step.
    np.testing.assert_allclose(
        out,
        expected,
        rtol=2e-7 if dtype == np.float32 else 1e-14,
        atol=np.finfo(dtype).smallest_subnormal,
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gelu_matches_numpy(dtype):
    x = np.linspace(-8.0, 8.0, 2001).astype(dtype)
    out = firefly.ops.apply("extra_gelu", x).numpy()
    assert out.dtype == dtype
    expected = gelu_reference((x.astype(np.float64),), {})
    np.testing.assert_allclose(
        out,
        expected,
        rtol=1e-5 if dtype == np.float32 else 1e-13,
        atol=1e-6 if dtype == np.float32 else 1e-15,
    )


def test_gelu_gradcheck_on_a_wide_range():
    x = np.random.default_rng(2).uniform(-5.0, 5.0, size=(2, 3, 4))
    assert gradcheck("extra_gelu", x)


def test_softplus_backward_through_a_tensor_graph():
    x = firefly.Tensor(np.array([-2.0, 0.0, 2.0]), requires_grad=True)
    firefly.ops.apply("extra_softplus", x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 1.0 / (1.0 + np.exp(-x.numpy())), rtol=1e-12)


def test_clamp_passes_the_gradient_inside_the_bounds_only():
    x = firefly.Tensor(np.array([-3.0, -1.0, 0.5, 1.0, 3.0]), requires_grad=True)
    y = firefly.ops.apply("extra_clamp", x, min=-1.0, max=1.0)
    np.testing.assert_array_equal(y.numpy(), [-1.0, -1.0, 0.5, 1.0, 1.0])
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 1.0, 1.0, 1.0, 0.0])


@pytest.mark.parametrize(
    "attrs, message",
    [
        ({"min": 2.0, "max": 1.0}, r"extra_clamp: min \(2.0\) must not exceed max \(1.0\)"),
        ({"min": "0"}, "extra_clamp: min must be a number, got '0'"),
        ({"max": float("nan")}, "extra_clamp: max must be a number, got nan"),
    ],
)
def test_clamp_rejects_bad_bounds(attrs, message):
    with pytest.raises(ValueError, match=message):
        firefly.ops.apply("extra_clamp", np.ones(3), **attrs)
