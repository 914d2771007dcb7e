"""Tensor: the constructor's dtype rules, operators, matmul, reductions, slicing, softmax and
the value/graph helpers, each checked against NumPy."""

import numpy as np
import pytest

import firefly
from firefly import Tensor
from firefly.testing import gradcheck

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)


def rand(*shape, dtype=np.float64, seed=0, low=-2.0, high=2.0):
    return np.random.default_rng(seed).uniform(low, high, size=shape).astype(dtype)


# ----------------------------------------------------------------------------- constructor
@pytest.mark.parametrize(
    "data, expected",
    [
        (1.5, F32),
        (3, F32),
        (True, F32),
        ([1.0, 2.0], F32),
        ([[1, 2], [3, 4]], F32),
        ([True, False], F32),
        (np.zeros(3, np.float32), F32),
        (np.zeros(3, np.float64), F64),
        (np.arange(3), F32),
        (np.arange(3, dtype=np.int8), F32),
        (np.array([True, False]), F32),
    ],
)
def test_constructor_dtype_rules(data, expected):
    assert Tensor(data).dtype == expected


def test_python_float_makes_a_0d_float32_tensor():
    t = Tensor(2.5)
    assert t.shape == () and t.dtype == F32 and t.item() == 2.5


def test_dtype_argument_overrides_the_default():
    assert Tensor(np.arange(3), dtype=np.int64).dtype == np.dtype(np.int64)
    assert Tensor([1, 2], dtype=np.float64).dtype == F64
    assert Tensor(np.zeros(2, np.float64), dtype=np.float32).dtype == F32


def test_contiguous_float_arrays_are_shared_not_copied():
    a = np.zeros((2, 3), np.float32)
    assert np.shares_memory(Tensor(a).numpy(), a)


def test_non_contiguous_arrays_become_contiguous():
    a = rand(4, 6)[:, ::2]
    t = Tensor(a)
    assert t.numpy().flags.c_contiguous and np.array_equal(t.numpy(), a)


def test_mixing_float32_and_float64_promotes_to_float64():
    a, b = Tensor(rand(3, dtype=np.float32)), Tensor(rand(3, seed=1))
    assert (a + b).dtype == F64 and (b * a).dtype == F64


@pytest.mark.parametrize("scalar", [2, 2.5, True])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_python_scalars_do_not_promote(scalar, dtype):
    t = Tensor(rand(3, dtype=dtype))
    for result in (t + scalar, scalar + t, t * scalar, scalar - t, t / scalar):
        assert result.dtype == dtype


def test_leaf_grad_has_the_leaf_shape_and_dtype_after_broadcast_and_promotion():
    a = Tensor(rand(3, dtype=np.float32), requires_grad=True)
    b = Tensor(rand(2, 3, seed=1), requires_grad=True)
    (a * b).sum().backward()
    assert a.grad.shape == (3,) and a.grad.dtype == F32
    assert b.grad.shape == (2, 3) and b.grad.dtype == F64
    np.testing.assert_allclose(a.grad.numpy(), b.numpy().sum(axis=0), rtol=1e-6)


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(TypeError, match="float32 and float64"):
        Tensor(np.arange(3), dtype=np.int64, requires_grad=True)


# ----------------------------------------------------------------------------- operators
BINARY = {
    "+": (lambda x, y: x + y),
    "-": (lambda x, y: x - y),
    "*": (lambda x, y: x * y),
    "/": (lambda x, y: x / y),
    "**": (lambda x, y: x**y),
}


@pytest.mark.parametrize("symbol", sorted(BINARY))
@pytest.mark.parametrize("number", [3, 0.5])
def test_operators_with_numbers_on_either_side(symbol, number):
    fn = BINARY[symbol]
    x = rand(2, 3, low=0.5, high=2.0)  # positive, so ** is real both ways
    np.testing.assert_allclose(fn(Tensor(x), number).numpy(), fn(x, number), rtol=1e-12)
    np.testing.assert_allclose(fn(number, Tensor(x)).numpy(), fn(number, x), rtol=1e-12)


@pytest.mark.parametrize("symbol", sorted(BINARY))
def test_operators_between_tensors_broadcast_and_differentiate(symbol):
    x, y = rand(2, 1, 3, low=0.5, high=2.0), rand(4, 1, seed=1, low=0.5, high=2.0)
    np.testing.assert_allclose(
        BINARY[symbol](Tensor(x), Tensor(y)).numpy(), BINARY[symbol](x, y), rtol=1e-12
    )
    assert gradcheck(BINARY[symbol], x, y)


def test_ndarray_on_the_left_defers_to_the_tensor():
    x, y = rand(2, 3), rand(3, 4, seed=1)
    assert isinstance(x + Tensor(x), Tensor) and isinstance(x @ Tensor(y), Tensor)
    np.testing.assert_allclose((x @ Tensor(y)).numpy(), x @ y)
    np.testing.assert_allclose((x - Tensor(x[0])).numpy(), x - x[0])


def test_unary_minus():
    x = rand(3)
    np.testing.assert_array_equal((-Tensor(x)).numpy(), -x)
    assert gradcheck(lambda t: -t, x)


# ----------------------------------------------------------------------------- matmul
MATMUL_SHAPES = [
    ((3,), (3,)),
    ((2, 3), (3,)),
    ((3,), (3, 4)),
    ((2, 3), (3, 4)),
    ((5, 2, 3), (3, 4)),
    ((2, 3), (5, 3, 4)),
    ((5, 2, 3), (5, 3, 4)),
    ((5, 1, 2, 3), (4, 3, 2)),
    ((2, 1, 2, 3), (1, 3, 3, 2)),
    ((4, 2, 3), (3,)),
    ((3,), (4, 3, 2)),
]


@pytest.mark.parametrize("shape_a, shape_b", MATMUL_SHAPES)
def test_matmul_matches_np_matmul(shape_a, shape_b):
    a, b = rand(*shape_a), rand(*shape_b, seed=1)
    out = Tensor(a) @ Tensor(b)
    expected = np.matmul(a, b)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)
    assert gradcheck(lambda x, y: x @ y, a, b)


def test_matmul_float32_stays_float32():
    a, b = rand(4, 3, dtype=np.float32), rand(3, 2, dtype=np.float32, seed=1)
    out = Tensor(a).matmul(Tensor(b))
    assert out.dtype == F32
    np.testing.assert_allclose(out.numpy(), a @ b, rtol=1e-5)


# ----------------------------------------------------------------------------- reductions
AXES = [None, 0, 1, -1, -3, (0, 2), (-1, 0), (0, 1, 2), ()]


@pytest.mark.parametrize("name", ["sum", "mean", "max"])
@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions_match_numpy(name, axis, keepdims):
    x = rand(2, 3, 4)
    out = getattr(Tensor(x), name)(axis=axis, keepdims=keepdims)
    expected = getattr(np, name)(x, axis=axis, keepdims=keepdims)
    assert out.shape == np.shape(expected)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12)
    assert gradcheck(lambda t: getattr(t, name)(axis=axis, keepdims=keepdims), x)


def test_reduce_sum_is_sum():
    x = rand(2, 3)
    np.testing.assert_allclose(Tensor(x).reduce_sum(axis=1).numpy(), x.sum(axis=1))


def test_max_splits_the_gradient_evenly_among_ties():
    x = Tensor([1.0, 3.0, 3.0, 2.0], requires_grad=True)
    x.max().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.5, 0.5, 0.0])

    y = Tensor([[3.0, 3.0, 3.0], [1.0, 2.0, 0.0]], requires_grad=True)
    y.max(axis=1).backward(np.array([3.0, 1.0], np.float32))
    np.testing.assert_array_equal(y.grad.numpy(), [[1.0, 1.0, 1.0], [0.0, 1.0, 0.0]])


# ----------------------------------------------------------------------------- slicing
INDEXES = [
    1,
    -1,
    (0, 2),
    slice(1, None),
    (slice(None), 1),
    (Ellipsis, 0),
    (None, 1),
    (slice(None, None, -1),),
    (-1, slice(None, None, 2)),
    (slice(0, 2), slice(3, 0, -2), 1),
    (slice(5, 9),),
]


@pytest.mark.parametrize("index", INDEXES, ids=repr)
def test_getitem_matches_numpy_and_scatters_its_gradient(index):
    x = rand(3, 4, 2)
    out = Tensor(x, requires_grad=True)
    sliced = out[index]
    expected = x[index]
    assert sliced.shape == np.shape(expected)
    np.testing.assert_array_equal(sliced.numpy(), expected)

    weights = rand(*np.shape(expected), seed=1)
    sliced.backward(weights)
    expected_grad = np.zeros_like(x)
    expected_grad[index] = weights  # basic slicing picks each element at most once
    np.testing.assert_array_equal(out.grad.numpy(), expected_grad)


def test_getitem_in_a_graph_passes_gradcheck():
    assert gradcheck(lambda t: t[1:, ::-1] * t[:-1, :], rand(3, 4))


# ----------------------------------------------------------------------------- softmax
def numpy_softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize("axis", [0, 1, -1, -2])
def test_softmax_and_log_softmax_along_each_axis(axis):
    x = rand(2, 3, 4, low=-5, high=5)
    expected = numpy_softmax(x, axis)
    np.testing.assert_allclose(Tensor(x).softmax(axis=axis).numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(
        Tensor(x).log_softmax(axis=axis).numpy(), np.log(expected), rtol=1e-12, atol=1e-12
    )
    assert gradcheck(lambda t: t.softmax(axis=axis), x)
    assert gradcheck(lambda t: t.log_softmax(axis=axis), x)


def test_softmax_does_not_overflow_on_large_inputs():
    x = np.array([1000.0, 1001.0, 1002.0], np.float32)
    np.testing.assert_allclose(
        Tensor(x).softmax().numpy(), numpy_softmax(x.astype(np.float64), -1), rtol=1e-6
    )


# ----------------------------------------------------------------------------- shape helpers
def test_reshape_transpose_permute_and_T():
    x = rand(2, 3, 4)
    t = Tensor(x)
    np.testing.assert_array_equal(t.reshape(4, -1).numpy(), x.reshape(4, -1))
    np.testing.assert_array_equal(t.reshape((6, 4)).numpy(), x.reshape(6, 4))
    np.testing.assert_array_equal(t.transpose(0, 2).numpy(), np.swapaxes(x, 0, 2))
    np.testing.assert_array_equal(t.transpose().numpy(), np.swapaxes(x, -2, -1))
    np.testing.assert_array_equal(t.permute(1, 2, 0).numpy(), x.transpose(1, 2, 0))
    np.testing.assert_array_equal(t.T.numpy(), x.T)


# ----------------------------------------------------------------------------- values and graph
def test_repr_shows_values_dtype_and_grad_fn():
    a = Tensor([1.5, -2.25], requires_grad=True)
    assert (
        "1.5" in repr(a)
        and "-2.25" in repr(a)
        and "float32" in repr(a)
        and "requires_grad=True" in repr(a)
    )
    product = a * a
    assert "grad_fn=<mul>" in repr(product) and "2.25" in repr(product)
    assert "grad_fn" not in repr(Tensor(1.0))


def test_item_numpy_detach_ndim_size_and_array():
    x = rand(2, 3)
    t = Tensor(x, requires_grad=True)
    assert Tensor(2.5).item() == 2.5 and isinstance(Tensor(2.5).item(), float)
    assert Tensor([[4.0]]).item() == 4.0
    with pytest.raises(ValueError, match="one-element"):
        t.item()
    assert t.numpy() is t.to_numpy() and np.array_equal(t.numpy(), x)
    assert t.ndim == 2 and t.size() == (2, 3) and t.size(1) == 3 and t.size(-1) == 3
    assert np.array_equal(np.asarray(t), x) and np.array(t, dtype=np.float32).dtype == F32

    d = (t * 2.0).detach()
    assert d.requires_grad is False and d.is_leaf and d.grad is None
    assert not (d * t).is_leaf  # still recorded through t, but not through d
    (d * t).sum().backward()
    np.testing.assert_allclose(t.grad.numpy(), 2.0 * x)


def test_zero_grad_drops_the_gradient():
    t = Tensor(rand(3), requires_grad=True)
    t.sum().backward()
    t.zero_grad()
    assert t.grad is None


def test_firefly_top_level_exports():
    assert firefly.Tensor is Tensor
    assert callable(firefly.no_grad) and firefly.float32 is np.float32
