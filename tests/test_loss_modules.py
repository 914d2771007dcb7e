"""NLLLoss, L1Loss, SmoothL1Loss, HuberLoss, BCELoss and BCEWithLogitsLoss against torch in
float64 (values and both gradients, every reduction), and their bad-input errors."""

import numpy as np
import pytest

from firefly import Tensor, nn
from firefly.nn import functional as F

torch = pytest.importorskip("torch", reason="needs torch as the oracle: pip install torch==2.13.0")

REDUCTIONS = ["mean", "sum", "none"]


def compare(ours, theirs, arrays, int_target=None):
    rng = np.random.default_rng(9)
    leaves = [Tensor(a, requires_grad=True) for a in arrays]
    t_leaves = [torch.tensor(a, requires_grad=True) for a in arrays]
    if int_target is not None:
        out, t_out = ours(leaves[0], int_target), theirs(t_leaves[0], torch.tensor(int_target))
    else:
        out, t_out = ours(*leaves), theirs(*t_leaves)
    np.testing.assert_allclose(out.numpy(), t_out.detach().numpy(), rtol=1e-9, atol=1e-12)
    grad = rng.normal(size=out.shape)
    out.backward(grad)
    t_out.backward(torch.tensor(grad))
    for leaf, t_leaf in zip(leaves, t_leaves):
        np.testing.assert_allclose(leaf.grad.numpy(), t_leaf.grad.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("L1Loss", {}),
        ("SmoothL1Loss", {"beta": 0.5}),
        ("SmoothL1Loss", {"beta": 0.0}),
        ("HuberLoss", {"delta": 0.8}),
    ],
)
def test_regression_losses_match_torch(name, kwargs, reduction):
    rng = np.random.default_rng(0)
    arrays = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    compare(
        getattr(nn, name)(reduction=reduction, **kwargs),
        getattr(torch.nn, name)(reduction=reduction, **kwargs),
        arrays,
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_cross_entropy_matches_torch(reduction):
    rng = np.random.default_rng(1)
    p, t, w = (
        rng.uniform(0.02, 0.98, size=(4, 3)),
        rng.uniform(0, 1, size=(4, 3)),
        rng.uniform(0.5, 2, size=3),
    )
    compare(
        nn.BCELoss(weight=w, reduction=reduction),
        torch.nn.BCELoss(weight=torch.tensor(w), reduction=reduction),
        (p, t),
    )
    compare(
        nn.BCELoss(reduction=reduction), torch.nn.BCELoss(reduction=reduction), (p, np.round(t))
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_cross_entropy_with_logits_matches_torch(reduction):
    rng = np.random.default_rng(2)
    x, t = rng.normal(scale=4, size=(4, 3)), rng.uniform(0, 1, size=(4, 3))
    w, pw = rng.uniform(0.5, 2, size=(4, 1)), rng.uniform(0.5, 3, size=3)
    compare(
        nn.BCEWithLogitsLoss(weight=w, pos_weight=pw, reduction=reduction),
        torch.nn.BCEWithLogitsLoss(
            weight=torch.tensor(w), pos_weight=torch.tensor(pw), reduction=reduction
        ),
        (x, t),
    )


def test_bce_with_logits_is_stable_for_large_logits():
    x = Tensor(np.array([800.0, -800.0]), requires_grad=True)
    loss = F.binary_cross_entropy_with_logits(x, Tensor(np.array([0.0, 1.0])), reduction="none")
    np.testing.assert_allclose(loss.numpy(), [800.0, 800.0])
    loss.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0, -1.0])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    "shape, with_weight, ignore_index",
    [((6, 4), True, -100), ((6, 4), True, 2), ((2, 4, 3), False, 1), ((4,), True, -100)],
)
def test_nll_loss_matches_torch(shape, with_weight, ignore_index, reduction):
    rng = np.random.default_rng(3)
    x = rng.normal(size=shape)
    target = rng.integers(0, 4, size=() if len(shape) == 1 else (shape[0],) + shape[2:])
    weight = rng.uniform(0.5, 2, size=4) if with_weight else None
    compare(
        nn.NLLLoss(weight=weight, ignore_index=ignore_index, reduction=reduction),
        torch.nn.NLLLoss(
            weight=None if weight is None else torch.tensor(weight),
            ignore_index=ignore_index,
            reduction=reduction,
        ),
        (x,),
        int_target=target,
    )


@pytest.mark.parametrize(
    "call, error, match",
    [
        (
            lambda: F.l1_loss(Tensor(np.zeros((3, 1))), Tensor(np.zeros(3))),
            ValueError,
            r"l1_loss: input and target must have the same shape",
        ),
        (
            lambda: F.huber_loss(Tensor(np.zeros(3)), Tensor(np.zeros(3)), delta=0),
            ValueError,
            r"huber_loss: delta must be > 0.0, got 0",
        ),
        (
            lambda: F.smooth_l1_loss(Tensor(np.zeros(3)), Tensor(np.zeros(3)), beta=-1),
            ValueError,
            r"smooth_l1_loss: beta must be >= 0.0, got -1",
        ),
        (
            lambda: F.binary_cross_entropy(Tensor(np.array([0.5, 1.5])), Tensor(np.zeros(2))),
            ValueError,
            r"every input must be a probability in \[0, 1\]",
        ),
        (
            lambda: F.binary_cross_entropy_with_logits(
                Tensor(np.zeros((2, 3))), Tensor(np.zeros((2, 3))), pos_weight=np.ones(4)
            ),
            ValueError,
            r"pos_weight of shape \(4,\) does not broadcast",
        ),
        (
            lambda: F.nll_loss(Tensor(np.zeros((2, 3))), np.array([0, 3])),
            ValueError,
            r"class index 3 is out of range",
        ),
        (
            lambda: F.nll_loss(Tensor(np.zeros((2, 3))), np.array([0.0, 1.0])),
            TypeError,
            r"integer class indices",
        ),
        (
            lambda: F.nll_loss(Tensor(np.zeros((2, 3))), np.array([0, 1]), weight=np.ones(2)),
            ValueError,
            r"weight must have one entry per class",
        ),
        (
            lambda: F.l1_loss(Tensor(np.zeros(3)), Tensor(np.zeros(3)), reduction="avg"),
            ValueError,
            r"reduction must be one of",
        ),
    ],
)
def test_losses_reject_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    "shape, with_weight, ignore_index, smoothing",
    [
        ((6, 4), False, -100, 0.0),
        ((6, 4), True, -100, 0.0),
        ((6, 4), True, 2, 0.0),
        ((6, 4), False, 1, 0.2),
        ((6, 4), True, 3, 0.1),
        ((2, 4, 3), True, -100, 0.3),
        ((4,), True, -100, 0.25),
    ],
)
def test_cross_entropy_with_class_indices_matches_torch(
    shape, with_weight, ignore_index, smoothing, reduction
):
    rng = np.random.default_rng(4)
    x = rng.normal(scale=2, size=shape)
    target = rng.integers(0, 4, size=() if len(shape) == 1 else (shape[0],) + shape[2:])
    weight = rng.uniform(0.5, 2, size=4) if with_weight else None
    compare(
        nn.CrossEntropyLoss(
            weight=weight, ignore_index=ignore_index, reduction=reduction, label_smoothing=smoothing
        ),
        torch.nn.CrossEntropyLoss(
            weight=None if weight is None else torch.tensor(weight),
            ignore_index=ignore_index,
            reduction=reduction,
            label_smoothing=smoothing,
        ),
        (x,),
        int_target=target,
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    "shape, with_weight, smoothing",
    [((5, 3), False, 0.0), ((5, 3), True, 0.15), ((2, 3, 4), True, 0.0), ((3,), False, 0.2)],
)
def test_cross_entropy_with_probability_targets_matches_torch(
    shape, with_weight, smoothing, reduction
):
    rng = np.random.default_rng(5)
    x = rng.normal(scale=2, size=shape)
    probs = rng.uniform(size=shape)
    probs /= probs.sum(axis=0 if len(shape) == 1 else 1, keepdims=True)
    weight = rng.uniform(0.5, 2, size=3) if with_weight else None
    leaf, t_leaf = Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out = F.cross_entropy(
        leaf, probs, weight=weight, reduction=reduction, label_smoothing=smoothing
    )
    t_out = torch.nn.functional.cross_entropy(
        t_leaf,
        torch.tensor(probs),
        reduction=reduction,
        weight=None if weight is None else torch.tensor(weight),
        label_smoothing=smoothing,
    )
    np.testing.assert_allclose(out.numpy(), t_out.detach().numpy(), rtol=1e-9, atol=1e-12)
    grad = np.random.default_rng(6).normal(size=out.shape)
    out.backward(grad), t_out.backward(torch.tensor(grad))
    np.testing.assert_allclose(leaf.grad.numpy(), t_leaf.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_cross_entropy_mean_over_nothing_counted_is_nan_as_torch():
    out = F.cross_entropy(Tensor(np.zeros((2, 3))), np.array([1, 1]), ignore_index=1)
    assert np.isnan(out.item())


@pytest.mark.parametrize(
    "kwargs, target, error, match",
    [
        (
            {"label_smoothing": 1.5},
            np.array([0, 1]),
            ValueError,
            r"label_smoothing must be in \[0, 1\]",
        ),
        (
            {"ignore_index": 0},
            np.full((2, 3), 1 / 3),
            ValueError,
            r"ignore_index is not supported with probability",
        ),
        (
            {},
            np.full((2, 4), 0.25),
            ValueError,
            r"probability targets .* must have the logits' shape",
        ),
        (
            {"weight": np.ones(4)},
            np.array([0, 1]),
            ValueError,
            r"weight must have one entry per class",
        ),
        ({}, np.array([0, 3]), ValueError, r"class index 3 is out of range"),
    ],
)
def test_cross_entropy_rejects_bad_arguments(kwargs, target, error, match):
    with pytest.raises(error, match=match):
        F.cross_entropy(Tensor(np.zeros((2, 3))), target, **kwargs)
