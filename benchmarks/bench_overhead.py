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
@pytest.mark.parametrize(
    "impl, mode",
    [
        ("firefly", "recorded"),
        ("firefly", "unrecorded"),
        ("firefly", "no_grad"),
        ("numpy", "plain"),
        ("torch", "recorded"),
        ("torch", "unrecorded"),
    ],
)
def test_multiply_overhead(benchmark, impl, mode):
    a, b = operands()
    if impl == "torch" and torch is None:
        pytest.skip("needs torch for the comparison: pip install torch==2.13.0")
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
        assert result.requires_grad == (mode == "recorded") and result.is_leaf == (
            mode != "recorded"
        )
        result = result.numpy()
    elif impl == "torch":
        result = result.detach().numpy()
    np.testing.assert_array_equal(result, a * b)


# ----------------------------------------------------------------------------- issue 12's cases
# Each case runs beside torch (one thread, as the per-op comparison wants the dispatch cost) in
# the same benchmark group: a 0-d operand, a Python-number operand, and a 100-op chain with its
# backward (time per op = the row / 100; backward per node = chain row minus the forward row).
CHAIN = 100


def _chain(x, k):
    y = x
    for _ in range(k):
        y = y * 1.0001
    return y


def _firefly_case(case):
    a, b = operands()
    if case == "0-d":
        ta, tb = (
            Tensor(np.float32(0.5), requires_grad=True),
            Tensor(np.float32(1.5), requires_grad=True),
        )
        return lambda: ta * tb
    if case == "python-number":
        ta = Tensor(a, requires_grad=True)
        return lambda: ta * 1.5
    ta = Tensor(a, requires_grad=True)
    if case == "chain-forward":
        return lambda: _chain(ta, CHAIN)

    def forward_backward():
        ta.grad = None
        _chain(ta, CHAIN).sum().backward()

    return forward_backward


def _torch_case(case):
    a, b = operands()
    if case == "0-d":
        ta, tb = torch.tensor(0.5, requires_grad=True), torch.tensor(1.5, requires_grad=True)
        return lambda: ta * tb
    ta = torch.from_numpy(a).requires_grad_(True)
    if case == "python-number":
        return lambda: ta * 1.5
    if case == "chain-forward":
        return lambda: _chain(ta, CHAIN)

    def forward_backward():
        ta.grad = None
        _chain(ta, CHAIN).sum().backward()

    return forward_backward


@pytest.mark.parametrize("impl", ["firefly", "torch"])
@pytest.mark.parametrize(
    "case", ["0-d", "python-number", "chain-forward", "chain-forward-backward"]
)
def test_recorded_op_overhead(benchmark, case, impl):
    benchmark.group = f"overhead: {case}"
    if impl == "torch":
        if torch is None:
            pytest.skip("needs torch for the comparison: pip install torch==2.13.0")
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            fn = _torch_case(case)
            fn()
            benchmark(fn)
        finally:
            torch.set_num_threads(threads)
        return
    fn = _firefly_case(case)
    fn()  # compile outside the timed region
    out = benchmark(fn)
    if case == "python-number":
        np.testing.assert_array_equal(out.numpy(), operands()[0] * np.float32(1.5))
