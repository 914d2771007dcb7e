"""The reduction kernels' own paths, in both builds: rows (inner == 1), columns (inner > 1) and
full reductions, at sizes either side of the points where the kernels change strategy (row
slabs, 4-row blocks, float64 lanes fed by quads summed in the dtype), with NaN and inf
propagated as NumPy does, ties sharing the gradient of max, and float32 sums checked against a
float64 reference within their error bound."""

import numpy as np
import pytest

from firefly import Tensor
from firefly.kernels import reduce as K

BUILDS = ["serial", "parallel"]
DTYPES = [np.float32, np.float64]
SPLIT, TASKS, LANES, SLAB = K._SPLIT_MIN, K._TASKS, K.LANES, K._MIN_SLAB_ROWS

# (outer, reduced, inner): each straddles a boundary where the kernels change what they do.
SHAPES = [
    (1, 1, 1),
    (3, 1, 1),
    (1, 2, 1),
    (1, 5, 1),
    (1, LANES - 1, 1),  # shorter than the lanes: four partial sums only
    (1, LANES, 1),
    (1, LANES + 5, 1),
    (300, 10, 1),  # many short rows, written straight to out
    (3 * TASKS + 1, 3 * LANES + 7, 1),  # rows dealt unevenly to tasks
    (1, 4 * LANES - 1, 1),
    (1, 4 * LANES, 1),
    (1, 4 * LANES + LANES + 3, 1),  # lanes tails
    (1, SPLIT - 1, 1),
    (1, SPLIT, 1),
    (1, SPLIT + 7, 1),
    (1, 3 * SPLIT + 5, 1),  # one long row
    (TASKS - 1, SPLIT // 8 + 3, 1),
    (TASKS, 999, 1),
    (TASKS + 1, 4099, 1),
    (1000, 1000, 1),  # rows
    (1, 2, 3),
    (1, 3, 2),
    (1, 7, 5),
    (5, 4, 3),
    (2, 9, 2),  # 4-row blocks and their tails
    (1, SPLIT // 500 - 1, 500),
    (1, SPLIT // 500 + 1, 500),
    (1, 1000, 1000),  # one column group
    (1, SLAB * TASKS + 5, SPLIT // (SLAB * TASKS) + 1),
    (2, SLAB * 3 - 1, SPLIT // 64),  # slabs
    (3, SLAB * TASKS, 1400),
    (TASKS, 70, 64),
    (TASKS + 3, 17, 256),
]


def shape_id(shape):
    return "x".join(map(str, shape))


def kernel_build(kernel, build):
    return getattr(kernel, build)


def sample(shape, dtype, seed=0):
    return np.random.default_rng(seed).uniform(-3.0, 3.0, shape).astype(dtype)


def kernel_max(x3, build):
    out = np.empty((x3.shape[0], x3.shape[2]), x3.dtype)
    kernel_build(K.max_forward, build)(x3, out)
    return out


def kernel_sum(x3, build, scale=1.0):
    out = np.empty((x3.shape[0], x3.shape[2]), x3.dtype)
    kernel_build(K.sum_forward, build)(x3, scale, out)
    return out


def kernel_max_grad(x3, grad, build):
    out = kernel_max(x3, "serial")
    dx = np.empty_like(x3)
    kernel_build(K.max_backward, build)(grad, x3, out, dx)
    return dx


@pytest.mark.parametrize("build", BUILDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_sum_matches_float64_reference(shape, dtype, build):
    x = sample(shape, dtype)
    want = x.astype(np.float64).sum(axis=1) * 0.5
    got = kernel_sum(x, build, 0.5).astype(np.float64)
    if dtype == np.float32:
        # The final rounding plus the float32 quads' error, 2 * 2**-24 * sum(|x|) (see
        # sum_forward); with these signed samples the sums cancel, so the second term matters.
        quads = 2 * 2.0**-24 * 0.5 * np.abs(x).astype(np.float64).sum(axis=1)
        bound = 0.5 * np.spacing(want.astype(np.float32)).astype(np.float64) + quads
    else:
        bound = 1e-13 * np.abs(want) + 1e-12
    assert np.all(np.abs(got - want) <= bound), np.max(np.abs(got - want) - bound)


@pytest.mark.parametrize("build", BUILDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_max_matches_numpy(shape, dtype, build):
    x = sample(shape, dtype)
    np.testing.assert_array_equal(kernel_max(x, build), x.max(axis=1))


@pytest.mark.parametrize("build", BUILDS)
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_max_gradient_goes_to_the_maximum(shape, build):
    x = sample(shape, np.float64)
    grad = np.random.default_rng(1).uniform(-1.0, 1.0, (shape[0], shape[2]))
    want = np.where(x == x.max(axis=1, keepdims=True), grad[:, None, :], 0.0)
    np.testing.assert_array_equal(kernel_max_grad(x, grad, build), want)


def nan_inf_cases():
    """(label, shape, {flat index: value}) that put NaN and inf in first, middle, last, and
    different slabs of the reduced axis."""
    long_row = (1, 3 * SPLIT + 5, 1)
    n = long_row[1]
    return [
        ("nan-first", long_row, {0: np.nan}),
        ("nan-last", long_row, {n - 1: np.nan}),
        ("nan-middle-slab", long_row, {n // 2 + 1: np.nan}),
        ("nan-and-inf", long_row, {5: np.inf, n - 2: np.nan}),
        ("inf", long_row, {n // 3: np.inf}),
        ("minus-inf-everywhere", (1, 40, 1), {i: -np.inf for i in range(40)}),
        ("minus-inf-then-nan", (1, 40, 1), {**{i: -np.inf for i in range(39)}, 39: np.nan}),
        (
            "rows-nan-in-lanes-tail",
            (4, 4 * LANES + 5, 1),
            {4 * LANES + 3: np.nan, 2 * (4 * LANES + 5): np.inf},
        ),
        # max_contiguous: a NaN-free chunk of MAX_CHUNK elements before one with a NaN, a NaN
        # first (the running max starts from it), and rows either side of the short-row path.
        ("rows-nan-in-last-chunk", (2, 2 * K.MAX_CHUNK + 5, 1), {2 * K.MAX_CHUNK + 1: np.nan}),
        ("rows-nan-first", (3, 100, 1), {100: np.nan, 250: np.inf}),
        ("rows-nan-last-short", (3, 31, 1), {30: np.nan, 31 + 5: -np.inf}),
        ("rows-nan-last-32", (3, 32, 1), {31: np.nan, 64: np.inf}),
        ("rows-minus-inf-long", (2, 300, 1), {i: -np.inf for i in range(300)}),
        ("columns-nan-first-row", (1, 1000, 1000), {7: np.nan}),
        ("columns-nan-last-slab", (1, 1000, 1000), {999_000 + 3: np.nan, 500_000 + 4: np.inf}),
        ("columns-inf-small", (2, 5, 3), {1: np.inf, 3 * 5 + 4: np.nan}),
    ]


@pytest.mark.parametrize("build", BUILDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "label, shape, special", nan_inf_cases(), ids=[c[0] for c in nan_inf_cases()]
)
def test_nan_and_inf_propagate_like_numpy(label, shape, special, dtype, build):
    x = sample(shape, dtype)
    flat = x.reshape(-1)
    for index, value in special.items():
        flat[index] = value
    with np.errstate(invalid="ignore"):
        want_sum = x.astype(np.float64).sum(axis=1).astype(dtype)
    np.testing.assert_array_equal(kernel_max(x, build), x.max(axis=1))
    np.testing.assert_allclose(kernel_sum(x, build), want_sum, rtol=1e-6, atol=1e-3)


@pytest.mark.parametrize("build", BUILDS)
def test_nan_maximum_gets_no_gradient(build):
    x = sample((1, 3 * SPLIT, 1), np.float64)
    x[0, 17, 0] = np.nan
    dx = kernel_max_grad(x, np.ones((1, 1)), build)
    assert not dx.any()


@pytest.mark.parametrize("build", BUILDS)
@pytest.mark.parametrize(
    "shape", [(1, 3 * SPLIT + 5, 1), (3, 50, 1), (1, 1000, 1000), (4, 9, 3)], ids=shape_id
)
def test_ties_share_the_gradient_evenly(shape, build):
    x = sample(shape, np.float64)
    O, R, I = shape
    top = 10.0
    # Ties in the first, a middle and the last row of every (o, i): different slabs when split.
    ties = [0, R // 2, R - 1]
    x[:, ties, :] = top
    grad = np.arange(1.0, O * I + 1).reshape(O, I)
    dx = kernel_max_grad(x, grad, build)
    want = np.zeros_like(x)
    want[:, ties, :] = grad[:, None, :] / len(ties)
    np.testing.assert_array_equal(dx, want)


def test_ties_share_the_gradient_through_the_tensor_api():
    x = Tensor(np.array([[1.0, 5.0, 5.0], [2.0, 2.0, 2.0]]), requires_grad=True)
    x.max().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0.0, 0.5, 0.5], [0.0, 0.0, 0.0]])
    x.grad = None
    x.max(axis=1).backward(np.array([3.0, 6.0]))
    np.testing.assert_array_equal(x.grad.numpy(), [[0.0, 1.5, 1.5], [2.0, 2.0, 2.0]])


LAYOUTS = {
    "full": (1, -1, 1),
    "rows": (10, -1, 1),
    "columns": (1, 1000, 1000),
}


@pytest.mark.parametrize("build", BUILDS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_float32_sums_are_correctly_rounded_when_the_quads_add_exactly(layout, build):
    # Multiples of 2**-10 below 1: every quad of four is exact in float32 and the float64 total
    # of a million of them is exact too, so the result must be the correctly rounded sum. A
    # float32 running total (or float32 partial sums of more than 2**14 terms) rounds instead:
    # the sums here need 29 significant bits.
    rng = np.random.default_rng(3)
    x = (rng.integers(0, 1024, 1_000_000) / 1024).astype(np.float32)
    x3 = x.reshape(LAYOUTS[layout])
    want = x3.astype(np.float64).sum(axis=1).astype(np.float32)
    np.testing.assert_array_equal(kernel_sum(x3, build), want)


@pytest.mark.parametrize("build", BUILDS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_float32_sums_stay_within_the_quad_error_bound(layout, build):
    # All positive with a large mean: a float32 running total would be off by hundreds of ulps.
    # The kernels add quads of four in float32 (error at most 2 * 2**-24 * sum(|x|)) and the
    # quads in float64, then round once; NumPy's pairwise bound is log2(n) times the quads'.
    x = np.random.default_rng(3).uniform(0.0, 1.0, 1_000_000).astype(np.float32)
    x3 = x.reshape(LAYOUTS[layout])
    want = x3.astype(np.float64).sum(axis=1)
    got = kernel_sum(x3, build).astype(np.float64)
    ulp = np.spacing(want.astype(np.float32)).astype(np.float64)
    bound = 0.5 * ulp + 2 * 2.0**-24 * np.abs(x3).astype(np.float64).sum(axis=1)
    assert np.all(np.abs(got - want) <= bound), np.max(np.abs(got - want) / ulp)


@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 1)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_tensor_reductions_above_the_parallel_threshold(axis, dtype):
    x = sample((300, 700), dtype)
    x[123, 456] = np.nan
    np.testing.assert_array_equal(Tensor(x).max(axis=axis).numpy(), x.max(axis=axis))
    y = sample((300, 700), dtype, seed=1)
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    # float32: the quads' error bound (see test_sum_matches_float64_reference), per output.
    quads = 2 * 2.0**-24 * np.abs(y).astype(np.float64).sum(axis=axis) if dtype == np.float32 else 0
    want_sum = y.astype(np.float64).sum(axis=axis)
    got_sum = Tensor(y).sum(axis=axis).numpy()
    assert np.all(np.abs(got_sum - want_sum) <= rtol * (1 + np.abs(want_sum)) + quads)
    want_mean = y.astype(np.float64).mean(axis=axis)
    got_mean = Tensor(y).mean(axis=axis).numpy()
    count = y.size // np.size(want_mean)
    assert np.all(np.abs(got_mean - want_mean) <= rtol * (1 + np.abs(want_mean)) + quads / count)


@pytest.mark.parametrize("shape", [(7,), (4, 5), (2, 3, 4), (3, 0, 2)])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("op", ["sum", "mean", "max"])
@pytest.mark.filterwarnings("ignore:Mean of empty slice", "ignore:invalid value encountered")
def test_single_int_axis_forward_and_backward(op, shape, keepdims):
    # One int axis takes the reductions' short path (firefly/ops/reduce.py): every axis, negative
    # ones too, against NumPy forward and the gradients written out by hand.
    x = np.round(sample(shape, np.float64), 1)  # rounded: some ties for max to share
    for axis in range(-len(shape), len(shape)):
        if op == "max" and x.size == 0:
            continue
        t = Tensor(x, requires_grad=True)
        out = getattr(t, op)(axis=axis, keepdims=keepdims)
        want = getattr(np, op)(x, axis=axis, keepdims=keepdims)
        assert out.shape == want.shape
        np.testing.assert_allclose(out.numpy(), want, rtol=1e-12, atol=1e-12)
        g = sample(want.shape, np.float64, seed=2)
        out.backward(g)
        g_kept = g if keepdims else np.expand_dims(g, axis)
        if op == "max":
            at_max = x == x.max(axis=axis, keepdims=True)
            want_grad = g_kept * at_max / at_max.sum(axis=axis, keepdims=True)
        else:
            count = max(x.shape[axis], 1) if op == "mean" else 1  # no elements: no gradient
            want_grad = np.broadcast_to(g_kept / count, x.shape)
        np.testing.assert_allclose(t.grad.numpy(), want_grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("build", ["serial", "parallel"])
@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 1000, 1), (3, 257, 1), (2, 5, 7), (1, 4, 33)])
def test_sum_backward_broadcasts_each_outer_value_along_the_reduced_axis(build, shape):
    # I == 1 (a full sum, or a sum over the last axis) takes the fill path; I > 1 the rows.
    O, R, I = shape
    rng = np.random.default_rng(O * R * I)
    grad = rng.standard_normal((O, I))
    dx = np.full(shape, np.nan)
    getattr(K.sum_backward, build)(grad, 0.25, dx)
    np.testing.assert_array_equal(dx, np.broadcast_to((grad * 0.25)[:, None, :], shape))


@pytest.mark.parametrize("build", ["serial", "parallel"])
@pytest.mark.parametrize("n", [0, 1, 1000])
@pytest.mark.parametrize("dtype", DTYPES)
def test_sum_flat_backward_fills_the_scaled_gradient(build, n, dtype):
    # The full reduction's gradient: float64 scale times the gradient, rounded to dx's dtype once.
    grad = np.array([0.1], dtype=dtype)
    dx = np.full(n, np.nan, dtype=dtype)
    getattr(K.sum_flat_backward, build)(grad, 1.0 / 3.0, dx)
    np.testing.assert_array_equal(dx, np.full(n, np.float64(grad[0]) * (1.0 / 3.0), dtype=dtype))


@pytest.mark.parametrize("n", [0, 1, SPLIT - 1, SPLIT + 7, 3 * SPLIT + 5])
@pytest.mark.parametrize("dtype", DTYPES)
def test_sum_flat_agrees_with_sum_forward_in_both_runs(n, dtype):
    # The full reduction's own kernel cuts x into sum_forward's slabs of one row: one result.
    x = sample(n, dtype, seed=n)
    results = []
    for build in BUILDS:
        out = np.empty(1, dtype)
        getattr(K.sum_flat, build)(x, 0.5, out)
        results.append(out[0])
        results.append(kernel_sum(x.reshape(1, n, 1), build, 0.5)[0, 0])
    assert len({r.tobytes() for r in results}) == 1, results
    np.testing.assert_allclose(results[0], 0.5 * x.astype(np.float64).sum(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 50, 1), (40, 7, 1), (2, 9, 300), (1, 5, 257)])
def test_cumsum_kernel_runs_rows_and_column_blocks_alike_in_both_runs(shape, reverse):
    # I == 1: one running sum per row; I > 1: blocks of columns (firefly.kernels.scan._BLOCK).
    from firefly.kernels.scan import cumsum_along

    x = sample(shape, np.float32, seed=sum(shape))
    steps = x[:, ::-1] if reverse else x
    want = np.cumsum(steps.astype(np.float64), axis=1).astype(np.float32)
    want = want[:, ::-1] if reverse else want
    for build in BUILDS:
        out = np.full(shape, np.nan, np.float32)
        getattr(cumsum_along, build)(x, reverse, out)
        np.testing.assert_array_equal(out, want)
