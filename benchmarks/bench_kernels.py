"""Kernel families beside NumPy (and torch when installed), float32, grouped so that each
report table compares ways of computing the same thing:

    pytest benchmarks/bench_kernels.py --benchmark-enable --benchmark-columns=min,median,ops

Rows per group:
- ``firefly`` runs the op as users do, through the Tensor API (allocation included);
- ``kernel`` calls the Numba kernel on preallocated arrays (the floor under the op);
- ``numpy`` is the NumPy expression, allocating its result like the Tensor API does;
- ``torch`` is the equivalent torch call (backward rows use the aten backward kernels).

Kernels return None, so ``kernel(..., out) or out`` is a thunk's way to return the output.
Backward rows compare firefly's fused backward kernel (output allocated, as the op does) with
the several-pass NumPy composite it replaces. Every benchmark compiles and warms up outside
the timed region, and checks its result against NumPy in float64, so that plain test runs
(``--benchmark-disable``) execute each once as a correctness test.
"""

import numba
import numpy as np
import pytest
from scipy import special

from firefly import Tensor
from firefly.kernels import linalg as LK
from firefly.kernels import reduce as RK
from firefly.kernels import scan as SK
from firefly.ops import get


def kernel_of(op_name, attr="forward_kernel"):
    """The (first) kernel an op declares: the one its family built from its scalar math."""
    kernels = getattr(get(op_name), attr)
    return kernels[0] if isinstance(kernels, tuple) else kernels


try:
    import torch
except ImportError:  # torch is an optional comparison
    torch = None

SIZES = [1_000, 100_000, 1_000_000]
ROW = 1_000  # row length of the 2-D cases: (size // ROW, ROW)
IMPLS = ["firefly", "kernel", "numpy", "torch"]


def to_numpy(result):
    if isinstance(result, (tuple, list)):
        return [to_numpy(r) for r in result]
    if isinstance(result, Tensor):
        return result.numpy()
    if torch is not None and isinstance(result, torch.Tensor):
        return result.numpy()
    return np.asarray(result)


def run(benchmark, group, fn, expected, rtol=1e-5, atol=1e-6):
    """Warm ``fn`` up (compiling it), time it, and check its result against ``expected``."""
    benchmark.group = group
    fn()
    result = to_numpy(benchmark(fn))
    expected = expected if isinstance(expected, list) else [expected]
    result = result if isinstance(result, list) else [result]
    for got, want in zip(result, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def skip_missing_torch(impl):
    if impl == "torch" and torch is None:
        pytest.skip("needs torch for the comparison: pip install torch==2.13.0")


def inputs(size, count=2, low=-3.0, high=3.0, shape=None):
    rng = np.random.default_rng(size)
    return [rng.uniform(low, high, size=shape or size).astype(np.float32) for _ in range(count)]


# ----------------------------------------------------------------------------- elementwise forward
def forward_call(impl, arrays, firefly_fn, kernel, numpy_fn, torch_name):
    """What ``impl`` times for an elementwise forward on ``arrays``: firefly's Tensor API, the
    op's first kernel on flat arrays (for binary ops: equal shapes), NumPy, or torch."""
    if impl == "firefly":
        tensors = [Tensor(a) for a in arrays]
        return lambda: firefly_fn(*tensors)
    if impl == "kernel":
        out = np.empty_like(arrays[0])
        return lambda: kernel(*arrays, out) or out
    if impl == "numpy":
        return lambda: numpy_fn(*arrays)
    tensors = [torch.from_numpy(a) for a in arrays]
    return lambda: getattr(torch, torch_name)(*tensors)


def np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# name: (Tensor API, kernel, NumPy, torch, arity)
ELEMENTWISE = {
    "add": (lambda a, b: a + b, kernel_of("add"), np.add, "add", 2),
    "mul": (lambda a, b: a * b, kernel_of("mul"), np.multiply, "mul", 2),
    "relu": (Tensor.relu, kernel_of("relu"), lambda x: np.maximum(x, 0.0), "relu", 1),
    "exp": (Tensor.exp, kernel_of("exp"), np.exp, "exp", 1),
    "sigmoid": (Tensor.sigmoid, kernel_of("sigmoid"), np_sigmoid, "sigmoid", 1),
    "tanh": (Tensor.tanh, kernel_of("tanh"), np.tanh, "tanh", 1),
    "atan2": (Tensor.atan2, kernel_of("atan2"), np.arctan2, "atan2", 2),
    "remainder": (Tensor.remainder, kernel_of("remainder"), np.remainder, "remainder", 2),
    "erfc": (Tensor.erfc, kernel_of("erfc"), special.erfc, "erfc", 1),
}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_elementwise_forward(benchmark, name, size, impl):
    skip_missing_torch(impl)
    api, kernel, numpy_fn, torch_name, arity = ELEMENTWISE[name]
    arrays = inputs(size, arity)
    expected = numpy_fn(*(a.astype(np.float64) for a in arrays))
    fn = forward_call(impl, arrays, api, kernel, numpy_fn, torch_name)
    run(benchmark, f"forward {name} n={size:.0e}", fn, expected)


# ----------------------------------------------------------------------------- math, 2 precisions
# The vmath functions (firefly/kernels/vmath.py) behind these ops, in float32 and float64.
# name: (NumPy or SciPy function, torch function name, arity, input interval)
MATH = {
    "asin": (np.arcsin, "asin", 1, (-1.0, 1.0)),
    "acos": (np.arccos, "acos", 1, (-1.0, 1.0)),
    "atan": (np.arctan, "atan", 1, (-4.0, 4.0)),
    "atan2": (np.arctan2, "atan2", 2, (-3.0, 3.0)),
    "sinh": (np.sinh, "sinh", 1, (-5.0, 5.0)),
    "cosh": (np.cosh, "cosh", 1, (-5.0, 5.0)),
    "erf": (special.erf, "erf", 1, (-4.0, 4.0)),
    "erfc": (special.erfc, "erfc", 1, (-4.0, 10.0)),
}
MATH_SIZES = [10_000, 100_000, 1_000_000]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("size", MATH_SIZES)
@pytest.mark.parametrize("name", sorted(MATH))
def test_math_forward(benchmark, name, size, dtype, impl):
    skip_missing_torch(impl)
    numpy_fn, torch_name, arity, (low, high) = MATH[name]
    rng = np.random.default_rng(size)
    arrays = [rng.uniform(low, high, size).astype(dtype) for _ in range(arity)]
    expected = numpy_fn(*(a.astype(np.float64) for a in arrays))
    fn = forward_call(impl, arrays, getattr(Tensor, name), kernel_of(name), numpy_fn, torch_name)
    rtol, atol = (1e-5, 1e-6) if dtype == "float32" else (1e-13, 1e-15)
    run(benchmark, f"forward {name} {dtype} n={size:.0e}", fn, expected, rtol=rtol, atol=atol)


# ----------------------------------------------------------------------------- fused backward
def backward_case(name, size):
    """(arrays, NumPy composite, fused firefly kernel call, torch call) for one backward."""
    rows = max(size // ROW, 1)
    g, x = inputs(size, 2, shape=(rows, ROW))
    if name == "relu":
        numpy_fn = lambda g, x: g * (x > 0)  # noqa: E731
        kernel = kernel_of("relu", "backward_kernel")

        def fused(g, x):
            return (
                kernel(g.reshape(-1), x.reshape(-1), (out := np.empty_like(g)).reshape(-1)) or out
            )

        torch_fn = lambda g, x: torch.ops.aten.threshold_backward(g, x, 0)  # noqa: E731
        return (g, x), numpy_fn, fused, torch_fn
    if name in ("sigmoid", "tanh"):
        y = np_sigmoid(x) if name == "sigmoid" else np.tanh(x)  # backward reads the saved output
        if name == "sigmoid":
            numpy_fn = lambda g, y: g * y * (1.0 - y)  # noqa: E731
        else:
            numpy_fn = lambda g, y: g * (1.0 - y * y)  # noqa: E731
        kernel = kernel_of(name, "backward_kernel")

        def fused(g, y):
            return (
                kernel(g.reshape(-1), y.reshape(-1), (out := np.empty_like(g)).reshape(-1)) or out
            )

        aten = None if torch is None else getattr(torch.ops.aten, f"{name}_backward")
        torch_fn = lambda g, y: aten(g, y)  # noqa: E731
        return (g, y), numpy_fn, fused, torch_fn
    if name == "mul":
        b = inputs(size + 1, 1, shape=(rows, ROW))[0]
        numpy_fn = lambda g, a, b: (g * b, g * a)  # noqa: E731
        kernel = kernel_of("mul", "backward_kernel")

        def fused(g, a, b):
            da, db = np.empty_like(g), np.empty_like(g)
            kernel(g.ravel(), a.ravel(), b.ravel(), da.ravel(), db.ravel())
            return da, db

        torch_fn = lambda g, a, b: (g * b, g * a)  # noqa: E731
        return (g, x, b), numpy_fn, fused, torch_fn
    # softmax and log_softmax over the last axis, from the saved output
    shifted = x - x.max(axis=-1, keepdims=True)
    log_y = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    three_d = (rows, ROW, 1)
    if name == "softmax":
        numpy_fn = lambda g, y: y * (g - (g * y).sum(axis=-1, keepdims=True))  # noqa: E731
        kernel, saved = kernel_of("softmax", "backward_kernel"), np.exp(log_y)
        aten = lambda g, y: torch.ops.aten._softmax_backward_data(g, y, -1, torch.float32)  # noqa: E731
    else:
        numpy_fn = lambda g, y: g - np.exp(y) * g.sum(axis=-1, keepdims=True)  # noqa: E731
        kernel, saved = kernel_of("log_softmax", "backward_kernel"), log_y
        aten = lambda g, y: torch.ops.aten._log_softmax_backward_data(g, y, -1, torch.float32)  # noqa: E731

    def fused(g, y):
        return (
            kernel(
                g.reshape(three_d), y.reshape(three_d), (out := np.empty_like(g)).reshape(three_d)
            )
            or out
        )

    return (g, saved.astype(np.float32)), numpy_fn, fused, aten


@pytest.mark.parametrize("impl", ["kernel", "numpy", "torch"])
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh", "mul", "softmax", "log_softmax"])
def test_fused_backward(benchmark, name, size, impl):
    skip_missing_torch(impl)
    arrays, numpy_fn, fused, torch_fn = backward_case(name, size)
    expected = numpy_fn(*(a.astype(np.float64) for a in arrays))
    expected = list(expected) if isinstance(expected, tuple) else expected
    if impl == "kernel":
        fn = lambda: fused(*arrays)  # noqa: E731
    elif impl == "numpy":
        fn = lambda: numpy_fn(*arrays)  # noqa: E731
    else:
        tensors = [torch.from_numpy(a) for a in arrays]
        fn = lambda: torch_fn(*tensors)  # noqa: E731
    run(benchmark, f"backward {name} n={size:.0e}", fn, expected, atol=1e-5)


# ----------------------------------------------------------------------------- reductions
# name: (axis of the (rows, ROW) input, kernel view (outer, reduced, inner) of it)
REDUCTIONS = {
    "sum-full": (None, lambda rows: (1, rows * ROW, 1)),
    "sum-axis0": (0, lambda rows: (1, rows, ROW)),
    "sum-axis1": (1, lambda rows: (rows, ROW, 1)),
    "max-full": (None, lambda rows: (1, rows * ROW, 1)),
    "max-axis1": (1, lambda rows: (rows, ROW, 1)),
}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", sorted(REDUCTIONS))
def test_reduction(benchmark, name, size, impl):
    skip_missing_torch(impl)
    op = name.split("-")[0]
    axis, view = REDUCTIONS[name]
    rows = max(size // ROW, 1)
    (x,) = inputs(size, 1, shape=(rows, ROW))
    expected = getattr(np, op)(x.astype(np.float64), axis=axis)
    if impl == "firefly":
        t = Tensor(x)
        fn = lambda: getattr(t, op)(axis=axis)  # noqa: E731
    elif impl == "kernel":
        outer, _, inner = view(rows)
        out = np.empty((outer, inner), np.float32)
        if op == "sum":

            def fn():
                return RK.sum_forward(x.reshape(view(rows)), 1.0, out) or out.reshape(
                    expected.shape
                )

        else:
            fn = lambda: RK.max_forward(x.reshape(view(rows)), out) or out.reshape(expected.shape)  # noqa: E731
    elif impl == "numpy":
        fn = lambda: getattr(np, op)(x, axis=axis)  # noqa: E731
    else:
        tx = torch.from_numpy(x)
        if op == "sum":
            fn = lambda: tx.sum() if axis is None else tx.sum(dim=axis)  # noqa: E731
        else:
            fn = lambda: tx.max() if axis is None else tx.amax(dim=axis)  # noqa: E731
    run(benchmark, f"reduce {name} n={size:.0e}", fn, expected, rtol=1e-4, atol=1e-3)


# ----------------------------------------------------------------------------- cumsum
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dim", [0, 1])
def test_cumsum(benchmark, dim, size, impl):
    skip_missing_torch(impl)
    rows = max(size // ROW, 1)
    (x,) = inputs(size, 1, shape=(rows, ROW))
    expected = np.cumsum(x.astype(np.float64), axis=dim)
    if impl == "firefly":
        t = Tensor(x)
        fn = lambda: t.cumsum(dim)  # noqa: E731
    elif impl == "kernel":
        out = np.empty_like(x)
        view = (1, rows, ROW) if dim == 0 else (rows, ROW, 1)
        fn = lambda: SK.cumsum_along(x.reshape(view), False, out.reshape(view)) or out  # noqa: E731
    elif impl == "numpy":
        fn = lambda: np.cumsum(x, axis=dim)  # noqa: E731
    else:
        tx = torch.from_numpy(x)
        fn = lambda: torch.cumsum(tx, dim)  # noqa: E731
    run(benchmark, f"cumsum dim={dim} n={size:.0e}", fn, expected, rtol=1e-4, atol=1e-3)


# ----------------------------------------------------------------------------- softmax forward
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_forward(benchmark, name, size, impl):
    skip_missing_torch(impl)
    rows = max(size // ROW, 1)
    (x,) = inputs(size, 1, shape=(rows, ROW))
    x64 = x.astype(np.float64)
    shifted = x64 - x64.max(axis=-1, keepdims=True)
    log_y = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    expected = np.exp(log_y) if name == "softmax" else log_y
    if impl == "firefly":
        t = Tensor(x)
        fn = lambda: getattr(t, name)(axis=-1)  # noqa: E731
    elif impl == "kernel":
        kernel = kernel_of(name)
        out = np.empty_like(x)
        fn = lambda: kernel(x.reshape(rows, ROW, 1), out.reshape(rows, ROW, 1)) or out  # noqa: E731
    elif impl == "numpy":
        if name == "softmax":

            def fn():
                e = np.exp(x - x.max(axis=-1, keepdims=True))
                return e / e.sum(axis=-1, keepdims=True)
        else:

            def fn():
                s = x - x.max(axis=-1, keepdims=True)
                return s - np.log(np.exp(s).sum(axis=-1, keepdims=True))
    else:
        tx = torch.from_numpy(x)
        fn = lambda: getattr(torch, name)(tx, dim=-1)  # noqa: E731
    run(benchmark, f"{name} n={size:.0e}", fn, expected, atol=1e-5)


# ----------------------------------------------------------------------------- matmul
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("n", [64, 256, 1024])
def test_matmul(benchmark, n, impl):
    skip_missing_torch(impl)
    a, b = inputs(n, 2, low=-1.0, high=1.0, shape=(n, n))
    expected = a.astype(np.float64) @ b.astype(np.float64)
    if impl == "firefly":
        ta, tb = Tensor(a), Tensor(b)
        fn = lambda: ta @ tb  # noqa: E731
    elif impl == "kernel":
        out = np.empty((1, n, n), np.float32)
        fn = lambda: LK.matmul_forward(a.reshape(1, n, n), b.reshape(1, n, n), out) or out[0]  # noqa: E731
    elif impl == "numpy":
        fn = lambda: a @ b  # noqa: E731
    else:
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        fn = lambda: ta @ tb  # noqa: E731
    run(benchmark, f"matmul {n}x{n}", fn, expected, rtol=1e-4, atol=1e-4 * n)


# ----------------------------------------------------------------------------- sin, cos, tan
# vmath's vectorized sin/cos/tan in both precisions, at one thread and at Numba's default
# count (the parallel build runs from PARALLEL_MIN_TRANSCENDENTAL elements); torch gets the
# same thread count. NumPy's are single-threaded SIMD loops.
TRIG_THREADS = sorted({1, numba.config.NUMBA_NUM_THREADS})


@pytest.fixture(params=TRIG_THREADS, ids=lambda t: f"{t}thread")
def trig_threads(request):
    before = numba.get_num_threads(), torch.get_num_threads() if torch is not None else None
    numba.set_num_threads(request.param)
    if torch is not None:
        torch.set_num_threads(request.param)
    yield request.param
    numba.set_num_threads(before[0])
    if torch is not None:
        torch.set_num_threads(before[1])


@pytest.mark.parametrize("impl", ["firefly", "numpy", "torch"])
@pytest.mark.parametrize("size", [10_000, 100_000, 1_000_000])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", ["sin", "cos", "tan"])
def test_trig_forward(benchmark, name, dtype, size, impl, trig_threads):
    skip_missing_torch(impl)
    # tan's domain avoids its poles, where a 1-ulp input difference is a large relative one.
    low, high = (-1.4, 1.4) if name == "tan" else (-100.0, 100.0)
    (x,) = (a.astype(dtype) for a in inputs(size, 1, low=low, high=high))
    expected = getattr(np, name)(x.astype(np.float64))
    fn = forward_call(impl, [x], getattr(Tensor, name), None, getattr(np, name), name)
    group = f"forward {name} {np.dtype(dtype).name} n={size:.0e} {trig_threads}thread"
    run(benchmark, group, fn, expected, rtol=1e-5 if dtype == np.float32 else 1e-12)
