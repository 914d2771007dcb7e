"""The op battery (firefly.testing.check_op) on every registered op, against NumPy, and
gradients of random compositions of ops against float64 finite differences."""

import numpy as np
import pytest
from attention_references import ATTENTION_COMPOSITION_STEPS
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes
from layer_references import LAYER_COMPOSITION_STEPS
from recurrent_references import RECURRENT_COMPOSITION_STEPS

import firefly
from firefly.ops import registry
from firefly.testing import check_op, gradcheck

BUILTIN_NAMES = sorted(n for n in firefly.ops.names() if registry.origin(n) == registry.BUILTIN)


def test_every_builtin_op_has_a_numpy_reference(numpy_references):
    assert sorted(numpy_references) == BUILTIN_NAMES


# Up to 4 dimensions of size 1..3: 0-d, one-element, vector and batched shapes; binary ops'
# sample_inputs pair each with a broadcasting partner.
shapes = array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=3)


# Two drawn shapes beside the five explicit ones: the explicit examples already hold 0-d, one
# element, all-ones, broadcast and 4-d shapes, and test_op_runs_exactly_its_declared_kernels runs
# default_shapes (0-d to 4-d) on every op, so more draws of sides 1..3 repeat those cases (each
# shape runs both dtypes, gradcheck and gradgradcheck: with a warm kernel cache the convolutions'
# gradgradchecks were most of this test's time, 6 draws of 11 shapes).
@pytest.mark.parametrize("name", firefly.ops.names())
@settings(
    max_examples=2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(shape=shapes, seed=st.integers(0, 2**16))
@example(shape=(), seed=0)
@example(shape=(1,), seed=1)
@example(shape=(1, 1, 1), seed=2)
@example(shape=(2, 1, 3), seed=3)
@example(shape=(3, 2, 2, 3), seed=4)
def test_op_battery(numpy_references, name, shape, seed):
    # One shape per call: which declared kernels a shape needs varies, so only the rule that
    # nothing undeclared runs applies here; the test below checks that every declared one runs.
    assert check_op(
        name,
        reference=numpy_references.get(name),
        shapes=[shape],
        seed=seed,
        every_kernel_runs=False,
    )


@pytest.mark.parametrize("name", firefly.ops.names())
def test_op_runs_exactly_its_declared_kernels(numpy_references, name):
    assert check_op(name, reference=numpy_references.get(name))


# Steps of a random composition: each maps (x: (2, 3), v: (3,), w: (3, 3)) to a new (2, 3)
# tensor. Arguments of log, div and pow are kept away from their singularities, and relu is
# made leaky so that max never sees exact ties, where finite differences are not a gradient.
COMPOSITION_STEPS = {
    "add": lambda x, v, w: x + v,
    "sub": lambda x, v, w: v - x,
    "mul": lambda x, v, w: x * v,
    "div": lambda x, v, w: x / (v * v + 1.0),
    "rdiv": lambda x, v, w: 2.0 / (x * x + 1.0),
    "pow": lambda x, v, w: (x * x + 0.5) ** (v * 0.5),
    "scalar_pow": lambda x, v, w: (x.sigmoid() + 0.5) ** 1.5,
    "neg": lambda x, v, w: -x,
    "relu": lambda x, v, w: x.relu() + 0.1 * x,
    "exp": lambda x, v, w: x.tanh().exp(),
    "log": lambda x, v, w: (x * x + 1.0).log(),
    "sigmoid": lambda x, v, w: x.sigmoid(),
    "tanh": lambda x, v, w: x.tanh(),
    "sum": lambda x, v, w: x + x.sum(axis=1, keepdims=True),
    "mean": lambda x, v, w: x - x.mean(axis=0, keepdims=True) + x.mean(),
    "max": lambda x, v, w: x * x.max(axis=-1, keepdims=True),
    "softmax": lambda x, v, w: x.softmax(axis=0),
    "log_softmax": lambda x, v, w: x.log_softmax(axis=-1),
    "reshape": lambda x, v, w: x.reshape(3, 2).softmax(axis=0).reshape(2, 3),
    "transpose": lambda x, v, w: (w @ x.T).T,
    "getitem": lambda x, v, w: x[:, ::-1] * x[::-1, :] + x[0],
    "matmul": lambda x, v, w: x @ w,
    "linear": lambda x, v, w: firefly.ops.apply("linear", x, w, v),
    # Steps keep values O(1): a chain of growing steps (x * loss, then a power) reaches 1e7,
    # where float64 finite differences are no longer accurate to the tolerance.
    "cross_entropy": lambda x, v, w: (
        x.tanh()
        * firefly.ops.apply("cross_entropy", x, target=np.array([2, 0]), reduction="none").reshape(
            2, 1
        )
    ),
    "mse_loss": lambda x, v, w: x * firefly.ops.apply("mse_loss", x, v * x, reduction="mean"),
    "cast": lambda x, v, w: x.clone() * x.double(),
    "abs": lambda x, v, w: x.abs() + x,
    "sqrt": lambda x, v, w: (x * x + 1.0).sqrt(),
    "sign": lambda x, v, w: x * x.sign(),
    "clamp": lambda x, v, w: x.clamp(-0.5, 0.5) + 0.1 * x,
    "maximum": lambda x, v, w: firefly.maximum(x, v),
    "minimum": lambda x, v, w: firefly.minimum(x, v * 0.5),
    "atan2": lambda x, v, w: firefly.atan2(x, v * v + 0.5),
    # Quotients kept off the integers, where fmod and remainder jump: the dividends lie in
    # [2.25, 2.75] and the divisors' magnitudes in [1.4, 1.6] (a / b in [1.4, 2.0]).
    "fmod": lambda x, v, w: (2.25 + 0.5 * x.sigmoid()).fmod((1.5 + 0.1 * v.tanh()) * v.sign()),
    "remainder": lambda x, v, w: (
        (2.25 + 0.5 * x.sigmoid()) % ((1.5 + 0.1 * v.tanh()) * v.sign())
        + 4.0 % (2.25 + 0.5 * x.sigmoid())
    ),
    "where": lambda x, v, w: firefly.where(x > 0, x, v * x),
    "expand": lambda x, v, w: x + v.expand(2, 3),
    "cat": lambda x, v, w: firefly.cat([x[:, :1], x[:, 1:] * 2.0], dim=1),
    "take": lambda x, v, w: x * x[np.array([1, 1])] + x.gather(1, np.array([[2, 2, 0], [1, 0, 0]])),
    "add_at": lambda x, v, w: firefly.ops.apply(
        "add_at", x, index=np.array([[0, 5, 5], [1, 0, 2]]), size=6
    ).reshape(2, 3),
    "sin": lambda x, v, w: x.sin(),
    "cos": lambda x, v, w: x.cos() * v,
    "erf": lambda x, v, w: x.erf(),
    "erfc": lambda x, v, w: x.erfc() * v,
    "cumsum": lambda x, v, w: x.cumsum(1) - x.cumsum(-2) * v,
    "tan": lambda x, v, w: (0.5 * x).tan(),
    "asin": lambda x, v, w: (0.5 * x.tanh()).asin(),
    "acos": lambda x, v, w: (0.5 * x.tanh()).acos(),
    "atan": lambda x, v, w: x.atan(),
    "sinh": lambda x, v, w: x.tanh().sinh(),
    "cosh": lambda x, v, w: x.tanh().cosh() * v,
    "log1p": lambda x, v, w: (x * x).log1p(),
    "expm1": lambda x, v, w: x.tanh().expm1(),
    "log2": lambda x, v, w: (x * x + 0.5).log2(),
    "log10": lambda x, v, w: (x * x + 0.5).log10(),
    "rsqrt": lambda x, v, w: (x * x + 0.5).rsqrt(),
    "reciprocal": lambda x, v, w: (x * x + 1.0).reciprocal(),
    "square": lambda x, v, w: x.tanh().square(),
    # The steps' values are not kept away from the integers: the rounding ops enter only as
    # constants shifted back by themselves, whose gradient is the identity's either way.
    "floor": lambda x, v, w: x + 3.0 * (x.floor() - x.detach().floor()),
    "ceil": lambda x, v, w: x + 3.0 * (x.ceil() - x.detach().ceil()),
    "round": lambda x, v, w: x + 3.0 * (x.round() - x.detach().round()),
    "trunc": lambda x, v, w: x + 3.0 * (x.trunc() - x.detach().trunc()),
    "frac": lambda x, v, w: x.frac() + x.detach().trunc(),
    # The sum of the squared singular values (the squared Frobenius norm) is smooth even
    # where singular values meet or vanish, which random compositions cannot avoid. The step
    # reads and scales tanh(x), so that its output stays within about 16 whatever its input:
    # scaling x itself by a quartic of x overflowed after a few svd steps (svd then refused
    # inf), and long before that, finite differences of values grown to 1e4 missed the 1e-3
    # tolerance.
    "svd": lambda x, v, w: (
        x.tanh() * (firefly.ops.apply("svd", w + x.tanh().T @ x.tanh())[..., 9:12] ** 2).sum()
    ),
}


COMPOSITION_STEPS.update(LAYER_COMPOSITION_STEPS)
COMPOSITION_STEPS.update(RECURRENT_COMPOSITION_STEPS)
COMPOSITION_STEPS.update(ATTENTION_COMPOSITION_STEPS)


def test_composition_steps_cover_every_builtin_op():
    assert set(COMPOSITION_STEPS) >= set(BUILTIN_NAMES)


@settings(max_examples=40, deadline=None)
@given(
    steps=st.lists(st.sampled_from(sorted(COMPOSITION_STEPS)), min_size=1, max_size=5),
    seed=st.integers(0, 2**16),
)
def test_random_compositions_match_finite_differences(steps, seed):
    rng = np.random.default_rng(seed)
    x, v, w = rng.uniform(-1, 1, (2, 3)), rng.uniform(-1, 1, (3,)), rng.uniform(-1, 1, (3, 3))

    def composition(x, v, w):
        for step in steps:
            x = COMPOSITION_STEPS[step](x, v, w)
        return x

    composition.__name__ = " -> ".join(steps)
    assert gradcheck(composition, x, v, w)
