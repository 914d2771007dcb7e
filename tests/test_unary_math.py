"""The unary math of torch's top level (tan ... frac) against torch in float64: values, first
and second derivatives, and the ``firefly.<name>`` function forms."""

import numpy as np
import pytest

import firefly
from firefly import Tensor

torch = pytest.importorskip(
    "torch", reason="these tests compare against torch: pip install torch==2.13.0"
)

# name -> the interval its inputs are drawn from: inside the domain, away from singularities.
SMOOTH = {
    "sin": (-3.0, 3.0),
    "cos": (-3.0, 3.0),
    "erf": (-2.5, 2.5),
    "tan": (-1.2, 1.2),
    "asin": (-0.9, 0.9),
    "acos": (-0.9, 0.9),
    "atan": (-4.0, 4.0),
    "sinh": (-3.0, 3.0),
    "cosh": (-3.0, 3.0),
    "log1p": (-0.9, 3.0),
    "expm1": (-3.0, 3.0),
    "log2": (0.1, 4.0),
    "log10": (0.1, 4.0),
    "rsqrt": (0.1, 4.0),
    "reciprocal": (0.3, 3.0),
    "square": (-3.0, 3.0),
}
ROUNDING = ["floor", "ceil", "round", "trunc", "frac"]


def inputs(name, seed):
    rng = np.random.default_rng(seed)
    if name in SMOOTH:
        x = rng.uniform(*SMOOTH[name], size=(3, 4))
        if name == "reciprocal":
            x[0] *= -1.0  # both sides of the pole
        return x
    # Integers, halves (round breaks ties to even, as torch) and values in between, both signs.
    ticks = np.array([-2.5, -2.0, -1.5, -0.5, 0.0, 0.5, 1.5, 2.0, 2.5, 3.0])
    return np.concatenate([ticks, rng.uniform(-3.0, 3.0, size=10)]).reshape(4, 5)


def derivatives(module, name, x, w, v):
    """The value of ``name`` at ``x``, and the first and second derivatives of
    ``sum(name(x) * x * w)``, contracted with ``v`` for the second: the product with ``x``
    keeps a graph through every op, even those whose own derivative is 0."""
    y = getattr(x, name)()
    (g1,) = module.autograd.grad((y * x * w).sum(), x, create_graph=True)
    (g2,) = module.autograd.grad((g1 * v).sum(), x)
    return y, g1, g2


@pytest.mark.parametrize("name", [*SMOOTH, *ROUNDING])
@pytest.mark.parametrize("seed", [0, 1])
def test_values_and_two_derivatives_match_torch(name, seed):
    x = inputs(name, seed)
    rng = np.random.default_rng(seed + 100)
    w, v = rng.uniform(-1, 1, x.shape), rng.uniform(-1, 1, x.shape)
    mine = derivatives(firefly, name, Tensor(x, requires_grad=True), Tensor(w), Tensor(v))
    x_t = torch.tensor(x, requires_grad=True)
    theirs = derivatives(torch, name, x_t, torch.tensor(w), torch.tensor(v))
    for what, a, b in zip(("value", "first derivative", "second derivative"), mine, theirs):
        np.testing.assert_allclose(
            a.numpy(), b.detach().numpy(), rtol=1e-13, atol=1e-13, err_msg=f"{name}: {what}"
        )


@pytest.mark.parametrize("name", ROUNDING)
def test_rounding_gradients_follow_torch(name):
    # torch: floor, ceil, round and trunc have gradient 0 everywhere, frac has gradient 1.
    x = Tensor(inputs(name, 0), requires_grad=True)
    getattr(x, name)().sum().backward()
    expected = 1.0 if name == "frac" else 0.0
    np.testing.assert_array_equal(x.grad.numpy(), np.full(x.shape, expected))


@pytest.mark.parametrize("name", [*SMOOTH, *ROUNDING])
def test_function_form_is_the_method(name):
    values = inputs(name, 3)
    function = getattr(firefly, name)
    assert name in firefly.__all__
    np.testing.assert_array_equal(function(values).numpy(), getattr(Tensor(values), name)().numpy())
    np.testing.assert_allclose(
        function(values).numpy(),
        getattr(torch, name)(torch.tensor(values)).numpy(),
        rtol=1e-13,
        atol=1e-13,
    )


@pytest.mark.parametrize("name", ["asin", "log2", "rsqrt", "reciprocal", "floor"])
def test_float32_stays_float32_and_matches_torch(name):
    x = inputs(name, 5).astype(np.float32)
    out = getattr(Tensor(x), name)()
    assert out.dtype == np.float32
    np.testing.assert_allclose(
        out.numpy(), getattr(torch, name)(torch.tensor(x)).numpy(), rtol=2e-6, atol=1e-6
    )


# Signed zeros, tiny arguments (where log1p and expm1 keep their precision), overflow,
# infinities, NaN, the ends of the domains and halves for round.
EDGES = [0.0, -0.0, 1e-10, -1e-10, 1.0, -1.0, 0.5, -0.5, 2.5, -2.5, 1000.0, -1000.0, 1e300]
EDGES += [np.inf, -np.inf, np.nan]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", [*SMOOTH, *ROUNDING])
def test_edge_values_match_torch(name, dtype):
    with np.errstate(all="ignore"):
        x = np.array(EDGES).astype(dtype)
    mine = getattr(firefly, name)(x).numpy()
    theirs = getattr(torch, name)(torch.tensor(x)).numpy()
    tol = 1e-15 if dtype == np.float64 else 4e-7
    np.testing.assert_allclose(mine, theirs, rtol=tol, atol=0, equal_nan=True, err_msg=name)
    numbers = ~np.isnan(theirs)  # NaN's sign bit is not part of torch's contract
    np.testing.assert_array_equal(np.signbit(mine[numbers]), np.signbit(theirs[numbers]))
