"""The normalizing row kernels (the norms, softmax) run their parallel build from
PARALLEL_MIN_ROWS elements: above it, the Tensor API gives what the serial build gives, bit for
bit, forward and backward."""

import numpy as np
import pytest

import firefly
from firefly.kernels import norm as NK
from firefly.kernels.reduce import PARALLEL_MIN_ROWS
from firefly.ops import get

ROWS, ROW = PARALLEL_MIN_ROWS // 1000 + 3, 1000  # just above the threshold


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_softmax_above_the_row_threshold_matches_the_serial_build(op):
    kernels = get(op)
    assert kernels.forward_kernel.threshold == kernels.backward_kernel.threshold
    assert kernels.forward_kernel.threshold == PARALLEL_MIN_ROWS
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


def test_layer_norm_above_the_row_threshold_matches_the_serial_build():
    assert NK.layer_norm_forward.threshold == NK.layer_norm_backward.threshold
    assert NK.layer_norm_forward.threshold == PARALLEL_MIN_ROWS
    rng = np.random.default_rng(4)
    x, g = (rng.uniform(-3, 3, (ROWS, ROW)).astype(np.float32) for _ in range(2))
    w, b = (rng.uniform(0.5, 1.5, ROW).astype(np.float32) for _ in range(2))
    tx, tw, tb = (firefly.tensor(a, requires_grad=True) for a in (x, w, b))
    y = firefly.ops.apply("layer_norm", tx, tw, tb, normalized_shape=(ROW,))
    y.backward(firefly.tensor(g))
    mean, rstd, out = np.empty(ROWS), np.empty(ROWS), np.empty_like(x)
    NK.layer_norm_forward.serial(x, w, b, 1e-5, mean, rstd, out)
    dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty_like(w)
    NK.layer_norm_backward.serial(g, x, w, mean, rstd, True, dx, dw, db)
    np.testing.assert_array_equal(y.numpy(), out)
    for got, want in ((tx.grad, dx), (tw.grad, dw), (tb.grad, db)):
        np.testing.assert_array_equal(got.numpy(), want)
