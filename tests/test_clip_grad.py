"""Gradient clipping: clip_grad_norm_ and clip_grad_value_ against NumPy formulas and torch,
the fused path over an optimizer's flat gradient buffer (one kernel call per run of slots),
non-finite norms, and argument checking."""

import math

import numpy as np
import pytest

from firefly.nn import Parameter
from firefly.nn.utils import clip_grad_norm_, clip_grad_value_
from firefly.nn.utils.clip_grad import GradientClipping as clipping
from firefly.optim import SGD
from firefly.tensor import Tensor

SHAPES = [(3, 4), (5,), (), (2, 3, 2)]


def case(seed, dtype=np.float64, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    values = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [rng.standard_normal(s).astype(dtype) for s in shapes]
    return values, grads


def with_optimizer(values, grads):
    """Parameters whose gradients are views into an SGD's flat gradient buffer."""
    params = [Parameter(v) for v in values]
    optimizer = SGD(params, lr=0.1)
    optimizer.zero_grad()
    for p, g in zip(params, grads):
        p.tensor.grad._data[...] = g
    return params, optimizer


def loose(values, grads):
    """Parameters with gradients of their own (no optimizer)."""
    params = [Parameter(v) for v in values]
    for p, g in zip(params, grads):
        p.tensor.grad = Tensor(g.copy())
    return params


def reference_norm(grads, norm_type):
    flat = np.concatenate([np.ravel(g).astype(np.float64) for g in grads])
    if norm_type == math.inf:
        return np.abs(flat).max()
    return (np.abs(flat) ** norm_type).sum() ** (1.0 / norm_type)


@pytest.mark.parametrize("layout", ["flat", "loose"])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, 0.5, math.inf])
@pytest.mark.parametrize("max_norm", [0.1, 1e6])
def test_norm_and_scaling_match_the_formula(layout, norm_type, max_norm):
    values, grads = case(1)
    params = with_optimizer(values, grads)[0] if layout == "flat" else loose(values, grads)
    total = clip_grad_norm_(params, max_norm, norm_type)
    want = reference_norm(grads, norm_type)
    assert isinstance(total, Tensor) and total.shape == () and total.dtype == np.float64
    np.testing.assert_allclose(total.item(), want, rtol=1e-13)
    scale = min(max_norm / (want + 1e-6), 1.0)
    for p, g in zip(params, grads):
        np.testing.assert_allclose(p.tensor.grad.numpy(), g * scale, rtol=1e-13, atol=1e-300)
    if max_norm < want:
        np.testing.assert_allclose(
            reference_norm([p.tensor.grad.numpy() for p in params], norm_type), max_norm, rtol=1e-5
        )


def test_flat_buffer_is_clipped_in_one_kernel_call_per_run(monkeypatch):
    """Gradients that are an optimizer's flat-buffer views: one norm and one scale call per
    dtype, however many parameters; a parameter left out splits its buffer's run."""
    calls = {"norm": 0, "scale": 0}
    norm_kernel, coefficient_kernel, scale_kernel, clamp_kernel = clipping.forward_kernel

    def counting_norm(*args):
        calls["norm"] += 1
        return norm_kernel(*args)

    def counting_scale(*args):
        calls["scale"] += 1
        return scale_kernel(*args)

    monkeypatch.setattr(
        clipping,
        "forward_kernel",
        (counting_norm, coefficient_kernel, counting_scale, clamp_kernel),
    )
    shapes = [(4, 3)] * 20 + [(7,)] * 20
    values, grads = case(2, shapes=shapes)
    values = [v.astype(np.float32) if i % 2 else v for i, v in enumerate(values)]
    grads = [g.astype(v.dtype) for g, v in zip(grads, values)]
    params, _ = with_optimizer(values, grads)
    total = clip_grad_norm_(params, 0.5)
    assert calls == {"norm": 2, "scale": 2}  # float64 and float32 buffers
    assert total.dtype == np.float64  # torch promotes the per-dtype norms
    np.testing.assert_allclose(total.item(), reference_norm(grads, 2.0), rtol=1e-6)
    calls.update(norm=0, scale=0)
    # params[5] is the float32 buffer's slot 2: that buffer splits into two runs.
    clip_grad_norm_(params[:5] + params[6:], 0.1)
    assert calls == {"norm": 3, "scale": 3}


def test_set_to_none_gradients_and_a_missing_gradient_are_handled():
    values, grads = case(3)
    params, optimizer = with_optimizer(values, grads)
    optimizer.zero_grad(set_to_none=True)
    for p, g in zip(params[:3], grads[:3]):
        p.tensor.grad = Tensor(g.copy())  # as backward would allocate them
    total = clip_grad_norm_(params, 0.5)
    np.testing.assert_allclose(total.item(), reference_norm(grads[:3], 2.0), rtol=1e-13)
    assert params[3].tensor.grad is None


def test_a_single_tensor_and_no_gradients():
    param = Parameter(np.array([3.0, 4.0]))
    param.tensor.grad = Tensor(np.array([3.0, 4.0]))
    assert clip_grad_norm_(param, 1.0).item() == 5.0
    np.testing.assert_allclose(param.tensor.grad.numpy(), np.array([3.0, 4.0]) / (5.0 + 1e-6))
    leaf = Tensor(np.array([1.0]), requires_grad=True)
    assert clip_grad_norm_([leaf], 1.0).item() == 0.0


@pytest.mark.parametrize("norm_type", [2.0, math.inf])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_norms(norm_type, bad):
    values, grads = case(4)
    grads[1][2] = bad
    params, _ = with_optimizer(values, grads)
    before = [p.tensor.grad.numpy().copy() for p in params]
    with pytest.raises(RuntimeError, match="clip_grad_norm_: the total norm .* is non-finite"):
        clip_grad_norm_(params, 1.0, norm_type, error_if_nonfinite=True)
    for p, b in zip(params, before):
        np.testing.assert_array_equal(p.tensor.grad.numpy(), b)  # untouched
    total = clip_grad_norm_(params, 1.0, norm_type)
    if bad == math.inf:
        assert total.item() == math.inf
        # scaled by 1 / inf: finite gradients become zeros, the infinite one NaN (inf * 0)
        assert all(not p.tensor.grad.numpy()[np.isfinite(b)].any() for p, b in zip(params, before))
    else:
        assert math.isnan(total.item())
        assert all(np.isnan(p.tensor.grad.numpy()).all() for p in params)


@pytest.mark.parametrize("layout", ["flat", "loose"])
def test_clip_grad_value(layout):
    values, grads = case(5)
    params = with_optimizer(values, grads)[0] if layout == "flat" else loose(values, grads)
    clip_grad_value_(params, 0.5)
    for p, g in zip(params, grads):
        np.testing.assert_array_equal(p.tensor.grad.numpy(), np.clip(g, -0.5, 0.5))


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda ps: clip_grad_norm_(ps, "1"), TypeError, "max_norm must be a number"),
        (
            lambda ps: clip_grad_norm_(ps, 1.0, norm_type=0),
            ValueError,
            "norm_type must be a positive number or inf",
        ),
        (
            lambda ps: clip_grad_norm_(ps, 1.0, norm_type=-math.inf),
            ValueError,
            "norm_type must be a positive",
        ),
        (
            lambda ps: clip_grad_norm_(5, 1.0),
            TypeError,
            "parameters must be a Tensor, a Parameter or an iterable",
        ),
        (lambda ps: clip_grad_norm_([np.ones(2)], 1.0), TypeError, r"parameters\[0\] is a ndarray"),
        (lambda ps: clip_grad_value_(ps, None), TypeError, "clip_value must be a number"),
    ],
)
def test_bad_arguments_are_refused(call, error, match):
    values, grads = case(6)
    params = loose(values, grads)
    with pytest.raises(error, match=match):
        call(params)
    for p, g in zip(params, grads):
        np.testing.assert_array_equal(p.tensor.grad.numpy(), g)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
def test_matches_torch(dtype, norm_type):
    torch = pytest.importorskip(
        "torch", reason="needs torch as the oracle: pip install torch==2.13.0"
    )
    values, grads = case(7, dtype=dtype)
    params, _ = with_optimizer(values, grads)
    theirs = [torch.tensor(v.copy(), requires_grad=True) for v in values]
    for t, g in zip(theirs, grads):
        t.grad = torch.tensor(g.copy())
    total = clip_grad_norm_(params, 0.7, norm_type)
    their_total = torch.nn.utils.clip_grad_norm_(theirs, 0.7, norm_type)
    rtol = 1e-12 if dtype == np.float64 else 1e-6
    assert total.dtype == dtype
    np.testing.assert_allclose(total.item(), their_total.item(), rtol=rtol)
    for p, t in zip(params, theirs):
        np.testing.assert_allclose(
            p.tensor.grad.numpy(),
            t.grad.numpy(),
            rtol=rtol,
            atol=1e-7 if dtype == np.float32 else 0,
        )
    params, _ = with_optimizer(values, grads)
    for t, g in zip(theirs, grads):
        t.grad = torch.tensor(g.copy())
    clip_grad_value_(params, 0.5)
    torch.nn.utils.clip_grad_value_(theirs, 0.5)
    for p, t in zip(params, theirs):
        np.testing.assert_array_equal(p.tensor.grad.numpy(), t.grad.numpy())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
@pytest.mark.parametrize("size", [1_100_003, 70_001])
def test_large_buffers_take_every_path_of_the_norm_kernel(size, norm_type, dtype):
    """Rows of lanes, chunks, the tail and (above the memory-bound threshold) the prange build."""
    from firefly.kernels.optim import grad_norm_power_sum

    grad = np.random.default_rng(8).standard_normal(size).astype(dtype)
    total = np.zeros(1)
    grad_norm_power_sum(grad, norm_type, total)
    g = np.abs(grad.astype(np.float64))
    want = g.max() if norm_type == math.inf else (g**norm_type).sum()
    # float32 squares are added in fours before the float64 sums: a float32 rounding each.
    np.testing.assert_allclose(
        total[0], want, rtol=1e-12 if dtype == np.float64 or norm_type != 2.0 else 1e-7
    )
    # A second buffer accumulates into the same total (the max of both for inf).
    grad_norm_power_sum(grad[:1000], norm_type, total)
    again = g.max() if norm_type == math.inf else want + (g[:1000] ** norm_type).sum()
    np.testing.assert_allclose(
        total[0], again, rtol=1e-12 if dtype == np.float64 or norm_type != 2.0 else 1e-7
    )
    for position in (5, size // 2, size - 3):  # in the first chunk, in the body, in the tail
        poisoned = grad.copy()
        poisoned[position] = np.nan
        total[0] = 0.0
        grad_norm_power_sum(poisoned, norm_type, total)
        assert math.isnan(total[0]), position
        grad_norm_power_sum(grad, norm_type, total)  # a NaN total stays NaN
        assert math.isnan(total[0]), position


def test_a_huge_page_aligned_buffer_is_still_found_and_clipped_in_one_call(monkeypatch):
    """Flat buffers of 2 MiB or more are views into a larger, aligned allocation."""
    from firefly.optim.flat import HUGE_PAGE

    calls = []
    norm_kernel, *others = clipping.forward_kernel
    monkeypatch.setattr(
        clipping,
        "forward_kernel",
        (lambda *args: calls.append(1) or norm_kernel(*args), *others),
    )
    values, grads = case(9, shapes=[(600, 1000), (10,)])
    params, optimizer = with_optimizer(values, grads)
    flat = optimizer.flat_grads()[0]
    assert flat.ctypes.data % HUGE_PAGE == 0 and params[0].numpy().ctypes.data % HUGE_PAGE == 0
    total = clip_grad_norm_(params, 1.0)
    assert len(calls) == 1
    np.testing.assert_allclose(total.item(), reference_norm(grads, 2.0), rtol=1e-12)


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
def test_the_norm_kernel_gives_one_result_serially_and_in_shares(norm_type):
    # The chunks' results are combined in order after the shares, so the thread count does not
    # change a bit of the total.
    from firefly.kernels.optim import grad_norm_power_sum

    grad = np.random.default_rng(9).standard_normal(300_007).astype(np.float32)
    totals = []
    for build in ("serial", "parallel"):
        total = np.zeros(1)
        getattr(grad_norm_power_sum, build)(grad, norm_type, total)
        totals.append(total[0])
    assert totals[0] == totals[1], totals
