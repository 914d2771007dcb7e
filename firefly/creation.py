"""Creation functions, as in PyTorch: ``zeros``, ``ones``, ``full``, ``empty``, ``arange``,
``linspace``, ``eye``, the random ``rand``/``randn``/``randint``/``randperm`` (drawn from
``generator=`` or firefly's default generator, so ``manual_seed`` reproduces them), the
``*_like`` forms, ``tensor``, ``from_numpy`` and ``as_tensor``. ``device=`` accepts the CPU.
"""

from __future__ import annotations

import numbers

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from firefly import devices, random
from firefly.dtypes import DEFAULT_FLOAT, is_float_dtype, tensor_dtype
from firefly.tensor import ShapeArg, Tensor, _dims, as_array

__all__ = [
    "tensor",
    "zeros",
    "ones",
    "full",
    "empty",
    "arange",
    "linspace",
    "eye",
    "rand",
    "randn",
    "randint",
    "randperm",
    "zeros_like",
    "ones_like",
    "full_like",
    "empty_like",
    "rand_like",
    "randn_like",
    "from_numpy",
    "as_tensor",
]


def _made(
    array: ArrayLike, requires_grad: bool, name: str, device: devices.DeviceLike = None
) -> Tensor:
    devices.as_device(name, device)
    t = Tensor._wrap(np.asarray(array, order="C"))
    if requires_grad:
        if not is_float_dtype(t.dtype):
            raise TypeError(
                f"{name}: only float32 and float64 tensors can require grad, got dtype {t.dtype}"
            )
        t.requires_grad = True
    return t


def _dtype_or_default_float(name: str, dtype: DTypeLike | None) -> np.dtype:
    """``dtype`` checked, or the default float when None (torch.zeros and the like)."""
    return DEFAULT_FLOAT if dtype is None else tensor_dtype(name, dtype)


def _shape(name: str, size: tuple[ShapeArg, ...]) -> tuple[int, ...]:
    shape = _dims(name, size)
    if any(d < 0 for d in shape):
        raise ValueError(f"{name}: sizes must be non-negative, got {shape}")
    return shape


def tensor(
    data: ArrayLike | Tensor,
    dtype: DTypeLike | None = None,
    device: devices.DeviceLike = None,
    requires_grad: bool = False,
) -> Tensor:
    """A new tensor copied from ``data``, with ``torch.tensor``'s dtype rules: Python floats make
    float32, Python ints int64, bools bool, and an ndarray or Tensor keeps its dtype. (The
    ``Tensor`` constructor has its own rule instead: integer data become float32.)"""
    if isinstance(data, Tensor):
        array = data._data
    elif isinstance(data, np.ndarray):
        array = data
    else:
        array = as_array(data, dtype=None if dtype is not None else _python_dtype(data))
    dtype = array.dtype if dtype is None else tensor_dtype("tensor", dtype)
    tensor_dtype("tensor", dtype)
    return _made(
        np.array(array, dtype=dtype, order="C", copy=True), requires_grad, "tensor", device
    )


def _python_dtype(data: ArrayLike) -> DTypeLike:
    """torch.tensor's dtype for Python data: bool, int64 or float32, by the widest element."""
    kind = (
        np.array(data).dtype.kind
        if not isinstance(data, np.generic)
        else np.asarray(data).dtype.kind
    )
    if isinstance(data, np.generic):
        return np.asarray(data).dtype
    return {"b": np.bool_, "i": np.int64, "u": np.int64}.get(kind, DEFAULT_FLOAT)


def zeros(
    *size: ShapeArg,
    dtype: DTypeLike | None = None,
    device: devices.DeviceLike = None,
    requires_grad: bool = False,
) -> Tensor:
    array = np.zeros(_shape("zeros", size), _dtype_or_default_float("zeros", dtype))
    return _made(array, requires_grad, "zeros", device)


def ones(
    *size: ShapeArg,
    dtype: DTypeLike | None = None,
    device: devices.DeviceLike = None,
    requires_grad: bool = False,
) -> Tensor:
    array = np.ones(_shape("ones", size), _dtype_or_default_float("ones", dtype))
    return _made(array, requires_grad, "ones", device)


def empty(
    *size: ShapeArg,
    dtype: DTypeLike | None = None,
    device: devices.DeviceLike = None,
    requires_grad: bool = False,
) -> Tensor:
    array = np.empty(_shape("empty", size), _dtype_or_default_float("empty", dtype))
    return _made(array, requires_grad, "empty", device)


def full(
    size: ShapeArg,
    fill_value: float,
    dtype: DTypeLike | None = None,
    device: devices.DeviceLike = None,
    requires_grad: bool = False,
) -> Tensor:
    """``size`` filled with ``fill_value``; the dtype follows the value as in PyTorch (a bool
    makes bool, an int int64, a float float32) unless ``dtype`` is given."""
    if dtype is None:
        dtype = (
            np.bool_
            if isinstance(fill_value, (bool, np.bool_))
            else (np.int64 if isinstance(fill_value, numbers.Integral) else DEFAULT_FLOAT)
        )
    array = np.full(_shape("full", (size,)), fill_value, tensor_dtype("full", dtype))
    return _made(array, requires_grad, "full", device)


def arange(
    start: float,
    end: float | None = None,
    step: float = 1,
    dtype: DTypeLike | None = None,
    device: devices.DeviceLike = None,
    requires_grad: bool = False,
) -> Tensor:
    """``arange(end)`` or ``arange(start, end, step)``: int64 when every argument is an int,
    float32 otherwise (PyTorch's rule)."""
    if end is None:
        start, end = 0, start
    if step == 0:
        raise ValueError("arange: step must not be zero")
    if dtype is None:
        ints = all(isinstance(v, numbers.Integral) for v in (start, end, step))
        dtype = np.int64 if ints else DEFAULT_FLOAT
    dtype = tensor_dtype("arange", dtype)
    if dtype.kind == "f":  # computed in float64, then cast, for the fewest rounding surprises
        return _made(
            np.arange(start, end, step, dtype=np.float64).astype(dtype),
            requires_grad,
            "arange",
            device,
        )
    return _made(np.arange(start, end, step).astype(dtype), requires_grad, "arange", device)


def linspace(
    start: float,
    end: float,
    steps: int,
    dtype: DTypeLike | None = None,
    device: devices.DeviceLike = None,
    requires_grad: bool = False,
) -> Tensor:
    if not isinstance(steps, numbers.Integral) or steps < 0:
        raise ValueError(f"linspace: steps must be a non-negative int, got {steps!r}")
    array = np.linspace(start, end, int(steps), dtype=np.float64).astype(
        _dtype_or_default_float("linspace", dtype)
    )
    return _made(array, requires_grad, "linspace", device)


def eye(
    n: int,
    m: int | None = None,
    dtype: DTypeLike | None = None,
    device: devices.DeviceLike = None,
    requires_grad: bool = False,
) -> Tensor:
    return _made(
        np.eye(n, m, dtype=_dtype_or_default_float("eye", dtype)), requires_grad, "eye", device
    )


def rand(
    *size: ShapeArg,
    generator: random.Generator | None = None,
    dtype: DTypeLike | None = None,
    device: devices.DeviceLike = None,
    requires_grad: bool = False,
) -> Tensor:
    """Uniform on [0, 1), from ``generator`` (a ``firefly.Generator``) or firefly's default."""
    dtype = _dtype_or_default_float("rand", dtype)
    draws = random.generator(generator, "rand").random(_shape("rand", size))
    return _made(draws.astype(dtype), requires_grad, "rand", device)


def randn(
    *size: ShapeArg,
    generator: random.Generator | None = None,
    dtype: DTypeLike | None = None,
    device: devices.DeviceLike = None,
    requires_grad: bool = False,
) -> Tensor:
    """Standard normal, from ``generator`` (a ``firefly.Generator``) or firefly's default."""
    dtype = _dtype_or_default_float("randn", dtype)
    draws = random.generator(generator, "randn").standard_normal(_shape("randn", size))
    return _made(draws.astype(dtype), requires_grad, "randn", device)


def randint(
    low: int,
    high: int | ShapeArg | None = None,  # the size, in the form randint(high, size)
    size: ShapeArg | None = None,
    *,
    generator: random.Generator | None = None,
    dtype: DTypeLike | None = None,
    device: devices.DeviceLike = None,
    requires_grad: bool = False,
) -> Tensor:
    """``randint(high, size)`` or ``randint(low, high, size)``: int64 in [low, high)."""
    if size is None:  # randint(high, size)
        low, high, size = 0, low, high
    elif high is None:  # randint(high, size=...), as torch reads it
        low, high = 0, low
    if size is None:
        raise TypeError("randint: give size, e.g. randint(0, 10, (3,))")
    shape = _shape("randint", (size,))
    if not isinstance(high, numbers.Integral) or isinstance(high, bool):
        raise TypeError(f"randint: high must be an int, got {type(high).__name__} {high!r}")
    if high <= low:
        raise ValueError(f"randint: high ({high}) must be greater than low ({low})")
    dtype = tensor_dtype("randint", np.int64 if dtype is None else dtype)
    draws = random.generator(generator, "randint").integers(low, high, size=shape)
    return _made(draws.astype(dtype), requires_grad, "randint", device)


def randperm(
    n: int,
    *,
    generator: random.Generator | None = None,
    dtype: DTypeLike | None = None,
    device: devices.DeviceLike = None,
    requires_grad: bool = False,
) -> Tensor:
    """A random permutation of 0 .. n - 1 (int64), from ``generator`` or firefly's default."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise ValueError(f"randperm: n must be a non-negative int, got {n!r}")
    dtype = tensor_dtype("randperm", np.int64 if dtype is None else dtype)
    draws = random.generator(generator, "randperm").permutation(int(n))
    return _made(draws.astype(dtype), requires_grad, "randperm", device)


def _like(
    name: str, t: Tensor | ArrayLike, dtype: DTypeLike | None
) -> tuple[tuple[int, ...], np.dtype]:
    array = t._data if isinstance(t, Tensor) else np.asarray(t)
    return array.shape, (array.dtype if dtype is None else tensor_dtype(name, dtype))


def zeros_like(
    input: Tensor | ArrayLike,
    dtype: DTypeLike | None = None,
    device: devices.DeviceLike = None,
    requires_grad: bool = False,
) -> Tensor:
    shape, dtype = _like("zeros_like", input, dtype)
    return _made(np.zeros(shape, dtype), requires_grad, "zeros_like", device)


def ones_like(
    input: Tensor | ArrayLike,
    dtype: DTypeLike | None = None,
    device: devices.DeviceLike = None,
    requires_grad: bool = False,
) -> Tensor:
    shape, dtype = _like("ones_like", input, dtype)
    return _made(np.ones(shape, dtype), requires_grad, "ones_like", device)


def empty_like(
    input: Tensor | ArrayLike,
    dtype: DTypeLike | None = None,
    device: devices.DeviceLike = None,
    requires_grad: bool = False,
) -> Tensor:
    shape, dtype = _like("empty_like", input, dtype)
    return _made(np.empty(shape, dtype), requires_grad, "empty_like", device)


def full_like(
    input: Tensor | ArrayLike,
    fill_value: float,
    dtype: DTypeLike | None = None,
    device: devices.DeviceLike = None,
    requires_grad: bool = False,
) -> Tensor:
    shape, dtype = _like("full_like", input, dtype)
    return _made(np.full(shape, fill_value, dtype), requires_grad, "full_like", device)


def rand_like(
    input: Tensor | ArrayLike,
    dtype: DTypeLike | None = None,
    device: devices.DeviceLike = None,
    requires_grad: bool = False,
) -> Tensor:
    shape, dtype = _like("rand_like", input, dtype)
    return rand(shape, dtype=dtype, device=device, requires_grad=requires_grad)


def randn_like(
    input: Tensor | ArrayLike,
    dtype: DTypeLike | None = None,
    device: devices.DeviceLike = None,
    requires_grad: bool = False,
) -> Tensor:
    shape, dtype = _like("randn_like", input, dtype)
    return randn(shape, dtype=dtype, device=device, requires_grad=requires_grad)


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing ``array``'s memory and keeping its dtype (integers and bools too), as
    ``torch.from_numpy``. The array must be C-contiguous."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected an ndarray, got {type(array).__name__}")
    tensor_dtype("from_numpy", array.dtype)
    if not array.flags.c_contiguous:
        raise ValueError(
            f"from_numpy: the array (shape {array.shape}) is not C-contiguous, and firefly tensors "
            "always are; pass np.ascontiguousarray(array) (a copy)"
        )
    return Tensor._wrap(array)


def as_tensor(
    data: ArrayLike | Tensor, dtype: DTypeLike | None = None, device: devices.DeviceLike = None
) -> Tensor:
    """``data`` as a tensor, sharing memory where it can: a Tensor of the right dtype is returned
    as is; an ndarray keeps its dtype (integers too); anything else follows ``Tensor``."""
    devices.as_device("as_tensor", device)
    if isinstance(data, Tensor):
        return data if dtype is None else data.to(dtype)
    if isinstance(data, np.ndarray):
        dtype = data.dtype if dtype is None else tensor_dtype("as_tensor", dtype)
        return Tensor._wrap(np.asarray(data, dtype=dtype, order="C"))
    return Tensor(data, dtype=dtype)
