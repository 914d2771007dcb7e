"""Gradients summed from several consumers stay exact ndarrays of the input's shape and dtype,
0-d tensors included (NumPy turns the sum of two 0-d arrays into a scalar)."""

import numpy as np
import pytest

from firefly.tensor import Tensor

DTYPES = [np.float32, np.float64]
SHAPES = [(), (1,), (3,), (2, 3)]


@pytest.mark.parametrize("dtype", DTYPES)
def test_diamond_on_a_0d_leaf(dtype):
    x = Tensor(np.array(2.0, dtype=dtype), requires_grad=True)
    y = x * x  # 4
    z = y + y  # 8: y reaches z twice
    w = z * z  # 64: z reaches w twice
    w.backward()
    # dw/dx = 2z * 2 * 2x = 2 * 8 * 2 * 2 * 2
    assert x.grad.shape == () and x.grad.dtype == dtype
    assert isinstance(x.grad.to_numpy(), np.ndarray)
    assert x.grad.to_numpy() == 128.0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_doubling_chain_gives_exact_power_of_two(shape, dtype):
    x = Tensor(np.full(shape, 0.5, dtype=dtype), requires_grad=True)
    y = x
    for _ in range(30):
        y = y + y
    y.sum().backward()
    assert x.grad.shape == shape and x.grad.dtype == dtype
    np.testing.assert_array_equal(x.grad.to_numpy(), np.full(shape, 2.0**30, dtype=dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_scalar_loss_used_twice(dtype):
    w = Tensor(np.array([1.0, -2.0, 3.0], dtype=dtype), requires_grad=True)
    loss = (w * w).sum()  # 0-d
    total = loss + loss * 3.0  # the 0-d loss reaches total along two paths
    total.backward()
    np.testing.assert_array_equal(
        w.grad.to_numpy(), (8.0 * np.array([1.0, -2.0, 3.0])).astype(dtype)
    )
