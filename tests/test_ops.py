"""The op battery (firefly.testing.check_op) on every registered op, against NumPy, and
gradients of random compositions of ops against float64 finite differences."""
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st
from hypothesis.extra.numpy import array_shapes

import firefly
from firefly.ops import registry
from firefly.testing import check_op, gradcheck
from layer_references import LAYER_COMPOSITION_STEPS, LAYER_REFERENCES


def np_softmax(x, axis):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def np_log_softmax(x, axis):
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def np_cross_entropy(x, target, reduction):
    log_p = np_log_softmax(x, axis=0 if x.ndim == 1 else 1)
    picked = np.take_along_axis(log_p, np.expand_dims(target, 0 if x.ndim == 1 else 1), axis=0 if x.ndim == 1 else 1)
    losses = -np.squeeze(picked, axis=0 if x.ndim == 1 else 1)
    return {"none": losses, "sum": np.sum(losses), "mean": np.mean(losses)}[reduction]


def np_reduction(fn):
    return lambda a, attrs: fn(a[0], axis=attrs.get("axis"), keepdims=attrs.get("keepdims", False))


# name -> NumPy function of (arrays, attrs): what each built-in op must compute.
NUMPY_REFERENCES = {
    "add": lambda a, attrs: a[0] + a[1],
    "sub": lambda a, attrs: a[0] - a[1],
    "mul": lambda a, attrs: a[0] * a[1],
    "div": lambda a, attrs: a[0] / a[1],
    "pow": lambda a, attrs: np.power(a[0], a[1]),
    "neg": lambda a, attrs: -a[0],
    "relu": lambda a, attrs: np.maximum(a[0], 0.0),
    "exp": lambda a, attrs: np.exp(a[0]),
    "log": lambda a, attrs: np.log(a[0]),
    "sigmoid": lambda a, attrs: 1.0 / (1.0 + np.exp(-a[0])),
    "tanh": lambda a, attrs: np.tanh(a[0]),
    "sum": np_reduction(np.sum),
    "mean": np_reduction(np.mean),
    "max": np_reduction(np.max),
    "softmax": lambda a, attrs: np_softmax(a[0], attrs.get("axis", -1)),
    "log_softmax": lambda a, attrs: np_log_softmax(a[0], attrs.get("axis", -1)),
    "reshape": lambda a, attrs: np.reshape(a[0], attrs["shape"]),
    "transpose": lambda a, attrs: np.transpose(a[0], attrs.get("axes")),
    "getitem": lambda a, attrs: a[0][attrs["index"]],
    "matmul": lambda a, attrs: np.matmul(a[0], a[1]),
    "linear": lambda a, attrs: a[0] @ a[1] + a[2],
    "cross_entropy": lambda a, attrs: np_cross_entropy(a[0], attrs["target"], attrs["reduction"]),
    "mse_loss": lambda a, attrs: getattr(np, attrs["reduction"])((a[0] - a[1]) ** 2),
}

NUMPY_REFERENCES.update(LAYER_REFERENCES)

BUILTIN_NAMES = sorted(n for n in firefly.ops.names() if registry.origin(n) == registry.BUILTIN)


def test_every_builtin_op_has_a_numpy_reference():
    assert sorted(NUMPY_REFERENCES) == BUILTIN_NAMES


# Up to 4 dimensions of size 1..3: 0-d, one-element, vector and batched shapes; binary ops'
# sample_inputs pair each with a broadcasting partner.
shapes = array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=3)


@pytest.mark.parametrize("name", firefly.ops.names())
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=shapes, seed=st.integers(0, 2**16))
@example(shape=(), seed=0)
@example(shape=(1,), seed=1)
@example(shape=(1, 1, 1), seed=2)
@example(shape=(2, 1, 3), seed=3)
@example(shape=(3, 2, 2, 3), seed=4)
def test_op_battery(name, shape, seed):
    assert check_op(name, reference=NUMPY_REFERENCES.get(name), shapes=[shape], seed=seed)


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
    "cross_entropy": lambda x, v, w: x.tanh() * firefly.ops.apply(
        "cross_entropy", x, target=np.array([2, 0]), reduction="none").reshape(2, 1),
    "mse_loss": lambda x, v, w: x * firefly.ops.apply("mse_loss", x, v * x, reduction="mean"),
}


COMPOSITION_STEPS.update(LAYER_COMPOSITION_STEPS)


def test_composition_steps_cover_every_builtin_op():
    assert set(COMPOSITION_STEPS) >= set(BUILTIN_NAMES)


@settings(max_examples=40, deadline=None)
@given(steps=st.lists(st.sampled_from(sorted(COMPOSITION_STEPS)), min_size=1, max_size=5),
       seed=st.integers(0, 2**16))
def test_random_compositions_match_finite_differences(steps, seed):
    rng = np.random.default_rng(seed)
    x, v, w = rng.uniform(-1, 1, (2, 3)), rng.uniform(-1, 1, (3,)), rng.uniform(-1, 1, (3, 3))

    def composition(x, v, w):
        for step in steps:
            x = COMPOSITION_STEPS[step](x, v, w)
        return x

    composition.__name__ = " -> ".join(steps)
    assert gradcheck(composition, x, v, w)
