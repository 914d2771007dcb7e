"""The float32 register-tile micro-kernel (firefly.kernels.microkernel) against NumPy in float64,
and the convolutions that run their float32 products through it against torch in float64."""

import numpy as np
import pytest

from firefly import Tensor, ops

numba = pytest.importorskip("numba")

from firefly.kernels import microkernel  # noqa: E402


@numba.njit(cache=False)
def _gemm(a, b, out, beta):
    microkernel.gemm(a, b, out, beta)


@numba.njit(cache=False)
def _gemm_bias(a, b, bias, out):
    microkernel.gemm_bias(a, b, bias, out)


@pytest.fixture(params=["loaded", "not loaded"])
def cell(request, monkeypatch):
    """Kernels call the micro-kernel at the address ``microkernel.load`` puts in its cell, and
    multiply through NumPy (a Python fallback) before it has: both ways."""
    if request.param == "loaded":
        microkernel.load()
        calls = microkernel.fallback_calls[0]
        yield request.param
        assert microkernel.fallback_calls[0] == calls  # the compiled product did them all
    else:
        monkeypatch.setattr(microkernel._cell, "value", microkernel._FALLBACK.value)
        calls = microkernel.fallback_calls[0]
        yield request.param
        assert microkernel.fallback_calls[0] > calls  # NumPy's product did


# (m, k, n): whole tiles, rows left over (m % MR), a 16-column block, columns left over
# (n % 16), a single step of the inner dimension, the convolutions' skinny shapes
SHAPES = [
    (1, 1, 1),
    (7, 3, 5),
    (8, 1, 16),
    (9, 5, 32),
    (17, 33, 48),
    (13, 7, 70),
    (100, 32, 144),
    (144, 300, 32),
    (4096, 144, 32),
    (4, 0, 16),  # no inner dimension: out = beta * out (zeros for beta 0, as BLAS gives)
    (3, 0, 7),
]


@pytest.mark.parametrize("m, k, n", SHAPES)
@pytest.mark.parametrize("a_transposed", [False, True])
@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_gemm_matches_numpy(m, k, n, a_transposed, beta, cell):
    """out = a @ b + beta * out in float32, within float32 rounding of the float64 product,
    for ``a`` row- or column-major and ``b`` and ``out`` views with rows longer than n."""
    rng = np.random.default_rng(m * 1000 + k * 10 + n)
    a = rng.standard_normal((k, m) if a_transposed else (m, k)).astype(np.float32)
    a = a.T if a_transposed else a
    b = rng.standard_normal((k, n + 3)).astype(np.float32)[:, :n]
    out = rng.standard_normal((m, n + 5)).astype(np.float32)[:, :n]
    expected = a.astype(np.float64) @ b + beta * out
    if beta == 0.0:
        out[...] = np.nan  # BLAS's beta 0 reads nothing of out
    _gemm(a, b, out, beta)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5 * np.sqrt(k))


@pytest.mark.parametrize(
    "m, k, n", [(1, 1, 16), (13, 7, 70), (100, 32, 144), (9, 300, 32), (5, 0, 16), (2, 0, 3)]
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_bias_adds_the_bias_to_every_row(m, k, n, dtype, cell):
    """out = a @ b + bias: in the micro-kernel's tiles (float32, n a multiple of 16), else the
    bias written first and BLAS's product added."""
    rng = np.random.default_rng(m + k + n)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    bias = rng.standard_normal(n).astype(dtype)
    out = np.full((m, n), np.nan, dtype)
    _gemm_bias(a, b, bias, out)
    expected = a.astype(np.float64) @ b + bias
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, expected, rtol=rtol, atol=rtol * np.sqrt(k))


def test_gemm_leaves_blas_what_does_not_fit(cell):
    """float64, and a ``b`` whose rows are not contiguous, go to cblas.gemm_views."""
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((20, 30)), rng.standard_normal((40, 30)).T
    out = np.empty((20, 40))
    _gemm(a, b, out, 0.0)
    np.testing.assert_allclose(out, a @ b, rtol=1e-12)
    a32, b32 = a.astype(np.float32), np.ascontiguousarray(b.T.astype(np.float32)).T
    out32 = np.ones((20, 40), dtype=np.float32)
    _gemm(a32, b32, out32, 1.0)
    np.testing.assert_allclose(out32, a @ b + 1.0, rtol=1e-4, atol=1e-4)


# (x shape, out channels, kernel, stride, padding): position-major columns (8x8 images), the
# tiles' shifted products and column products (16x16, wide at stride 1 and 2), the
# pointwise products (1x1), and taps-major columns (one input channel)
CONV_CASES = [
    ((6, 16, 8, 8), 32, 3, 1, 1),
    ((3, 16, 16, 16), 24, 3, 1, 1),
    ((3, 4, 16, 16), 40, 3, 1, 1),
    ((3, 16, 32, 32), 32, 3, 2, 1),
    ((5, 24, 16, 16), 48, 1, 1, 0),
    ((6, 1, 8, 8), 16, 3, 1, 1),
]


@pytest.mark.parametrize("x_shape, out_channels, k, stride, padding", CONV_CASES)
def test_float32_conv_gradients_match_torch(x_shape, out_channels, k, stride, padding):
    """conv2d's float32 forward and gradients, whose products run through the micro-kernel,
    within float32 rounding of torch's float64 ones."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    x = rng.normal(size=x_shape)
    weight = rng.normal(size=(out_channels, x_shape[1], k, k)) / np.sqrt(x_shape[1] * k * k)
    bias = rng.normal(size=out_channels)
    leaves = [Tensor(a.astype(np.float32), requires_grad=True) for a in (x, weight, bias)]
    out = ops.apply("conv2d", *leaves, stride=stride, padding=padding)
    grad = rng.normal(size=out.shape)
    out.backward(grad.astype(np.float32))
    t_leaves = [torch.tensor(a, requires_grad=True) for a in (x, weight, bias)]
    t_out = torch.nn.functional.conv2d(*t_leaves, stride=stride, padding=padding)
    t_out.backward(torch.tensor(grad))
    np.testing.assert_allclose(out.numpy(), t_out.detach().numpy(), rtol=1e-4, atol=1e-4)
    for leaf, t_leaf in zip(leaves, t_leaves):
        scale = np.abs(t_leaf.grad.numpy()).max()
        np.testing.assert_allclose(leaf.grad.numpy(), t_leaf.grad.numpy(), atol=1e-5 * scale)


@pytest.mark.parametrize("op", ["conv2d", "linear"])
def test_float32_ops_load_the_micro_kernel_before_their_kernels_run(op, monkeypatch):
    """A process's first convolution, or large float32 linear layer (on a CPU with AVX-512),
    fills the cell before its kernels multiply: NumPy's fallback never runs."""
    monkeypatch.setattr(microkernel._cell, "value", microkernel._FALLBACK.value)
    calls = microkernel.fallback_calls[0]
    rng = np.random.default_rng(5)
    if op == "conv2d":
        shapes = [(2, 16, 8, 8), (32, 16, 3, 3), (32,)]
    else:  # at least SHARED_LINEAR_MIN multiply-adds
        shapes = [(64, 192), (176, 192), (176,)]
    leaves = [Tensor(rng.normal(size=s).astype(np.float32), requires_grad=True) for s in shapes]
    out = ops.apply(op, *leaves, padding=1) if op == "conv2d" else ops.apply(op, *leaves)
    assert microkernel.loaded() == (op == "conv2d" or microkernel.AVX512)
    monkeypatch.setattr(microkernel._cell, "value", microkernel._FALLBACK.value)
    out.backward(np.ones(out.shape, np.float32))
    assert microkernel.loaded() == (op == "conv2d" or microkernel.AVX512)
    assert microkernel.fallback_calls[0] == calls
