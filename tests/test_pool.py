"""max_pool2d, avg_pool2d and adaptive_avg_pool2d against torch in float64 (output sizes,
ceil_mode, padding, dilation, count_include_pad, gradients), gradcheck, and bad input."""

import itertools

import numpy as np
import pytest

import firefly
from firefly import Tensor, ops
from firefly.testing import gradcheck

torch = pytest.importorskip("torch", reason="needs torch as the oracle: pip install torch==2.13.0")
TF = torch.nn.functional


def compare(name, attrs, torch_fn, x, rng):
    leaf = Tensor(x, requires_grad=True)
    out = ops.apply(name, leaf, **attrs)
    grad = rng.normal(size=out.shape)
    out.backward(grad)
    t_leaf = torch.tensor(x, requires_grad=True)
    t_out = torch_fn(t_leaf)
    t_out.backward(torch.tensor(grad))
    assert out.shape == tuple(t_out.shape)
    np.testing.assert_allclose(out.numpy(), t_out.detach().numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(leaf.grad.numpy(), t_leaf.grad.numpy(), rtol=1e-9, atol=1e-12)


MAX_GRID = list(
    itertools.product([2, 3, (3, 2)], [None, 1, 2, (2, 1)], [0, 1], [1, 2], [False, True])
)


@pytest.mark.parametrize("k, s, p, d, ceil", MAX_GRID)
def test_max_pool2d_matches_torch(k, s, p, d, ceil):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 9, 8))
    compare(
        "max_pool2d",
        dict(kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=ceil),
        lambda t: TF.max_pool2d(t, k, s, p, d, ceil),
        x,
        rng,
    )


def test_max_pool2d_ties_and_nan_follow_torch():
    rng = np.random.default_rng(1)
    x = np.zeros((1, 1, 4, 4))  # every window is a tie: the gradient goes to the first element
    x[0, 0, 3, 3] = np.nan
    compare("max_pool2d", dict(kernel_size=2), lambda t: TF.max_pool2d(t, 2), x, rng)
    x = rng.integers(0, 2, size=(2, 2, 6, 6)).astype(np.float64)
    compare(
        "max_pool2d",
        dict(kernel_size=3, stride=1, padding=1),
        lambda t: TF.max_pool2d(t, 3, 1, 1),
        x,
        rng,
    )


@pytest.mark.parametrize(
    "k, s, p, ceil, include, divisor",
    list(
        itertools.product(
            [2, 3, (3, 2)], [None, 2, (2, 1)], [0, 1], [False, True], [True, False], [None, 5]
        )
    ),
)
def test_avg_pool2d_matches_torch(k, s, p, ceil, include, divisor):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 2, 9, 8))
    compare(
        "avg_pool2d",
        dict(
            kernel_size=k,
            stride=s,
            padding=p,
            ceil_mode=ceil,
            count_include_pad=include,
            divisor_override=divisor,
        ),
        lambda t: TF.avg_pool2d(t, k, s, p, ceil, include, divisor),
        x,
        rng,
    )


@pytest.mark.parametrize("output_size", [1, 2, (3, 5), (4, None), 7, (9, 8), (2, 11)])
def test_adaptive_avg_pool2d_matches_torch(output_size):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 3, 9, 8))
    compare(
        "adaptive_avg_pool2d",
        dict(output_size=output_size),
        lambda t: TF.adaptive_avg_pool2d(t, output_size),
        x,
        rng,
    )


def test_pooling_without_batch_dimension():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 6, 6))
    compare("max_pool2d", dict(kernel_size=2), lambda t: TF.max_pool2d(t, 2), x, rng)
    compare(
        "avg_pool2d",
        dict(kernel_size=3, stride=2, padding=1),
        lambda t: TF.avg_pool2d(t, 3, 2, 1),
        x,
        rng,
    )


@pytest.mark.parametrize(
    "name, attrs",
    [
        ("max_pool2d", dict(kernel_size=3, stride=2, padding=1, dilation=2, ceil_mode=True)),
        (
            "avg_pool2d",
            dict(
                kernel_size=(3, 2),
                stride=(2, 1),
                padding=1,
                ceil_mode=True,
                count_include_pad=False,
            ),
        ),
        ("adaptive_avg_pool2d", dict(output_size=(3, 4))),
    ],
)
def test_pooling_gradcheck(name, attrs):
    rng = np.random.default_rng(5)
    x = (
        rng.permutation(2 * 2 * 7 * 6).reshape(2, 2, 7, 6) * 0.1
    )  # distinct values: no ties in a window
    assert gradcheck(name, x, attrs=attrs)


@pytest.mark.parametrize(
    "name, shape, attrs, error, match",
    [
        ("max_pool2d", (4, 4), dict(kernel_size=2), ValueError, r"max_pool2d: input must be 4-D"),
        (
            "max_pool2d",
            (1, 1, 4, 4),
            dict(kernel_size=5),
            ValueError,
            r"does not fit the padded input",
        ),
        (
            "max_pool2d",
            (1, 1, 4, 4),
            dict(kernel_size=2, padding=2),
            ValueError,
            r"at most half the kernel size",
        ),
        (
            "max_pool2d",
            (1, 1, 4, 4),
            dict(kernel_size=2, stride=0),
            ValueError,
            r"stride must be positive",
        ),
        (
            "max_pool2d",
            (1, 1, 4, 4),
            dict(kernel_size=0),
            ValueError,
            r"kernel_size must be positive",
        ),
        (
            "avg_pool2d",
            (1, 1, 4, 4),
            dict(kernel_size=2, divisor_override=0),
            ValueError,
            r"divisor_override",
        ),
        ("avg_pool2d", (1, 1, 2, 2), dict(kernel_size=3), ValueError, r"does not fit"),
        (
            "adaptive_avg_pool2d",
            (1, 1, 4, 4),
            dict(output_size=0),
            ValueError,
            r"output_size must be positive",
        ),
        ("adaptive_avg_pool2d", (4,), dict(output_size=1), ValueError, r"input must be 4-D"),
    ],
)
def test_pooling_rejects_bad_input_before_any_kernel(monkeypatch, name, shape, attrs, error, match):
    monkeypatch.setattr(firefly.ops.get(name), "forward_kernel", None)
    with pytest.raises(error, match=match):
        ops.apply(name, np.zeros(shape), **attrs)
