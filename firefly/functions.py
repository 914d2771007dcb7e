"""Function forms, as in PyTorch's top level: the functions of several tensors (``cat``,
``stack``, ``where``, ``maximum``, ``minimum``) and ``firefly.max(x, 1)``-style spellings of
Tensor methods, which accept anything ``as_tensor`` does as their first argument."""

from __future__ import annotations

import builtins
import collections
import math
import string
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import numpy as np
from numpy.typing import ArrayLike

from firefly import autograd, rearrange
from firefly.creation import as_tensor
from firefly.tensor import (
    FLOAT_DTYPES,
    Operand,
    Tensor,
    _dim_index,
    _mixed,
    _op,
    vector_norm,
)
from firefly.tensor import floor_divide as _floor_divide

__all__ = [
    "cat",
    "concat",
    "stack",
    "where",
    "maximum",
    "minimum",
    "atan2",
    "fmod",
    "remainder",
    "floor_divide",
    "clamp",
    "clip",
    "sum",
    "mean",
    "max",
    "min",
    "amax",
    "amin",
    "argmax",
    "argmin",
    "exp",
    "log",
    "abs",
    "sqrt",
    "sign",
    "sigmoid",
    "tanh",
    "sin",
    "cos",
    "erf",
    "tan",
    "asin",
    "acos",
    "atan",
    "sinh",
    "cosh",
    "log1p",
    "expm1",
    "log2",
    "log10",
    "rsqrt",
    "reciprocal",
    "square",
    "floor",
    "ceil",
    "round",
    "trunc",
    "frac",
    "relu",
    "softmax",
    "log_softmax",
    "matmul",
    "reshape",
    "flatten",
    "squeeze",
    "unsqueeze",
    "transpose",
    "permute",
    "gather",
    "clone",
    "numel",
    "split",
    "chunk",
    "any",
    "all",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "erfc",
    "narrow",
    "flip",
    "fliplr",
    "flipud",
    "roll",
    "tril",
    "triu",
    "tril_indices",
    "triu_indices",
    "masked_fill",
    "scatter",
    "scatter_add",
    "index_select",
    "topk",
    "sort",
    "argsort",
    "multinomial",
    "norm",
    "cumsum",
    "mm",
    "bmm",
    "addmm",
    "baddbmm",
    "t",
    "repeat_interleave",
    "einsum",
    "cosine_similarity",
    "cdist",
    "var",
    "std",
    "logsumexp",
    "clamp_min",
    "clamp_max",
    "addcmul",
    "addcdiv",
    "lerp",
    "hypot",
    "logaddexp",
    "isnan",
    "isinf",
    "isfinite",
    "nan_to_num",
    "nonzero",
    "argwhere",
    "count_nonzero",
    "unique",
    "bincount",
    "diagonal",
    "diag",
    "trace",
    "outer",
    "ger",
    "dot",
    "masked_select",
    "select",
    "unbind",
    "swapaxes",
    "swapdims",
    "movedim",
    "moveaxis",
    "broadcast_to",
    "unflatten",
    "take_along_dim",
    "diff",
    "index_add",
    "index_copy",
    "index_fill",
    "prod",
    "cumprod",
    "cross",
    "kthvalue",
    "median",
    "tensordot",
    "hstack",
    "vstack",
    "row_stack",
    "meshgrid",
]

# What cat, stack and the *stack functions join: a list or tuple (of Tensors, or of anything
# ``Tensor`` converts).
TensorSequence: TypeAlias = "list[Any] | tuple[Any, ...]"
# An einsum label: a letter, or ("...", r) for the r-th dim from the right that "..." covers.
Label: TypeAlias = "str | tuple[str, int]"


def _tensor_list(name: str, tensors: object) -> list[Tensor]:
    if isinstance(tensors, Tensor) or not isinstance(tensors, (list, tuple)):
        raise TypeError(
            f"{name}: expected a list or tuple of tensors, got {type(tensors).__name__}"
        )
    if not tensors:
        raise ValueError(f"{name}: expected a non-empty list of tensors")
    return [t if isinstance(t, Tensor) else Tensor(t) for t in tensors]


def _needs_graph(tensors: list[Tensor]) -> bool:
    return builtins.all(t.dtype in FLOAT_DTYPES for t in tensors)


def cat(tensors: TensorSequence, dim: int = 0) -> Tensor:
    """Join tensors along an existing dimension ``dim``, differentiably. Bool and integer
    tensors (labels, predictions) join too, recording nothing."""
    tensors = _tensor_list("cat", tensors)
    if not _needs_graph(tensors):
        return _join_arrays("cat", np.concatenate, tensors, dim)
    # Pairs in a balanced tree: each element is copied O(log n) times, not O(n).
    while len(tensors) > 1:
        paired = [_op("cat", a, b, dim=dim) for a, b in zip(tensors[0::2], tensors[1::2])]
        tensors = paired + ([tensors[-1]] if len(tensors) % 2 else [])
    first = tensors[0]
    if first.ndim == 0:
        raise ValueError("cat: zero-dimensional tensors cannot be concatenated; use stack")
    _dim_index("cat", dim, first.ndim, first.shape)
    return first


concat = cat


def stack(tensors: TensorSequence, dim: int = 0) -> Tensor:
    """Join same-shaped tensors along a new dimension ``dim``."""
    tensors = _tensor_list("stack", tensors)
    shapes = {t.shape for t in tensors}
    if len(shapes) > 1:
        raise ValueError(f"stack: every tensor must have the same shape, got {sorted(shapes)}")
    first = tensors[0]
    d = _dim_index("stack", dim, first.ndim, first.shape, extra=1)
    if not _needs_graph(tensors):
        return _join_arrays("stack", np.stack, tensors, d)
    return cat([t.unsqueeze(d) for t in tensors], d)


def _join_arrays(
    name: str, join: Callable[..., np.ndarray], tensors: list[Tensor], dim: int
) -> Tensor:
    if builtins.any(t.requires_grad for t in tensors) and autograd.is_grad_enabled():
        raise TypeError(
            f"{name}: cannot join tensors that require grad with bool or integer ones; "
            "convert with .float()"
        )
    try:
        return Tensor._wrap(np.asarray(join([t._data for t in tensors], axis=dim), order="C"))
    except (ValueError, np.exceptions.AxisError) as exc:
        shapes = ", ".join(str(t.shape) for t in tensors)
        raise ValueError(
            f"{name}: cannot join tensors of shapes {shapes} along dim {dim}: {exc}"
        ) from None


def where(
    condition: Tensor | np.ndarray,
    input: Operand | None = None,
    other: Operand | None = None,
) -> Tensor | tuple[Tensor, ...]:
    """``input`` where ``condition`` holds, else ``other`` (all broadcast together).
    Differentiable in ``input`` and ``other``; ``condition`` is a bool tensor or array.
    ``where(condition)`` alone is ``condition.nonzero(as_tuple=True)``, as in torch."""
    if input is None and other is None:
        return as_tensor(condition).nonzero(as_tuple=True)
    if input is None or other is None:
        raise TypeError("where: give both input and other, or neither (the nonzero form)")
    mask = condition._data if isinstance(condition, Tensor) else np.asarray(condition)
    if mask.dtype != np.bool_:
        raise TypeError(
            "where: condition must be a bool tensor (a comparison's result), "
            f"got {mask.dtype} (shape {mask.shape})"
        )
    return _op("where", input, other, condition=mask)


def maximum(input: Operand, other: Operand) -> Tensor:
    return _op("maximum", input, other)


def minimum(input: Operand, other: Operand) -> Tensor:
    return _op("minimum", input, other)


def _binary(name: str, input: Tensor | float, other: Tensor | float) -> Tensor:
    try:
        return _op(name, input, other)
    except TypeError:  # bool and integer operands, by PyTorch's promotion (Tensor.__mod__)
        return _mixed(name, input, other)


def atan2(input: Tensor | float, other: Tensor | float) -> Tensor:
    return _binary("atan2", input, other)


def fmod(input: Tensor | float, other: Tensor | float) -> Tensor:
    return _binary("fmod", input, other)


def remainder(input: Tensor | float, other: Tensor | float) -> Tensor:
    return _binary("remainder", input, other)


def floor_divide(input: Tensor | float, other: Tensor | float) -> Tensor:
    return _floor_divide(input, other)


def _method_form(name: str) -> Callable[..., Any]:
    def function(input: ArrayLike | Tensor, *args: Any, **kwargs: Any) -> Any:
        return getattr(as_tensor(input), name)(*args, **kwargs)

    function.__name__ = function.__qualname__ = name
    function.__doc__ = (
        f"``firefly.{name}(input, ...)`` is ``input.{name}(...)`` (see ``Tensor.{name}``)."
    )
    return function


(
    sum,
    mean,
    max,
    min,
    amax,
    amin,
    argmax,
    argmin,
    exp,
    log,
    abs,
    sqrt,
    sign,
    sigmoid,
    tanh,
    sin,
    cos,
    erf,
    tan,
    asin,
    acos,
    atan,
    sinh,
    cosh,
    log1p,
    expm1,
    log2,
    log10,
    rsqrt,
    reciprocal,
    square,
    floor,
    ceil,
    round,
    trunc,
    frac,
    relu,
    softmax,
    log_softmax,
    matmul,
    reshape,
    flatten,
    squeeze,
    unsqueeze,
    transpose,
    permute,
    gather,
    clone,
    numel,
    split,
    chunk,
    any,
    all,
    eq,
    ne,
    lt,
    le,
    gt,
    ge,
    clamp,
) = (
    _method_form(name)
    for name in (
        "sum",
        "mean",
        "max",
        "min",
        "amax",
        "amin",
        "argmax",
        "argmin",
        "exp",
        "log",
        "abs",
        "sqrt",
        "sign",
        "sigmoid",
        "tanh",
        "sin",
        "cos",
        "erf",
        "tan",
        "asin",
        "acos",
        "atan",
        "sinh",
        "cosh",
        "log1p",
        "expm1",
        "log2",
        "log10",
        "rsqrt",
        "reciprocal",
        "square",
        "floor",
        "ceil",
        "round",
        "trunc",
        "frac",
        "relu",
        "softmax",
        "log_softmax",
        "matmul",
        "reshape",
        "flatten",
        "squeeze",
        "unsqueeze",
        "transpose",
        "permute",
        "gather",
        "clone",
        "numel",
        "split",
        "chunk",
        "any",
        "all",
        "eq",
        "ne",
        "lt",
        "le",
        "gt",
        "ge",
        "clamp",
    )
)
clip = clamp

# Whole-tensor comparisons (plain bools, or a bool tensor for isclose), the 2-D transpose and
# the dtype question.
equal, allclose, isclose, t, is_floating_point = (
    _method_form(name) for name in ("equal", "allclose", "isclose", "t", "is_floating_point")
)


def is_tensor(obj: object) -> bool:
    """Whether ``obj`` is a firefly Tensor (a Parameter included), as ``torch.is_tensor``."""
    return isinstance(obj, Tensor)


__all__ += ["equal", "allclose", "isclose", "t", "is_floating_point", "is_tensor"]


(
    erfc,
    narrow,
    flip,
    fliplr,
    flipud,
    roll,
    tril,
    triu,
    masked_fill,
    scatter,
    scatter_add,
    index_select,
    topk,
    sort,
    argsort,
    multinomial,
    norm,
    cumsum,
    mm,
    bmm,
    addmm,
    baddbmm,
    t,
) = (
    _method_form(name)
    for name in (
        "erfc",
        "narrow",
        "flip",
        "fliplr",
        "flipud",
        "roll",
        "tril",
        "triu",
        "masked_fill",
        "scatter",
        "scatter_add",
        "index_select",
        "topk",
        "sort",
        "argsort",
        "multinomial",
        "norm",
        "cumsum",
        "mm",
        "bmm",
        "addmm",
        "baddbmm",
        "t",
    )
)


def repeat_interleave(
    input: Tensor,
    repeats: Tensor | int | None = None,
    dim: int | None = None,
    *,
    output_size: int | None = None,
) -> Tensor:
    """``input.repeat_interleave(repeats, dim)``; with ``repeats`` left out, ``input`` holds the
    counts and the result repeats each index that often (``[2, 1] -> [0, 0, 1]``), as torch."""
    if repeats is None:
        counts = as_tensor(input)
        positions = Tensor._wrap(np.arange(counts.numel(), dtype=np.int64))
        return positions.repeat_interleave(counts, output_size=output_size)
    return as_tensor(input).repeat_interleave(repeats, dim, output_size=output_size)


def _triangle_indices(name: str, row: int, col: int, offset: int, lower: bool) -> Tensor:
    row, col, offset = (
        rearrange.as_int(name, "row", row),
        rearrange.as_int(name, "col", col),
        rearrange.as_int(name, "offset", offset),
    )
    if row < 0 or col < 0:
        raise ValueError(f"{name}: row and col must be non-negative, got {row} and {col}")
    mask = rearrange.triangle_mask((row, col), offset, lower)
    return Tensor._wrap(np.asarray(np.nonzero(mask), dtype=np.int64, order="C"))


def tril_indices(row: int, col: int, offset: int = 0) -> Tensor:
    """The (2, N) int64 coordinates of the lower triangle of a row x col matrix."""
    return _triangle_indices("tril_indices", row, col, offset, lower=True)


def triu_indices(row: int, col: int, offset: int = 0) -> Tensor:
    """The (2, N) int64 coordinates of the upper triangle of a row x col matrix."""
    return _triangle_indices("triu_indices", row, col, offset, lower=False)


def cosine_similarity(x1: Tensor, x2: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """The cosine of the angle between ``x1`` and ``x2`` along ``dim`` (broadcast together),
    torch's formula: each divided by its norm clamped to ``eps``, then the dot product. As in
    torch the clamp is not differentiated: the gradient flows through the unclamped norm."""
    x1, x2 = as_tensor(x1), as_tensor(x2)
    try:
        shape = np.broadcast_shapes(x1.shape, x2.shape)
    except ValueError:
        raise ValueError(
            f"cosine_similarity: x1 of shape {x1.shape} and x2 of shape {x2.shape} do not broadcast"
        ) from None
    _dim_index("cosine_similarity", dim, len(shape), shape)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or eps < 0:
        raise ValueError(f"cosine_similarity: eps must be a non-negative number, got {eps!r}")
    units = []
    for x in (x1, x2):
        x = x.expand(shape) if x.shape != shape else x
        length = vector_norm("cosine_similarity", x, 2, dim, True, None)
        fixed = length.detach()
        units.append(x / (length + (fixed.clamp(min=eps) - fixed)))
    return (units[0] * units[1]).sum(dim)


def cdist(x1: Tensor, x2: Tensor, p: float = 2.0, compute_mode: str | None = None) -> Tensor:
    """The p-norm distance between each row of ``x1`` (..., P, M) and each row of ``x2``
    (..., R, M): a (..., P, R) tensor. The differences are formed explicitly (memory P*R*M per
    batch), which keeps the gradient exact; at a zero distance it is 0, as in torch."""
    x1, x2 = as_tensor(x1), as_tensor(x2)
    if x1.ndim < 2 or x2.ndim < 2 or x1.shape[-1] != x2.shape[-1]:
        raise ValueError(
            f"cdist: x1 and x2 must be (..., P, M) and (..., R, M) with one M, got shapes "
            f"{x1.shape} and {x2.shape}"
        )
    if isinstance(p, bool) or not isinstance(p, (int, float)) or p < 0:
        raise ValueError(f"cdist: p must be a non-negative number, got {p!r}")
    try:
        np.broadcast_shapes(x1.shape[:-2], x2.shape[:-2])
    except ValueError:
        raise ValueError(
            f"cdist: the batch shapes of x1 {x1.shape} and x2 {x2.shape} do not broadcast"
        ) from None
    return vector_norm("cdist", x1.unsqueeze(-2) - x2.unsqueeze(-3), p, -1, False, None)


def einsum(equation: str, *operands: Tensor) -> Tensor:
    """Einstein summation, as torch.einsum: ``einsum("bhqd,bhkd->bhqk", q, k)``. Each pair of
    operands becomes one batched matmul (shared labels kept are the batch, shared labels not
    kept are contracted), so the gradient is matmul's; labels of one operand that the output
    lacks are summed first, repeated labels take a diagonal, and ``...`` broadcasts. Operands
    may also come as one list."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if not isinstance(equation, str):
        raise TypeError(f"einsum: equation must be a str, got {type(equation).__name__}")
    tensors = [as_tensor(x) for x in operands]
    if not tensors:
        raise ValueError("einsum: give at least one operand")
    if not builtins.all(t.dtype in FLOAT_DTYPES for t in tensors):
        try:
            arrays = [t._data for t in tensors]
            return Tensor._wrap(np.asarray(np.einsum(equation, *arrays), order="C"))
        except ValueError as exc:
            raise ValueError(f"einsum: equation {equation!r}: {exc}") from None
    terms, output, sizes = einsum_plan(equation, [t.shape for t in tensors])
    parts = [
        _einsum_prepare(t, term, output, terms, k)
        for k, (t, term) in enumerate(zip(tensors, terms))
    ]
    result, labels = parts[0]
    for k in range(1, len(parts)):
        keep = set(output).union(*(set(term) for term in terms[k + 1 :]))
        result, labels = _einsum_pair(result, labels, *parts[k], keep, sizes)
    gone = tuple(i for i, label in enumerate(labels) if label not in output)
    if gone:
        result = result.sum(dim=gone)
        labels = [label for label in labels if label in output]
    order = [labels.index(label) for label in output]
    if order != list(range(len(order))):
        result = result.permute(order)
    return result


def _einsum_labels(equation: str, term: str, ndim: int | None, k: int | str) -> list[Label]:
    """The labels of one subscript term for a tensor of ``ndim`` dims: letters, and for
    ``...`` one ("...", r) per dim it covers, r counting from the right."""
    if term.count("...") > 1 or "." in term.replace("...", ""):
        raise ValueError(f"einsum: equation {equation!r}: term {term!r} has a malformed ellipsis")
    letters = term.replace("...", "")
    bad = [c for c in letters if not c.isascii() or not c.isalpha()]
    if bad:
        raise ValueError(
            f"einsum: equation {equation!r}: subscripts must be letters, got {bad[0]!r}"
        )
    if "..." not in term:
        if ndim is not None and len(letters) != ndim:
            raise ValueError(
                f"einsum: equation {equation!r}: operand {k} has {ndim} dimensions but its "
                f"subscripts {term!r} name {len(letters)}"
            )
        return list(letters)
    covered = 0 if ndim is None else ndim - len(letters)
    if covered < 0:
        raise ValueError(
            f"einsum: equation {equation!r}: operand {k} has {ndim} dimensions, fewer than the "
            f"{len(letters)} subscripts of {term!r}"
        )
    before, _, after = term.partition("...")
    return list(before) + [("...", covered - i) for i in range(covered)] + list(after)


def einsum_plan(
    equation: str, shapes: Sequence[tuple[int, ...]]
) -> tuple[list[list[Label]], list[Label], dict[Label, int]]:
    """(labels per operand, output labels, {label: size}) for an equation and the operands'
    shapes, with the checks that name the equation and the mismatch."""
    spec = equation.replace(" ", "")
    if spec.count("->") > 1:
        raise ValueError(f"einsum: equation {equation!r} has more than one '->'")
    lhs, arrow, rhs = spec.partition("->")
    inputs = lhs.split(",")
    if len(inputs) != len(shapes):
        raise ValueError(
            f"einsum: equation {equation!r} has {len(inputs)} operand term(s) but "
            f"{len(shapes)} tensor(s) were given"
        )
    terms = [
        _einsum_labels(equation, term, len(s), k) for k, (term, s) in enumerate(zip(inputs, shapes))
    ]
    sizes: dict[Label, int] = {}
    for k, (term, shape) in enumerate(zip(terms, shapes)):
        for label, n in zip(term, shape):
            known = sizes.get(label, 1)
            if n != known and 1 not in (n, known):
                shown = "..." if isinstance(label, tuple) else label
                raise ValueError(
                    f"einsum: equation {equation!r}: subscript {shown!r} has size {n} in "
                    f"operand {k} (shape {shape}) but {known} elsewhere"
                )
            sizes[label] = builtins.max(n, known)
    ellipsis_rank = builtins.max(
        [label[1] for term in terms for label in term if isinstance(label, tuple)], default=0
    )
    ellipsis = [("...", r) for r in range(ellipsis_rank, 0, -1)]
    if arrow:
        named = _einsum_labels(equation, rhs, None, "output")
        letters = [label for label in named if not isinstance(label, tuple)]
        if "..." not in rhs and ellipsis:
            raise ValueError(
                f"einsum: equation {equation!r}: the output must name '...' when an operand does"
            )
        if len(set(letters)) != len(letters):
            raise ValueError(f"einsum: equation {equation!r}: an output subscript repeats")
        missing = [c for c in letters if c not in sizes]
        if missing:
            raise ValueError(
                f"einsum: equation {equation!r}: output subscript {missing[0]!r} is in no operand"
            )
        before, _, after = rhs.partition("...")
        output = list(before) + (ellipsis if "..." in rhs else []) + list(after)
    else:
        counts = collections.Counter(c for term in terms for c in term if not isinstance(c, tuple))
        output = ellipsis + sorted(c for c, n in counts.items() if n == 1)
    return terms, output, sizes


def _einsum_prepare(
    tensor: Tensor, term: list[Label], output: list[Label], terms: list[list[Label]], k: int
) -> tuple[Tensor, list[Label]]:
    """One operand with its repeated labels reduced to their diagonal and the labels no other
    operand or the output has summed out: (tensor, labels)."""
    labels = list(dict.fromkeys(term))
    if len(labels) != len(term):  # a repeated label: the diagonal, by flat positions
        letters = dict(zip(labels, string.ascii_letters))
        spec = (
            "".join(letters[label] for label in term)
            + "->"
            + "".join(letters[label] for label in labels)
        )
        positions = np.einsum(spec, rearrange.flat_positions(tensor.shape))
        tensor = _op("take", tensor, index=np.asarray(positions, order="C"))
    others = set(output).union(*(set(t) for i, t in enumerate(terms) if i != k))
    alone = tuple(i for i, label in enumerate(labels) if label not in others)
    if alone:
        tensor = tensor.sum(dim=alone)
        labels = [label for label in labels if label in others]
    return tensor, labels


def _einsum_pair(
    a: Tensor,
    la: list[Label],
    b: Tensor,
    lb: list[Label],
    keep: set[Label],
    sizes: dict[Label, int],
) -> tuple[Tensor, list[Label]]:
    """Two operands as one batched matmul: (result, its labels)."""
    batch = [label for label in la if label in lb and label in keep]
    summed = [label for label in la if label in lb and label not in keep]
    a_only = [label for label in la if label not in lb]
    b_only = [label for label in lb if label not in la]
    for label in summed:  # a size-1 contracted dim broadcasts against the other's
        for which, (x, lx) in enumerate(((a, la), (b, lb))):
            axis = lx.index(label)
            if x.shape[axis] != sizes[label]:
                full = list(x.shape)
                full[axis] = sizes[label]
                if which == 0:
                    a = a.expand(tuple(full))
                else:
                    b = b.expand(tuple(full))

    def as_matrices(
        x: Tensor, lx: list[Label], order: list[Label], rows: int
    ) -> tuple[Tensor, tuple[int, ...]]:
        """``x`` permuted to ``batch + order`` and reshaped to (batch..., rows, columns), and
        the sizes of its non-batch dims."""
        perm = [lx.index(label) for label in order]
        if perm != list(range(len(perm))):
            x = x.permute(perm)
        lead, rest = x.shape[: len(batch)], x.shape[len(batch) :]
        matrix = lead + (math.prod(rest[:rows]), math.prod(rest[rows:]))
        return (x if matrix == x.shape else x.reshape(matrix)), rest

    a2, a_rest = as_matrices(a, la, batch + a_only + summed, len(a_only))
    b2, b_rest = as_matrices(b, lb, batch + summed + b_only, len(summed))
    product = a2 @ b2
    shape = product.shape[:-2] + a_rest[: len(a_only)] + b_rest[len(summed) :]
    return product.reshape(shape), batch + a_only + b_only


(
    var,
    std,
    logsumexp,
    clamp_min,
    clamp_max,
    addcmul,
    addcdiv,
    lerp,
    hypot,
    logaddexp,
    isnan,
    isinf,
    isfinite,
    nan_to_num,
    nonzero,
    argwhere,
    count_nonzero,
    unique,
    bincount,
    diagonal,
    diag,
    trace,
    outer,
    ger,
    dot,
    masked_select,
    select,
    unbind,
    swapaxes,
    swapdims,
    movedim,
    moveaxis,
    broadcast_to,
    unflatten,
    take_along_dim,
    diff,
) = (
    _method_form(name)
    for name in (
        "var",
        "std",
        "logsumexp",
        "clamp_min",
        "clamp_max",
        "addcmul",
        "addcdiv",
        "lerp",
        "hypot",
        "logaddexp",
        "isnan",
        "isinf",
        "isfinite",
        "nan_to_num",
        "nonzero",
        "argwhere",
        "count_nonzero",
        "unique",
        "bincount",
        "diagonal",
        "diag",
        "trace",
        "outer",
        "ger",
        "dot",
        "masked_select",
        "select",
        "unbind",
        "swapaxes",
        "swapdims",
        "movedim",
        "moveaxis",
        "broadcast_to",
        "unflatten",
        "take_along_dim",
        "diff",
    )
)


def _joined(name: str, tensors: TensorSequence, least: int, dim: int) -> Tensor:
    """``cat`` of ``tensors`` along ``dim`` after raising each to ``least`` dimensions (a 1-D
    tensor becomes a row, a 0-d one a single element)."""
    tensors = _tensor_list(name, tensors)
    raised = []
    for t in tensors:
        if t.ndim == 0:
            t = t.reshape((1,) * least)
        elif t.ndim < least:
            t = t.reshape((1,) * (least - t.ndim) + t.shape)
        raised.append(t)
    return cat(raised, dim)


def hstack(tensors: TensorSequence) -> Tensor:
    """Join along dim 1 (dim 0 for 1-D tensors)."""
    tensors = _tensor_list("hstack", tensors)
    return _joined("hstack", tensors, 1, 0 if builtins.all(t.ndim <= 1 for t in tensors) else 1)


def vstack(tensors: TensorSequence) -> Tensor:
    """Join along dim 0, 1-D tensors as rows."""
    return _joined("vstack", tensors, 2, 0)


row_stack = vstack


def meshgrid(*tensors: Tensor, indexing: str = "ij") -> tuple[Tensor, ...]:
    """Coordinate grids from 1-D tensors: with ``indexing="ij"`` (torch's default) the i-th
    grid varies along dim i; ``"xy"`` swaps the first two dims, as NumPy's default."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if indexing not in ("ij", "xy"):
        raise ValueError(f"meshgrid: indexing must be 'ij' or 'xy', got {indexing!r}")
    vectors = [as_tensor(t) for t in tensors]
    if builtins.any(v.ndim > 1 for v in vectors):
        raise ValueError(
            f"meshgrid: expects 0-D or 1-D tensors, got shapes {[v.shape for v in vectors]}"
        )
    vectors = [v.reshape(-1) for v in vectors]
    sizes = [v.shape[0] for v in vectors]
    if indexing == "xy" and len(vectors) >= 2:
        sizes[0], sizes[1] = sizes[1], sizes[0]
    grids = []
    for k, v in enumerate(vectors):
        axis = k
        if indexing == "xy" and len(vectors) >= 2 and k < 2:
            axis = 1 - k
        shape = [1] * len(vectors)
        shape[axis] = v.shape[0]
        grids.append(v.reshape(tuple(shape)).expand(tuple(sizes)))
    return tuple(grids)


(index_add, index_copy, index_fill) = (
    _method_form(name) for name in ("index_add", "index_copy", "index_fill")
)


(prod, kthvalue, median) = (_method_form(name) for name in ("prod", "kthvalue", "median"))


def tensordot(a: Tensor, b: Tensor, dims: int | tuple[Any, Any] | list[Any] = 2) -> Tensor:
    """Sums of products over the last ``dims`` dims of ``a`` and the first of ``b`` (or over
    the dims listed as ``([a dims], [b dims])``), as torch.tensordot, through ``einsum``."""
    a, b = as_tensor(a), as_tensor(b)
    if isinstance(dims, int) and not isinstance(dims, bool):
        if not 0 <= dims <= builtins.min(a.ndim, b.ndim):
            raise ValueError(
                f"tensordot: dims={dims} must lie in 0 to {builtins.min(a.ndim, b.ndim)} for "
                f"shapes {a.shape} and {b.shape}"
            )
        a_dims, b_dims = list(range(a.ndim - dims, a.ndim)), list(range(dims))
    elif isinstance(dims, (tuple, list)) and len(dims) == 2:
        pair = [[d] if isinstance(d, int) else list(d) for d in dims]
        a_dims = [_dim_index("tensordot", d, a.ndim, a.shape) for d in pair[0]]
        b_dims = [_dim_index("tensordot", d, b.ndim, b.shape) for d in pair[1]]
        if len(a_dims) != len(b_dims):
            raise ValueError(f"tensordot: dims {dims} pair {len(a_dims)} with {len(b_dims)} dims")
    else:
        raise TypeError(f"tensordot: dims must be an int or a pair of dim lists, got {dims!r}")
    letters = iter(string.ascii_letters)
    a_labels = [next(letters) for _ in range(a.ndim)]
    b_labels = [next(letters) for _ in range(b.ndim)]
    for i, j in zip(a_dims, b_dims):
        b_labels[j] = a_labels[i]
    kept = [c for i, c in enumerate(a_labels) if i not in a_dims]
    kept += [c for j, c in enumerate(b_labels) if j not in b_dims]
    equation = f"{''.join(a_labels)},{''.join(b_labels)}->{''.join(kept)}"
    return einsum(equation, a, b)


(cumprod, cross) = (_method_form(name) for name in ("cumprod", "cross"))
