"""The engine's fast paths give what the general path gives: Python numbers in either position
and either sign of zero, the flat and broadcast binary kernels, the full-reduction sum, and
outputs of ops that override a family's forward still checked."""

import numpy as np
import pytest
from numba.core.errors import TypingError

import firefly
from firefly import autograd
from firefly.ops import UnaryOp, get
from firefly.tensor import Tensor

DTYPES = [np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES)
def test_signed_zero_operands_keep_their_sign(dtype):
    t = Tensor(np.array([1.0, -2.0], dtype))
    for number in (-0.0, 0.0, -0.0):  # a cache keyed on value alone would mix these up
        got = (t * number).numpy()
        want = np.array([1.0, -2.0], dtype) * dtype(number)
        assert got.dtype == dtype
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


def test_constant_cache_stays_bounded_and_nan_is_never_kept():
    t = Tensor(np.ones(3, np.float32))
    for i in range(3 * autograd._MAX_CONSTANTS):
        t * (i + 0.5)
    for _ in range(100):
        assert np.isnan((t * float("nan")).numpy()).all()
    assert len(autograd._constants[np.dtype(np.float32)]) <= autograd._MAX_CONSTANTS
    assert not any(k != k for k in autograd._constants[np.dtype(np.float32)])


@pytest.mark.parametrize("dtype", DTYPES)
def test_python_numbers_first_or_second_match_numpy(dtype):
    a = np.array([0.5, -1.5, 2.0], dtype)
    t = Tensor(a, requires_grad=True)
    cases = [
        (lambda: 2.0 - t, 2.0 - a),
        (lambda: t - 2.0, a - 2.0),
        (lambda: 3.0 / t, 3.0 / a),
        (lambda: t / 3, a / 3),
        (lambda: 2 * t, 2 * a),
        (lambda: t**2.0, a**2.0),
    ]
    for fn, want in cases:
        out = fn()
        assert out.dtype == dtype and out.requires_grad
        np.testing.assert_array_equal(out.numpy(), want.astype(dtype))
    t.grad = None
    (3.0 / t).sum().backward()  # d/dt 3/t = -3/t**2
    np.testing.assert_allclose(t.grad.numpy(), -3.0 / a.astype(np.float64) ** 2, rtol=1e-6)


@pytest.mark.parametrize(
    "shapes",
    [
        ((4, 3), (4, 3)),
        ((4, 3), ()),
        ((), (4, 3)),
        ((4, 3), (1,)),
        ((4, 3), (3,)),
        ((4, 1), (1, 3)),
        ((2, 1, 3, 1), (1, 5, 1, 2)),
    ],
    ids=str,
)
def test_flat_and_broadcast_kernels_give_numpys_values_and_gradients(shapes):
    rng = np.random.default_rng(0)
    a, b = (rng.uniform(0.5, 2.0, s) for s in shapes)
    ta, tb = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
    out = ta * tb / (ta + tb)
    want = a * b / (a + b)
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-12)
    out.sum().backward()
    # d/da (ab/(a+b)) = b^2/(a+b)^2, summed over the broadcast dimensions
    da = np.broadcast_to(b * b / (a + b) ** 2, want.shape)
    db = np.broadcast_to(a * a / (a + b) ** 2, want.shape)
    np.testing.assert_allclose(ta.grad.numpy(), _sum_to(da, a.shape), rtol=1e-12)
    np.testing.assert_allclose(tb.grad.numpy(), _sum_to(db, b.shape), rtol=1e-12)


def _sum_to(g, shape):
    lead = g.ndim - len(shape)
    g = g.sum(axis=tuple(range(lead)))
    return g.sum(axis=tuple(i for i, d in enumerate(shape) if d == 1), keepdims=True).reshape(shape)


def test_flat_kernel_refuses_arrays_of_another_rank_when_it_compiles():
    flat = get("mul").forward_kernel[0]
    x = np.ones((1, 2, 3), np.float32)
    with pytest.raises(TypingError):
        flat(x, x, np.empty_like(x))


@pytest.mark.parametrize("shape", [(7,), (300, 301), (3, 70_000)], ids=str)
def test_full_sum_equals_the_axis_sum_bit_for_bit(shape):
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    every_axis = tuple(range(len(shape)))
    full = Tensor(x).sum().numpy()  # sum_flat
    by_axes = Tensor(x).sum(axis=every_axis).numpy()  # sum_forward
    assert full.tobytes() == by_axes.tobytes()
    np.testing.assert_allclose(full, x.astype(np.float64).sum(), rtol=1e-6)


def test_an_op_that_overrides_a_familys_forward_is_checked_again():
    class BadSquare(UnaryOp):
        name = "test_bad_square"

        def scalar_forward(x):
            return x * x

        def scalar_backward(grad, x):
            return 2.0 * x * grad

        @classmethod
        def forward(cls, ctx, x):
            return np.asfortranarray(np.stack([x, x], axis=-1))[..., 0]  # not C-contiguous

    assert not BadSquare.forward_output_trusted and get("exp").forward_output_trusted
    with pytest.raises(TypeError, match="test_bad_square.*C-contiguous"):
        autograd.apply(BadSquare, Tensor(np.ones((3, 2), np.float32)))


def test_integer_and_bool_operands_still_take_the_general_path():
    t = Tensor(np.array([1.0, 2.0], np.float32))
    np.testing.assert_array_equal((t * 2).numpy(), [2.0, 4.0])
    np.testing.assert_array_equal((t * True).numpy(), [1.0, 2.0])
    assert (t * np.float64(2.0)).dtype == np.float32  # a NumPy scalar takes the tensor's dtype
    with pytest.raises(TypeError, match="mul"):
        t * "2"
    assert firefly.is_grad_enabled()


# ----------------------------------------------------------------------------- strided geometry
# view_geometry and permute_copy compute offsets, strides and bounds with integer arithmetic on
# tuples; the gathers they drive must give exactly NumPy's views.
GEOMETRY_CASES = [
    (slice(None), 0),
    (slice(2, None, 3), -1),
    (slice(None, None, -1), slice(1, 4)),
    (Ellipsis, slice(None, None, -2)),
    (3, slice(None)),
    (slice(5, 5), slice(None)),  # empty: offset 0, nothing gathered
]


@pytest.mark.parametrize("index", GEOMETRY_CASES, ids=repr)
def test_view_geometry_gathers_numpys_view(index):
    from firefly.kernels.shape import gather_strided
    from firefly.ops.shapes import gather_view

    base = np.arange(7 * 5, dtype=np.float64).reshape(7, 5)
    view = base[index]
    got = gather_view(base, view, gather_strided)
    assert got.flags.c_contiguous and got.shape == view.shape
    np.testing.assert_array_equal(got, view)


@pytest.mark.parametrize("axes", [(1, 0, 2), (2, 0, 1), (0, 1, 2), (2, 1, 0)])
def test_permute_copy_matches_numpy_transpose(axes):
    from firefly.kernels.shape import gather_strided
    from firefly.ops.shapes import permute_copy

    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    np.testing.assert_array_equal(permute_copy(x, axes, gather_strided), x.transpose(axes))


@pytest.mark.parametrize("build", ["serial", "parallel"])
@pytest.mark.parametrize(
    "shape, axes",
    [
        ((3, 37, 5, 9), (0, 2, 1, 3)),
        ((2, 3, 41, 6), (3, 1, 2, 0)),
        ((50, 3), (1, 0)),
        ((35,), (0,)),
    ],
)
def test_gather_rows_in_blocks_match_numpy_in_both_builds(shape, axes, build):
    # gather_strided copies rows in blocks of GATHER_ROWS_PER_ITEM per plane: row counts that
    # are not a multiple of it, contiguous and strided last axes, 1 to 4 dimensions, and a
    # source offset, in the serial and the parallel build alike.
    from firefly.kernels.shape import GATHER_ROWS_PER_ITEM, gather_strided

    assert any(n % GATHER_ROWS_PER_ITEM and n > GATHER_ROWS_PER_ITEM for n in shape)
    base = np.arange(1 + int(np.prod(shape)), dtype=np.float32)
    x = base[1:].reshape(shape)
    view = x.transpose(axes)
    strides = np.array([s // x.itemsize for s in view.strides], dtype=np.int64)
    out = np.empty(view.size, dtype=np.float32)
    getattr(gather_strided, build)(base, 1, np.array(view.shape, dtype=np.int64), strides, out)
    np.testing.assert_array_equal(out.reshape(view.shape), view)


@pytest.mark.parametrize("build", ["serial", "parallel"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape, axes, flip",
    [
        ((29, 300), (1, 0), False),  # rows past one item, columns not a multiple of a pass
        ((3, 5, 130, 17), (0, 1, 3, 2), False),  # planes, and a source offset (below)
        ((2, 5, 40), (0, 2, 1), False),  # fewer columns than a pass: the row copy
        ((9, 260), (1, 0), True),  # a negative column stride (the source flipped)
        ((2, 10, 24), (0, 2, 1), False),  # columns a multiple of a pass: no column loop
    ],
)
def test_transposing_gather_matches_numpy_in_both_builds(shape, axes, flip, dtype, build):
    # A gather whose last two axes are the source's swapped copies in tiles
    # (TRANSPOSE_ROWS_PER_ITEM output rows, TRANSPOSE_COLUMNS_PER_PASS columns per pass).
    from firefly.kernels.shape import TRANSPOSE_ROWS_PER_ITEM, gather_strided
    from firefly.ops.shapes import view_geometry

    base = np.arange(1 + int(np.prod(shape)), dtype=dtype)
    x = base[1:].reshape(shape)
    view = (x[::-1] if flip else x).transpose(axes)
    if len(shape) == 2 and not flip:
        assert view.shape[0] > TRANSPOSE_ROWS_PER_ITEM  # more than one work item per plane
    offset, geometry_shape, strides = view_geometry(base, view)
    assert strides[-2] == 1 and strides[-1] != 1  # the transposing path, not the row copy
    out = np.full(view.size, -1, dtype=dtype)
    getattr(gather_strided, build)(base, offset, geometry_shape, strides, out)
    np.testing.assert_array_equal(out.reshape(view.shape), view)


@pytest.mark.parametrize("build", ["serial", "parallel"])
def test_transposing_gather_broadcasts_a_column(build):
    # (n, 1) broadcast to (n, m): strides (1, 0), the transposing path with a zero column
    # stride, every output row one source element repeated.
    from firefly.kernels.shape import gather_strided
    from firefly.ops.shapes import view_geometry

    base = np.arange(1, 301, dtype=np.float32)
    view = np.broadcast_to(base[:, None], (300, 19))
    offset, shape, strides = view_geometry(base, view)
    assert tuple(strides) == (1, 0)
    out = np.zeros(view.size, dtype=np.float32)
    getattr(gather_strided, build)(base, offset, shape, strides, out)
    np.testing.assert_array_equal(out.reshape(view.shape), view)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape, index",
    [
        ((7, 40), (slice(None), slice(1, -1))),  # contiguous rows: the sliced sum
        ((7, 40), (slice(None, None, -2), slice(None, None, 3))),  # strided, negative
        ((3, 4, 6, 5), (slice(None), 1, slice(None, None, -1), slice(0, 4))),
        ((5, 9), (slice(None), slice(None))),
    ],
)
def test_scatter_add_matches_numpy_add_at(shape, index, dtype):
    from firefly.kernels.shape import scatter_add_strided
    from firefly.ops.shapes import view_geometry

    rng = np.random.default_rng(0)
    dst = rng.uniform(-1, 1, size=shape).astype(dtype)
    want = dst.copy()
    view = want[index]
    values = rng.uniform(-1, 1, size=view.shape).astype(dtype)
    want[index] += values
    offset, geometry_shape, strides = view_geometry(dst, dst[index])
    scatter_add_strided(values.reshape(-1), offset, geometry_shape, strides, dst.reshape(-1))
    np.testing.assert_array_equal(dst, want)


def test_scatter_add_sums_rows_that_write_the_same_elements():
    # A zero row stride (a broadcast's adjoint): every row adds into the same elements.
    from firefly.kernels.shape import scatter_add_strided

    values = np.arange(12, dtype=np.float64).reshape(4, 3)
    dst = np.zeros(5)
    shape, strides = np.array([4, 3], np.int64), np.array([0, 1], np.int64)
    scatter_add_strided(values.reshape(-1), 1, shape, strides, dst)
    np.testing.assert_array_equal(dst, [0, *values.sum(axis=0), 0])


def test_strided_geometry_refuses_elements_outside_the_base():
    from firefly.ops.shapes import strided_geometry

    base = np.zeros(12)
    strided_geometry(base, 11, (3,), (-5,))  # reaches 11, 6, 1: inside
    for offset, shape, strides in [(0, (13,), (1,)), (1, (3,), (-1,)), (10, (2, 2), (1, 1))]:
        with pytest.raises(RuntimeError, match="falls outside its base"):
            strided_geometry(base, offset, shape, strides)


def test_geometry_arrays_stay_writeable_and_bounded():
    # Numba compiles a read-only array as another type: a kept array must stay writeable, or
    # every gather would compile twice.
    from firefly.ops import shapes

    base = np.zeros(4096)
    for n in range(1, 2 * shapes._MAX_GEOMETRIES):
        _, shape, strides = shapes.strided_geometry(base, 0, (n % 64 + 1, 1), (1, n))
        assert shape.flags.writeable and strides.flags.writeable
        assert shape.dtype == strides.dtype == np.int64
    assert len(shapes._geometry_arrays) <= shapes._MAX_GEOMETRIES


def test_tensor_subclass_defining_eq_stays_hashable_and_differentiable():
    # The backward walks key tensors by identity hash; Python drops __hash__ from a class that
    # defines __eq__, so Tensor restores it.
    class Tagged(Tensor):
        def __eq__(self, other):
            return super().__eq__(other)

    x = Tagged(np.array([1.0, 2.0]), requires_grad=True)
    assert hash(x) == object.__hash__(x)
    y = x * x
    (g,) = autograd.grad(y.sum(), x, create_graph=True)
    g.sum().backward()
    np.testing.assert_array_equal(g.numpy(), [2.0, 4.0])
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0])
