"""Creation functions: shapes, values and dtypes against NumPy and torch, random draws from
firefly's generator (manual_seed reproduces them), requires_grad rules, and bad arguments."""

import numpy as np
import pytest

import firefly
from firefly import Tensor

F32, F64, I64 = np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int64)


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda: firefly.zeros(2, 3), np.zeros((2, 3), F32)),
        (lambda: firefly.zeros((2, 3), dtype=firefly.float64), np.zeros((2, 3))),
        (lambda: firefly.ones(4), np.ones(4, F32)),
        (lambda: firefly.ones([2, 2], dtype=firefly.int64), np.ones((2, 2), I64)),
        (lambda: firefly.full((2,), 1.5), np.full(2, 1.5, F32)),
        (lambda: firefly.full((2,), 7), np.full(2, 7, I64)),
        (lambda: firefly.full((2,), True), np.full(2, True)),
        (lambda: firefly.arange(5), np.arange(5)),
        (lambda: firefly.arange(1, 4), np.arange(1, 4)),
        (lambda: firefly.arange(0, 1, 0.25), np.arange(0, 1, 0.25, dtype=F32)),
        (lambda: firefly.arange(3, dtype=firefly.float64), np.arange(3.0)),
        (lambda: firefly.linspace(0, 1, 5), np.linspace(0, 1, 5).astype(F32)),
        (lambda: firefly.eye(3), np.eye(3, dtype=F32)),
        (lambda: firefly.eye(2, 3, dtype=firefly.float64), np.eye(2, 3)),
        (lambda: firefly.zeros_like(Tensor(np.ones((2, 2)))), np.zeros((2, 2))),
        (lambda: firefly.ones_like(firefly.arange(3)), np.ones(3, I64)),
        (lambda: firefly.full_like(np.zeros(2, F32), 3.0), np.full(2, 3.0, F32)),
        (lambda: firefly.tensor([[1, 2], [3, 4]]), np.array([[1, 2], [3, 4]])),
        (lambda: firefly.tensor([1.0, 2.0]), np.array([1.0, 2.0], F32)),
        (lambda: firefly.tensor([True, False]), np.array([True, False])),
        (lambda: firefly.tensor(np.zeros(2)), np.zeros(2)),
        (lambda: firefly.tensor(3), np.array(3)),
    ],
    ids=lambda v: "" if callable(v) else str(v.dtype),
)
def test_creation_values_shapes_and_dtypes_match_numpy(make, expected):
    t = make()
    assert isinstance(t, Tensor) and t.dtype == expected.dtype and t.shape == expected.shape
    np.testing.assert_array_equal(t.numpy(), expected)
    assert t.is_leaf and not t.requires_grad


def test_creation_dtypes_match_torch():
    torch = pytest.importorskip(
        "torch", reason="needs torch as the oracle: pip install torch==2.13.0"
    )
    for name, args in [
        ("zeros", (2,)),
        ("ones", (2,)),
        ("arange", (3,)),
        ("arange", (0, 1, 0.5)),
        ("rand", (2,)),
        ("randn", (2,)),
        ("eye", (2,)),
        ("linspace", (0, 1, 3)),
        ("full", ((2,), 1)),
        ("full", ((2,), 1.0)),
        ("tensor", ([1, 2],)),
        ("tensor", ([1.0],)),
        ("tensor", ([True],)),
    ]:
        got, want = getattr(firefly, name)(*args), getattr(torch, name)(*args)
        assert str(got.dtype) == str(want.dtype).replace("torch.", ""), name
        assert got.shape == tuple(want.shape), name


def test_requires_grad_makes_a_leaf_and_is_refused_for_integers():
    w = firefly.randn(3, 2, requires_grad=True)
    assert w.requires_grad and w.is_leaf
    (w * w).sum().backward()
    assert w.grad.shape == (3, 2)
    with pytest.raises(TypeError, match="arange.*int64"):
        firefly.arange(3, requires_grad=True)


def test_random_draws_come_from_fireflys_generator():
    firefly.manual_seed(3)
    first = [
        firefly.rand(4),
        firefly.randn(2, 2),
        firefly.randint(0, 10, (5,)),
        firefly.randint(4, (3,)),
    ]
    firefly.manual_seed(3)
    again = [
        firefly.rand(4),
        firefly.randn(2, 2),
        firefly.randint(0, 10, (5,)),
        firefly.randint(4, (3,)),
    ]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    rand, randn, randint, randint_high = first
    assert rand.dtype == F32 and ((rand.numpy() >= 0) & (rand.numpy() < 1)).all()
    assert randn.dtype == F32 and randint.dtype == I64
    assert ((randint.numpy() >= 0) & (randint.numpy() < 10)).all() and (
        randint_high.numpy() < 4
    ).all()
    assert firefly.randn_like(randn).shape == (2, 2) and firefly.rand_like(rand).dtype == F32


def test_randn_is_standard_normal():
    firefly.manual_seed(0)
    x = firefly.randn(100_000, dtype=firefly.float64).numpy()
    assert abs(x.mean()) < 0.02 and abs(x.std() - 1.0) < 0.02


def test_from_numpy_shares_memory_and_keeps_any_dtype():
    labels = np.array([0, 2, 1])
    t = firefly.from_numpy(labels)
    assert t.dtype == labels.dtype and np.shares_memory(t.numpy(), labels)
    with pytest.raises(ValueError, match="C-contiguous"):
        firefly.from_numpy(np.zeros((3, 4))[:, ::2])
    with pytest.raises(TypeError, match="ndarray"):
        firefly.from_numpy([1, 2])


def test_as_tensor_shares_where_it_can():
    a = np.zeros(3, F32)
    assert np.shares_memory(firefly.as_tensor(a).numpy(), a)
    t = Tensor(np.ones(2))
    assert firefly.as_tensor(t) is t and firefly.as_tensor(t, dtype=firefly.float32).dtype == F32
    assert firefly.as_tensor(np.arange(2)).dtype == I64


@pytest.mark.parametrize(
    "call, error, fragment",
    [
        (lambda: firefly.zeros(-1), ValueError, "non-negative"),
        (lambda: firefly.zeros(2.5), TypeError, "ints"),
        (lambda: firefly.ones(2, dtype="complex64"), TypeError, "complex64"),
        (lambda: firefly.arange(0, 5, 0), ValueError, "step"),
        (lambda: firefly.randint(5, 2, (3,)), ValueError, "high"),
        (lambda: firefly.randint(5), TypeError, "size"),
        (lambda: firefly.linspace(0, 1, -1), ValueError, "steps"),
    ],
)
def test_bad_arguments_name_the_function(call, error, fragment):
    with pytest.raises(error, match=fragment):
        call()


def test_randint_with_high_and_size_keyword_reads_as_torch():
    firefly.manual_seed(0)
    draws = firefly.randint(5, size=(200,))
    assert draws.shape == (200,) and draws.dtype == np.int64
    assert draws.numpy().min() >= 0 and draws.numpy().max() <= 4
    assert set(draws.numpy().tolist()) == {0, 1, 2, 3, 4}
    with pytest.raises(TypeError, match=r"randint: high must be an int, got float 2.5"):
        firefly.randint(0, 2.5, (3,))
