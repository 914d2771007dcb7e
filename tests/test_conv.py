"""conv2d and conv1d: torch as the oracle in float64 over a grid of strides, paddings,
dilations and groups (forward and every gradient to 1e-9), gradcheck, and bad input refused
before any kernel runs."""

import itertools

import numpy as np
import pytest
from layer_references import np_conv1d, np_conv2d

import firefly
from firefly import Tensor, ops
from firefly.kernels._jit import driven_kernel, run_shares
from firefly.kernels._shares import each_share
from firefly.nn import functional as F
from firefly.ops import conv as conv_ops
from firefly.testing import gradcheck

torch = pytest.importorskip("torch", reason="needs torch as the oracle: pip install torch==2.13.0")

# (in_channels, out_channels, groups, kernel, stride, padding, dilation, input H, W)
CONV2D_GRID = [
    (c, o, g, k, s, p, d, 7, 6)
    for (c, o, g), k, s, p, d in itertools.product(
        [(1, 2, 1), (3, 4, 1), (4, 6, 2), (3, 3, 3)],
        [1, 3, (2, 3)],
        [1, 2, (2, 1)],
        [0, 1, (2, 0)],
        [1, 2],
    )
]


def run_both(fn_ff, fn_torch, arrays, rng):
    leaves = [Tensor(a, requires_grad=True) for a in arrays]
    out = fn_ff(*leaves)
    grad = rng.normal(size=out.shape)
    out.backward(grad)
    t_leaves = [torch.tensor(a, requires_grad=True) for a in arrays]
    t_out = fn_torch(*t_leaves)
    t_out.backward(torch.tensor(grad))
    assert out.shape == tuple(t_out.shape)
    np.testing.assert_allclose(out.numpy(), t_out.detach().numpy(), rtol=1e-9, atol=1e-9)
    for leaf, t_leaf in zip(leaves, t_leaves):
        np.testing.assert_allclose(leaf.grad.numpy(), t_leaf.grad.numpy(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("c, o, g, k, s, p, d, h, w", CONV2D_GRID)
def test_conv2d_matches_torch_float64(c, o, g, k, s, p, d, h, w):
    rng = np.random.default_rng(0)
    kh, kw = (k, k) if isinstance(k, int) else k
    x, weight, bias = (
        rng.normal(size=(2, c, h, w)),
        rng.normal(size=(o, c // g, kh, kw)),
        rng.normal(size=o),
    )
    run_both(
        lambda *t: ops.apply("conv2d", *t, stride=s, padding=p, dilation=d, groups=g),
        lambda *t: torch.nn.functional.conv2d(*t, stride=s, padding=p, dilation=d, groups=g),
        (x, weight, bias),
        rng,
    )


@pytest.mark.filterwarnings("ignore:Using padding=.same.")
@pytest.mark.parametrize(
    "padding, kernel, dilation",
    [("same", 3, 1), ("same", 4, 1), ("same", (2, 3), (2, 1)), ("valid", 3, 1)],
)
def test_conv2d_string_padding_matches_torch(padding, kernel, dilation):
    rng = np.random.default_rng(1)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    arrays = rng.normal(size=(2, 3, 6, 7)), rng.normal(size=(4, 3, kh, kw)), rng.normal(size=4)
    run_both(
        lambda *t: ops.apply("conv2d", *t, padding=padding, dilation=dilation),
        lambda *t: torch.nn.functional.conv2d(*t, padding=padding, dilation=dilation),
        arrays,
        rng,
    )


def test_conv2d_without_batch_dimension_and_without_bias():
    rng = np.random.default_rng(2)
    arrays = rng.normal(size=(3, 6, 5)), rng.normal(size=(2, 3, 3, 3))
    run_both(
        lambda x, w: F.conv2d(x, w, padding=1),
        lambda x, w: torch.nn.functional.conv2d(x, w, padding=1),
        arrays,
        rng,
    )


@pytest.mark.parametrize(
    "c, o, g, k, s, p, d",
    [(1, 2, 1, 3, 1, 0, 1), (4, 6, 2, 3, 2, 1, 2), (3, 3, 3, 2, 1, 2, 1), (2, 4, 1, 5, 3, 2, 1)],
)
def test_conv1d_matches_torch_float64(c, o, g, k, s, p, d):
    rng = np.random.default_rng(3)
    arrays = rng.normal(size=(2, c, 11)), rng.normal(size=(o, c // g, k)), rng.normal(size=o)
    run_both(
        lambda *t: ops.apply("conv1d", *t, stride=s, padding=p, dilation=d, groups=g),
        lambda *t: torch.nn.functional.conv1d(*t, stride=s, padding=p, dilation=d, groups=g),
        arrays,
        rng,
    )


@pytest.mark.parametrize(
    "s, p, d, g", [(1, 0, 1, 1), (2, 1, 1, 1), (1, 1, 2, 2), ((2, 1), (0, 2), (1, 2), 2)]
)
def test_conv2d_gradcheck(s, p, d, g):
    rng = np.random.default_rng(4)
    x, w, b = rng.normal(size=(2, 4, 6, 5)), rng.normal(size=(4, 4 // g, 3, 2)), rng.normal(size=4)
    assert gradcheck("conv2d", x, w, b, attrs=dict(stride=s, padding=p, dilation=d, groups=g))
    assert gradcheck(
        "conv1d",
        x[:, :, 0],
        w[:, :, 0],
        b,
        attrs=dict(
            stride=s if isinstance(s, int) else s[0],
            padding=p if isinstance(p, int) else p[0],
            dilation=d if isinstance(d, int) else d[0],
            groups=g,
        ),
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "shape, out_channels, k, padding",
    [
        ((5, 1, 8, 8), 16, 3, 1),
        ((3, 16, 8, 8), 8, 3, 0),
        ((2, 1, 28, 28), 6, 5, 0),
        ((2, 2, 9, 4), 3, 1, 0),
    ],
)
def test_conv_matches_numpy_in_both_dtypes(dtype, shape, out_channels, k, padding):
    """The benchmarks' shapes (tap runs of 3 to 48 elements, copied by index and through
    slices), stride 1 and 2, against NumPy."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=shape).astype(dtype)
    w = rng.normal(size=(out_channels, shape[1], k, k)).astype(dtype)
    b = rng.normal(size=out_channels).astype(dtype)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    for stride in (1, 2):
        out = ops.apply("conv2d", x, w, b, stride=stride, padding=padding)
        assert out.dtype == dtype
        np.testing.assert_allclose(
            out.numpy(), np_conv2d(x.astype(np.float64), w, b, stride, padding), rtol=tol, atol=tol
        )
    out1 = ops.apply("conv1d", x[:, :, 0], w[:, :, 0], b, padding=padding)
    np.testing.assert_allclose(
        out1.numpy(),
        np_conv1d(x[:, :, 0].astype(np.float64), w[:, :, 0], b, 1, padding),
        rtol=tol,
        atol=tol,
    )


@pytest.mark.parametrize(
    "c, h, layout",
    [
        (5, 8, "exact"),  # tap runs of KW * Cg = 15, one under position-major's 16
        (6, 8, "positions"),  # 18
        (8, 28, "wide"),  # 24, but wide adds only 2 columns to 28
        (8, 16, "positions"),  # 24, and wide would add 2 to 16
    ],
)
def test_column_layouts_either_side_of_the_thresholds_match_torch(c, h, layout):
    """Forward and every gradient of each column layout's kernels, in float64."""
    assert conv_ops.column_layout((1, 1), 3, c, h, h + 2) == layout
    rng = np.random.default_rng(7)
    arrays = rng.normal(size=(2, c, h, h)), rng.normal(size=(4, c, 3, 3)), rng.normal(size=4)
    run_both(
        lambda *t: ops.apply("conv2d", *t, padding=1),
        lambda *t: torch.nn.functional.conv2d(*t, padding=1),
        arrays,
        rng,
    )


def test_conv2d_first_layer_skips_the_input_gradient():
    rng = np.random.default_rng(6)
    x = Tensor(rng.normal(size=(2, 1, 5, 5)))
    w = Tensor(rng.normal(size=(3, 1, 3, 3)), requires_grad=True)
    b = Tensor(rng.normal(size=3), requires_grad=True)
    ops.apply("conv2d", x, w, b).sum().backward()
    assert x.grad is None and w.grad.shape == (3, 1, 3, 3) and b.grad.shape == (3,)
    np.testing.assert_allclose(b.grad.numpy(), np.full(3, 2 * 3 * 3))


@pytest.mark.parametrize(
    "x_shape, w_shape, b_shape, attrs, error, match",
    [
        ((3, 5), (4, 3, 3, 3), (4,), {}, ValueError, r"conv2d: input must be 4-D .* or 3-D"),
        ((2, 3, 5, 5), (4, 3, 3), (4,), {}, ValueError, r"weight must be 4-D"),
        ((2, 3, 5, 5), (4, 2, 3, 3), (4,), {}, ValueError, r"3 channels but weight expects .* 2"),
        (
            (2, 4, 5, 5),
            (3, 2, 3, 3),
            (3,),
            {"groups": 2},
            ValueError,
            r"out_channels 3 is not divisible by groups=2",
        ),
        ((2, 3, 5, 5), (4, 3, 3, 3), (3,), {}, ValueError, r"bias must have shape \(4,\)"),
        ((2, 3, 2, 5), (4, 3, 3, 3), (4,), {}, ValueError, r"larger than the padded input"),
        (
            (2, 3, 5, 5),
            (4, 3, 3, 3),
            (4,),
            {"dilation": 3},
            ValueError,
            r"larger than the padded input",
        ),
        (
            (2, 3, 5, 5),
            (4, 3, 3, 3),
            (4,),
            {"stride": 0},
            ValueError,
            r"conv2d: stride must be positive",
        ),
        (
            (2, 3, 5, 5),
            (4, 3, 3, 3),
            (4,),
            {"padding": -1},
            ValueError,
            r"padding must be non-negative",
        ),
        (
            (2, 3, 5, 5),
            (4, 3, 3, 3),
            (4,),
            {"padding": "same", "stride": 2},
            ValueError,
            r"'same' needs stride 1",
        ),
        ((2, 3, 5, 5), (4, 3, 3, 3), (4,), {"padding": "full"}, ValueError, r"padding must be"),
        ((2, 3, 5, 5), (4, 3, 3, 3), (4,), {"stride": 1.5}, TypeError, r"stride must be an int"),
        (
            (2, 3, 5, 5),
            (4, 3, 3, 3),
            (4,),
            {"groups": 0},
            ValueError,
            r"groups must be a positive int",
        ),
    ],
)
def test_conv2d_rejects_bad_input_before_any_kernel(
    monkeypatch, x_shape, w_shape, b_shape, attrs, error, match
):
    op = firefly.ops.get("conv2d")
    monkeypatch.setattr(
        op, "forward_kernel", None
    )  # a kernel call would raise TypeError, not the check
    with pytest.raises(error, match=match):
        ops.apply("conv2d", np.zeros(x_shape), np.zeros(w_shape), np.zeros(b_shape), **attrs)


def test_conv1d_error_names_the_op_and_layout():
    with pytest.raises(ValueError, match=r"conv1d: input must be 3-D \(N, C, L\)"):
        ops.apply("conv1d", np.zeros((2, 3, 4, 5)), np.zeros((2, 3, 3)), np.zeros(2))


@pytest.mark.parametrize(
    "op, x_shape, groups, attrs, pointwise",
    [
        ("conv2d", (3, 6, 5, 4), 1, {}, True),
        ("conv2d", (3, 6, 5, 4), 3, {}, True),
        ("conv2d", (6, 5, 4), 2, {"padding": "same"}, True),  # unbatched; "same" pads 0 at 1x1
        ("conv1d", (3, 6, 7), 1, {"dilation": 2}, True),
        ("conv2d", (3, 6, 5, 4), 1, {"padding": 1}, False),
        ("conv2d", (3, 6, 5, 4), 2, {"stride": 2}, False),
        ("conv1d", (3, 6, 7), 1, {"stride": (2,)}, False),
    ],
)
@pytest.mark.parametrize("threads", [1, 2])
def test_1x1_convolution_without_columns_matches_torch(
    monkeypatch, threads, op, x_shape, groups, attrs, pointwise
):
    """A 1x1 convolution with stride 1 and no padding runs the pointwise kernels (a GEMM per
    sample straight from the input, the samples shared out over the threads), any other one the
    column kernels; forward and every gradient match torch in float64, also for a
    non-contiguous input, on one thread and on two."""
    numba = pytest.importorskip("numba")
    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip("needs two Numba threads")
    ran = []
    cls = ops.get(op)
    for direction in ("forward_kernel", "backward_kernel"):
        kernels = list(getattr(cls, direction))
        kernels[2] = (lambda k, d: lambda *a: ran.append(d) or k(*a))(kernels[2], direction)
        monkeypatch.setattr(cls, direction, tuple(kernels))
    rng = np.random.default_rng(8)
    spatial = 1 if op == "conv1d" else 2
    x = np.swapaxes(rng.normal(size=x_shape[:-2] + x_shape[:-3:-1]), -1, -2)  # a strided view
    weight = rng.normal(size=(6, x_shape[-spatial - 1] // groups) + (1,) * spatial)
    torch_fn = getattr(torch.nn.functional, op)
    before = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        run_both(
            lambda *t: ops.apply(op, *t, groups=groups, **attrs),
            lambda *t: torch_fn(*t, groups=groups, **attrs),
            (x, weight, rng.normal(size=6)),
            rng,
        )
    finally:
        numba.set_num_threads(before)
    assert ran == (["forward_kernel", "backward_kernel"] if pointwise else [])


# (batch, in, out, H, W, kernel, stride, padding, dilation, groups, columns per tile): tiles of
# one sample and of several, a last tile that is partial, the wide and the exact columns, and
# blocks of output rows (the first, fourth and last cases), the last block shorter.
TILE_CASES = [
    # wide columns (the padded width, or at a stride over 1 a stride phase's, at most a fifth
    # over the output's): the shifted products run where a tile is one sample
    (3, 4, 5, 6, 12, (3, 1), (1, 1), (1, 0), (1, 1), 1, 20),
    (4, 4, 6, 5, 14, (2, 3), (1, 1), (1, 0), (2, 1), 2, 30),
    (3, 3, 3, 6, 16, (3, 2), (1, 1), (0, 0), (1, 2), 1, 40),
    (5, 3, 4, 7, 9, (3, 3), (1, 1), (1, 1), (1, 1), 1, 10),
    (5, 4, 6, 7, 9, (3, 2), (2, 1), (1, 0), (1, 2), 2, 50),
    (3, 2, 2, 6, 6, (2, 2), (2, 2), (0, 1), (2, 1), 1, 1000),
    (7, 6, 6, 5, 8, (1, 3), (1, 1), (0, 2), (1, 1), 3, 30),
    (4, 2, 3, 9, 9, (5, 5), (1, 1), (0, 0), (1, 1), 1, 100),
    (3, 2, 3, 11, 10, (3, 3), (2, 2), (1, 1), (2, 1), 1, 6),
    # wide columns over the planes split into stride phases: blocks of rows, a stride of 3
    # down, stride 2 with dilation 2 (every tap in one phase); and a stride of 3 across, which
    # the exact columns take, in tiles of several samples
    (3, 4, 6, 13, 14, (3, 3), (2, 2), (1, 1), (1, 1), 2, 20),
    (2, 3, 4, 14, 11, (3, 2), (3, 2), (1, 1), (1, 2), 1, 30),
    (3, 2, 3, 7, 16, (2, 3), (1, 2), (0, 1), (2, 1), 1, 16),
    (2, 4, 4, 12, 16, (3, 3), (2, 3), (2, 1), (2, 1), 1, 1000),
]


@pytest.mark.parametrize("shifted", [False, True], ids=["columns", "shifted"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("need_dx", [True, False])
@pytest.mark.parametrize("n, c, o, h, w, k, s, p, d, g, columns", TILE_CASES)
def test_tiled_layout_matches_torch_float64(
    monkeypatch, shifted, threads, need_dx, n, c, o, h, w, k, s, p, d, g, columns
):
    """The tiled kernels (a tile of samples, or of a sample's output rows, per thread, columns
    recomputed in backward), forced on small images, with copied columns and (where the tile
    is one sample in wide columns) with products on shifted views of the padded planes:
    forward and every gradient match torch in float64, on one thread and on two (BLAS then
    limited to one thread per tile)."""
    numba = pytest.importorskip("numba")
    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip("needs two Numba threads")
    monkeypatch.setattr(conv_ops, "TILE_MIN_POSITIONS", 0)
    monkeypatch.setattr(conv_ops, "TILE_COLUMNS", columns)
    monkeypatch.setattr(conv_ops, "SHIFTED_MIN_CHANNELS", 1 if shifted else 10**9)
    ran = []
    cls = ops.get("conv2d")
    for direction in ("forward_kernel", "backward_kernel"):
        kernels = list(getattr(cls, direction))
        kernels[3] = (lambda k, d: lambda *a: ran.append(d) or k(*a))(kernels[3], direction)
        monkeypatch.setattr(cls, direction, tuple(kernels))
    rng = np.random.default_rng(9)
    x, weight, bias = (
        rng.normal(size=(n, c, h, w)),
        rng.normal(size=(o, c // g) + k),
        rng.normal(size=o),
    )
    before = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        leaves = [Tensor(x, requires_grad=need_dx)] + [
            Tensor(a, requires_grad=True) for a in (weight, bias)
        ]
        out = ops.apply("conv2d", *leaves, stride=s, padding=p, dilation=d, groups=g)
        grad = rng.normal(size=out.shape)
        out.backward(grad)
    finally:
        numba.set_num_threads(before)
    assert ran == ["forward_kernel", "backward_kernel"]
    t_leaves = [torch.tensor(a, requires_grad=True) for a in (x, weight, bias)]
    t_out = torch.nn.functional.conv2d(*t_leaves, stride=s, padding=p, dilation=d, groups=g)
    t_out.backward(torch.tensor(grad))
    np.testing.assert_allclose(out.numpy(), t_out.detach().numpy(), rtol=1e-9, atol=1e-9)
    for leaf, t_leaf in zip(leaves[int(not need_dx) :], t_leaves[int(not need_dx) :]):
        np.testing.assert_allclose(leaf.grad.numpy(), t_leaf.grad.numpy(), rtol=1e-9, atol=1e-9)
    if not need_dx:
        assert leaves[0].grad is None


@pytest.mark.parametrize(
    "x_shape, kernel, attrs, tiled",
    [
        ((4, 16, 8, 8), 3, dict(padding=1), False),  # 64 positions: the whole-batch columns
        ((4, 8, 16, 16), 3, dict(padding=1), True),  # 256 positions
        ((4, 32, 16, 16), 3, dict(padding=1), True),  # and shifted products
        ((4, 8, 32, 32), 3, dict(stride=2, padding=1), True),
        ((4, 1, 28, 28), 5, {}, True),
    ],
)
def test_tiled_layout_taken_from_the_measured_size(x_shape, kernel, attrs, tiled):
    """Tiles from TILE_MIN_POSITIONS output positions, each of at least TILE_COLUMNS columns
    unless the batch runs out first; a sample of twice as many or more is split into blocks of
    output rows of near-equal height, each of at least TILE_COLUMNS columns."""
    stride, padding = attrs.get("stride", 1), attrs.get("padding", 0)
    out = [(n + 2 * padding - kernel) // stride + 1 for n in x_shape[2:]]
    padded_width = x_shape[3] + 2 * padding
    plan = conv_ops.tile_plan(x_shape[0], tuple(out), padded_width, (stride, stride), x_shape[1])
    assert (plan is not None) == tiled
    if plan is not None:
        threads, samples, rows, wide, shifted = plan
        assert 1 <= threads <= x_shape[0]
        assert shifted == (wide and samples == 1 and x_shape[1] >= conv_ops.SHIFTED_MIN_CHANNELS)
        per_row = padded_width if wide else out[1]
        if rows < out[0]:
            assert samples == 1 and rows * per_row >= conv_ops.TILE_COLUMNS
            assert out[0] * per_row >= 2 * conv_ops.TILE_COLUMNS
        else:
            per_sample = out[0] * per_row
            assert samples * per_sample >= conv_ops.TILE_COLUMNS or samples * threads >= x_shape[0]


# (batch, in, out, H, W, kernel, stride, padding, dilation, groups): position-major columns
# (runs of KW * Cg >= 16), the batch split unevenly over two threads in the first cases.
POSITION_CASES = [
    (5, 16, 8, 8, 8, (3, 3), (1, 1), (1, 1), (1, 1), 1),
    (3, 16, 4, 6, 7, (2, 3), (2, 1), (0, 1), (1, 2), 2),
    (1, 8, 6, 5, 5, (3, 2), (1, 1), (1, 0), (1, 1), 1),
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("need_dx", [True, False])
@pytest.mark.parametrize("n, c, o, h, w, k, s, p, d, g", POSITION_CASES)
def test_position_major_layout_shares_samples_over_threads(
    threads, need_dx, n, c, o, h, w, k, s, p, d, g
):
    """The position-major kernels give each thread a contiguous block of samples (its
    columns, GEMM rows, dx, and its own part of dweight and dbias): conv2d and conv_transpose2d
    (whose forward is that backward's dx, position-major in the first case) match torch in
    float64 on one thread and on two."""
    numba = pytest.importorskip("numba")
    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip("needs two Numba threads")
    rng = np.random.default_rng(5)
    x, weight, t_weight, bias = (
        rng.normal(size=(n, c, h, w)),
        rng.normal(size=(o, c // g) + k),
        rng.normal(size=(c, o // g) + k),
        rng.normal(size=o),
    )
    attrs = dict(stride=s, padding=p, dilation=d, groups=g)
    before = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        out_size = [
            (size + 2 * pad - dil * (kk - 1) - 1) // st + 1
            for size, pad, dil, kk, st in zip((h, w), p, d, k, s)
        ]
        plan = conv_ops.column_plan(
            x.shape, weight.shape, s, p, tuple(2 * v for v in p), d, tuple(out_size)
        )
        assert plan.layout == "positions" and plan.geometry[-1] == min(threads, n)
        for op, weights, torch_fn in (
            ("conv2d", weight, torch.nn.functional.conv2d),
            ("conv_transpose2d", t_weight, torch.nn.functional.conv_transpose2d),
        ):
            leaves = [Tensor(x, requires_grad=need_dx)] + [
                Tensor(a, requires_grad=True) for a in (weights, bias)
            ]
            out = ops.apply(op, *leaves, **attrs)
            grad = rng.normal(size=out.shape)
            out.backward(grad)
            t_leaves = [torch.tensor(a, requires_grad=True) for a in (x, weights, bias)]
            t_out = torch_fn(*t_leaves, **attrs)
            t_out.backward(torch.tensor(grad))
            np.testing.assert_allclose(out.numpy(), t_out.detach().numpy(), rtol=1e-9, atol=1e-9)
            for leaf, t_leaf in zip(leaves[int(not need_dx) :], t_leaves[int(not need_dx) :]):
                np.testing.assert_allclose(
                    leaf.grad.numpy(), t_leaf.grad.numpy(), rtol=1e-9, atol=1e-9
                )
    finally:
        numba.set_num_threads(before)


def _count_share(t, threads, hits, fail):
    if t < 0:
        return each_share(threads)
    if t == fail:
        raise ValueError(f"share {t} failed")
    hits[t] += 1.0


def test_run_shares_runs_each_share_once_and_raises_a_share_error():
    """run_shares, which runs the position-major kernels' shares of a batch, runs a driven
    kernel's shares t = 0 .. threads - 1 (the kernel, called with t < 0, runs them through
    each_share on Numba's threads, however many it has) each exactly once, for each argument
    type, and with one thread without a parallel region; a share's error is raised on the
    caller."""
    kernel = driven_kernel(_count_share)
    for dtype, threads in ((np.float64, 5), (np.float32, 2), (np.float64, 1)):
        hits = np.zeros(threads, dtype)
        run_shares(kernel, threads, hits, -1)
        np.testing.assert_array_equal(hits, np.ones(threads))
    for fail in (0, 2):
        with pytest.raises(ValueError, match=f"share {fail} failed"):
            run_shares(kernel, 3, np.zeros(3), fail)
