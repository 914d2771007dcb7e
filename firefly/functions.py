"""Function forms, as in PyTorch's top level: the functions of several tensors (``cat``,
``stack``, ``where``, ``maximum``, ``minimum``) and ``firefly.max(x, 1)``-style spellings of
Tensor methods, which accept anything ``as_tensor`` does as their first argument."""

import builtins

import numpy as np

from firefly import autograd
from firefly.creation import as_tensor
from firefly.tensor import FLOAT_DTYPES, Tensor, _dim_index, _mixed, _op
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
]


def _tensor_list(name, tensors):
    if isinstance(tensors, Tensor) or not isinstance(tensors, (list, tuple)):
        raise TypeError(
            f"{name}: expected a list or tuple of tensors, got {type(tensors).__name__}"
        )
    if not tensors:
        raise ValueError(f"{name}: expected a non-empty list of tensors")
    return [t if isinstance(t, Tensor) else Tensor(t) for t in tensors]


def _needs_graph(tensors):
    return builtins.all(t.dtype in FLOAT_DTYPES for t in tensors)


def cat(tensors, dim=0):
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


def stack(tensors, dim=0):
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


def _join_arrays(name, join, tensors, dim):
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


def where(condition, input, other):
    """``input`` where ``condition`` holds, else ``other`` (all broadcast together).
    Differentiable in ``input`` and ``other``; ``condition`` is a bool tensor or array."""
    mask = condition._data if isinstance(condition, Tensor) else np.asarray(condition)
    if mask.dtype != np.bool_:
        raise TypeError(
            "where: condition must be a bool tensor (a comparison's result), "
            f"got {mask.dtype} (shape {mask.shape})"
        )
    return _op("where", input, other, condition=mask)


def maximum(input, other):
    return _op("maximum", input, other)


def minimum(input, other):
    return _op("minimum", input, other)


def _binary(name, input, other):
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


def _method_form(name):
    def function(input, *args, **kwargs):
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
