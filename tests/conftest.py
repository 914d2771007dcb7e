"""Shared fixtures of the test suite: running Python in a subprocess against this checkout,
and the NumPy reference of every built-in op."""

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from attention_references import ATTENTION_REFERENCES
from layer_references import LAYER_REFERENCES
from recurrent_references import RECURRENT_REFERENCES

REPO_ROOT = Path(__file__).resolve().parents[1]


def _run_python(*args, timeout=600, cwd=None, env=None, repo_importable=True):
    """``python *args``, as a user would run it from a shell; returns the CompletedProcess (text).

    ``env`` adds to, or overrides, this process's environment. ``repo_importable`` puts this
    checkout first on PYTHONPATH; turn it off when ``env`` points PYTHONPATH at another copy of
    the package that the child must import instead.
    """
    child_env = dict(os.environ, **(env or {}))
    if repo_importable:
        child_env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(REPO_ROOT), child_env.get("PYTHONPATH")])
        )
    return subprocess.run(
        [sys.executable, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or REPO_ROOT,
        env=child_env,
    )


@pytest.fixture(scope="session")
def repo_root():
    """The root of this checkout."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def run_python():
    """``run_python(*args, timeout=600, cwd=None, env=None, repo_importable=True)``: runs
    ``python *args`` against this checkout and returns the CompletedProcess."""
    return _run_python


def np_softmax(x, axis):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def np_log_softmax(x, axis):
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def np_cumsum(x, dim, reverse):
    """Running sums along ``dim``; from the end when ``reverse`` (cumsum's backward)."""
    if x.ndim == 0:
        return x
    return np.flip(np.cumsum(np.flip(x, dim), dim), dim) if reverse else np.cumsum(x, dim)


def np_reduction(fn):
    return lambda a, attrs: fn(a[0], axis=attrs.get("axis"), keepdims=attrs.get("keepdims", False))


def np_svd(x):
    """The svd op's packed (U, S, Vh), with its sign rule: the largest-magnitude entry of each
    column of U positive."""
    u, s, vh = np.linalg.svd(x, full_matrices=False)
    peaks = np.take_along_axis(u, np.abs(u).argmax(axis=-2)[..., None, :], axis=-2)
    signs = np.where(peaks < 0, -1.0, 1.0)
    u, vh = u * signs, vh * signs.swapaxes(-1, -2)
    lead = x.shape[:-2]
    return np.concatenate([u.reshape(lead + (-1,)), s, vh.reshape(lead + (-1,))], axis=-1)


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
    "linear": lambda a, attrs: a[0] @ a[1].T + a[2],
    "svd": lambda a, attrs: np_svd(a[0]),
    "mse_loss": lambda a, attrs: getattr(np, attrs["reduction"])((a[0] - a[1]) ** 2),
    "cast": lambda a, attrs: a[0],
    "abs": lambda a, attrs: np.abs(a[0]),
    "sqrt": lambda a, attrs: np.sqrt(a[0]),
    "sign": lambda a, attrs: np.sign(a[0]),
    "clamp": lambda a, attrs: np.clip(a[0], attrs.get("min"), attrs.get("max")),
    "maximum": lambda a, attrs: np.maximum(a[0], a[1]),
    "minimum": lambda a, attrs: np.minimum(a[0], a[1]),
    "atan2": lambda a, attrs: np.arctan2(a[0], a[1]),
    "fmod": lambda a, attrs: np.fmod(a[0], a[1]),
    "remainder": lambda a, attrs: np.remainder(a[0], a[1]),
    "where": lambda a, attrs: np.where(attrs["condition"], a[0], a[1]),
    "expand": lambda a, attrs: np.broadcast_to(a[0], attrs["shape"]),
    "cat": lambda a, attrs: np.concatenate(a, axis=attrs["dim"]),
    "take": lambda a, attrs: a[0].reshape(-1)[attrs["index"]],
    "add_at": lambda a, attrs: np.bincount(
        attrs["index"].reshape(-1), a[0].reshape(-1), minlength=attrs["size"]
    ),
    "sin": lambda a, attrs: np.sin(a[0]),
    "cos": lambda a, attrs: np.cos(a[0]),
    "erf": lambda a, attrs: np.vectorize(math.erf, otypes=[np.float64])(a[0]),
    "erfc": lambda a, attrs: np.vectorize(math.erfc, otypes=[np.float64])(a[0]),
    "cumsum": lambda a, attrs: np_cumsum(a[0], attrs["dim"], attrs.get("reverse", False)),
    "tan": lambda a, attrs: np.tan(a[0]),
    "asin": lambda a, attrs: np.arcsin(a[0]),
    "acos": lambda a, attrs: np.arccos(a[0]),
    "atan": lambda a, attrs: np.arctan(a[0]),
    "sinh": lambda a, attrs: np.sinh(a[0]),
    "cosh": lambda a, attrs: np.cosh(a[0]),
    "log1p": lambda a, attrs: np.log1p(a[0]),
    "expm1": lambda a, attrs: np.expm1(a[0]),
    "log2": lambda a, attrs: np.log2(a[0]),
    "log10": lambda a, attrs: np.log10(a[0]),
    "rsqrt": lambda a, attrs: 1.0 / np.sqrt(a[0]),
    "reciprocal": lambda a, attrs: 1.0 / a[0],
    "square": lambda a, attrs: np.square(a[0]),
    "floor": lambda a, attrs: np.floor(a[0]),
    "ceil": lambda a, attrs: np.ceil(a[0]),
    "round": lambda a, attrs: np.rint(a[0]),
    "trunc": lambda a, attrs: np.trunc(a[0]),
    "frac": lambda a, attrs: a[0] - np.trunc(a[0]),
}
# Convolution, pooling, normalization, dropout, embedding, activations and the other losses.
NUMPY_REFERENCES.update(LAYER_REFERENCES)
NUMPY_REFERENCES.update(RECURRENT_REFERENCES)  # rnn_layer, lstm_layer, gru_layer
NUMPY_REFERENCES.update(ATTENTION_REFERENCES)  # scaled_dot_product_attention


@pytest.fixture(scope="session")
def numpy_references():
    """name -> NumPy function of (arrays, attrs): what each built-in op must compute."""
    return NUMPY_REFERENCES
