"""What the selecting and rearranging Tensor methods compute on arrays before any op runs:
the flat positions that ``take`` then reads (``index_select``, ``roll``,
``repeat_interleave``, ``sort``/``topk`` values, ``scatter``), the masks of ``tril``/``triu``,
and the discrete results (sort orders, multinomial draws, one-hot codes), each with the checks
that name the method, the argument and the value.

Like ``firefly.discrete``, this module works on ndarrays only and sits below
``firefly.tensor`` in the import graph; dims arrive already normalized by the caller.
"""

import numbers
import operator
from collections.abc import Sequence
from typing import Any, Literal, cast

import numpy as np
from numpy.typing import ArrayLike

Shape = tuple[int, ...]


def flat_positions(shape: Shape) -> np.ndarray:
    """Every element's flat (C-order) position, shaped as ``shape``."""
    return np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.int64).reshape(shape)


def as_int(method: str, name: str, value: Any) -> int:
    """``value`` as a Python int (bools refused), or a TypeError naming ``method`` and ``name``."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{method}: {name} must be an int, got bool {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(
            f"{method}: {name} must be an int, got {type(value).__name__} {value!r}"
        ) from None


def index_array(method: str, name: str, index: object, *, ndim: int | None = None) -> np.ndarray:
    """An integer index (Tensor's array, ndarray or list) as an int64 array; floats and bools
    are refused, as torch refuses them."""
    array = np.asarray(index)
    if array.size == 0 and isinstance(index, (list, tuple)):
        array = array.astype(np.int64)  # [] is a float array to NumPy
    if array.dtype.kind not in "iu":
        raise TypeError(
            f"{method}: {name} must be an integer (int64) tensor, got {array.dtype} "
            f"(shape {array.shape})"
        )
    if ndim is not None and array.ndim > ndim:
        raise ValueError(
            f"{method}: {name} must have at most {ndim} dimension(s), got shape {array.shape}"
        )
    return array.astype(np.int64, copy=False)


def check_in_range(
    method: str, name: str, index: np.ndarray, length: int, dim: int, shape: Shape
) -> None:
    if index.size and (index.min() < 0 or index.max() >= length):
        bad = index[(index < 0) | (index >= length)].reshape(-1)[0]
        raise IndexError(
            f"{method}: {name} holds {int(bad)}, out of range for dim {dim} of size {length} "
            f"(tensor of shape {shape}; valid: 0 to {length - 1})"
        )


def grid_positions(shape: Shape, picks: dict[int, np.ndarray]) -> np.ndarray:
    """Flat positions in a tensor of ``shape`` of the grid that takes, along each dim ``d`` in
    ``picks``, the 1-D int64 coordinates ``picks[d]`` (and every coordinate along the other
    dims): built by broadcasting, so only the result's size is allocated."""
    ndim, step = len(shape), 1
    positions = np.zeros((), np.int64)
    for d in range(ndim - 1, -1, -1):
        coords = picks[d] if d in picks else np.arange(shape[d], dtype=np.int64)
        positions = positions + (coords * step).reshape((-1,) + (1,) * (ndim - 1 - d))
        step *= shape[d]
    return np.ascontiguousarray(np.broadcast_to(positions, _grid_shape(shape, picks)))


def _grid_shape(shape: Shape, picks: dict[int, np.ndarray]) -> tuple[int, ...]:
    return tuple(picks[d].size if d in picks else n for d, n in enumerate(shape))


def select_positions(shape: Shape, dim: int, index: ArrayLike) -> np.ndarray:
    """Flat positions of ``x.index_select(dim, index)`` for ``x`` of ``shape``."""
    return grid_positions(shape, {dim: np.asarray(index, dtype=np.int64).reshape(-1)})


def roll_positions(
    shape: Shape, shifts: int | Sequence[int], dims: Sequence[int] | None
) -> np.ndarray:
    """Flat positions of ``x.roll(shifts, dims)`` (``dims`` None: the flattened tensor)."""
    if dims is None:
        return np.roll(flat_positions(shape), shifts)
    picks: dict[int, np.ndarray] = {}
    for shift, d in zip(cast(Sequence[int], shifts), dims):  # one shift per dim here
        source = picks.get(d, np.arange(shape[d], dtype=np.int64))
        picks[d] = np.roll(source, shift)
    return grid_positions(shape, picks)


def repeats_for(method: str, repeats: object, length: int, dim: int, shape: Shape) -> np.ndarray:
    """``repeat_interleave``'s ``repeats`` (an int, or one count per element along ``dim``) as
    an int64 array of ``length`` counts."""
    if isinstance(repeats, numbers.Integral) and not isinstance(repeats, bool):
        counts = np.full(length, int(repeats), dtype=np.int64)
    else:
        counts = index_array(method, "repeats", repeats, ndim=1).reshape(-1)
        if counts.size == 1:
            counts = np.full(length, int(counts[0]), dtype=np.int64)
        elif counts.size != length:
            raise ValueError(
                f"{method}: repeats has {counts.size} counts but dim {dim} of the tensor of "
                f"shape {shape} has {length} elements; give one count per element or one for all"
            )
    if counts.size and counts.min() < 0:
        raise ValueError(f"{method}: repeats must be non-negative, got {int(counts.min())}")
    return counts


def triangle_mask(shape: Shape, diagonal: int, lower: bool) -> np.ndarray:
    """The bool mask that ``tril`` (``lower``) or ``triu`` keeps, over the last two dims."""
    rows, cols = shape[-2], shape[-1]
    if lower:
        return np.tri(rows, cols, k=diagonal, dtype=bool)
    return ~np.tri(rows, cols, k=diagonal - 1, dtype=bool)


def _ascending_key(a: np.ndarray, descending: bool) -> np.ndarray:
    """``a``, or for a descending order a key that sorts ascending with NaN first (NaN counts
    as the largest value, as in torch)."""
    if not descending:
        return a
    if a.dtype.kind == "f":
        key = -a.astype(np.float64)
        key[np.isnan(key)] = -np.inf
        return key
    return -a.astype(np.int64)


def sort_order(a: np.ndarray, axis: int, descending: bool, stable: bool) -> np.ndarray:
    """Indices that sort ``a`` along ``axis``: ascending with NaN last, or descending with NaN
    first, as torch.sort; ties keep their order when ``stable`` (descending ties always do)."""
    kind: Literal["stable"] | None = "stable" if stable or descending else None
    return np.argsort(_ascending_key(a, descending), axis=axis, kind=kind)


def topk_order(a: np.ndarray, axis: int, k: int, largest: bool) -> np.ndarray:
    """Indices of the ``k`` largest (or smallest) elements along ``axis``, in order: a
    partition first, so that only the ``k`` chosen are sorted."""
    key = _ascending_key(a, largest)
    n = a.shape[axis]
    if k == 0 or k == n:
        return np.take(np.argsort(key, axis=axis, kind="stable"), np.arange(k), axis=axis)
    chosen = np.take(np.argpartition(key, k - 1, axis=axis), np.arange(k), axis=axis)
    within = np.argsort(np.take_along_axis(key, chosen, axis), axis=axis, kind="stable")
    return np.take_along_axis(chosen, within, axis)


def multinomial_draws(
    weights: np.ndarray, num_samples: int, replacement: bool, rng: np.random.Generator
) -> np.ndarray:
    """int64 category indices drawn from each row of ``weights`` (1-D or 2-D), torch's
    semantics: without replacement, each draw is from the categories not yet drawn, in
    proportion to their weights."""
    rows = weights.reshape(-1, weights.shape[-1]).astype(np.float64)
    if np.isnan(rows).any() or np.isinf(rows).any() or (rows < 0).any():
        bad = rows[np.isnan(rows) | np.isinf(rows) | (rows < 0)][0]
        raise ValueError(
            f"multinomial: weights must be finite and non-negative, got {bad} "
            f"(input of shape {weights.shape})"
        )
    totals = rows.sum(axis=1)
    if (totals <= 0).any():
        raise ValueError(
            f"multinomial: the weights of row {int(np.argmin(totals > 0))} sum to 0 "
            f"(input of shape {weights.shape}); each row needs a positive weight"
        )
    if not replacement:
        nonzero = int((rows > 0).sum(axis=1).min())
        if num_samples > nonzero:
            raise ValueError(
                f"multinomial: cannot draw num_samples={num_samples} without replacement from "
                f"a row with {nonzero} categories of non-zero weight (input of shape "
                f"{weights.shape}); pass replacement=True or draw fewer"
            )
    draws = np.empty((rows.shape[0], num_samples), dtype=np.int64)
    for r, row in enumerate(rows):
        draws[r] = rng.choice(row.size, size=num_samples, replace=replacement, p=row / row.sum())
    return draws.reshape(weights.shape[:-1] + (num_samples,))


def scatter_positions(
    method: str, shape: Shape, dim: int, index: np.ndarray, src_shape: Shape | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """(target positions, source positions) of ``scatter``: for each element of ``index``, the
    flat position it writes in a tensor of ``shape`` and the flat position it reads in a
    source of ``src_shape`` (None for a scalar value), torch's rules on the index's shape."""
    if index.ndim != len(shape):
        raise ValueError(
            f"{method}: index has {index.ndim} dimensions (shape {index.shape}) but the tensor "
            f"has {len(shape)} (shape {shape}); they must have the same number"
        )
    if any(i > s for k, (i, s) in enumerate(zip(index.shape, shape)) if k != dim):
        raise ValueError(
            f"{method}: index of shape {index.shape} is larger than the tensor of shape "
            f"{shape} outside dim {dim}"
        )
    if src_shape is not None and (
        len(src_shape) != index.ndim or any(i > s for i, s in zip(index.shape, src_shape))
    ):
        raise ValueError(
            f"{method}: index of shape {index.shape} is larger than src of shape {src_shape}; "
            "src must be at least as large in every dim"
        )
    length = shape[dim] if shape else 1
    check_in_range(method, "index", index, length, dim, shape)
    if not shape:
        return np.zeros(index.shape, np.int64), np.zeros(index.shape, np.int64)
    target = flat_positions(shape)
    coords = np.indices(index.shape, dtype=np.int64)
    coords[dim] = index
    target = target[tuple(coords)]
    source = None
    if src_shape is not None:
        source = flat_positions(src_shape)[tuple(slice(0, n) for n in index.shape)]
    return target, source


def last_writes(target: np.ndarray) -> np.ndarray:
    """Which elements of ``target`` (flat positions) are the last to write their position: a
    scatter with repeated positions keeps the last value, as NumPy's assignment does."""
    flat = target.reshape(-1)
    _, first_from_end = np.unique(flat[::-1], return_index=True)
    keep = np.zeros(flat.size, dtype=bool)
    keep[flat.size - 1 - first_from_end] = True
    return keep


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """int64 one-hot codes of int64 ``labels``, with the checks of torch's F.one_hot."""
    if labels.dtype != np.int64:
        raise TypeError(
            f"one_hot: tensor must be an int64 (long) tensor of class indices, got {labels.dtype} "
            f"(shape {labels.shape})"
        )
    num_classes = as_int("one_hot", "num_classes", num_classes)
    if labels.size and labels.min() < 0:
        raise ValueError(f"one_hot: class values must be non-negative, got {int(labels.min())}")
    if num_classes == -1:
        if labels.size == 0:
            raise ValueError("one_hot: cannot infer num_classes from an empty tensor; give it")
        num_classes = int(labels.max()) + 1
    elif num_classes < 1 and not (num_classes == 0 and labels.size == 0):
        raise ValueError(f"one_hot: num_classes must be positive or -1, got {num_classes}")
    elif labels.size and labels.max() >= num_classes:
        raise ValueError(
            f"one_hot: class value {int(labels.max())} is out of range for "
            f"num_classes={num_classes}"
        )
    return np.asarray(labels[..., None] == np.arange(num_classes), dtype=np.int64, order="C")
