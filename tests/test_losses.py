"""CrossEntropyLoss and the fused ``cross_entropy`` op: values against a float64 NumPy
reference, gradients, stability for huge logits, and label validation."""

import numpy as np
import pytest

import firefly
from firefly import nn
from firefly.ops import apply
from firefly.tensor import Tensor
from firefly.testing import gradcheck


def reference_cross_entropy(logits, target, reduction):
    """Float64 log-softmax + NLL along the class axis (axis 1, or 0 for one sample)."""
    x = np.asarray(logits, dtype=np.float64)
    axis = 0 if x.ndim == 1 else 1
    shifted = x - x.max(axis=axis, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
    losses = -np.take_along_axis(log_p, np.expand_dims(target, axis), axis=axis).squeeze(axis)
    return {"none": losses, "sum": losses.sum(), "mean": losses.mean()}[reduction]


def reference_gradient(logits, target, reduction):
    x = np.asarray(logits, dtype=np.float64)
    axis = 0 if x.ndim == 1 else 1
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    softmax = e / e.sum(axis=axis, keepdims=True)
    onehot = np.zeros_like(x)
    np.put_along_axis(onehot, np.expand_dims(target, axis), 1.0, axis=axis)
    scale = 1.0 / np.size(target) if reduction == "mean" else 1.0
    return (softmax - onehot) * scale


CASES = [((8, 5), (8,)), ((5,), ()), ((3, 4, 2), (3, 2)), ((2, 3, 2, 2), (2, 2, 2))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("x_shape, t_shape", CASES)
def test_forward_and_backward_match_numpy(x_shape, t_shape, reduction, dtype):
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=x_shape).astype(dtype)
    target = rng.integers(0, x_shape[0 if len(x_shape) == 1 else 1], size=t_shape)
    x = Tensor(logits, requires_grad=True)
    loss = nn.CrossEntropyLoss(reduction=reduction)(x, target)
    assert loss.dtype == dtype and loss.shape == (t_shape if reduction == "none" else ())
    tol = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(
        loss.numpy(), reference_cross_entropy(logits, target, reduction), rtol=tol, atol=tol
    )
    loss.backward(np.ones(loss.shape, dtype=dtype))
    assert x.grad.dtype == dtype
    np.testing.assert_allclose(
        x.grad.numpy(), reference_gradient(logits, target, reduction), rtol=tol, atol=tol
    )


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("x_shape, t_shape", CASES)
def test_gradcheck(x_shape, t_shape, reduction):
    rng = np.random.default_rng(1)
    logits = rng.normal(size=x_shape)
    target = rng.integers(0, x_shape[0 if len(x_shape) == 1 else 1], size=t_shape)
    assert gradcheck("cross_entropy", logits, attrs={"target": target, "reduction": reduction})
    # Through the module too, composed with other ops (a weighted per-sample loss).
    assert gradcheck(
        lambda x: (nn.CrossEntropyLoss(reduction="none")(x, target) * 1.5).sum(), logits
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stable_for_logits_around_1e4(dtype):
    logits = np.array(
        [[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4 - 1.0], [1e4, 1e4, 1e4], [-1e4, -1e4 + 2.0, -1e4 + 1.0]],
        dtype=dtype,
    )
    target = np.array([1, 2, 0, 1])
    x = Tensor(logits, requires_grad=True)
    loss = apply("cross_entropy", x, target=target, reduction="none")
    expected = reference_cross_entropy(logits.astype(np.float64), target, "none")
    assert np.all(np.isfinite(loss.numpy()))
    # Row 1: softplus(1) exactly, not 0 (max + log(sum) would round the log away in float32).
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-6, atol=1e-6)
    assert loss.numpy()[1] == pytest.approx(np.log1p(np.e), rel=1e-6)
    loss.sum().backward()
    np.testing.assert_allclose(
        x.grad.numpy(), reference_gradient(logits.astype(np.float64), target, "sum"), atol=1e-6
    )


@pytest.mark.parametrize(
    "target, error, message",
    [
        (
            np.array([0, 3]),
            ValueError,
            r"class index 3 is out of range: labels must be in \[0, 2\]",
        ),
        (np.array([-1, 0]), ValueError, r"class index -1 is out of range"),
        (np.array([0.0, 1.0]), TypeError, "must hold integer class indices, got dtype float64"),
        (np.array([True, False]), TypeError, "must hold integer class indices, got dtype bool"),
        (
            np.array([[0, 1]]),
            ValueError,
            r"target must have shape \(2,\) for logits of shape \(2, 3\)",
        ),
        (np.array([0, 1, 2]), ValueError, r"target must have shape \(2,\)"),
    ],
)
def test_bad_labels_raise_before_the_kernel_runs(target, error, message):
    logits = np.zeros((2, 3), dtype=np.float32)
    with pytest.raises(error, match=message) as info:
        nn.CrossEntropyLoss()(Tensor(logits), target)
    assert "cross_entropy" in str(info.value) and "(2, 3)" in str(info.value)


def test_targets_may_be_integer_tensors_but_not_float_tensors():
    logits = Tensor(np.zeros((2, 3)))
    loss = nn.CrossEntropyLoss()(logits, Tensor(np.array([2, 0]), dtype=np.int64))
    assert loss.item() == pytest.approx(np.log(3))
    with pytest.raises(TypeError, match="Tensor\\(labels, dtype=np.int64\\)"):
        nn.CrossEntropyLoss()(logits, Tensor(np.array([2, 0])))  # Tensor() made float32 labels


def test_missing_target_bad_reduction_and_0d_logits():
    with pytest.raises(TypeError, match="missing target"):
        apply("cross_entropy", np.zeros((2, 3)))
    with pytest.raises(ValueError, match="reduction must be one of"):
        apply("cross_entropy", np.zeros((2, 3)), target=np.array([0, 1]), reduction="average")
    with pytest.raises(ValueError, match="reduction must be one of"):
        nn.CrossEntropyLoss(reduction=None)
    with pytest.raises(ValueError, match="class dimension"):
        apply("cross_entropy", np.zeros(()), target=np.array(0))


def test_empty_batch_mean_is_nan_like_pytorch():
    loss = apply("cross_entropy", np.zeros((0, 3)), target=np.zeros(0, dtype=np.int64))
    assert np.isnan(loss.item())
    total = apply(
        "cross_entropy", np.zeros((0, 3)), target=np.zeros(0, dtype=np.int64), reduction="sum"
    )
    assert total.item() == 0.0


def test_large_batch_runs_the_parallel_kernel_and_agrees():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(4096, 10))  # 40960 elements: past the transcendental threshold
    target = rng.integers(0, 10, size=4096)
    x = Tensor(logits, requires_grad=True)
    loss = nn.CrossEntropyLoss()(x, target)
    np.testing.assert_allclose(
        loss.item(), reference_cross_entropy(logits, target, "mean"), rtol=1e-12
    )
    loss.backward()
    np.testing.assert_allclose(
        x.grad.numpy(), reference_gradient(logits, target, "mean"), rtol=1e-10, atol=1e-15
    )


def test_matches_torch_when_installed():
    torch = pytest.importorskip(
        "torch", reason="needs torch as the oracle: pip install torch==2.13.0"
    )
    rng = np.random.default_rng(3)
    logits, target = rng.normal(size=(16, 7)), rng.integers(0, 7, size=16)
    x = Tensor(logits, requires_grad=True)
    loss = firefly.nn.CrossEntropyLoss()(x, target)
    loss.backward()
    tx = torch.tensor(logits, requires_grad=True)
    tloss = torch.nn.functional.cross_entropy(tx, torch.tensor(target))
    tloss.backward()
    np.testing.assert_allclose(loss.item(), tloss.item(), rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-10, atol=1e-15)


def _loss_kernel_calls(n, rng):
    """(name, kernel, arguments) of every loss forward that sums over its samples."""
    from firefly.kernels import classification_loss as C
    from firefly.kernels import loss as L
    from firefly.kernels import pointwise_loss as P

    p = rng.uniform(0.01, 0.99, n).astype(np.float32)
    y = rng.uniform(0.0, 1.0, n).astype(np.float32)
    w = rng.uniform(0.5, 2.0, n).astype(np.float32)
    x3 = rng.standard_normal((n // 10, 10, 1)).astype(np.float32)
    target = rng.integers(-1, 10, (n // 10, 1))  # -1: ignored
    weight = rng.uniform(0.5, 2.0, 10).astype(np.float32)
    samples = np.empty((n // 10, 1), np.float32)
    none = np.zeros((1, 1, 1), np.float32)
    one = np.empty(1, np.float32)
    return [
        ("mse", L.mse_forward, (p, y, 0.5, np.empty(1))),
        ("l1", P.l1_forward, (p, y, 0.0, True, one)),
        ("smooth_l1", P.smooth_l1_forward, (p, y, 0.3, True, one)),
        ("huber", P.huber_forward, (p, y, 0.3, True, one)),
        ("bce", P.bce_forward, (p, y, w, True, one)),
        ("bce_with_logits", P.bce_with_logits_forward, (p, y, w, w, True, one)),
        ("nll", C.nll_forward, (x3, target, weight, -1, samples)),
        (
            "cross_entropy",
            C.cross_entropy_forward,
            (x3, target, none, False, weight, -1, 0.1, samples, samples.copy(), samples.copy()),
        ),
    ]


@pytest.mark.parametrize("n", [10, 123_450])
def test_loss_totals_do_not_depend_on_the_thread_count(n):
    # Each loss forward sums fixed chunks of samples and adds the chunks' sums in order: its
    # serial run and its run in shares give one total (returned, or in mse's out), bit for bit.
    for name, kernel, args in _loss_kernel_calls(n, np.random.default_rng(n)):
        results = []
        for build in ("serial", "parallel"):
            returned = getattr(kernel, build)(*args)
            results.append((returned, args[-1].copy()))
        (serial, serial_out), (parallel, parallel_out) = results
        assert serial == parallel, (name, serial, parallel)
        np.testing.assert_array_equal(serial_out, parallel_out, err_msg=name)
