"""The Tensor API a PyTorch user reaches for: comparisons, bool and integer tensors,
conversions, dim/keepdim, argmax/argmin and max(dim), shape ops, integer-array, mask and gather
indexing, and the selecting ops, against NumPy, finite differences and (where installed) torch."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes

import firefly
from firefly import Tensor
from firefly.testing import gradcheck

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)


def rand(*shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).uniform(-2.0, 2.0, size=shape).astype(dtype)


# ----------------------------------------------------------------------------- comparisons
COMPARISONS = [
    ("==", np.equal),
    ("!=", np.not_equal),
    ("<", np.less),
    ("<=", np.less_equal),
    (">", np.greater),
    (">=", np.greater_equal),
]


@pytest.mark.parametrize("symbol, reference", COMPARISONS)
def test_comparisons_are_elementwise_broadcast_and_return_bool(symbol, reference):
    a = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]], np.float32)
    b = np.array([2.0, 2.0, 2.0], np.float32)
    compare = eval(f"lambda x, y: x {symbol} y")  # noqa: S307  (the operator under test)
    for x, y in [
        (Tensor(a), Tensor(b)),
        (Tensor(a), b),
        (a, Tensor(b)),
        (Tensor(a), 2.0),
        (2, Tensor(a)),
    ]:
        result = compare(x, y)
        assert isinstance(result, Tensor) and result.dtype == np.bool_
        assert result.is_leaf and not result.requires_grad
        np.testing.assert_array_equal(result.numpy(), reference(np.asarray(x), np.asarray(y)))


def test_comparison_with_an_ndarray_on_the_left_is_elementwise_not_false():
    preds, labels = Tensor(np.array([1.0, 2.0, 3.0])), np.array([1.0, 0.0, 3.0])
    assert np.mean((labels == preds).float()) == pytest.approx(2 / 3)
    assert np.mean((preds == labels).numpy()) == pytest.approx(2 / 3)
    assert np.mean(preds == labels, dtype=np.float64) == pytest.approx(2 / 3)
    with pytest.raises(TypeError, match=r"float\(\)"):  # as torch: a bool tensor has no mean
        np.mean(preds == labels)


def test_comparisons_record_no_graph_on_tensors_that_require_grad():
    x = Tensor(rand(3), requires_grad=True)
    assert not (x > 0).requires_grad and (x > 0).is_leaf


def test_tensors_stay_hashable_by_identity():
    a, b = Tensor([1.0]), Tensor([1.0])
    assert len({a, b}) == 2 and {a: 1}[a] == 1


def test_equality_with_none_or_a_string_is_false_and_ordering_raises():
    t = Tensor([1.0])
    assert (t == None) is False and (t != "a") is True  # noqa: E711
    with pytest.raises(TypeError, match="compare"):
        t < "a"  # noqa: B015


def test_comparison_of_unbroadcastable_shapes_names_them():
    with pytest.raises(ValueError, match=r"\(2,\).*\(3,\)"):
        Tensor([1.0, 2.0]) == Tensor([1.0, 2.0, 3.0])  # noqa: B015


def test_logical_operators_on_bool_tensors():
    a, b = firefly.tensor([True, False, True]), firefly.tensor([True, True, False])
    np.testing.assert_array_equal((a & b).numpy(), [True, False, False])
    np.testing.assert_array_equal((a | b).numpy(), [True, True, True])
    np.testing.assert_array_equal((~a).numpy(), [False, True, False])
    with pytest.raises(TypeError, match="bool or integer"):
        Tensor([1.0]) & Tensor([1.0])


# ----------------------------------------------------------------------------- bool and int tensors
def test_bool_and_integer_tensors_sum_to_int64_and_convert():
    mask = Tensor(rand(4, 3)) > 0
    assert mask.sum().dtype == np.int64 and mask.sum().item() == int((rand(4, 3) > 0).sum())
    np.testing.assert_array_equal(mask.sum(dim=0).numpy(), (rand(4, 3) > 0).sum(axis=0))
    assert (
        mask.float().dtype == F32 and mask.double().dtype == F64 and mask.long().dtype == np.int64
    )
    assert mask.float().mean().item() == pytest.approx((rand(4, 3) > 0).mean())
    assert mask.numpy().dtype == np.bool_


@pytest.mark.parametrize(
    "make",
    [
        lambda: Tensor(np.arange(3), dtype=np.int64, requires_grad=True),
        lambda: (Tensor([1.0]) > 0).requires_grad_(),
        lambda: setattr(Tensor(np.arange(3), dtype=np.int64), "requires_grad", True),
        lambda: firefly.zeros(3, dtype=firefly.int64, requires_grad=True),
    ],
)
def test_bool_and_integer_tensors_refuse_requires_grad(make):
    with pytest.raises(TypeError, match="float32 and float64"):
        make()


def test_requires_grad_cannot_be_changed_on_a_computed_tensor():
    y = Tensor([1.0], requires_grad=True) * 2
    with pytest.raises(RuntimeError, match="leaf"):
        y.requires_grad = False


def test_shape_ops_and_indexing_work_on_integer_tensors_without_a_graph():
    labels = firefly.tensor([[0, 1, 2], [2, 1, 0]])
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels.view(-1).numpy(), [0, 1, 2, 2, 1, 0])
    np.testing.assert_array_equal(labels.T.numpy(), [[0, 2], [1, 1], [2, 0]])
    np.testing.assert_array_equal(labels[labels > 0].numpy(), [1, 2, 2, 1])
    np.testing.assert_array_equal(labels[:, 1].unsqueeze(1).numpy(), [[1], [1]])


# ----------------------------------------------------------------------------- conversions
def test_python_number_conversions_of_one_element_tensors():
    assert float(Tensor([[2.5]])) == 2.5 and int(Tensor(3.7)) == 3 and bool(Tensor([0.0])) is False
    assert Tensor([[1.0, 2.0]]).tolist() == [[1.0, 2.0]] and Tensor(2.0).tolist() == 2.0
    assert Tensor(np.zeros((2, 3))).dim() == 2


@pytest.mark.parametrize(
    "convert, error", [(float, ValueError), (int, ValueError), (bool, RuntimeError)]
)
def test_python_number_conversions_of_bigger_tensors_say_why(convert, error):
    with pytest.raises(error, match=r"\(2,\)"):
        convert(Tensor([1.0, 2.0]))


def test_float_double_and_to_are_differentiable_casts():
    x = Tensor(rand(3), requires_grad=True)  # float64
    y = x.float()
    assert y.dtype == F32 and not y.is_leaf
    (y * 2).sum().backward()
    assert x.grad.dtype == F64
    np.testing.assert_array_equal(x.grad.numpy(), np.full(3, 2.0))
    assert x.to(np.float64) is x and x.double() is x and x.to("cpu") is x
    assert x.to(Tensor(np.zeros(1, np.float32))).dtype == F32
    with pytest.raises(ValueError, match="CPU"):
        x.to("cuda")


def test_clone_copies_and_is_differentiable_detach_shares_and_is_not():
    x = Tensor(rand(3), requires_grad=True)
    c, d = x.clone(), x.detach()
    assert not np.shares_memory(c.numpy(), x.numpy()) and np.shares_memory(d.numpy(), x.numpy())
    assert not d.requires_grad and d.is_leaf
    (c * c).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy())
    assert gradcheck(lambda t: t.clone() * t, rand(2, 3))


# ----------------------------------------------------------------------------- dim and keepdim
@pytest.mark.parametrize("method", ["sum", "mean", "amax", "argmax", "argmin", "any", "all"])
def test_dim_and_keepdim_mean_axis_and_keepdims(method):
    x = Tensor(rand(2, 3, 4))
    by_dim = getattr(x, method)(dim=1, keepdim=True)
    by_axis = getattr(x, method)(axis=1, keepdims=True)
    positional = getattr(x, method)(1, True)
    assert by_dim.shape == (2, 1, 4)
    np.testing.assert_array_equal(by_dim.numpy(), by_axis.numpy())
    np.testing.assert_array_equal(by_dim.numpy(), positional.numpy())


@pytest.mark.parametrize(
    "call",
    [
        lambda x: x.sum(dim=0, axis=0),
        lambda x: x.mean(1, keepdim=True, keepdims=True),
        lambda x: x.softmax(dim=0, axis=0),
        lambda x: x.log_softmax(0, axis=0),
        lambda x: x.argmax(dim=0, axis=0),
        lambda x: x.max(dim=0, axis=0),
    ],
)
def test_giving_both_spellings_is_a_type_error(call):
    with pytest.raises(TypeError, match="both"):
        call(Tensor(rand(2, 3)))


def test_softmax_accepts_dim():
    x = rand(2, 3)
    np.testing.assert_allclose(Tensor(x).softmax(dim=0).numpy(), Tensor(x).softmax(axis=0).numpy())


# ----------------------------------------------------------------------------- argmax and max(dim)
def test_argmax_and_argmin_match_numpy_and_pick_the_first_tie():
    x = np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 0.0]])
    assert Tensor(x).argmax().item() == 1 and Tensor(x).argmax().dtype == np.int64
    np.testing.assert_array_equal(Tensor(x).argmax(dim=1).numpy(), [1, 0])
    np.testing.assert_array_equal(Tensor(x).argmin(dim=1).numpy(), [0, 1])
    np.testing.assert_array_equal(Tensor(x).argmax(dim=0).numpy(), np.argmax(x, axis=0))


def test_max_with_dim_returns_values_and_indices_and_without_the_maximum():
    x = Tensor(np.array([[1.0, 5.0, 2.0], [7.0, 0.0, 3.0]]), requires_grad=True)
    values, indices = x.max(dim=1)
    np.testing.assert_array_equal(values.numpy(), [5.0, 7.0])
    np.testing.assert_array_equal(indices.numpy(), [1, 0])
    values.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0, 1, 0], [1, 0, 0]])
    assert x.max().item() == 7.0 and x.max(axis=1).shape == (2,)
    low, where = firefly.min(x, 1, keepdim=True)
    assert low.shape == (2, 1) and where.numpy().tolist() == [[0], [1]]


def test_argmax_of_an_empty_tensor_names_it():
    with pytest.raises(ValueError, match=r"argmax.*\(0, 3\)"):
        Tensor(np.zeros((0, 3))).argmax()


# ----------------------------------------------------------------------------- shape ops
def test_view_flatten_squeeze_unsqueeze_match_numpy_and_differentiate():
    x = rand(2, 1, 3, 1)
    t = Tensor(x)
    assert (
        t.view(3, 2).shape == (3, 2) and t.view(-1).shape == (6,) and t.view((2, 3)).shape == (2, 3)
    )
    assert (
        t.flatten().shape == (6,)
        and t.flatten(1).shape == (2, 3)
        and t.flatten(0, 1).shape == (2, 3, 1)
    )
    assert (
        t.squeeze().shape == (2, 3)
        and t.squeeze(1).shape == (2, 3, 1)
        and t.squeeze(0).shape == x.shape
    )
    assert t.unsqueeze(0).shape == (1, 2, 1, 3, 1) and t.unsqueeze(-1).shape == (2, 1, 3, 1, 1)
    assert gradcheck(lambda a: a.flatten(1).unsqueeze(0).squeeze() * a.view(2, 3), x)


def test_shape_op_dims_out_of_range_name_the_shape():
    with pytest.raises(IndexError, match=r"unsqueeze.*\(2, 3\)"):
        Tensor(rand(2, 3)).unsqueeze(3)
    with pytest.raises(IndexError, match=r"flatten.*\(2, 3\)"):
        Tensor(rand(2, 3)).flatten(0, 2)


def test_expand_broadcasts_and_sums_the_gradient_back():
    x = rand(3, 1)
    out = Tensor(x).expand(2, 3, 4)
    np.testing.assert_array_equal(out.numpy(), np.broadcast_to(x, (2, 3, 4)))
    assert Tensor(x).expand(-1, 5).shape == (3, 5)
    assert gradcheck(lambda a: a.expand(2, 3, 4) * a.expand(2, 3, 4), x)


def test_cat_and_stack_match_numpy_and_differentiate():
    a, b, c = rand(2, 3), rand(1, 3, seed=1), rand(2, 3, seed=2)
    np.testing.assert_array_equal(
        firefly.cat([Tensor(a), Tensor(b), Tensor(c)]).numpy(), np.concatenate([a, b, c])
    )
    np.testing.assert_array_equal(
        firefly.cat([Tensor(a), Tensor(c)], dim=-1).numpy(), np.concatenate([a, c], -1)
    )
    np.testing.assert_array_equal(
        firefly.stack([Tensor(a), Tensor(c)], dim=1).numpy(), np.stack([a, c], 1)
    )
    assert gradcheck(lambda x, y, z: firefly.cat([x, y * y, z, x], 0), a, b, c)
    assert gradcheck(lambda x, z: firefly.stack([x, z * x], -1), a, c)


def test_cat_and_stack_refuse_mismatched_shapes_naming_them():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
        firefly.cat([Tensor(rand(2, 3)), Tensor(rand(2, 4))])
    with pytest.raises(ValueError, match="same shape"):
        firefly.stack([Tensor(rand(2, 3)), Tensor(rand(3, 2))])
    with pytest.raises(ValueError, match="non-empty"):
        firefly.cat([])


def test_split_and_chunk_match_numpy_and_differentiate():
    x = rand(5, 4)
    pieces = Tensor(x).split(2)
    assert [p.shape for p in pieces] == [(2, 4), (2, 4), (1, 4)]
    assert [p.shape for p in Tensor(x).split([1, 3], dim=1)] == [(5, 1), (5, 3)]
    assert [p.shape for p in Tensor(x).chunk(2, dim=1)] == [(5, 2), (5, 2)]
    for got, want in zip(Tensor(x).chunk(3), np.array_split(x, 3)):
        np.testing.assert_array_equal(got.numpy(), want)
    assert gradcheck(lambda a: a.split([1, 3], dim=1)[1] * 2.0, x)
    with pytest.raises(ValueError, match="add up"):
        Tensor(x).split([1, 1])


# ----------------------------------------------------------------------------- indexing
@pytest.mark.parametrize(
    "index",
    [
        np.array([0, 2, 2]),
        [1, 0],
        (np.arange(3), np.array([1, 0, 1])),
        (slice(None), np.array([0, 0])),
        np.array([[0, 1], [2, 2]]),
        (np.array([2]), slice(1, None)),
    ],
    ids=["array", "list", "pairs", "slice+array", "2-d", "array+slice"],
)
def test_integer_array_indexing_matches_numpy_and_scatter_adds(index):
    x = rand(3, 2)
    out = Tensor(x, requires_grad=True)
    np.testing.assert_array_equal(out[index].numpy(), x[index])
    out[index].sum().backward()
    expected = np.zeros_like(x)
    np.add.at(expected, index, 1.0)  # repeated indices accumulate
    np.testing.assert_array_equal(out.grad.numpy(), expected)
    assert gradcheck(lambda a: a[index] * a[index], x)


def test_boolean_mask_indexing_matches_numpy_and_differentiates():
    x = rand(3, 4)
    mask = x > 0
    np.testing.assert_array_equal(Tensor(x)[Tensor(x) > 0].numpy(), x[mask])
    np.testing.assert_array_equal(Tensor(x)[mask[:, 0]].numpy(), x[mask[:, 0]])
    assert gradcheck(lambda a: a[mask] * 3.0, x)


def test_indexing_with_an_integer_tensor():
    x, labels = rand(4, 3), firefly.tensor([2, 0, 1, 1])
    np.testing.assert_array_equal(
        Tensor(x)[firefly.arange(4), labels].numpy(), x[np.arange(4), labels.numpy()]
    )


def test_gather_matches_take_along_axis_and_scatter_adds():
    x = rand(3, 4)
    index = np.array([[0, 0], [3, 1], [2, 2]])
    np.testing.assert_array_equal(
        Tensor(x).gather(1, index).numpy(), np.take_along_axis(x, index, 1)
    )
    index0 = np.array([[2, 0, 1, 1]])
    np.testing.assert_array_equal(
        Tensor(x).gather(0, index0).numpy(), np.take_along_axis(x, index0, 0)
    )
    assert gradcheck(lambda a: a.gather(1, index) * 2.0, x)


def test_setitem_writes_in_place_outside_a_graph():
    x = Tensor(np.zeros((2, 3)))
    x[x == 0] = 1.0
    x[0, Tensor(np.array([1]), dtype=np.int64)] = 5.0
    np.testing.assert_array_equal(x.numpy(), [[1, 5, 1], [1, 1, 1]])
    with pytest.raises(RuntimeError, match="no_grad"):
        Tensor(np.zeros(2), requires_grad=True)[0] = 1.0


# ----------------------------------------------------------------------------- selecting ops
SELECT_CASES = {
    "abs": (lambda a: a.abs(), np.abs),
    "sqrt": (lambda a: (a * a + 0.5).sqrt(), lambda a: np.sqrt(a * a + 0.5)),
    "sign": (lambda a: a.sign() * a, lambda a: np.sign(a) * a),
    "clamp": (lambda a: a.clamp(min=-0.5, max=0.7), lambda a: np.clip(a, -0.5, 0.7)),
    "clamp_min": (lambda a: a.clamp(min=0.1), lambda a: np.maximum(a, 0.1)),
    "clip_max": (lambda a: a.clip(max=0.1), lambda a: np.minimum(a, 0.1)),
}


@pytest.mark.parametrize("name", sorted(SELECT_CASES))
def test_unary_selecting_ops_match_numpy_and_finite_differences(name):
    fn, reference = SELECT_CASES[name]
    x = rand(3, 4, seed=7)
    np.testing.assert_allclose(fn(Tensor(x)).numpy(), reference(x), rtol=1e-12)
    assert gradcheck(fn, x)


def test_maximum_minimum_broadcast_and_split_ties():
    a, b = rand(2, 3), rand(3, seed=1)
    np.testing.assert_array_equal(firefly.maximum(Tensor(a), Tensor(b)).numpy(), np.maximum(a, b))
    np.testing.assert_array_equal(Tensor(a).minimum(Tensor(b)).numpy(), np.minimum(a, b))
    assert gradcheck(lambda x, y: firefly.maximum(x, y) * firefly.minimum(y, x), a, b)
    x, y = Tensor([1.0, 2.0], requires_grad=True), Tensor([1.0, 0.0], requires_grad=True)
    firefly.maximum(x, y).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.5, 1.0])
    np.testing.assert_array_equal(y.grad.numpy(), [0.5, 0.0])


def test_where_selects_broadcasts_and_differentiates_both_branches():
    a, b = rand(2, 3), rand(3, seed=1)
    condition = a > 0
    np.testing.assert_array_equal(
        firefly.where(Tensor(a) > 0, Tensor(a), Tensor(b)).numpy(), np.where(condition, a, b)
    )
    np.testing.assert_array_equal(
        firefly.where(Tensor(a) > 0, Tensor(a), 0.0).numpy(), np.where(condition, a, 0.0)
    )
    assert gradcheck(lambda x, y: firefly.where(condition, x * y, y), a, b)
    with pytest.raises(TypeError, match="bool"):
        firefly.where(Tensor(a), Tensor(a), Tensor(b))


def test_nan_propagates_through_the_selecting_ops():
    x = Tensor(np.array([np.nan, 1.0]))
    assert np.isnan(x.abs().numpy()[0]) and np.isnan(x.clamp(0, 0.5).numpy()[0])
    assert np.isnan(firefly.maximum(x, Tensor(np.array([0.0, 0.0]))).numpy()[0])
    assert np.isnan(firefly.minimum(Tensor(np.array([0.0, 0.0])), x).numpy()[0])
    assert x.argmax().item() == 0  # NaN counts as the maximum, as in PyTorch


# ---------------------------------------------------------------------------- Parameter is a Tensor
def test_a_parameter_is_a_tensor_everywhere():
    p = firefly.nn.Parameter(rand(3, 2))
    x = Tensor(rand(4, 3, seed=1))
    assert isinstance(p, Tensor) and p.tensor is p
    out = x @ p + p.sum()
    out.sum().backward()
    np.testing.assert_allclose(p.grad.numpy(), x.numpy().sum(0)[:, None] + np.full((3, 2), 4 * 2))
    assert p.numel() == 6 and p.size() == (3, 2) and p.size(0) == 3 and p.dim() == 2
    p.requires_grad = False
    assert not p.trainable
    p.trainable = True
    assert p.requires_grad
    assert not firefly.nn.Parameter(rand(2), False).requires_grad
    assert not firefly.nn.Parameter(rand(2), requires_grad=False).requires_grad


# ----------------------------------------------------------------------------- torch as an oracle
def test_new_ops_match_torch_values_and_gradients():
    torch = pytest.importorskip(
        "torch", reason="needs torch as the oracle: pip install torch==2.13.0"
    )
    x, y = rand(3, 4, seed=3), rand(4, seed=4)
    index, mask = np.array([[0, 3], [1, 1], [2, 0]]), x > 0

    def program(lib, a, b):
        return [
            a.abs() * b,
            (a * a + 1).sqrt(),
            a.clamp(min=-1, max=0.5),
            lib.maximum(a, b),
            lib.minimum(a, b),
            lib.where(a > 0, a, b),
            a.gather(1, lib.as_tensor(index)),
            a[lib.as_tensor(mask)],
            a[lib.as_tensor(np.array([2, 2, 0]))],
            lib.cat([a, b.expand(2, 4)]),
            lib.stack([b, b * 2], 1),
            a.max(dim=1)[0],
            a.flatten().unsqueeze(0),
            a.sign() * b,
            a.float().double() * b,
            a.clone() * a,
        ]

    fa, fb = Tensor(x, requires_grad=True), Tensor(y, requires_grad=True)
    ta, tb = torch.tensor(x, requires_grad=True), torch.tensor(y, requires_grad=True)
    weights = [
        np.random.default_rng(i).uniform(size=o.shape)
        for i, o in enumerate(program(firefly, fa, fb))
    ]
    for out_f, out_t, _ in zip(program(firefly, fa, fb), program(torch, ta, tb), weights):
        np.testing.assert_allclose(out_f.numpy(), out_t.detach().numpy(), rtol=1e-12)
    sum(
        ((o * Tensor(w)).sum() for o, w in zip(program(firefly, fa, fb), weights)), Tensor(0.0)
    ).backward()
    sum((o * torch.tensor(w)).sum() for o, w in zip(program(torch, ta, tb), weights)).backward()
    np.testing.assert_allclose(fa.grad.numpy(), ta.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(fb.grad.numpy(), tb.grad.numpy(), rtol=1e-12)


# ----------------------------------------------------------------------------- function forms
@pytest.mark.parametrize(
    "name, args, kwargs",
    [
        ("sum", (), {"dim": 1}),
        ("mean", (0,), {}),
        ("amax", (), {"dim": 1, "keepdim": True}),
        ("argmax", (), {"dim": 1}),
        ("exp", (), {}),
        ("abs", (), {}),
        ("softmax", (), {"dim": -1}),
        ("flatten", (), {}),
        ("unsqueeze", (0,), {}),
        ("transpose", (0, 1), {}),
        ("clamp", (), {"min": 0.0}),
        ("gt", (0.5,), {}),
        ("clone", (), {}),
    ],
)
def test_function_forms_are_the_methods(name, args, kwargs):
    x = rand(2, 3)
    got = getattr(firefly, name)(Tensor(x), *args, **kwargs)
    want = getattr(Tensor(x), name)(*args, **kwargs)
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    assert (
        getattr(firefly, name)(x, *args, **kwargs).shape == want.shape
    )  # an ndarray is accepted too


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_random_advanced_indexing_matches_numpy_and_scatter_adds(data):
    shape = data.draw(array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = rng.uniform(-2.0, 2.0, size=shape)
    items = []
    for d in shape[: data.draw(st.integers(1, len(shape)))]:
        kind = data.draw(st.sampled_from(["ints", "negative", "slice", "int"]))
        if kind == "ints":
            items.append(rng.integers(0, d, size=data.draw(st.integers(1, 4))))
        elif kind == "negative":
            items.append(-rng.integers(1, d + 1, size=1))
        elif kind == "slice":
            items.append(slice(None, None, data.draw(st.sampled_from([1, -1, 2]))))
        else:
            items.append(int(rng.integers(0, d)))
    if not any(isinstance(i, np.ndarray) for i in items):
        items[0] = rng.integers(0, shape[0], size=2)
    index = tuple(items)
    try:
        expected = x[index]
    except IndexError:  # arrays that NumPy cannot broadcast together
        with pytest.raises(IndexError, match="getitem"):
            Tensor(x)[index]
        return
    t = Tensor(x, requires_grad=True)
    out = t[index]
    np.testing.assert_array_equal(out.numpy(), expected)
    out.backward(np.ones(out.shape))
    counts = np.zeros_like(x)
    np.add.at(counts, index, 1.0)
    np.testing.assert_array_equal(t.grad.numpy(), counts)


@settings(max_examples=40, deadline=None)
@given(
    shape=array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4), seed=st.integers(0, 2**16)
)
def test_random_masks_match_numpy(shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2.0, 2.0, size=shape)
    mask = rng.random(shape[: int(rng.integers(1, len(shape) + 1))]) < 0.5
    np.testing.assert_array_equal(Tensor(x)[mask].numpy(), x[mask])


def test_integer_arithmetic_follows_torch_promotion():
    labels = firefly.tensor([0, 1, 2])
    assert (labels + 1).dtype == np.int64 and (-labels).tolist() == [0, -1, -2]
    assert (labels / 2).dtype == F32 and (labels * 0.5).dtype == F32
    x = Tensor(np.ones(3), requires_grad=True)  # float64
    y = x * labels + (labels > 0)
    assert y.dtype == F64 and y.tolist() == [0.0, 2.0, 3.0]
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 1.0, 2.0])
