"""Issue 21's last pieces, forward plus backward in float32, firefly beside PyTorch eager on the
CPU (and NumPy's forward where it has the function):

- ``F.interpolate(mode="bicubic")`` doubling (16, 8, 32, 32);
- ``F.max_pool2d(return_indices=True)`` then ``F.max_unpool2d`` at (64, 32, 8, 8);
- ``linalg.matrix_norm(ord="nuc")`` of a batch of (64, 16, 16) matrices (an SVD each).

    pytest benchmarks/bench_resample_linalg.py --benchmark-enable

Before timing, each case checks that firefly and torch agree on the output and the input's
gradient. Plain test runs (``--benchmark-disable``) run each timed call once.
"""

import numpy as np
import pytest

import firefly
import firefly.nn.functional as F
from firefly.tensor import Tensor

torch = pytest.importorskip("torch")
TF = torch.nn.functional


def _unpooled(functional, x):
    out, indices = functional.max_pool2d(x, 2, return_indices=True)
    return functional.max_unpool2d(out, indices, 2)


# name -> (input shape, firefly function, torch function, NumPy forward or None)
CASES = {
    "interpolate-bicubic-16x8x32x32": (
        (16, 8, 32, 32),
        lambda x: F.interpolate(x, scale_factor=2, mode="bicubic"),
        lambda x: TF.interpolate(x, scale_factor=2, mode="bicubic"),
        None,
    ),
    "max_pool2d-indices-unpool-64x32x8x8": (
        (64, 32, 8, 8),
        lambda x: _unpooled(F, x),
        lambda x: _unpooled(TF, x),
        None,
    ),
    "matrix_norm-nuc-64x16x16": (
        (64, 16, 16),
        lambda x: firefly.linalg.matrix_norm(x, "nuc"),
        lambda x: torch.linalg.matrix_norm(x, "nuc"),
        lambda a: np.linalg.norm(a, "nuc", axis=(-2, -1)),
    ),
}


def make_step(name, implementation):
    shape, ours, theirs, numpy_forward = CASES[name]
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    if implementation == "numpy":
        return lambda: (numpy_forward(x), None)
    if implementation == "firefly":
        leaf = Tensor(x, requires_grad=True)

        def step():
            leaf.grad = None
            out = ours(leaf)
            out.backward(np.ones(out.shape, dtype=np.float32))
            return out.numpy(), leaf.grad.numpy()

        return step
    t_leaf = torch.tensor(x, requires_grad=True)

    def torch_step():
        t_leaf.grad = None
        out = theirs(t_leaf)
        out.backward(torch.ones_like(out))
        return out.detach().numpy(), t_leaf.grad.numpy()

    return torch_step


@pytest.mark.parametrize("implementation", ["firefly", "torch", "numpy"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_backward(benchmark, name, implementation):
    if implementation == "numpy" and CASES[name][3] is None:
        pytest.skip("NumPy has no such function")
    benchmark.group = name
    ours, theirs = make_step(name, "firefly"), make_step(name, "torch")
    (out, grad), (t_out, t_grad) = ours(), theirs()
    np.testing.assert_allclose(out, t_out, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(grad, t_grad, rtol=1e-3, atol=1e-4)
    if implementation == "numpy":
        np.testing.assert_allclose(make_step(name, "numpy")()[0], t_out, rtol=1e-4)
    benchmark(make_step(name, implementation))
