"""What Tensor methods with discrete results compute, which record no graph: elementwise
comparisons and logic, argmax/argmin, any/all, the sum of bool and integer tensors, and the
flat positions that integer-array, mask and ``gather`` indexing read (the differentiable
``take`` op then moves the values).

They work on any dtype and return bool or int64 arrays, so nothing here can carry a gradient,
and none is an op: NumPy's own loops compute them. This module works on ndarrays only (the
Tensor methods in ``firefly.tensor`` pass their arrays in and wrap the results), so that it
sits below ``firefly.tensor`` in the import graph.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any, SupportsIndex

import numpy as np
from numpy.typing import ArrayLike

from firefly.ops.shapes import normalize_axes

_COMPARE = {
    "eq": np.equal,
    "ne": np.not_equal,
    "lt": np.less,
    "le": np.less_equal,
    "gt": np.greater,
    "ge": np.greater_equal,
}
_SYMBOL = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
_LOGICAL = {"and": np.bitwise_and, "or": np.bitwise_or, "xor": np.bitwise_xor}


def _operand(name: str, value: object) -> np.ndarray | None:
    """An ndarray of numbers from an ndarray, a number or a nested list; None if ``value`` is
    none of those."""
    if isinstance(value, np.ndarray):  # a Tensor's array, most often: no conversion
        return value if value.dtype.kind in "fiub" else None
    if isinstance(value, (bool, int, float, np.generic, np.ndarray, list, tuple)):
        array = np.asarray(value)
        if array.dtype.kind in "fiub":
            return array
    return None


def _describe(array: np.ndarray) -> str:
    return f"shape {array.shape} ({array.dtype})"


def compare(name: str, x: np.ndarray, b: object) -> Any:  # a bool ndarray, or NotImplemented
    """``x <name> b`` elementwise with NumPy broadcasting, ``x`` a tensor's array and ``b`` an
    operand (an array, a number or a nested list): a bool array (NotImplemented for
    ``==``/``!=`` with something that is not a number or array)."""
    y = _operand(name, b)
    if y is None:
        if name in ("eq", "ne"):
            return NotImplemented  # Python then compares identities: t == None is False
        raise TypeError(f"{_SYMBOL[name]}: cannot compare a tensor with {type(b).__name__} {b!r}")
    try:
        result = _COMPARE[name](x, y)
    except ValueError:
        raise ValueError(
            f"{_SYMBOL[name]}: {_describe(x)} and {_describe(y)} are not broadcastable; dimension "
            "sizes must match or be 1"
        ) from None
    return np.asarray(result, order="C")


def logical(name: str, a: object, b: object) -> np.ndarray:
    """``& | ^`` on bool or integer tensors (bitwise on integers, as in PyTorch)."""
    x, y = _operand(name, a), _operand(name, b)
    symbol = {"and": "&", "or": "|", "xor": "^"}[name]
    if x is None or y is None or x.dtype.kind == "f" or y.dtype.kind == "f":
        shown = [_describe(v) if v is not None else type(w).__name__ for v, w in ((x, a), (y, b))]
        raise TypeError(f"{symbol}: needs bool or integer tensors, got {shown[0]} and {shown[1]}")
    try:
        result = _LOGICAL[name](x, y)
    except ValueError:
        raise ValueError(
            f"{symbol}: {_describe(x)} and {_describe(y)} are not broadcastable"
        ) from None
    return np.asarray(result, order="C")


# ``axis`` below: None, an int or a sequence of ints, and ``keepdims`` anything truthy or not;
# they come from the Tensor methods as the user gave them, and are checked here at run time.


def any_all(name: str, x: np.ndarray, axis: object, keepdims: object) -> np.ndarray:
    axes = normalize_axes(name, axis, x)
    result = getattr(np, name)(x, axis=axes, keepdims=bool(keepdims))
    return np.asarray(result, order="C")


def integer_sum(x: np.ndarray, axis: object, keepdims: object) -> np.ndarray:
    """The sum of a bool or integer array, as int64 (PyTorch's rule)."""
    axes = normalize_axes("sum", axis, x)
    result = np.sum(x, axis=axes, dtype=np.int64, keepdims=bool(keepdims))
    return np.asarray(result, order="C")


def arg_reduce(name: str, x: ArrayLike, axis: object, keepdims: object) -> np.ndarray:
    """int64 indices of the maximum (``argmax``) or minimum (``argmin``) along one axis, or of
    the flattened tensor when ``axis`` is None. The first of tied values wins, and NaN counts
    as the extreme, as in PyTorch."""
    x = np.asarray(x)
    if isinstance(axis, (tuple, list)):
        raise TypeError(f"{name}: dim must be None or one int, got {axis!r}")
    if x.size == 0:
        raise ValueError(f"{name}: cannot take the {name} of an empty tensor of shape {x.shape}")
    if axis is None:
        result = getattr(np, name)(x)
        if keepdims:
            result = np.reshape(result, (1,) * x.ndim)
    else:
        (ax,) = normalize_axes(name, axis, x) or (None,)
        if ax is None:  # a 0-d tensor along dim 0
            return np.zeros((), np.int64)
        result = getattr(np, name)(x, axis=ax, keepdims=bool(keepdims))
    return np.asarray(result, dtype=np.int64, order="C")


# ----------------------------------------------------------------------------- indexing
def _index_array(op_name: str, item: Any, shape: tuple[int, ...]) -> Any:
    """An index item as NumPy reads it: lists become integer or bool arrays."""
    if isinstance(item, list):
        item = np.asarray(item)
        if item.size == 0:
            item = item.astype(np.int64)
    if isinstance(item, np.ndarray) and item.dtype.kind not in "iub":
        raise IndexError(
            f"{op_name}: tensors and arrays used as indices must hold integers or bools, got "
            f"{item.dtype} (shape {item.shape}) to index a tensor of shape {shape}; "
            "convert it with .long()"
        )
    return item


def _coordinates(shape: tuple[int, ...]) -> list[np.ndarray]:
    """Per dimension, every element's coordinate along it, as a read-only zero-stride view
    over ``shape`` (no memory)."""
    return [
        np.broadcast_to(
            np.arange(n, dtype=np.int64).reshape((-1,) + (1,) * (len(shape) - 1 - d)), shape
        )
        for d, n in enumerate(shape)
    ]


def _strides(shape: Sequence[int]) -> list[int]:
    """C-order strides of ``shape``, in elements."""
    strides: list[int] = []
    step = 1
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return strides[::-1]


def advanced_index(shape: tuple[int, ...], index: Any) -> dict[str, np.ndarray]:
    """Attributes of the ``take`` op for ``x[index]``, ``x`` of ``shape``, where ``index`` holds
    integer arrays, bool masks or lists (mixed with ints, slices, None and ...), as NumPy reads
    it."""
    items = index if isinstance(index, tuple) else (index,)
    items = tuple(_index_array("getitem", item, shape) for item in items)
    key = items if isinstance(index, tuple) else items[0]
    flat: np.ndarray | int  # sum() of no terms is 0, though a 0-d shape takes the other branch
    try:
        if not shape:
            flat = np.zeros((), np.int64)[key]
        else:
            flat = sum(
                coord[key] * step for coord, step in zip(_coordinates(shape), _strides(shape))
            )
    except IndexError as exc:
        raise IndexError(
            f"getitem: index {_show(index)} does not fit a tensor of shape {shape}: {exc}"
        ) from None
    return {"index": np.asarray(flat, dtype=np.int64, order="C")}


def gather_index(
    shape: tuple[int, ...], dim: SupportsIndex, index: object
) -> dict[str, np.ndarray]:
    """Attributes of the ``take`` op for ``x.gather(dim, index)``, ``x`` of ``shape``."""
    idx = _index_array("gather", index, shape)
    if not isinstance(idx, np.ndarray) or idx.dtype.kind not in "iu":
        raise TypeError(
            f"gather: index must be an integer tensor, got {type(index).__name__} "
            f"for a tensor of shape {shape}"
        )
    try:
        d = operator.index(dim)
    except TypeError:
        raise TypeError(f"gather: dim must be an int, got {dim!r}") from None
    n = max(len(shape), 1)
    if not -n <= d < n:
        raise IndexError(f"gather: dim {d} is out of range for a tensor of shape {shape}")
    d %= n
    if idx.ndim != len(shape):
        raise ValueError(
            f"gather: index has {idx.ndim} dimensions (shape {idx.shape}) but the tensor has "
            f"{len(shape)} (shape {shape}); they must have the same number"
        )
    if any(i > s for k, (i, s) in enumerate(zip(idx.shape, shape)) if k != d):
        raise ValueError(
            f"gather: index of shape {idx.shape} is larger than the tensor of shape {shape} "
            f"outside dim {d}"
        )
    if idx.size and (idx.min() < 0 or idx.max() >= shape[d]):
        bad = idx[(idx < 0) | (idx >= shape[d])].reshape(-1)[0]
        raise IndexError(
            f"gather: index {int(bad)} is out of range for dim {d} of a tensor of shape {shape} "
            f"(valid: 0 to {shape[d] - 1})"
        )
    if not shape:
        return {"index": np.zeros(idx.shape, np.int64)}
    strides = _strides(shape)
    flat = idx.astype(np.int64) * strides[d]
    for k, coord in enumerate(_coordinates(idx.shape)):
        if k != d:
            flat = flat + coord * strides[k]
    return {"index": np.asarray(flat, dtype=np.int64, order="C")}


def _show(index: object) -> str:
    items = index if isinstance(index, tuple) else (index,)
    shown = []
    for item in items:
        if isinstance(item, np.ndarray):
            shown.append(f"array(shape {item.shape}, {item.dtype})")
        else:
            shown.append(repr(item))
    return "(" + ", ".join(shown) + ")" if isinstance(index, tuple) else shown[0]
