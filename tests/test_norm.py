"""batch_norm, layer_norm and group_norm against torch in float64 (outputs, every gradient,
running statistics), gradcheck, float32 accuracy with a large mean, and bad input."""

import numpy as np
import pytest

import firefly
from firefly import Tensor, ops
from firefly.kernels import norm as NK
from firefly.kernels.reduce import LANES, SUM_CHUNK
from firefly.nn import functional as F
from firefly.testing import gradcheck

torch = pytest.importorskip("torch", reason="needs torch as the oracle: pip install torch==2.13.0")
TF = torch.nn.functional


def compare(ff_fn, torch_fn, arrays, rng, tol=1e-9):
    leaves = [Tensor(a, requires_grad=True) for a in arrays]
    out = ff_fn(*leaves)
    grad = rng.normal(size=out.shape)
    out.backward(grad)
    t_leaves = [torch.tensor(a, requires_grad=True) for a in arrays]
    t_out = torch_fn(*t_leaves)
    t_out.backward(torch.tensor(grad))
    np.testing.assert_allclose(out.numpy(), t_out.detach().numpy(), rtol=tol, atol=tol)
    for leaf, t_leaf in zip(leaves, t_leaves):
        np.testing.assert_allclose(leaf.grad.numpy(), t_leaf.grad.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 5), (4, 3, 5, 6), (2, 3, 2, 2, 2)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("momentum", [0.1, 0.5])
def test_batch_norm_matches_torch_with_running_statistics(shape, training, momentum):
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape) * 3 + 5
    weight, bias = rng.normal(size=3), rng.normal(size=3)
    running = rng.normal(size=3), rng.uniform(0.5, 2.0, size=3)
    ours = [r.copy() for r in running]
    theirs = [torch.tensor(r.copy()) for r in running]
    compare(
        lambda *t: F.batch_norm(t[0], ours[0], ours[1], t[1], t[2], training, momentum, 1e-5),
        lambda *t: TF.batch_norm(t[0], theirs[0], theirs[1], t[1], t[2], training, momentum, 1e-5),
        (x, weight, bias),
        rng,
    )
    for mine, reference in zip(ours, theirs):  # torch's unbiased running variance included
        np.testing.assert_allclose(mine, reference.numpy(), rtol=1e-12, atol=1e-12)


def test_batch_norm_without_running_statistics_or_affine():
    rng = np.random.default_rng(1)
    compare(
        lambda x: F.batch_norm(x, None, None, training=True),
        lambda x: TF.batch_norm(x, None, None, training=True),
        (rng.normal(size=(4, 3, 5)),),
        rng,
    )


@pytest.mark.parametrize("normalized_shape", [(6,), (5, 6), (4, 5, 6)])
def test_layer_norm_matches_torch(normalized_shape):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 4, 5, 6)) * 2 + 1
    w, b = rng.normal(size=normalized_shape), rng.normal(size=normalized_shape)
    compare(
        lambda *t: F.layer_norm(t[0], normalized_shape, t[1], t[2]),
        lambda *t: TF.layer_norm(t[0], normalized_shape, t[1], t[2]),
        (x, w, b),
        rng,
    )


def test_layer_norm_many_rows_uses_every_partial_sum():
    rng = np.random.default_rng(3)  # more rows than one backward task holds
    x, w, b = rng.normal(size=(700, 9)), rng.normal(size=9), rng.normal(size=9)
    compare(
        lambda *t: F.layer_norm(t[0], 9, t[1], t[2]),
        lambda *t: TF.layer_norm(t[0], (9,), t[1], t[2]),
        (x, w, b),
        rng,
    )


# Lengths either side of where the kernels' sums change what they do: quads of 4 * LANES
# elements, a short last block, and more than SUM_CHUNK elements (several float64 flushes).
QUAD = 4 * LANES
SUM_LENGTHS = [QUAD - 1, QUAD, 2 * QUAD + LANES + 5, SUM_CHUNK + QUAD + 37]


@pytest.mark.parametrize("length", SUM_LENGTHS)
@pytest.mark.parametrize(
    "name, attrs, shape_of",
    [
        ("layer_norm", {}, lambda n: (5, n)),
        ("group_norm", dict(num_groups=2), lambda n: (3, 4, n)),
        ("batch_norm", dict(training=True), lambda n: (2, 3, n)),
    ],
)
def test_long_slices_match_torch_in_float64(name, attrs, shape_of, length):
    rng = np.random.default_rng(length)
    shape = shape_of(length)
    affine = shape[-1:] if name == "layer_norm" else shape[1:2]
    x = rng.normal(size=shape) * 2 + 3
    w, b = rng.uniform(0.5, 1.5, size=affine), rng.normal(size=affine)
    if name == "layer_norm":
        ff = lambda *t: F.layer_norm(t[0], affine, t[1], t[2])  # noqa: E731
        th = lambda *t: TF.layer_norm(t[0], affine, t[1], t[2])  # noqa: E731
    elif name == "group_norm":
        ff = lambda *t: F.group_norm(t[0], 2, t[1], t[2])  # noqa: E731
        th = lambda *t: TF.group_norm(t[0], 2, t[1], t[2])  # noqa: E731
    else:
        ff = lambda *t: F.batch_norm(t[0], None, None, t[1], t[2], training=True)  # noqa: E731
        th = lambda *t: TF.batch_norm(t[0], None, None, t[1], t[2], training=True)  # noqa: E731
    compare(ff, th, (x, w, b), rng)
    # float32 against the float64 result: the statistics' float32 partial sums per chunk keep
    # the error within a few float32 roundings of outputs of a few units (ulp(4) = 4.8e-7).
    x32, w32, b32 = (a.astype(np.float32) for a in (x, w, b))
    out32 = ff(Tensor(x32), Tensor(w32), Tensor(b32)).numpy()
    out64 = ff(Tensor(x), Tensor(w32.astype(np.float64)), Tensor(b32.astype(np.float64))).numpy()
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, out64, rtol=0, atol=4e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layer_norm_builds_agree_over_many_row_blocks(dtype):
    # The parallel builds deal blocks of rows to a helper; the serial builds loop over the same
    # blocks. Several blocks, a short last one, and rows that reach the quads.
    rng = np.random.default_rng(8)
    M, D = 3 * NK._LN_TASK_ROWS + 5, 2 * LANES * 4 + 37
    x, g = (rng.normal(size=(M, D)).astype(dtype) for _ in range(2))
    w, b = (rng.normal(size=D).astype(dtype) for _ in range(2))
    results = {}
    for build in ("serial", "parallel"):
        mean, rstd, out = np.empty(M), np.empty(M), np.empty_like(x)
        getattr(NK.layer_norm_forward, build)(x, w, b, 1e-5, mean, rstd, out)
        dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty_like(w)
        getattr(NK.layer_norm_backward, build)(g, x, w, mean, rstd, True, dx, dw, db)
        results[build] = (out, mean, rstd, dx, dw, db)
    for serial, parallel in zip(results["serial"], results["parallel"]):
        np.testing.assert_array_equal(serial, parallel)
    t = [torch.tensor(a.astype(np.float64), requires_grad=True) for a in (x, w, b)]
    TF.layer_norm(t[0], (D,), t[1], t[2]).backward(torch.tensor(g.astype(np.float64)))
    tol = 1e-4 if dtype == np.float32 else 1e-9
    for ours, theirs in zip(results["serial"][3:], (t[0].grad, t[1].grad, t[2].grad)):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize(
    "shape, groups", [((3, 6, 4, 5), 3), ((2, 4, 7), 1), ((2, 4, 7), 4), ((5, 6), 2)]
)
def test_group_norm_matches_torch(shape, groups):
    rng = np.random.default_rng(4)
    x, w, b = rng.normal(size=shape), rng.normal(size=shape[1]), rng.normal(size=shape[1])
    compare(
        lambda *t: F.group_norm(t[0], groups, t[1], t[2]),
        lambda *t: TF.group_norm(t[0], groups, t[1], t[2]),
        (x, w, b),
        rng,
    )


@pytest.mark.parametrize(
    "name, attrs, shape",
    [
        ("batch_norm", dict(training=True), (4, 3, 2)),
        (
            "batch_norm",
            dict(
                training=False,
                running_mean=np.array([0.1, -0.2, 0.3]),
                running_var=np.array([0.5, 1.5, 2.0]),
            ),
            (4, 3, 2),
        ),
        ("layer_norm", dict(normalized_shape=(3, 2)), (4, 3, 2)),
        ("group_norm", dict(num_groups=3), (4, 3, 2)),
    ],
)
def test_normalization_gradcheck(name, attrs, shape):
    rng = np.random.default_rng(5)
    affine_shape = attrs.get("normalized_shape", (shape[1],))
    x, w, b = (
        rng.normal(size=shape),
        rng.uniform(0.5, 1.5, size=affine_shape),
        rng.normal(size=affine_shape),
    )
    assert gradcheck(name, x, w, b, attrs=attrs)


def test_float32_statistics_survive_a_large_mean():
    rng = np.random.default_rng(6)
    x = (1e4 + rng.normal(size=(64, 8, 16))).astype(np.float32)
    out = F.batch_norm(Tensor(x), None, None, training=True).numpy()
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.mean(axis=(0, 2)), 0, atol=2e-3)
    np.testing.assert_allclose(out.std(axis=(0, 2)), 1, atol=2e-3)
    out = F.layer_norm(Tensor(x), 16).numpy()
    np.testing.assert_allclose(out.std(axis=-1), 1, atol=2e-3)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (
            lambda: ops.apply("batch_norm", np.zeros(3), np.ones(3), np.zeros(3), training=True),
            ValueError,
            r"batch_norm: input must be at least 2-D",
        ),
        (
            lambda: ops.apply(
                "batch_norm", np.zeros((2, 3)), np.ones(4), np.zeros(4), training=True
            ),
            ValueError,
            r"weight and bias must have shape \(3,\)",
        ),
        (
            lambda: ops.apply(
                "batch_norm", np.zeros((1, 3)), np.ones(3), np.zeros(3), training=True
            ),
            ValueError,
            r"more than one value per channel",
        ),
        (
            lambda: ops.apply(
                "batch_norm", np.zeros((2, 3)), np.ones(3), np.zeros(3), training=False
            ),
            ValueError,
            r"needs running_mean and running_var",
        ),
        (
            lambda: ops.apply(
                "batch_norm",
                np.zeros((2, 3)),
                np.ones(3),
                np.zeros(3),
                training=True,
                running_mean=np.zeros(4),
                running_var=np.ones(4),
            ),
            ValueError,
            r"running_mean must be",
        ),
        (
            lambda: ops.apply(
                "batch_norm", np.zeros((2, 3)), np.ones(3), np.zeros(3), training=True, eps=-1
            ),
            ValueError,
            r"eps must be a non-negative",
        ),
        (
            lambda: ops.apply(
                "batch_norm",
                np.zeros((2, 3)),
                np.ones(3),
                np.zeros(3),
                training=True,
                momentum=None,
                running_mean=np.zeros(3),
                running_var=np.ones(3),
            ),
            ValueError,
            r"momentum=None \(a cumulative average\) needs num_batches_tracked",
        ),
        (
            lambda: ops.apply(
                "batch_norm",
                np.zeros((2, 3)),
                np.ones(3),
                np.zeros(3),
                training=True,
                running_mean=np.zeros(3),
                running_var=np.ones(3),
                num_batches_tracked=np.zeros(1),
            ),
            ValueError,
            r"num_batches_tracked must be a one-element int64 array",
        ),
        (
            lambda: ops.apply(
                "layer_norm", np.zeros((2, 3)), np.ones(4), np.zeros(4), normalized_shape=(4,)
            ),
            ValueError,
            r"last dimensions must be normalized_shape \(4,\)",
        ),
        (
            lambda: ops.apply(
                "layer_norm", np.zeros((2, 3)), np.ones(2), np.zeros(3), normalized_shape=(3,)
            ),
            ValueError,
            r"weight and bias must have shape normalized_shape",
        ),
        (
            lambda: ops.apply(
                "group_norm", np.zeros((2, 6, 3)), np.ones(6), np.zeros(6), num_groups=4
            ),
            ValueError,
            r"6 channels do not divide into num_groups=4",
        ),
        (
            lambda: ops.apply(
                "group_norm", np.zeros((2, 6, 3)), np.ones(6), np.zeros(6), num_groups=0
            ),
            ValueError,
            r"num_groups must be a positive int",
        ),
    ],
)
def test_normalization_rejects_bad_input_before_any_kernel(monkeypatch, call, error, match):
    for name in ("batch_norm", "layer_norm", "group_norm"):
        monkeypatch.setattr(firefly.ops.get(name), "forward_kernel", None)
    with pytest.raises(error, match=match):
        call()


def test_the_sum_helpers_may_reassociate_additions_and_nothing_else():
    # fastmath's reassoc flag alone: the statistics vectorize into register partial sums, while
    # NaN and infinity stay exact (a NaN input still reaches every output of its slice).
    for helper in (NK._chunk_shifted_sums, NK._chunk_grad_sums, NK._chunk_row_grad_sums):
        assert helper.targetoptions["fastmath"] == {"reassoc"}
    x = np.ones((2, 3, 40), np.float32)
    x[0, 1, 7] = np.nan
    out = ops.apply(
        "batch_norm",
        Tensor(x),
        Tensor(np.ones(3, np.float32)),
        Tensor(np.zeros(3, np.float32)),
        training=True,
    ).numpy()
    assert np.isnan(out[:, 1]).all() and not np.isnan(out[:, [0, 2]]).any()
    out = F.layer_norm(Tensor(x), (40,)).numpy()
    assert np.isnan(out[0, 1]).all() and np.isfinite(np.delete(out.reshape(6, 40), 1, 0)).all()
