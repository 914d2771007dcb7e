"""max_pool2d, avg_pool2d and adaptive_avg_pool2d against torch in float64 (output sizes,
ceil_mode, padding, dilation, count_include_pad, gradients), the max poolings'
return_indices and max_unpool, gradcheck, and bad input."""

import itertools

import numpy as np
import pytest

import firefly
from firefly import Tensor, nn, ops
from firefly.nn import functional as F
from firefly.testing import gradcheck, gradgradcheck

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


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("k, s, p", [(2, 2, 0), (3, 2, 1)])
def test_max_pool2d_shares_large_inputs_over_threads(threads, k, s, p):
    """From PARALLEL_MIN_MEMORY_BOUND elements max_pool2d's forward shares the planes out over
    the threads (the 2x2 path and the general one, 37 planes over two threads unevenly), and
    matches torch."""
    numba = pytest.importorskip("numba")
    from firefly.kernels._jit import PARALLEL_MIN_MEMORY_BOUND

    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip("needs two Numba threads")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(37, 1, 120, 120))
    assert x.size >= PARALLEL_MIN_MEMORY_BOUND
    before = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        compare(
            "max_pool2d",
            dict(kernel_size=k, stride=s, padding=p),
            lambda t: TF.max_pool2d(t, k, s, p),
            x,
            rng,
        )
    finally:
        numba.set_num_threads(before)


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


@pytest.mark.parametrize("k, s, p, d, ceil", MAX_GRID[::3])
def test_max_pool_indices_match_torch(k, s, p, d, ceil):
    x = np.random.default_rng(6).normal(size=(2, 3, 9, 8))
    kw = dict(kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
    out, indices = F.max_pool2d(Tensor(x), return_indices=True, **kw)
    t_out, t_indices = TF.max_pool2d(torch.tensor(x), return_indices=True, **kw)
    assert indices.dtype == np.int64 and not indices.requires_grad
    np.testing.assert_array_equal(indices.numpy(), t_indices.numpy())
    np.testing.assert_array_equal(out.numpy(), t_out.numpy())
    # The indices are flat positions in each input plane: gathering there gives the output.
    planes = x.reshape(6, -1)
    np.testing.assert_array_equal(
        np.take_along_axis(planes, indices.numpy().reshape(6, -1), 1), out.numpy().reshape(6, -1)
    )
    kw1 = {key: (v[0] if isinstance(v, tuple) else v) for key, v in kw.items()}
    seq = x[:, :, 0]
    _, indices = F.max_pool1d(Tensor(seq), return_indices=True, **kw1)
    _, t_indices = TF.max_pool1d(torch.tensor(seq), return_indices=True, **kw1)
    np.testing.assert_array_equal(indices.numpy(), t_indices.numpy())


def test_max_pool_indices_ties_nan_unbatched_and_adaptive_follow_torch():
    rng = np.random.default_rng(7)
    ties = rng.integers(0, 2, size=(3, 6, 7)).astype(np.float64)
    ties[1, 2, 3] = ties[2, 0, 0] = np.nan
    cases = [
        ("max_pool2d", (3, 1, 1)),
        ("adaptive_max_pool2d", ((4, 3),)),
        ("adaptive_max_pool2d", ((None, 2),)),
        ("adaptive_max_pool1d", (5,)),
        ("max_pool1d", (2,)),
    ]
    for name, args in cases:
        for x in (ties[0], ties) if name.endswith("1d") else (ties, ties[None]):
            _, indices = getattr(F, name)(Tensor(x), *args, return_indices=True)
            _, t_indices = getattr(TF, name)(torch.tensor(x), *args, return_indices=True)
            np.testing.assert_array_equal(indices.numpy(), t_indices.numpy())


def test_pooling_layers_return_indices_and_unpool_as_torch():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(2, 3, 8, 6))
    for ours, theirs in [
        (nn.MaxPool2d(2, return_indices=True), torch.nn.MaxPool2d(2, return_indices=True)),
        (
            nn.AdaptiveMaxPool2d((3, 2), return_indices=True),
            torch.nn.AdaptiveMaxPool2d((3, 2), return_indices=True),
        ),
    ]:
        (out, indices), (t_out, t_indices) = ours(Tensor(x)), theirs(torch.tensor(x))
        np.testing.assert_array_equal(indices.numpy(), t_indices.numpy())
    out, indices = nn.MaxPool2d(2, return_indices=True)(Tensor(x, requires_grad=True))
    t_out, t_indices = torch.nn.MaxPool2d(2, return_indices=True)(torch.tensor(x))
    unpooled = nn.MaxUnpool2d(2)(out, indices)
    t_unpooled = torch.nn.MaxUnpool2d(2)(t_out, t_indices)
    np.testing.assert_array_equal(unpooled.numpy(), t_unpooled.numpy())
    assert repr(nn.MaxUnpool2d(2)) == repr(torch.nn.MaxUnpool2d(2))
    assert repr(nn.MaxUnpool1d(3, 2, 1)) == repr(torch.nn.MaxUnpool1d(3, 2, 1))
    seq = x[:, :, 0]
    out, indices = nn.MaxPool1d(3, 2, return_indices=True)(Tensor(seq))
    t_out, t_indices = torch.nn.MaxPool1d(3, 2, return_indices=True)(torch.tensor(seq))
    np.testing.assert_array_equal(indices.numpy(), t_indices.numpy())
    for size in (None, (6,), (2, 3, 5)):
        np.testing.assert_array_equal(
            nn.MaxUnpool1d(3, 2)(out, indices, output_size=size).numpy(),
            torch.nn.MaxUnpool1d(3, 2)(t_out, t_indices, output_size=size).numpy(),
        )
    _, indices = nn.AdaptiveMaxPool1d(2, return_indices=True)(Tensor(seq))
    _, t_indices = torch.nn.AdaptiveMaxPool1d(2, return_indices=True)(torch.tensor(seq))
    np.testing.assert_array_equal(indices.numpy(), t_indices.numpy())


@pytest.mark.parametrize(
    "k, s, p, output_size",
    [(2, None, 0, None), (3, 2, 1, (9, 8)), (3, 2, 1, (2, 3, 9, 8)), ((3, 2), 1, (1, 0), None)],
)
def test_max_unpool2d_values_and_gradients_match_torch(k, s, p, output_size):
    # Stride 1 with a 3-wide kernel repeats indices (overlapping windows share maxima): torch
    # keeps one write forward and reads the gradient at every index backward, and so do we.
    rng = np.random.default_rng(9)
    x = rng.normal(size=(2, 3, 9, 8))
    _, t_indices = TF.max_pool2d(torch.tensor(x), k, s, p, return_indices=True)
    values = rng.normal(size=tuple(t_indices.shape))
    leaf = Tensor(values, requires_grad=True)
    t_leaf = torch.tensor(values, requires_grad=True)
    indices = Tensor(t_indices.numpy(), dtype=np.int64)
    out = F.max_unpool2d(leaf, indices, k, s, p, output_size)
    t_out = TF.max_unpool2d(t_leaf, t_indices, k, s, p, output_size)
    np.testing.assert_array_equal(out.numpy(), t_out.detach().numpy())
    grad = rng.normal(size=tuple(t_out.shape))
    out.backward(Tensor(grad))
    t_out.backward(torch.tensor(grad))
    np.testing.assert_allclose(leaf.grad.numpy(), t_leaf.grad.numpy(), rtol=1e-12, atol=0)


def test_max_unpool_gradcheck_and_second_order():
    rng = np.random.default_rng(10)
    x = rng.permutation(2 * 2 * 6 * 6).reshape(2, 2, 6, 6) * 0.1
    _, indices = F.max_pool2d(Tensor(x), 2, return_indices=True)
    values = rng.normal(size=tuple(indices.shape))
    assert gradcheck(lambda t: F.max_unpool2d(t, indices, 2), values)
    assert gradgradcheck(lambda t: F.max_unpool2d(t, indices, 2) ** 3, values)
    # max_unpool after max_pool keeps each window's maximum in place and zeros the rest.
    out, indices = F.max_pool2d(Tensor(x), 2, return_indices=True)
    kept = F.max_unpool2d(out, indices, 2).numpy()
    windows = x.reshape(2, 2, 3, 2, 3, 2)
    is_max = windows == windows.max(axis=(3, 5), keepdims=True)
    np.testing.assert_array_equal(kept, np.where(is_max, windows, 0.0).reshape(x.shape))


def test_max_pool_indices_are_what_backward_reads():
    # As torch's saved indices: a write to them in place before backward is an error.
    x = Tensor(np.random.default_rng(11).normal(size=(1, 1, 4, 4)), requires_grad=True)
    out, indices = F.max_pool2d(x, 2, return_indices=True)
    indices.zero_()
    with pytest.raises(RuntimeError, match="max_pool2d"):
        out.sum().backward()


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


def test_a_small_max_pool2d_as_a_process_first_kernel(run_python):
    """A small max_pool2d (one share, no parallel region) as the first kernel of a process:
    the kernel's code calls the threading layer, whose symbols run_shares registers before the
    kernel is compiled or loaded (the process crashed linking it before)."""
    code = (
        "import numpy as np; from firefly import Tensor; from firefly.nn import functional as F;"
        "x = Tensor(np.arange(16.0).reshape(1, 1, 4, 4));"
        "print(F.max_pool2d(x, 2).numpy().ravel().tolist())"
    )
    for _ in range(2):  # compiled, then loaded from the cache
        done = run_python("-c", code)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "[5.0, 7.0, 13.0, 15.0]"
