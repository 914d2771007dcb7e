"""Kernel families and the op contract: a new elementwise op is a few lines of scalar math and
passes the battery, and check_op fails an op whose kernels are not what it declares."""

import threading

import numba
import numpy as np
import pytest
from numba import prange

import firefly
from firefly.kernels import families
from firefly.kernels import shape as shape_kernels
from firefly.kernels._jit import _sized_kernels, sized_kernel
from firefly.ops import BinaryOp, UnaryOp, get, register, unregister
from firefly.ops.elementwise import Neg
from firefly.testing import OpCheckError, check_op


@pytest.fixture
def registered():
    names = []

    def add(cls):
        register(cls)
        names.append(cls.name)
        return cls

    yield add
    for name in names:
        unregister(name)


def test_a_unary_op_is_its_scalar_math(registered):
    @registered
    class Softsign(UnaryOp):
        name = "test_softsign"

        def scalar_forward(x):
            return x / (1.0 + abs(x))

        def scalar_backward(grad, x):
            d = 1.0 + abs(x)
            return grad / (d * d)

        def derivative(grad, x, out):  # for create_graph=True: the same, with firefly ops
            d = 1.0 + x.abs()
            return grad / (d * d)

    assert check_op("test_softsign", reference=lambda a, attrs: a[0] / (1.0 + np.abs(a[0])))
    x = np.linspace(-3, 3, 7, dtype=np.float32)
    np.testing.assert_allclose(
        firefly.ops.apply("test_softsign", x).numpy(), x / (1 + np.abs(x)), rtol=1e-6
    )


def test_a_binary_op_is_its_scalar_math(registered):
    @registered
    class Hypot(BinaryOp):
        name = "test_hypot"
        backward_reads_output = True
        domain = (0.5, 2.0)

        def scalar_forward(a, b):
            return np.sqrt(a * a + b * b)

        def scalar_backward(grad, a, b, out):
            return grad * a / out, grad * b / out

        def derivative(grad, a, b, out):
            return grad * a / out, grad * b / out

    assert check_op("test_hypot", reference=lambda a, attrs: np.hypot(a[0], a[1]))


def test_the_kernels_run_are_the_declared_ones_and_each_direction_its_own():
    op = get("mul")
    flat_kernel, broadcast_kernel, gather = op.forward_kernel
    assert gather is shape_kernels.gather_strided
    assert op.backward_kernel[2] is firefly.kernels.reduce.sum_forward
    assert (
        "mul_forward" in flat_kernel.__name__
        and "mul_broadcast_forward" in broadcast_kernel.__name__
    )
    assert "mul_backward" in op.backward_kernel[0].__name__
    assert "mul_broadcast_backward" in op.backward_kernel[1].__name__


def test_ops_inheriting_scalar_math_from_an_unnamed_base_get_kernels_of_their_own():
    # The rounding ops inherit their zero derivative from _Rounding, which names no op.
    kernels = {name: get(name).backward_kernel for name in ("floor", "ceil", "round", "trunc")}
    assert len(set(kernels.values())) == 4
    for name, kernel in kernels.items():
        assert kernel.__name__.startswith(f"{name}_backward")


def test_specialisations_of_one_template_are_distinct_kernels():
    def double(x):
        return 2.0 * x

    def triple(x):
        return 3.0 * x

    a, b = families.unary_map("twice", double), families.unary_map("thrice", triple)
    (kernel_a,), (kernel_b,) = a.dispatchers(), b.dispatchers()
    assert kernel_a.py_func.__qualname__ != kernel_b.py_func.__qualname__
    assert a.__wrapped__.__code__ is b.__wrapped__.__code__  # one template loop
    x = np.arange(4.0)
    out_a, out_b = np.empty_like(x), np.empty_like(x)
    a(x, out_a)
    b(x, out_b)
    np.testing.assert_array_equal(out_a, 2 * x)
    np.testing.assert_array_equal(out_b, 3 * x)


def test_unknown_cost_is_refused():
    with pytest.raises(ValueError, match="cost must be one of"):
        families.unary_map("bad", lambda x: x, cost="cheap")


# ----------------------------------------------------------------------------- check_op catches
# Each op reuses already compiled kernels (neg's, copy_flat), so no test compiles anything.
class UndeclaredKernel(Neg):
    """Backward also copies through a kernel imported from its module: undeclared."""

    name = "test_undeclared"

    @classmethod
    def backward(cls, ctx, grad):
        dx = super().backward(ctx, grad)
        copy = np.empty_like(dx)
        shape_kernels.copy_flat(dx.reshape(-1), copy.reshape(-1))
        return copy


class NeverRuns(Neg):
    name = "test_never_runs"
    forward_kernel = (Neg.forward_kernel, shape_kernels.copy_flat)

    @classmethod
    def forward(cls, ctx, x):
        out = np.empty_like(x)
        cls.forward_kernel[0](x.reshape(-1), out.reshape(-1))
        return out


class WrongDirection(Neg):
    """Backward runs the forward kernel (negation) instead of its own."""

    name = "test_wrong_direction"

    @classmethod
    def backward(cls, ctx, grad):
        dx = np.empty_like(grad)
        cls.forward_kernel(grad.reshape(-1), dx.reshape(-1))
        return dx


@pytest.mark.parametrize(
    "cls, message",
    [
        (
            UndeclaredKernel,
            "backward ran firefly.kernels.shape.copy_flat, which neither forward_kernel nor "
            "backward_kernel declares",
        ),
        (NeverRuns, "declared kernels that never ran .*: forward_kernel\\[1\\]; remove them"),
        (
            WrongDirection,
            "backward ran forward_kernel\\[0\\], which forward_kernel declares but "
            "backward_kernel does not",
        ),
    ],
    ids=["undeclared", "never-ran", "wrong-direction"],
)
def test_check_op_fails_an_op_that_runs_other_kernels_than_it_declares(registered, cls, message):
    registered(cls)
    with pytest.raises(OpCheckError, match=message):
        check_op(cls.name, reference=lambda a, attrs: -a[0])
    # The check leaves the op and the kernel modules as they were.
    assert shape_kernels.copy_flat is firefly.ops.get("reshape").forward_kernel
    assert cls.forward_kernel is (
        NeverRuns.forward_kernel if cls is NeverRuns else Neg.forward_kernel
    )


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_softmax_special_values_match_torch(op, dtype):
    """The forward's max skips NaN (compare and select in lanes); a NaN anywhere in a row must
    still make the whole row NaN, as torch's softmax does, and infinities behave as torch's.
    Rows of 2 * 4 * 32 + 37: NaN placed first, inside a quad and in the short last block."""
    torch = pytest.importorskip("torch")
    n = 2 * 4 * 32 + 37
    x = np.random.default_rng(9).standard_normal((8, n)).astype(dtype)
    x[0, 0] = np.nan
    x[1, 70] = np.nan
    x[2, n - 1] = np.nan
    x[3, 200] = np.inf
    x[4, :] = -np.inf
    x[5, 5] = -np.inf
    x[6, 100] = 80.0  # exp(x - m) underflows to 0 for every other element
    x[7, n - 3] = 1e4  # the max in the short last block
    got = getattr(firefly.tensor(x), op)(axis=-1).numpy()
    want = getattr(torch, op)(torch.from_numpy(x), -1).numpy()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert np.isnan(got[:5]).all()
    ok = ~np.isnan(want)
    np.testing.assert_allclose(got[ok], want[ok], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("length", [1, 5, 31, 32, 33, 127, 128, 4 * 32 + 5, 2 * 4 * 32 + 37, 1061])
@pytest.mark.parametrize("axis", [-1, 1])
def test_row_softmax_matches_torch_in_float64(op, length, axis):
    """Rows shorter than, equal to and longer than the family's 32 lanes and its 128-element
    blocks (and their short last block), and longer than a 1024-element chunk, along the last
    axis (contiguous rows) and the middle one (copied rows): outputs within 1e-12 and gradients
    within 1e-9 of torch."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(length)
    shape = (3, length, 4) if axis == 1 else (5, length)
    x = rng.standard_normal(shape) * 4.0
    g = rng.standard_normal(shape)
    ours = firefly.tensor(x, requires_grad=True)
    y = getattr(ours, op)(axis=axis)
    y.backward(firefly.tensor(g))
    theirs = torch.tensor(x, requires_grad=True)
    want = getattr(torch, op)(theirs, axis)
    want.backward(torch.tensor(g))
    np.testing.assert_allclose(y.numpy(), want.detach().numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=0, atol=1e-9)


@pytest.mark.parametrize(
    "shape_a, shape_b",
    [
        ((3, 7, 5), (1, 7, 1)),  # three alternating runs: more than one outer index
        ((1, 100, 9), (1, 1, 9)),  # a row broadcast down more rows than chunks
        ((4, 1, 6), (1, 3, 1)),  # fewer middle rows than chunks
        ((1, 17, 1), (2, 1, 1)),
        ((2, 33, 8), (2, 1, 8)),
    ],
)
def test_broadcast_families_parallel_builds_match_serial_ones(shape_a, shape_b):
    # The parallel run cuts the rows of each outer index into shares; an operand broadcast
    # along a dimension must be read whole along it, every share's rows lined up.
    rng = np.random.default_rng(0)
    shape = tuple(max(x, y) for x, y in zip(shape_a, shape_b))
    a, b = rng.uniform(0.5, 2.0, shape_a), rng.uniform(0.5, 2.0, shape_b)
    grad = rng.uniform(-1.0, 1.0, shape)
    for name in ("mul", "div", "pow"):
        forward, backward = get(name).forward_kernel[1], get(name).backward_kernel[1]
        serial, parallel = np.empty(shape), np.empty(shape)
        forward.serial(a, b, serial)
        forward.parallel(a, b, parallel)
        np.testing.assert_array_equal(parallel, serial)
        da_s, db_s, da_p, db_p = np.empty(shape), serial.copy(), np.empty(shape), serial.copy()
        backward.serial(grad, a, b, da_s, db_s)
        backward.parallel(grad, a, b, da_p, db_p)
        np.testing.assert_array_equal(da_p, da_s)
        np.testing.assert_array_equal(db_p, db_s)


def test_a_sized_kernel_runs_the_build_its_size_and_the_thread_count_choose():
    # The thread count is read from the threading layer on each call (after the first, through
    # its C getter): it follows numba.set_num_threads, and one thread takes the serial build.
    ran = []

    def loop(x, out):
        for i in prange(out.size):
            out[i] = x[i]

    def serial(*args):  # stand in for the compiled runs
        ran.append("serial")

    def launch(shares, *args):
        ran.append("parallel")
        return 0  # shares that raised

    run = sized_kernel(loop, threshold=100)
    run.serial_build, run.launch = serial, launch
    small, large = np.empty(99), np.empty(100)
    before = numba.get_num_threads()
    try:
        for threads in (1, 2, 1):
            if threads > numba.config.NUMBA_NUM_THREADS:
                continue
            numba.set_num_threads(threads)
            ran.clear()
            run(small, small)
            run(large, small)
            run(small, large)
            expected = "serial" if threads == 1 else "parallel"
            assert ran == ["serial", expected, expected]
        # A Python thread starts at the process's default count, as numba.get_num_threads says.
        seen = []

        def other():
            ran.clear()
            run(large, large)
            seen.append((numba.get_num_threads(), ran[0]))

        worker = threading.Thread(target=other)
        worker.start()
        worker.join()
        ((count, build),) = seen
        assert build == ("serial" if count == 1 else "parallel")
    finally:
        numba.set_num_threads(before)
        _sized_kernels.pop(id(run))  # no kernel of the library's
