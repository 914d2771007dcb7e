"""GELU (exact and tanh), LeakyReLU, ELU, SiLU, Softplus, Hardtanh and LogSigmoid: modules and
functional forms against torch in float64 (values and gradients, kinks and large inputs
included), and their argument errors."""

import math

import numpy as np
import pytest

from firefly import Tensor, nn
from firefly.nn import functional as F
from firefly.testing import gradcheck

torch = pytest.importorskip("torch", reason="needs torch as the oracle: pip install torch==2.13.0")

X = np.concatenate(
    [
        np.random.default_rng(0).normal(scale=3, size=60),
        [0.0, 1.0, -1.0, 0.5, -2.0, 30.0, -30.0, 700.0, -700.0],
    ]
)

CASES = [
    ("GELU", {}),
    ("GELU", {"approximate": "tanh"}),
    ("LeakyReLU", {}),
    ("LeakyReLU", {"negative_slope": 0.2}),
    ("ELU", {}),
    ("ELU", {"alpha": 1.5}),
    ("SiLU", {}),
    ("Softplus", {}),
    ("Softplus", {"beta": 2.0, "threshold": 5.0}),
    ("Hardtanh", {}),
    ("Hardtanh", {"min_val": -2.0, "max_val": 0.5}),
    ("LogSigmoid", {}),
]


@pytest.mark.parametrize("name, kwargs", CASES)
def test_activation_modules_match_torch(name, kwargs):
    leaf, t_leaf = Tensor(X, requires_grad=True), torch.tensor(X, requires_grad=True)
    out, t_out = getattr(nn, name)(**kwargs)(leaf), getattr(torch.nn, name)(**kwargs)(t_leaf)
    np.testing.assert_allclose(out.numpy(), t_out.detach().numpy(), rtol=1e-12, atol=1e-12)
    grad = np.random.default_rng(1).normal(size=X.shape)
    out.backward(grad), t_out.backward(torch.tensor(grad))
    np.testing.assert_allclose(leaf.grad.numpy(), t_leaf.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "name, torch_name",
    [
        ("gelu", "gelu"),
        ("leaky_relu", "leaky_relu"),
        ("elu", "elu"),
        ("silu", "silu"),
        ("softplus", "softplus"),
        ("hardtanh", "hardtanh"),
        ("logsigmoid", "logsigmoid"),
    ],
)
def test_functional_forms_match_torch(name, torch_name):
    out = getattr(F, name)(Tensor(X))
    np.testing.assert_allclose(
        out.numpy(),
        getattr(torch.nn.functional, torch_name)(torch.tensor(X)).numpy(),
        rtol=1e-12,
        atol=1e-12,
    )


@pytest.mark.parametrize("name, kwargs", CASES)
def test_activation_gradcheck(name, kwargs):
    x = np.random.default_rng(2).uniform(-3, 3, size=(3, 4))
    x = np.where(
        np.abs(np.abs(x) - 1) < 0.05, 0.3, np.where(np.abs(x) < 0.05, 0.3, x)
    )  # off the kinks
    module = getattr(nn, name)(**kwargs)
    assert gradcheck(lambda t: module(t), x)


def test_float32_keeps_its_dtype_and_large_inputs_stay_finite():
    x = Tensor(np.array([-1e4, -50.0, 0.0, 50.0, 1e4], dtype=np.float32), requires_grad=True)
    for module in (nn.GELU(), nn.SiLU(), nn.Softplus(), nn.LogSigmoid(), nn.ELU()):
        out = module(x)
        assert out.dtype == np.float32 and np.all(np.isfinite(out.numpy()))


@pytest.mark.parametrize(
    "call, error, match",
    [
        (
            lambda: F.gelu(Tensor(X), approximate="fast"),
            ValueError,
            r"gelu: approximate must be 'none' or 'tanh'",
        ),
        (
            lambda: F.hardtanh(Tensor(X), 1.0, -1.0),
            ValueError,
            r"hardtanh: min_val \(1.0\) must be below max_val",
        ),
        (lambda: F.softplus(Tensor(X), beta=0), ValueError, r"softplus: beta must not be 0"),
        (
            lambda: F.leaky_relu(Tensor(X), "big"),
            TypeError,
            r"leaky_relu: negative_slope must be a number",
        ),
    ],
)
def test_bad_arguments_raise(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_exact_gelu_keeps_its_relative_precision_in_the_left_tail():
    # torch computes 1 + erf(x / sqrt 2), which cancels to nothing below x = -8; the kernel
    # computes the normal CDF through erfc there. The reference is x * erfc(-x / sqrt 2) / 2 with
    # libm's erfc, and its derivative Phi(x) + x phi(x), in float64; float32 rounds it once.
    def reference(x):
        phi = np.array([0.5 * math.erfc(-v / math.sqrt(2.0)) for v in x])
        return x * phi, phi + x * np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)

    x = np.concatenate([np.linspace(-37.0, 8.0, 4501), [-2.0, 2.0, -1e-300, 1e-300, 0.0]])
    want, want_grad = reference(x)
    leaf = Tensor(x, requires_grad=True)
    F.gelu(leaf).backward(np.ones_like(x))
    np.testing.assert_allclose(F.gelu(Tensor(x)).numpy(), want, rtol=1e-12, atol=0)
    np.testing.assert_allclose(leaf.grad.numpy(), want_grad, rtol=1e-12, atol=1e-300)
    # Past the size where the kernels' parallel builds run (their loops over the tails differ).
    many = Tensor(np.resize(x, 300_001), requires_grad=True)
    F.gelu(many).backward(np.ones(many.shape))
    np.testing.assert_allclose(F.gelu(many).numpy(), np.resize(want, 300_001), rtol=1e-12, atol=0)
    np.testing.assert_allclose(
        many.grad.numpy(), np.resize(want_grad, 300_001), rtol=1e-12, atol=1e-300
    )
    # below -14, x Phi(x) is under float32's subnormals; float32 outputs take a polynomial of
    # lower degree in the central range |x| < 2 sqrt 2, checked densely, its left end included
    central = np.random.default_rng(0).uniform(-2.83, 2.83, 200_000)
    x = np.concatenate([x, central, np.linspace(-2.83, -2.0, 20_001)])
    x32 = x[x > -14.0].astype(np.float32)
    leaf32 = Tensor(x32, requires_grad=True)
    out32 = F.gelu(leaf32)
    out32.backward(np.ones_like(x32))
    assert out32.dtype == np.float32 and leaf32.grad.dtype == np.float32
    for got, exact in zip((out32.numpy(), leaf32.grad.numpy()), reference(x32.astype(np.float64))):
        rounded = exact.astype(np.float32)
        ulps = np.abs(got.astype(np.float64) - rounded) / np.spacing(np.abs(rounded))
        assert ulps.max() <= 1.0, (ulps.max(), x32[np.argmax(ulps)])


@pytest.mark.parametrize("build", ["serial", "parallel"])
def test_exact_gelu_kernels_redo_the_tails_where_they_sit(build, monkeypatch):
    # The kernels run the central form over groups of 64 elements and redo a group's elements
    # beyond |x| = 2 sqrt 2 (and NaN) with the tail form at the positions a scan lists. Values
    # for which the central form is wrong sit at group and block edges, among small values,
    # in an array whose length is a multiple of neither; each output must be the one computed
    # for that element alone.
    from firefly.kernels import activation as K

    n = 2 * 4096 + 70
    x = np.full(n, 0.25)
    specials = {0: -6.0, 63: 5.0, 64: -3.0, 127: np.nan, 4095: -20.0, 4096: np.inf, n - 1: -9.5}
    for position, value in specials.items():
        x[position] = value
    if build == "parallel":
        monkeypatch.setattr(K.gelu_forward, "threshold", 0)
        monkeypatch.setattr(K.gelu_backward, "threshold", 0)
    out, dx = np.empty(n), np.empty(n)
    getattr(K.gelu_forward, build)(x, False, out)
    getattr(K.gelu_backward, build)(np.ones(n), x, False, dx)
    alone_out, alone_dx = np.empty(1), np.empty(1)
    for position in [*specials, 1, 62, 65, 4094, 4097, n - 2]:
        K.gelu_forward.serial(x[position : position + 1], False, alone_out)
        K.gelu_backward.serial(np.ones(1), x[position : position + 1], False, alone_dx)
        np.testing.assert_array_equal([out[position], dx[position]], [alone_out[0], alone_dx[0]])
    finite = np.isfinite(x)
    phi = np.array([0.5 * math.erfc(-v / math.sqrt(2.0)) for v in x[finite]])
    density = np.exp(-0.5 * x[finite] ** 2) / math.sqrt(2.0 * math.pi)
    np.testing.assert_allclose(out[finite], x[finite] * phi, rtol=1e-12, atol=0)
    np.testing.assert_allclose(dx[finite], phi + x[finite] * density, rtol=1e-12, atol=0)
    assert np.isnan(out[127]) and np.isnan(dx[127]) and out[4096] == np.inf
