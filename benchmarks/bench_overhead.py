"""Per-op overhead: one elementwise multiply of two 8-element float32 tensors, where the
kernel's work is negligible and what is timed is the library's own cost per op.

    pytest benchmarks/bench_overhead.py --benchmark-enable --benchmark-columns=min,median,ops

``recorded`` inputs require grad, so the op builds a graph node; ``unrecorded`` ones do not;
``no_grad`` runs recorded inputs under ``firefly.no_grad()``. NumPy's ``a * b`` is the floor,
and torch the comparison, when installed.
"""
import numpy as np
import pytest

import firefly
from firefly import Tensor

try:
    import torch
except ImportError:  # torch is an optional comparison
    torch = None

SIZE = 8


def operands():
    rng = np.random.default_rng(0)
    return rng.uniform(-1, 1, SIZE).astype(np.float32), rng.uniform(-1, 1, SIZE).astype(np.float32)


def product_under(fn, mode):
    if mode == "no_grad":
        def under_no_grad():
            with firefly.no_grad():
                return fn()
        return under_no_grad
    return fn


@pytest.mark.benchmark(group="overhead: a * b, 8 float32")
@pytest.mark.parametrize("impl, mode", [
    ("firefly", "recorded"), ("firefly", "unrecorded"), ("firefly", "no_grad"),
    ("numpy", "plain"), ("torch", "recorded"), ("torch", "unrecorded"),
])
def test_multiply_overhead(benchmark, impl, mode):
    a, b = operands()
    if impl == "torch" and torch is None:
        pytest.skip("torch is not installed")
    if impl == "firefly":
        requires_grad = mode != "unrecorded"
        ta, tb = Tensor(a, requires_grad=requires_grad), Tensor(b, requires_grad=requires_grad)
        fn = lambda: ta * tb  # noqa: E731
    elif impl == "numpy":
        fn = lambda: a * b  # noqa: E731
    else:
        ta, tb = torch.from_numpy(a).requires_grad_(mode == "recorded"), torch.from_numpy(b)
        fn = lambda: ta * tb  # noqa: E731
    fn = product_under(fn, mode)
    fn()  # compile outside the timed region
    result = benchmark(fn)
    if impl == "firefly":
        assert result.requires_grad == (mode == "recorded") and result.is_leaf == (mode != "recorded")
        result = result.numpy()
    elif impl == "torch":
        result = result.detach().numpy()
    np.testing.assert_array_equal(result, a * b)
