"""The layers, functions and losses added for whole-program ports (1-D and adaptive max
pooling, padding, interpolation, transposed convolutions, instance norm, pixel shuffle, and the
composed losses): float64 against torch with the same inputs and weights (outputs and gradients
within 1e-9), central-difference gradchecks and gradgradchecks without torch, and NumPy
references."""

import itertools

import numpy as np
import pytest

import firefly.nn as nn
import firefly.nn.functional as F
from firefly import Tensor
from firefly.testing import check_op, gradcheck, gradgradcheck

torch = pytest.importorskip("torch", reason="needs torch as the oracle: pip install torch==2.13.0")
TF = torch.nn.functional


def assert_close(actual, expected, rtol=1e-9, atol=1e-12):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=rtol, atol=atol)


def against_torch(ours, theirs, arrays, grad_inputs=None, rtol=1e-9, atol=1e-12, seed=0):
    """Run ``ours`` on firefly Tensors and ``theirs`` on torch tensors made from ``arrays``
    (float64); compare the outputs, then the gradients of the inputs listed in
    ``grad_inputs`` (default: every float input) for one random output gradient."""
    rng = np.random.default_rng(seed)
    if grad_inputs is None:
        grad_inputs = [i for i, a in enumerate(arrays) if np.asarray(a).dtype.kind == "f"]
    leaves = [Tensor(a, requires_grad=i in grad_inputs) for i, a in enumerate(arrays)]
    t_leaves = [torch.tensor(a, requires_grad=i in grad_inputs) for i, a in enumerate(arrays)]
    out, t_out = ours(*leaves), theirs(*t_leaves)
    assert tuple(out.shape) == tuple(t_out.shape)
    assert_close(out.numpy(), t_out.detach().numpy(), rtol, atol)
    if grad_inputs:
        grad = rng.normal(size=tuple(t_out.shape))
        out.backward(Tensor(grad))
        t_out.backward(torch.tensor(grad))
        for i in grad_inputs:
            assert_close(leaves[i].grad.numpy(), t_leaves[i].grad.numpy(), rtol, atol)
    return out


# ---------------------------------------------------------------------------- pooling, 1-D


@pytest.mark.parametrize(
    "k, s, p, d, ceil", list(itertools.product([2, 3], [None, 1, 2], [0, 1], [1, 2], [False, True]))
)
def test_max_pool1d_matches_torch(k, s, p, d, ceil):
    x = np.random.default_rng(1).normal(size=(2, 3, 11))
    args = (k, s, p, d, ceil)
    against_torch(lambda t: F.max_pool1d(t, *args), lambda t: TF.max_pool1d(t, *args), [x])


@pytest.mark.parametrize(
    "k, s, p, ceil, include",
    list(itertools.product([2, 3], [None, 2], [0, 1], [False, True], [False, True])),
)
def test_avg_pool1d_matches_torch(k, s, p, ceil, include):
    x = np.random.default_rng(2).normal(size=(2, 3, 10))
    args = (k, s, p, ceil, include)
    against_torch(lambda t: F.avg_pool1d(t, *args), lambda t: TF.avg_pool1d(t, *args), [x])


@pytest.mark.parametrize("size", [1, 3, 4, 7, 10])
@pytest.mark.parametrize("kind", ["avg", "max"])
def test_adaptive_pool1d_matches_torch(kind, size):
    x = np.random.default_rng(3).normal(size=(2, 3, 10))
    ours, theirs = getattr(F, f"adaptive_{kind}_pool1d"), getattr(TF, f"adaptive_{kind}_pool1d")
    against_torch(lambda t: ours(t, size), lambda t: theirs(t, size), [x])
    # Without the batch dimension, and through the layer.
    layer = {"avg": nn.AdaptiveAvgPool1d, "max": nn.AdaptiveMaxPool1d}[kind](size)
    t_layer = {"avg": torch.nn.AdaptiveAvgPool1d, "max": torch.nn.AdaptiveMaxPool1d}[kind](size)
    assert_close(layer(Tensor(x[0])).numpy(), t_layer(torch.tensor(x[0])).numpy())


@pytest.mark.parametrize("size", [1, 3, (2, 5), (None, 4), (7, None), (9, 8)])
def test_adaptive_max_pool2d_matches_torch(size):
    x = np.random.default_rng(4).normal(size=(2, 3, 7, 8))
    against_torch(
        lambda t: F.adaptive_max_pool2d(t, size), lambda t: TF.adaptive_max_pool2d(t, size), [x]
    )
    assert_close(
        nn.AdaptiveMaxPool2d(size)(Tensor(x[0])).numpy(),
        torch.nn.AdaptiveMaxPool2d(size)(torch.tensor(x[0])).numpy(),
    )


def test_pool1d_layers_match_torch():
    x = np.random.default_rng(5).normal(size=(2, 4, 9))
    for ours, theirs in [
        (nn.MaxPool1d(3, 2, 1), torch.nn.MaxPool1d(3, 2, 1)),
        (
            nn.AvgPool1d(3, 2, 1, count_include_pad=False),
            torch.nn.AvgPool1d(3, 2, 1, count_include_pad=False),
        ),
        (nn.AdaptiveAvgPool1d(4), torch.nn.AdaptiveAvgPool1d(4)),
    ]:
        assert_close(ours(Tensor(x)).numpy(), theirs(torch.tensor(x)).numpy())


def test_adaptive_max_pool2d_op_battery():
    assert check_op("adaptive_max_pool2d")


def test_adaptive_pools_numpy_reference():
    # Without torch: windows [floor(i L / n), ceil((i + 1) L / n)).
    x = np.random.default_rng(6).normal(size=(1, 2, 7))
    out_max = F.adaptive_max_pool1d(Tensor(x), 3).numpy()
    out_avg = F.adaptive_avg_pool1d(Tensor(x), 3).numpy()
    for i in range(3):
        a, b = i * 7 // 3, -(-(i + 1) * 7 // 3)
        assert_close(out_max[..., i], x[..., a:b].max(axis=-1), 0, 0)
        assert_close(out_avg[..., i], x[..., a:b].mean(axis=-1))


def test_pool1d_gradchecks():
    x = np.random.default_rng(7).permutation(22).reshape(2, 11) * 0.1
    assert gradcheck(lambda t: F.max_pool1d(t, 3, 2, 1), x)
    assert gradcheck(lambda t: F.avg_pool1d(t, 3, 2, 1), x)
    assert gradcheck(lambda t: F.adaptive_max_pool1d(t, 4), x)
    assert gradgradcheck(lambda t: F.adaptive_max_pool1d(t, 4) ** 2, x)
    assert gradgradcheck(lambda t: F.avg_pool1d(t, 3, 2, 1) ** 2, x)


# ---------------------------------------------------------------------------------- losses

RNG = np.random.default_rng(10)
X, Y, Z = (RNG.normal(size=(4, 5)) for _ in range(3))
PROB = np.abs(RNG.normal(size=(4, 5)))
PROB[0, 0] = 0.0  # KL's 0 log 0 = 0
SIGNS = np.sign(RNG.normal(size=4))
LOSS_CASES = [
    # torch's target gradient at a zero target is NaN (log 0); firefly's is finite.
    ("kl_div", [X, PROB], {}, [0]),
    ("kl_div", [X, PROB + 0.1], {}, None),
    ("kl_div", [X, Y], {"log_target": True}, None),
    ("cosine_embedding_loss", [X, Y, SIGNS], {"margin": 0.2}, [0, 1]),
    ("cosine_embedding_loss", [X, Y, SIGNS.astype(np.int64)], {"margin": -0.3}, [0, 1]),
    ("margin_ranking_loss", [X[:, 0], Y[:, 0], SIGNS], {"margin": 0.1}, [0, 1]),
    ("triplet_margin_loss", [X, Y, Z], {}, None),
    ("triplet_margin_loss", [X, Y, Z], {"p": 3, "swap": True, "margin": 2.0}, None),
    ("triplet_margin_loss", [X, Y, Z], {"p": 1, "eps": 0.0}, None),
    ("poisson_nll_loss", [X, 3 * PROB], {}, None),
    ("poisson_nll_loss", [PROB + 0.1, 3 * PROB], {"log_input": False, "full": True}, [0]),
    ("poisson_nll_loss", [PROB + 0.1, 3 * PROB + 0.5], {"log_input": False, "full": True}, None),
    ("gaussian_nll_loss", [X, Y, PROB + 0.05], {}, None),
    ("gaussian_nll_loss", [X, Y, PROB[:, :1]], {"full": True}, None),
    ("gaussian_nll_loss", [X, Y, PROB[:, 0]], {"eps": 0.01}, None),
    ("soft_margin_loss", [X, np.sign(Y)], {}, [0]),
    ("multilabel_soft_margin_loss", [X, (Y > 0).astype(float)], {}, [0]),
    ("multilabel_soft_margin_loss", [X, (Y > 0).astype(float), np.abs(Z[0])], {}, [0]),
]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name, arrays, kwargs, grads", LOSS_CASES)
def test_loss_functions_match_torch(name, arrays, kwargs, grads, reduction):
    kwargs = dict(kwargs, reduction=reduction)
    # The clamped variances make gradients of order 1/eps: relative tolerance.
    against_torch(
        lambda *t: getattr(F, name)(*t, **kwargs),
        lambda *t: getattr(TF, name)(*t, **kwargs),
        arrays,
        grads,
        atol=1e-10,
    )


def test_kl_div_batchmean_and_unbatched():
    for log_target in (False, True):
        target = np.log(PROB + 0.1) if log_target else PROB + 0.1
        kw = dict(reduction="batchmean", log_target=log_target)
        against_torch(
            lambda a, b, kw=kw: F.kl_div(a, b, **kw),
            lambda a, b, kw=kw: TF.kl_div(a, b, **kw),
            [X, target],
        )
    against_torch(lambda a, b: F.kl_div(a, b), lambda a, b: TF.kl_div(a, b), [X[0], PROB[0] + 0.1])


def test_legacy_size_average_and_reduce():
    for size_average, reduce in [(False, None), (None, False), (True, True)]:
        kw = dict(size_average=size_average, reduce=reduce)
        against_torch(
            lambda a, b, kw=kw: F.soft_margin_loss(a, b, **kw),
            lambda a, b, kw=kw: TF.soft_margin_loss(a, b, **kw),
            [X, np.sign(Y)],
            [0],
        )


LOSS_MODULES = [
    ("KLDivLoss", {"reduction": "batchmean"}, [X, PROB]),
    ("KLDivLoss", {"log_target": True, "reduction": "sum"}, [X, Y]),
    ("MarginRankingLoss", {"margin": 0.5}, [X[:, 0], Y[:, 0], SIGNS]),
    ("CosineEmbeddingLoss", {"margin": 0.1, "reduction": "none"}, [X, Y, SIGNS]),
    ("TripletMarginLoss", {"margin": 0.5, "p": 2.5, "swap": True}, [X, Y, Z]),
    ("PoissonNLLLoss", {"full": True, "log_input": False}, [PROB + 0.1, 3 * PROB]),
    ("GaussianNLLLoss", {"full": True}, [X, Y, PROB + 0.1]),
    ("SoftMarginLoss", {"reduction": "sum"}, [X, np.sign(Y)]),
    ("MultiLabelSoftMarginLoss", {"weight": np.abs(Z[0])}, [X, (Y > 0).astype(float)]),
]


@pytest.mark.parametrize("name, kwargs, arrays", LOSS_MODULES)
def test_loss_modules_match_torch(name, kwargs, arrays):
    t_kwargs = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    ours, theirs = getattr(nn, name)(**kwargs), getattr(torch.nn, name)(**t_kwargs)
    assert repr(ours).startswith(name)
    against_torch(ours, theirs, arrays, [0])


def test_losses_against_numpy_without_torch():
    x, t = X[0], PROB[0]
    safe = np.where(t > 0, t, 1.0)
    assert_close(
        F.kl_div(Tensor(x), Tensor(t), reduction="sum").numpy(), (t * np.log(safe) - t * x).sum()
    )
    assert_close(
        F.soft_margin_loss(Tensor(x), Tensor(np.sign(Y[0]))).numpy(),
        np.log1p(np.exp(-np.sign(Y[0]) * x)).mean(),
    )
    d = lambda a, b: np.sqrt(((a - b + 1e-6) ** 2).sum(-1))  # noqa: E731
    expected = np.maximum(1.0 + d(X, Y) - d(X, Z), 0).mean()
    assert_close(F.triplet_margin_loss(Tensor(X), Tensor(Y), Tensor(Z)).numpy(), expected)
    cos = (X * Y).sum(-1) / np.sqrt(((X * X).sum(-1) + 1e-12) * ((Y * Y).sum(-1) + 1e-12))
    expected = np.where(SIGNS == 1, 1 - cos, np.maximum(cos - 0.2, 0)).sum()
    assert_close(
        F.cosine_embedding_loss(Tensor(X), Tensor(Y), Tensor(SIGNS), 0.2, reduction="sum").numpy(),
        expected,
    )


@pytest.mark.parametrize(
    "fn, arrays",
    [
        (lambda a, b: F.kl_div(a, b, reduction="batchmean"), [X, PROB + 0.1]),
        (lambda a, b: F.kl_div(a, b, log_target=True), [X, Y]),
        (lambda a, b: F.cosine_embedding_loss(a, b, Tensor(SIGNS), 0.1), [X, Y]),
        (lambda a, b: F.margin_ranking_loss(a, b, Tensor(SIGNS), 0.1), [X[:, 0], Y[:, 0]]),
        (lambda a, b, c: F.triplet_margin_loss(a, b, c, p=3, swap=True), [X, Y, Z]),
        (lambda a, b: F.poisson_nll_loss(a, b, full=True), [X, 3 * PROB]),
        (lambda a, b, c: F.gaussian_nll_loss(a, b, c, full=True), [X, Y, PROB + 0.5]),
        (lambda a: F.soft_margin_loss(a, Tensor(np.sign(Y))), [X]),
        (lambda a: F.multilabel_soft_margin_loss(a, Tensor((Y > 0) * 1.0)), [X]),
    ],
)
def test_loss_gradchecks(fn, arrays):
    assert gradcheck(fn, *arrays)
    assert gradgradcheck(fn, *arrays)


# ------------------------------------------------------------------------- padding, resampling

PAD_CASES = [
    (mode, pad, shape)
    for mode in ("constant", "reflect", "replicate", "circular")
    for pad, shape in [
        ((1, 2), (3, 5)),
        ((2, 0), (2, 3, 5)),
        ((2, 1, 0, 3), (2, 3, 5, 6)),
        ((0, 0, 1, 1), (3, 5, 6)),
        ((1, 2, 1, 0, 2, 1), (1, 2, 3, 4, 5)),
    ]
]


@pytest.mark.parametrize("mode, pad, shape", PAD_CASES)
def test_pad_matches_torch(mode, pad, shape):
    x = np.random.default_rng(20).normal(size=shape)
    against_torch(lambda t: F.pad(t, pad, mode), lambda t: TF.pad(t, pad, mode), [x])


def test_pad_constant_value_and_cropping_match_torch():
    x = np.random.default_rng(21).normal(size=(2, 3, 5, 6))
    for pad in [(1, -2, 0, 1, 2, 1), (-1, -1), (3,) * 8]:
        against_torch(
            lambda t, pad=pad: F.pad(t, pad, value=1.5),
            lambda t, pad=pad: TF.pad(t, pad, value=1.5),
            [x],
        )


def test_padding_layers_match_torch():
    x = np.random.default_rng(22).normal(size=(2, 3, 5, 6))
    for name, args in [
        ("ZeroPad2d", (2,)),
        ("ZeroPad2d", ((1, 0, 2, 3),)),
        ("ConstantPad2d", ((1, 2, 0, 1), -0.5)),
        ("ReflectionPad2d", (2,)),
        ("ReplicationPad2d", ((1, 2, 3, 0),)),
        ("ZeroPad1d", (2,)),
        ("ConstantPad1d", ((1, 3), 2.0)),
        ("ReflectionPad1d", ((3, 1),)),
        ("ReplicationPad1d", (2,)),
    ]:
        ours, theirs = getattr(nn, name)(*args), getattr(torch.nn, name)(*args)
        data = x[0] if name.endswith("1d") else x
        assert_close(ours(Tensor(data)).numpy(), theirs(torch.tensor(data)).numpy())


def test_pad_numpy_reference_and_gradchecks():
    x = np.random.default_rng(23).normal(size=(2, 4, 5))
    for mode, np_mode in [("reflect", "reflect"), ("replicate", "edge"), ("circular", "wrap")]:
        expected = np.pad(x, ((0, 0), (1, 2), (3, 1)), mode=np_mode)
        assert_close(F.pad(Tensor(x), (3, 1, 1, 2), mode).numpy(), expected, 0, 0)
        assert gradcheck(lambda t, mode=mode: F.pad(t, (3, 1, 1, 2), mode), x)
        assert gradgradcheck(lambda t, mode=mode: F.pad(t, (3, 1, 1, 2), mode) ** 2, x)
    expected = np.pad(x, ((0, 0), (0, 0), (2, 2)), constant_values=0.25)
    assert_close(F.pad(Tensor(x), (2, 2), value=0.25).numpy(), expected, 0, 0)


@pytest.mark.parametrize("r", [1, 2, 3])
def test_pixel_shuffle_matches_torch_and_inverts(r):
    x = np.random.default_rng(24).normal(size=(2, 2 * r * r, 3, 4))
    out = against_torch(lambda t: F.pixel_shuffle(t, r), lambda t: TF.pixel_shuffle(t, r), [x])
    assert_close(F.pixel_unshuffle(out, r).numpy(), x, 0, 0)
    against_torch(nn.PixelUnshuffle(r), torch.nn.PixelUnshuffle(r), [out.numpy()[0]])
    assert_close(nn.PixelShuffle(r)(Tensor(x)).numpy(), out.numpy(), 0, 0)


INTERPOLATE_2D = [
    (mode, kwargs, align_corners)
    for mode in ("nearest", "nearest-exact", "bilinear", "bicubic", "area")
    for kwargs in (
        {"size": (8, 11)},
        {"size": (3, 4)},
        {"size": 9},
        {"scale_factor": 2},
        {"scale_factor": (1.5, 0.7)},
        {"scale_factor": 1.7, "recompute_scale_factor": True},
        {"scale_factor": 0.3},
    )
    for align_corners in ((None, False, True) if mode in ("bilinear", "bicubic") else (None,))
]


@pytest.mark.parametrize("mode, kwargs, align_corners", INTERPOLATE_2D)
def test_interpolate_2d_matches_torch(mode, kwargs, align_corners):
    x = np.random.default_rng(25).normal(size=(2, 3, 5, 7))
    kw = dict(kwargs, mode=mode, align_corners=align_corners)
    against_torch(lambda t: F.interpolate(t, **kw), lambda t: TF.interpolate(t, **kw), [x])


@pytest.mark.parametrize("mode", ["nearest", "nearest-exact", "linear", "area"])
@pytest.mark.parametrize("kwargs", [{"size": 13}, {"scale_factor": 0.6}, {"scale_factor": 3}])
def test_interpolate_1d_matches_torch(mode, kwargs):
    x = np.random.default_rng(26).normal(size=(2, 3, 7))
    against_torch(
        lambda t: F.interpolate(t, mode=mode, **kwargs),
        lambda t: TF.interpolate(t, mode=mode, **kwargs),
        [x],
    )
    if mode == "linear":
        kw = dict(kwargs, mode=mode, align_corners=True)
        against_torch(lambda t: F.interpolate(t, **kw), lambda t: TF.interpolate(t, **kw), [x])


def test_upsample_layers_match_torch():
    x = np.random.default_rng(27).normal(size=(1, 2, 4, 5))
    for ours, theirs in [
        (nn.Upsample(scale_factor=2), torch.nn.Upsample(scale_factor=2)),
        (
            nn.Upsample(size=(7, 3), mode="bilinear"),
            torch.nn.Upsample(size=(7, 3), mode="bilinear"),
        ),
        (
            nn.Upsample(scale_factor=3, mode="bilinear", align_corners=True),
            torch.nn.Upsample(scale_factor=3, mode="bilinear", align_corners=True),
        ),
        (
            nn.Upsample(scale_factor=(2.5, 1.5), mode="bicubic", align_corners=False),
            torch.nn.Upsample(scale_factor=(2.5, 1.5), mode="bicubic", align_corners=False),
        ),
        (
            nn.Upsample(size=(3, 8), mode="bicubic", align_corners=True),
            torch.nn.Upsample(size=(3, 8), mode="bicubic", align_corners=True),
        ),
        (nn.UpsamplingNearest2d(scale_factor=2), torch.nn.UpsamplingNearest2d(scale_factor=2)),
        (nn.UpsamplingBilinear2d(size=(6, 9)), torch.nn.UpsamplingBilinear2d(size=(6, 9))),
    ]:
        against_torch(ours, theirs, [x])


def test_interpolate_numpy_reference_and_gradchecks():
    x = np.random.default_rng(28).normal(size=(1, 2, 3, 4))
    # Doubling by nearest repeats each pixel; align_corners bilinear keeps the corners.
    assert_close(
        F.interpolate(Tensor(x), scale_factor=2).numpy(), x.repeat(2, 2).repeat(2, 3), 0, 0
    )
    corners = F.interpolate(Tensor(x), size=(5, 7), mode="bilinear", align_corners=True).numpy()
    assert_close(corners[..., ::2, ::2], x)
    for kw in (
        {"size": (5, 6), "mode": "bilinear"},
        {"scale_factor": 1.5},
        {"size": (2, 3), "mode": "area"},
        {"size": (7, 2), "mode": "bicubic"},
        {"scale_factor": 1.5, "mode": "bicubic", "align_corners": True},
    ):
        assert gradcheck(lambda t, kw=kw: F.interpolate(t, **kw), x)
        assert gradgradcheck(lambda t, kw=kw: F.interpolate(t, **kw) ** 2, x)


def test_bicubic_keeps_constants_and_linear_ramps_and_reaches_past_the_corners():
    # Keys' kernel reproduces polynomials up to degree 2 away from the border; its weights sum
    # to 1 everywhere (the clamped taps add onto the border pixels), so a constant stays put.
    ramp = np.arange(12.0).reshape(1, 1, 1, 12) * np.ones((1, 1, 3, 1))
    out = F.interpolate(Tensor(ramp), size=(3, 23), mode="bicubic", align_corners=True).numpy()
    assert_close(out[..., 4:-4], (np.arange(23.0) * 11 / 22)[4:-4] * np.ones((1, 1, 3, 1)))
    flat = F.interpolate(Tensor(np.full((1, 2, 4, 5), 3.25)), size=(9, 2), mode="bicubic")
    assert_close(flat.numpy(), np.full((1, 2, 9, 2), 3.25))
    # Unlike bilinear, bicubic overshoots at a step: its negative lobes reach beyond the range.
    step = np.repeat([[0.0, 0.0, 1.0, 1.0]], 4, axis=0).reshape(1, 1, 4, 4)
    out = F.interpolate(Tensor(step), scale_factor=4, mode="bicubic").numpy()
    assert out.min() < 0.0 and out.max() > 1.0


# -------------------------------------------------------------------------- instance norm


@pytest.mark.parametrize(
    "name, shape",
    [
        ("InstanceNorm1d", (3, 4, 7)),
        ("InstanceNorm1d", (4, 7)),
        ("InstanceNorm2d", (3, 4, 5, 6)),
        ("InstanceNorm2d", (4, 5, 6)),
    ],
)
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"affine": True},
        {"track_running_stats": True, "momentum": 0.3},
        {"affine": True, "track_running_stats": True},
    ],
)
def test_instance_norm_matches_torch(name, shape, kwargs):
    rng = np.random.default_rng(29)
    ours, theirs = (
        getattr(nn, name)(4, **kwargs).double(),
        getattr(torch.nn, name)(4, **kwargs).double(),
    )
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())
    if kwargs.get("affine"):
        weight, bias = rng.normal(size=4), rng.normal(size=4)
        ours.load_state_dict({**ours.state_dict(), "weight": weight, "bias": bias})
        theirs.weight.data, theirs.bias.data = torch.tensor(weight), torch.tensor(bias)
    for _ in range(2):
        against_torch(ours, theirs, [rng.normal(size=shape)], atol=1e-11)
        if kwargs.get("track_running_stats"):
            assert_close(ours.running_mean.numpy(), theirs.running_mean.numpy())
            assert_close(ours.running_var.numpy(), theirs.running_var.numpy())
    ours.eval(), theirs.eval()
    against_torch(ours, theirs, [rng.normal(size=shape)], atol=1e-11)


def test_instance_norm_numpy_reference_and_gradchecks():
    x = np.random.default_rng(30).normal(size=(2, 3, 6))
    expected = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    assert_close(F.instance_norm(Tensor(x)).numpy(), expected)
    assert gradcheck(lambda t: F.instance_norm(t), x)
    assert gradgradcheck(lambda t: F.instance_norm(t) ** 2, x)


# --------------------------------------------------------------------- transposed convolutions

CONV_T_GRID = [
    (s, p, op, d, g)
    for s, p, op, d, g in itertools.product([1, 2, 3], [0, 1, 2], [0, 1, 2], [1, 2], [1, 2])
    if op < s
]


@pytest.mark.parametrize("stride, padding, output_padding, dilation, groups", CONV_T_GRID)
def test_conv_transpose_matches_torch(stride, padding, output_padding, dilation, groups):
    rng = np.random.default_rng(40)
    kw = dict(
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        groups=groups,
        dilation=dilation,
    )
    # 2 input channels per group and 3 output (taps-major columns), or 8 output channels per
    # group with a 3-wide kernel (position-major).
    for out_per_group, kernel in [(3, (2, 3)), (8, (3, 3))]:
        x = rng.normal(size=(2, 2 * groups, 4, 5))
        w = rng.normal(size=(2 * groups, out_per_group) + kernel)
        b = rng.normal(size=out_per_group * groups)
        against_torch(
            lambda *t: F.conv_transpose2d(*t, **kw),
            lambda *t: TF.conv_transpose2d(*t, **kw),
            [x, w, b],
            atol=1e-11,
        )
        against_torch(
            lambda *t: F.conv_transpose1d(*t, **kw),
            lambda *t: TF.conv_transpose1d(*t, **kw),
            [x[:, :, 0], w[:, :, 0], b],
            atol=1e-11,
        )


def test_conv_transpose_pointwise_unbatched_and_without_bias_match_torch():
    rng = np.random.default_rng(41)
    x, w = rng.normal(size=(2, 4, 3, 5)), rng.normal(size=(4, 3, 1, 1))
    against_torch(F.conv_transpose2d, TF.conv_transpose2d, [x, w])
    against_torch(F.conv_transpose2d, TF.conv_transpose2d, [x[0], w])
    kw = dict(stride=2, padding=1, output_padding=1)
    w3 = rng.normal(size=(4, 2, 3, 3))
    against_torch(
        lambda *t: F.conv_transpose2d(*t, **kw),
        lambda *t: TF.conv_transpose2d(*t, **kw),
        [x[0], w3],
    )
    against_torch(
        lambda *t: F.conv_transpose1d(*t, **kw),
        lambda *t: TF.conv_transpose1d(*t, **kw),
        [x[0, :, 0], w3[:, :, 0]],
    )


@pytest.mark.parametrize("name", ["ConvTranspose1d", "ConvTranspose2d"])
def test_conv_transpose_layers_load_torch_state_and_match(name):
    torch.manual_seed(0)
    args = dict(stride=2, padding=1, output_padding=1, groups=2, dilation=1, bias=True)
    theirs = getattr(torch.nn, name)(4, 6, 3, **args).double()
    ours = getattr(nn, name)(4, 6, 3, **args)
    state = {k: v.detach().numpy() for k, v in theirs.state_dict().items()}
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in state.items()
    }
    ours.double().load_state_dict(state)
    shape = (2, 4, 5) if name.endswith("1d") else (2, 4, 5, 3)
    x = np.random.default_rng(42).normal(size=shape)
    against_torch(ours, theirs, [x])
    # output_size picks the output padding, as torch's.
    size = [10] if name.endswith("1d") else [9, 6]
    zero_pad = getattr(nn, name)(4, 6, 3, stride=2, padding=1, groups=2)
    zero_pad.double().load_state_dict(state)
    t_zero_pad = getattr(torch.nn, name)(4, 6, 3, stride=2, padding=1, groups=2).double()
    t_zero_pad.load_state_dict(theirs.state_dict())
    x = x[:, :, :5] if name.endswith("1d") else x[:, :, :5, :3]
    out = zero_pad(Tensor(x), output_size=size)
    assert_close(out.numpy(), t_zero_pad(torch.tensor(x), output_size=size).detach().numpy())


def test_conv_transpose_default_init_bounds():
    layer = nn.ConvTranspose2d(4, 6, 3, groups=2)
    assert layer.weight.shape == (4, 3, 3, 3) and layer.bias.shape == (6,)
    bound = 1 / np.sqrt(3 * 9)  # fan_in = weight dimension 1 x kernel
    assert np.abs(layer.weight.numpy()).max() <= bound
    assert np.abs(layer.weight.numpy()).max() > 0.8 * bound


def test_conv_transpose_is_conv_input_gradient_without_torch():
    # <conv_transpose(y, w), x> = <y, conv(x, w)> for every x and y: the adjoint.
    rng = np.random.default_rng(43)
    x, w = rng.normal(size=(2, 4, 7, 6)), rng.normal(size=(6, 2, 3, 2))
    kw = dict(stride=2, padding=1, dilation=1, groups=2)
    y = rng.normal(size=F.conv2d(Tensor(x), Tensor(w), **kw).shape)
    transposed = F.conv_transpose2d(Tensor(y), Tensor(w), **kw)
    assert transposed.shape == x.shape
    lhs = (transposed.numpy() * x).sum()
    rhs = (F.conv2d(Tensor(x), Tensor(w), **kw).numpy() * y).sum()
    assert_close(lhs, rhs)


@pytest.mark.parametrize("name", ["conv_transpose2d", "conv_transpose1d"])
def test_conv_transpose_op_battery(name):
    assert check_op(name)


def test_conv_transpose_gradchecks():
    rng = np.random.default_rng(44)
    x, w, b = rng.normal(size=(1, 2, 3, 3)), rng.normal(size=(2, 2, 2, 3)), rng.normal(size=2)
    kw = dict(stride=2, padding=1, output_padding=1, dilation=(1, 2))
    assert gradcheck(lambda *t: F.conv_transpose2d(*t, **kw), x, w, b)
    assert gradgradcheck(lambda *t: F.conv_transpose2d(*t, **kw), x, w, b)


@pytest.mark.parametrize("op", ["conv2d", "conv_transpose2d"])
@pytest.mark.parametrize("frozen", ["weight", "input"])
@pytest.mark.parametrize("kernel, stride", [(1, 1), (3, 1), (3, 2)])
def test_conv_gradients_with_a_frozen_weight_or_input_match_torch(op, frozen, kernel, stride):
    # The kernels skip the weight's gradient for a frozen weight (need_dweight); the input's
    # gradient and the others must not change.
    rng = np.random.default_rng(45)
    x = rng.normal(size=(2, 8, 5, 6))
    if op == "conv2d":  # weight (out 8, in 8, k, k)
        w, b = rng.normal(size=(8, 8, kernel, kernel)), rng.normal(size=8)
    else:  # weight (in 8, out 6, k, k)
        w, b = rng.normal(size=(8, 6, kernel, kernel)), rng.normal(size=6)
    grads = [1, 2] if frozen == "input" else [0, 2]
    kw = dict(stride=stride, padding=kernel // 2)
    against_torch(
        lambda *t: getattr(F, op)(*t, **kw),
        lambda *t: getattr(TF, op)(*t, **kw),
        [x, w, b],
        grads,
        atol=1e-11,
    )


def test_instance_norm_without_bias_matches_torch():
    rng = np.random.default_rng(31)
    ours = nn.InstanceNorm1d(4, affine=True, bias=False).double()
    theirs = torch.nn.InstanceNorm1d(4, affine=True, bias=False).double()
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict()) == ["weight"]
    weight = rng.normal(size=4)
    ours.load_state_dict({"weight": weight})
    theirs.weight.data = torch.tensor(weight)
    against_torch(ours, theirs, [rng.normal(size=(3, 4, 6))], atol=1e-11)


def test_conv_transpose_step_replays_under_compile():
    # Every array the op computes comes from its declared kernels (the bias too), so a
    # compiled step replays it: no fallback warning, and eager's losses.
    import warnings

    import firefly

    x = Tensor(np.random.default_rng(46).normal(size=(2, 3, 4, 4)))
    y = Tensor(np.random.default_rng(47).normal(size=(2, 2, 8, 8)))
    runs = []
    for compiled in (False, True):
        firefly.manual_seed(0)
        model = nn.Sequential(
            nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1), nn.Tanh()
        ).double()
        optimizer = firefly.optim.SGD(model.parameters(), lr=0.1)

        def step(x, y, model=model, optimizer=optimizer):
            optimizer.zero_grad()
            loss = F.mse_loss(model(x), y)
            loss.backward()
            optimizer.step()
            return loss

        run = firefly.compile(step) if compiled else step
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            runs.append([float(run(x, y)) for _ in range(4)])
    assert runs[0] == runs[1]
