"""Runs a PyTorch program twice: on firefly, and (when torch is installed) on torch, and
compares what both return.

A program is a function ``program(torch, nn, data)`` written exactly as a PyTorch user writes
it; the arguments stand for its import lines (``import torch``, ``from torch import nn``,
``from torch.utils import data``), which are all that changes between the two runs:
firefly's are ``firefly``, ``firefly.nn`` and ``firefly.data``.
"""

import numbers

import numpy as np
import pytest

import firefly
import firefly.data  # noqa: F401  (the data module a program receives)

try:
    import torch
except ImportError:  # torch is an optional oracle: without it, each idiom checks NumPy values
    torch = None


def plain(value):
    """Tensors as (ndarray, dtype name); containers element by element; numbers as they are."""
    if isinstance(value, firefly.Tensor):
        return ("tensor", value.numpy(), str(value.dtype))
    if torch is not None and isinstance(value, torch.Tensor):
        return ("tensor", value.detach().numpy(), str(value.dtype).removeprefix("torch."))
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def assert_same(got, want, where="result", rtol=1e-5, atol=1e-7):
    if isinstance(want, dict):
        assert got.keys() == want.keys(), where
        for key in want:
            assert_same(got[key], want[key], f"{where}[{key!r}]", rtol, atol)
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: {got!r} vs {want!r}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, f"{where}[{i}]", rtol, atol)
    elif isinstance(want, tuple) and want and want[0] == "tensor":
        assert isinstance(got, tuple) and got[0] == "tensor", f"{where}: {got!r} is not a tensor"
        assert got[2] == want[2], f"{where}: dtype {got[2]} vs torch's {want[2]}"
        assert got[1].shape == want[1].shape, (
            f"{where}: shape {got[1].shape} vs torch's {want[1].shape}"
        )
        np.testing.assert_allclose(got[1], want[1], rtol=rtol, atol=atol, err_msg=where)
    elif isinstance(want, numbers.Number) and not isinstance(want, bool):
        assert type(got) is type(want) or isinstance(got, numbers.Number), (
            f"{where}: {got!r} vs {want!r}"
        )
        assert np.isclose(got, want, rtol=rtol, atol=atol), f"{where}: {got!r} vs torch's {want!r}"
    else:
        assert got == want, f"{where}: {got!r} vs torch's {want!r}"


def run_beside_torch(program, rtol=1e-5, atol=1e-7):
    """``program``'s result on firefly (plain values), after checking it against torch's."""
    ours = plain(program(firefly, firefly.nn, firefly.data))
    if torch is not None:
        from torch.utils import data as torch_data

        theirs = plain(program(torch, torch.nn, torch_data))
        assert_same(ours, theirs, rtol=rtol, atol=atol)
    return ours


def value(result):
    """The ndarray of a plain tensor result (or the value itself)."""
    return result[1] if isinstance(result, tuple) and result and result[0] == "tensor" else result


def requires(condition, reason):
    if not condition:
        pytest.skip(reason)
