"""Creation functions, as in PyTorch: ``zeros``, ``ones``, ``full``, ``empty``, ``arange``,
``linspace``, ``eye``, the random ``rand``/``randn``/``randint`` (drawn from firefly's generator,
so ``manual_seed`` reproduces them), the ``*_like`` forms, ``tensor``, ``from_numpy`` and
``as_tensor``; and the functions of several tensors: ``cat``, ``stack``, ``where``,
``maximum``, ``minimum``, ``clamp``.
"""
import numbers

import numpy as np

from firefly import autograd, random
from firefly.tensor import FLOAT_DTYPES, Tensor, _dims, _dim_index, _op, as_array, dtype_of

__all__ = [
    "tensor", "zeros", "ones", "full", "empty", "arange", "linspace", "eye", "rand", "randn",
    "randint", "zeros_like", "ones_like", "full_like", "empty_like", "rand_like", "randn_like",
    "from_numpy", "as_tensor", "cat", "concat", "stack", "where", "maximum", "minimum", "clamp",
]

DEFAULT_DTYPE = np.dtype(np.float32)  # PyTorch's default floating dtype


def _made(array, requires_grad, name):
    t = Tensor._wrap(np.asarray(array, order="C"))
    if requires_grad:
        if t.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name}: only float32 and float64 tensors can require grad, got dtype {t.dtype}")
        t.requires_grad = True
    return t


def _float_dtype(name, dtype):
    return DEFAULT_DTYPE if dtype is None else dtype_of(name, dtype)


def _shape(name, size):
    shape = _dims(name, size)
    if any(d < 0 for d in shape):
        raise ValueError(f"{name}: sizes must be non-negative, got {shape}")
    return shape


def tensor(data, dtype=None, requires_grad=False):
    """A new tensor copied from ``data`` (firefly's dtype rules: numbers make float32)."""
    t = Tensor(np.array(as_array(data, dtype), copy=True))
    return _made(t._data, requires_grad, "tensor")


def zeros(*size, dtype=None, requires_grad=False):
    return _made(np.zeros(_shape("zeros", size), _float_dtype("zeros", dtype)), requires_grad, "zeros")


def ones(*size, dtype=None, requires_grad=False):
    return _made(np.ones(_shape("ones", size), _float_dtype("ones", dtype)), requires_grad, "ones")


def empty(*size, dtype=None, requires_grad=False):
    return _made(np.empty(_shape("empty", size), _float_dtype("empty", dtype)), requires_grad, "empty")


def full(size, fill_value, dtype=None, requires_grad=False):
    """``size`` filled with ``fill_value``; the dtype follows the value as in PyTorch (a bool
    makes bool, an int int64, a float float32) unless ``dtype`` is given."""
    if dtype is None:
        dtype = np.bool_ if isinstance(fill_value, (bool, np.bool_)) else (
            np.int64 if isinstance(fill_value, numbers.Integral) else DEFAULT_DTYPE)
    return _made(np.full(_shape("full", (size,)), fill_value, dtype_of("full", dtype)), requires_grad, "full")


def arange(start, end=None, step=1, dtype=None, requires_grad=False):
    """``arange(end)`` or ``arange(start, end, step)``: int64 when every argument is an int,
    float32 otherwise (PyTorch's rule)."""
    if end is None:
        start, end = 0, start
    if step == 0:
        raise ValueError("arange: step must not be zero")
    if dtype is None:
        ints = all(isinstance(v, numbers.Integral) for v in (start, end, step))
        dtype = np.int64 if ints else DEFAULT_DTYPE
    dtype = dtype_of("arange", dtype)
    if dtype.kind == "f":  # computed in float64, then cast, for the fewest rounding surprises
        return _made(np.arange(start, end, step, dtype=np.float64).astype(dtype), requires_grad, "arange")
    return _made(np.arange(start, end, step).astype(dtype), requires_grad, "arange")


def linspace(start, end, steps, dtype=None, requires_grad=False):
    if not isinstance(steps, numbers.Integral) or steps < 0:
        raise ValueError(f"linspace: steps must be a non-negative int, got {steps!r}")
    array = np.linspace(start, end, int(steps), dtype=np.float64).astype(_float_dtype("linspace", dtype))
    return _made(array, requires_grad, "linspace")


def eye(n, m=None, dtype=None, requires_grad=False):
    return _made(np.eye(n, m, dtype=_float_dtype("eye", dtype)), requires_grad, "eye")


def rand(*size, dtype=None, requires_grad=False):
    """Uniform on [0, 1), from firefly's generator."""
    dtype = _float_dtype("rand", dtype)
    return _made(random.generator().random(_shape("rand", size)).astype(dtype), requires_grad, "rand")


def randn(*size, dtype=None, requires_grad=False):
    """Standard normal, from firefly's generator."""
    dtype = _float_dtype("randn", dtype)
    return _made(random.generator().standard_normal(_shape("randn", size)).astype(dtype), requires_grad, "randn")


def randint(low, high=None, size=None, dtype=None, requires_grad=False):
    """``randint(high, size)`` or ``randint(low, high, size)``: int64 in [low, high)."""
    if size is None:  # randint(high, size)
        low, high, size = 0, low, high
    if size is None:
        raise TypeError("randint: give size, e.g. randint(0, 10, (3,))")
    shape = _shape("randint", (size,))
    if high <= low:
        raise ValueError(f"randint: high ({high}) must be greater than low ({low})")
    dtype = dtype_of("randint", np.int64 if dtype is None else dtype)
    return _made(random.generator().integers(low, high, size=shape).astype(dtype), requires_grad, "randint")


def _like(name, t, dtype):
    array = t._data if isinstance(t, Tensor) else np.asarray(t)
    return array.shape, (array.dtype if dtype is None else dtype_of(name, dtype))


def zeros_like(input, dtype=None, requires_grad=False):
    shape, dtype = _like("zeros_like", input, dtype)
    return _made(np.zeros(shape, dtype), requires_grad, "zeros_like")


def ones_like(input, dtype=None, requires_grad=False):
    shape, dtype = _like("ones_like", input, dtype)
    return _made(np.ones(shape, dtype), requires_grad, "ones_like")


def empty_like(input, dtype=None, requires_grad=False):
    shape, dtype = _like("empty_like", input, dtype)
    return _made(np.empty(shape, dtype), requires_grad, "empty_like")


def full_like(input, fill_value, dtype=None, requires_grad=False):
    shape, dtype = _like("full_like", input, dtype)
    return _made(np.full(shape, fill_value, dtype), requires_grad, "full_like")


def rand_like(input, dtype=None, requires_grad=False):
    shape, dtype = _like("rand_like", input, dtype)
    return rand(shape, dtype=dtype, requires_grad=requires_grad)


def randn_like(input, dtype=None, requires_grad=False):
    shape, dtype = _like("randn_like", input, dtype)
    return randn(shape, dtype=dtype, requires_grad=requires_grad)


def from_numpy(array):
    """A tensor sharing ``array``'s memory and keeping its dtype (integers and bools too), as
    ``torch.from_numpy``. The array must be C-contiguous."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected an ndarray, got {type(array).__name__}")
    dtype_of("from_numpy", array.dtype)
    if not array.flags.c_contiguous:
        raise ValueError(
            f"from_numpy: the array (shape {array.shape}) is not C-contiguous, and firefly tensors "
            "always are; pass np.ascontiguousarray(array) (a copy)"
        )
    return Tensor._wrap(array)


def as_tensor(data, dtype=None):
    """``data`` as a tensor, sharing memory where it can: a Tensor of the right dtype is returned
    as is; an ndarray keeps its dtype (integers too); anything else follows ``Tensor``."""
    if isinstance(data, Tensor):
        return data if dtype is None else data.to(dtype)
    if isinstance(data, np.ndarray):
        dtype = data.dtype if dtype is None else dtype_of("as_tensor", dtype)
        return Tensor._wrap(np.asarray(data, dtype=dtype, order="C"))
    return Tensor(data, dtype=dtype)


# ----------------------------------------------------------------------------- several tensors
def _tensor_list(name, tensors):
    if isinstance(tensors, Tensor) or not isinstance(tensors, (list, tuple)):
        raise TypeError(f"{name}: expected a list or tuple of tensors, got {type(tensors).__name__}")
    if not tensors:
        raise ValueError(f"{name}: expected a non-empty list of tensors")
    return [t if isinstance(t, Tensor) else Tensor(t) for t in tensors]


def _needs_graph(tensors):
    return all(t.dtype in FLOAT_DTYPES for t in tensors)


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
    if any(t.requires_grad for t in tensors) and autograd.is_grad_enabled():
        raise TypeError(f"{name}: cannot join tensors that require grad with bool or integer ones; convert with .float()")
    try:
        return Tensor._wrap(np.asarray(join([t._data for t in tensors], axis=dim), order="C"))
    except (ValueError, np.exceptions.AxisError) as exc:
        shapes = ", ".join(str(t.shape) for t in tensors)
        raise ValueError(f"{name}: cannot join tensors of shapes {shapes} along dim {dim}: {exc}") from None


def where(condition, input, other):
    """``input`` where ``condition`` holds, else ``other`` (all broadcast together).
    Differentiable in ``input`` and ``other``; ``condition`` is a bool tensor or array."""
    mask = condition._data if isinstance(condition, Tensor) else np.asarray(condition)
    if mask.dtype != np.bool_:
        raise TypeError(f"where: condition must be a bool tensor (a comparison's result), got {mask.dtype} (shape {mask.shape})")
    return _op("where", input, other, condition=mask)


def maximum(input, other):
    return _op("maximum", input, other)


def minimum(input, other):
    return _op("minimum", input, other)


def clamp(input, min=None, max=None):
    return _op("clamp", input, min=min, max=max)


clip = clamp
