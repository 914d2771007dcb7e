"""softmax's backward runs its parallel build from PARALLEL_MIN_TRANSCENDENTAL elements, as
the forwards and log-softmax's backward do: above it, the Tensor API gives what the serial
builds give, bit for bit."""

import numpy as np
import pytest

import firefly
from firefly.kernels._jit import PARALLEL_MIN_TRANSCENDENTAL
from firefly.ops import get

ROWS, ROW = PARALLEL_MIN_TRANSCENDENTAL // 1000 + 3, 1000  # just above the threshold


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_softmax_above_the_parallel_threshold_matches_the_serial_build(op):
    kernels = get(op)
    assert kernels.forward_kernel.threshold == kernels.backward_kernel.threshold
    assert kernels.backward_kernel.threshold == PARALLEL_MIN_TRANSCENDENTAL
    rng = np.random.default_rng(3)
    x, g = (rng.uniform(-3, 3, (ROWS, ROW)).astype(np.float32) for _ in range(2))
    t = firefly.tensor(x, requires_grad=True)
    y = getattr(t, op)(axis=-1)
    y.backward(firefly.tensor(g))
    want_y, want_dx = np.empty_like(x), np.empty_like(x)
    kernels.forward_kernel.serial(x.reshape(ROWS, ROW, 1), want_y.reshape(ROWS, ROW, 1))
    kernels.backward_kernel.serial(
        g.reshape(ROWS, ROW, 1), want_y.reshape(ROWS, ROW, 1), want_dx.reshape(ROWS, ROW, 1)
    )
    np.testing.assert_array_equal(y.numpy(), want_y)
    np.testing.assert_array_equal(t.grad.numpy(), want_dx)
