"""Tensor: an ndarray, an optional gradient, and the graph edge that produced it.

Every operator and method dispatches by op name through ``firefly.ops``; no maths lives here.
"""

from __future__ import annotations

import builtins
import collections
import enum
import numbers
import operator
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias, cast

import numpy as np
from numpy.typing import DTypeLike

from firefly import autograd, devices, discrete, random, rearrange
from firefly.dtypes import FLOAT_DTYPES, float_or_default, tensor_dtype
from firefly.ops import registry


def as_array(data: object, dtype: DTypeLike | None = None) -> np.ndarray:
    """Convert ``data`` to a C-contiguous ndarray under firefly's dtype rules.

    Python numbers and integer or bool arrays become float32 (unless ``dtype`` says otherwise);
    float32 and float64 arrays keep their dtype and share memory when already contiguous.
    """
    if dtype is not None:
        dtype = tensor_dtype("Tensor", dtype)
    if isinstance(data, Tensor):
        arr = data._data
    elif isinstance(data, np.ndarray):
        arr = data
    elif isinstance(data, (numbers.Number, list, tuple, np.generic)) and not isinstance(
        data, complex
    ):
        try:
            arr = np.array(data)
        except ValueError as exc:  # ragged nested lists
            raise ValueError(
                f"Tensor: data must be rectangular (nested lists of equal length): {exc}"
            ) from None
        # Python numbers, and lists of them, make float32 (as torch.tensor); NumPy scalars keep
        # their dtype as arrays do.
        if not isinstance(data, np.generic) and arr.dtype.kind in "fiub":
            arr = arr.astype(dtype or np.float32)
    else:
        raise TypeError(
            f"Tensor: data must be an ndarray, a (nested) list of numbers or a number, "
            f"got {type(data).__name__}"
        )
    kind = arr.dtype.kind
    if kind not in "fiub":
        raise TypeError(
            f"Tensor: data must hold numbers, got an array of dtype {arr.dtype} (shape {arr.shape})"
        )
    if dtype is None:
        dtype = float_or_default(arr.dtype)
    return np.asarray(arr, dtype=dtype, order="C")


_ops = registry._ops


def _op(name: str, *args: object, **attrs: Any) -> Tensor:
    # Built-in names are always registered: the dict lookup is the whole dispatch cost.
    return autograd.apply(_ops.get(name) or registry.get(name), *args, **attrs)


class _Unset(enum.Enum):
    """The type of ``_UNSET``, the default of an argument that has an alias (``dim``/``axis``):
    None is a value there (every dimension), so "not given" needs a value of its own."""

    UNSET = enum.auto()


_UNSET = _Unset.UNSET

# The types of the public signatures. Inside ``Tensor`` the names ``int``, ``float``, ``bool``
# and ``type`` are methods, so its later annotations spell the builtins ``builtins.int`` etc.
# An operand of arithmetic: a Tensor, a Python number or an array (converted to a Tensor).
Operand: TypeAlias = "Tensor | float | np.ndarray"
# One int or several, where ``isinstance(x, (list, tuple))`` tells which.
IntOrInts: TypeAlias = "int | list[int] | tuple[int, ...]"
# Integer indices or a bool mask: a Tensor or an array (lists convert as NumPy's do).
IndexArg: TypeAlias = "Tensor | np.ndarray | Sequence[Any]"
# A shape given as ``f(2, 3)`` or ``f((2, 3))``: each argument an int, or one sequence of them.
ShapeArg: TypeAlias = "int | Sequence[int]"
# ``dim``/``axis`` where both spellings are accepted: one dim, several, None (all), or not given.
DimsArg: TypeAlias = "int | Sequence[int] | None | _Unset"
DimArg: TypeAlias = "int | _Unset"
FlagArg: TypeAlias = "bool | _Unset"
# set_compare_hook's function: (tensor, other operand, the bool result).
CompareHook: TypeAlias = "Callable[[Tensor, object, Tensor], object]"


def pick(method: str, name: str, value: Any, alias: str, alias_value: Any, default: Any) -> Any:
    """One argument spelled two ways (PyTorch's ``dim`` or NumPy's ``axis``): the value given,
    ``default`` when neither is, and a TypeError when both are."""
    if alias_value is _UNSET:
        return default if value is _UNSET else value
    if value is not _UNSET:
        raise TypeError(f"{method}(): got both '{name}' and its alias '{alias}'; give one of them")
    return alias_value


def _dims(method: str, shape: Sequence[Any]) -> tuple[int, ...]:
    """``f(2, 3)`` or ``f((2, 3))`` as a tuple of ints."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    try:
        return tuple(operator.index(d) for d in shape)
    except TypeError:
        raise TypeError(f"{method}: sizes must be ints, got {shape!r}") from None


def _dim_index(method: str, dim: Any, ndim: int, shape: tuple[int, ...], extra: int = 0) -> int:
    """``dim`` as a non-negative axis of a tensor with ``ndim`` (+ ``extra``) dimensions."""
    n = ndim + extra
    try:
        d = operator.index(dim)
    except TypeError:
        raise TypeError(f"{method}: dim must be an int, got {dim!r}") from None
    if not -max(n, 1) <= d < max(n, 1):
        raise IndexError(
            f"{method}: dim {d} is out of range for a tensor of shape {shape}; valid dims are "
            f"{-max(n, 1)} to {max(n, 1) - 1}"
        )
    return d % max(n, 1)


# torch's legacy tensor-type names, which Tensor.type() returns and accepts.
_TYPE_NAMES: dict[np.dtype, str] = {
    np.dtype(np.float32): "FloatTensor",
    np.dtype(np.float64): "DoubleTensor",
    np.dtype(np.int64): "LongTensor",
    np.dtype(np.int32): "IntTensor",
    np.dtype(np.int16): "ShortTensor",
    np.dtype(np.int8): "CharTensor",
    np.dtype(np.uint8): "ByteTensor",
    np.dtype(np.bool_): "BoolTensor",
}


def _sizes(method: str, size: Sequence[Any]) -> tuple[int, ...]:
    """``new_zeros(2, 3)``/``new_zeros((2, 3))`` as a tuple of non-negative ints."""
    shape = _dims(method, size)
    if any(d < 0 for d in shape):
        raise ValueError(f"{method}: sizes must be non-negative, got {shape}")
    return shape


def _comparand(method: str, other: object) -> np.ndarray:
    """The array that ``other`` (a Tensor, an array or a number) stands for in ``equal``."""
    if isinstance(other, Tensor):
        return other._data
    if isinstance(other, (np.ndarray, numbers.Number, np.generic)) and not isinstance(
        other, complex
    ):
        return np.asarray(other)
    raise TypeError(f"{method}: other must be a Tensor, got {type(other).__name__} {other!r}")


def _tolerances(method: str, rtol: object, atol: object) -> None:
    for name, value in (("rtol", rtol), ("atol", atol)):
        if not isinstance(value, numbers.Real) or value < 0:
            raise ValueError(f"{method}: {name} must be a non-negative number, got {value!r}")


_NUMPY_ARITHMETIC: dict[str, Callable[..., Any]] = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.true_divide,
    "pow": np.power,
    "remainder": np.remainder,
    "fmod": np.fmod,
    "atan2": np.arctan2,
}


def _mixed(name: str, a: Operand, b: Operand) -> Tensor:
    """Arithmetic with a bool or integer tensor, by PyTorch's promotion: with a float tensor,
    the integer one is converted to its dtype (and the op is recorded as usual); with only
    integers and Python numbers, NumPy computes an integer result (a float32 one for ``/`` or
    a Python float), which records no graph. Anything else re-raises the op's own error."""
    tensors = [x for x in (a, b) if isinstance(x, Tensor)]
    if all(t._data.dtype in FLOAT_DTYPES for t in tensors) or not all(
        isinstance(x, (Tensor, bool, int, float)) for x in (a, b)
    ):
        return _op(name, a, b)  # not a mixed-dtype case: the op's own TypeError
    floats = [t._data.dtype for t in tensors if t._data.dtype in FLOAT_DTYPES]
    if floats:
        target = np.result_type(*floats)
        return _op(name, *(x.to(target) if isinstance(x, Tensor) else x for x in (a, b)))
    arrays = [x._data if isinstance(x, Tensor) else x for x in (a, b)]
    with np.errstate(divide="ignore", invalid="ignore"):
        result = np.asarray(_NUMPY_ARITHMETIC[name](*arrays))
    if result.dtype.kind == "f":
        result = result.astype(np.float32)  # PyTorch's default float dtype
    return Tensor._wrap(np.asarray(result, order="C"))


def floor_divide(a: Tensor | float, b: Tensor | float) -> Tensor:
    """``a // b`` rounded toward -inf, as ``torch.floor_divide``, with PyTorch's promotion (an
    integer result for integer operands). It records no graph: torch's floor_divide has no
    derivative (its result asks for grad, and backward through it raises), so here the result
    never requires grad."""
    operands = (a, b)
    if not any(isinstance(x, Tensor) for x in operands) or not all(
        isinstance(x, (Tensor, bool, int, float)) for x in operands
    ):
        kinds = ", ".join(type(x).__name__ for x in operands)
        raise TypeError(f"floor_divide: operands must be Tensors or Python numbers, got {kinds}")
    floats = [
        x._data.dtype for x in operands if isinstance(x, Tensor) and x._data.dtype.kind == "f"
    ]
    arrays: list[Any] = [x._data if isinstance(x, Tensor) else x for x in operands]
    with np.errstate(divide="ignore", invalid="ignore"):
        result = np.asarray(np.floor_divide(*arrays))
    if floats:
        result = result.astype(np.result_type(*floats), copy=False)
    elif result.dtype.kind == "f":
        result = result.astype(
            np.float32
        )  # an integer tensor and a Python float: PyTorch's default
    return Tensor._wrap(np.asarray(result, order="C"))


MinMax = collections.namedtuple("MinMax", ["values", "indices"])
MinMax.__doc__ = "What ``max(dim)`` and ``min(dim)`` return, as torch.return_types.max."


ValuesIndices = collections.namedtuple("ValuesIndices", ["values", "indices"])
ValuesIndices.__doc__ = "What ``topk`` and ``sort`` return, as torch.return_types.topk/sort."


def _array_of(value: object) -> Any:
    """A Tensor's array, anything else as it is: firefly.discrete works on arrays."""
    return value._data if isinstance(value, Tensor) else value


def _arrays_in(index: object) -> Any:
    """An index (an item or a tuple of items) with its Tensors replaced by their arrays."""
    if isinstance(index, tuple):
        return tuple(_array_of(item) for item in index)
    return _array_of(index)


_compare_hook = None  # set_compare_hook's function, or None


def set_compare_hook(hook: CompareHook | None) -> CompareHook | None:
    """Hook point: while ``hook`` is set (None removes it), every comparison of a Tensor calls
    ``hook(tensor, other, result)`` with the bool Tensor it made. Comparisons run outside the
    ops, so ``autograd.set_op_hook`` does not see them; ``firefly.onnx.export`` watches them here
    for masks computed from a model's inputs. Returns the hook it replaces."""
    global _compare_hook
    previous, _compare_hook = _compare_hook, hook
    return previous


def _compare(name: str, tensor: Tensor, other: object) -> Any:  # a Tensor, or NotImplemented
    """``tensor <name> other`` as a bool Tensor (NotImplemented passes through: Python then
    falls back to identity for == and !=)."""
    result = discrete.compare(
        name, tensor._data, other._data if isinstance(other, Tensor) else other
    )
    if result is NotImplemented:
        return result
    result = Tensor._wrap(result)
    if _compare_hook is not None:
        _compare_hook(tensor, other, result)
    return result


def _is_advanced_index(item: object) -> bool:
    return isinstance(item, (np.ndarray, list, Tensor)) or isinstance(item, (bool, np.bool_))


class Tensor:
    """An n-dimensional array that can record the ops applied to it and differentiate them.

    ``Tensor(data, requires_grad=False, dtype=None)``: ``data`` is an ndarray, a nested list or
    a number. A Python number makes a float32 0-d tensor; a float32/float64 ndarray keeps its
    dtype and is not copied when contiguous (like ``torch.from_numpy``). Integer and bool
    tensors (``dtype=``, comparisons, ``argmax``) hold labels, indices and masks; they never
    require grad.
    """

    __slots__ = ("_data", "_requires_grad", "grad", "_node", "__weakref__")
    _data: np.ndarray
    _requires_grad: bool
    grad: Tensor | None
    _node: autograd.Node | None
    __array_ufunc__ = None  # ndarray <op> Tensor defers to the Tensor's reflected operator
    __hash__ = object.__hash__  # hashable by identity although == is elementwise, as in PyTorch

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # A subclass that defines __eq__ gets __hash__ = None from Python; the backward walks
        # key tensors by identity hash, so every Tensor keeps Tensor's.
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("__hash__", object.__hash__) is None:
            cls.__hash__ = object.__hash__  # type: ignore[assignment, method-assign]

    def __init__(
        self, data: object, requires_grad: bool = False, dtype: DTypeLike | None = None
    ) -> None:
        self._data = as_array(data, dtype)
        self._requires_grad = False
        self.grad = None
        self._node = None
        if requires_grad:
            self.requires_grad = True

    @classmethod
    def _wrap(cls, array: np.ndarray, node: autograd.Node | None = None) -> Tensor:
        """A Tensor around an array that is already contiguous and of a valid dtype: a leaf, or
        the output of the recorded ``node``."""
        t = cls.__new__(cls)
        t._data, t._requires_grad, t.grad, t._node = array, node is not None, None, node
        return t

    # ------------------------------------------------------------------ attributes
    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        value = bool(value)
        if self._node is not None and value:
            return  # a computed tensor already requires grad, as in torch
        if self._node is not None:
            raise RuntimeError(
                "requires_grad: you can only change requires_grad flags of leaf tensors; this one "
                f"was computed by '{self._node.op.name}'. "
                "Use .detach() for a copy cut off from the graph"
            )
        if value and self._data.dtype not in FLOAT_DTYPES:
            raise TypeError(
                f"requires_grad: only float32 and float64 tensors can require grad, this one is "
                f"{self._data.dtype} (shape {self.shape}); convert it first with .float()"
            )
        self._requires_grad = value

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Set ``requires_grad`` in place and return the tensor, as in PyTorch."""
        self.requires_grad = requires_grad
        return self

    @property
    def shape(self) -> tuple[int, ...]:
        return self._data.shape

    @property
    def dtype(self) -> np.dtype:
        return self._data.dtype

    @property
    def ndim(self) -> int:
        return self._data.ndim

    def dim(self) -> int:
        """The number of dimensions (PyTorch's ``Tensor.dim``)."""
        return self._data.ndim

    def size(self, dim: int | None = None) -> Any:
        """The shape, or the length of dimension ``dim`` (PyTorch's ``Tensor.size``)."""
        if dim is None:
            return self._data.shape
        return self._data.shape[_dim_index("size", dim, self._data.ndim, self._data.shape)]

    def numel(self) -> int:
        return self._data.size

    def __len__(self) -> int:
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    @property
    def is_leaf(self) -> bool:
        return self._node is None

    def is_floating_point(self) -> bool:
        return self._data.dtype in FLOAT_DTYPES

    # ------------------------------------------------------------------ values and graph
    def numpy(self) -> np.ndarray:
        """The underlying ndarray (shared, not copied)."""
        return self._data

    to_numpy = numpy

    def __dlpack__(
        self,
        stream: Any = None,
        max_version: tuple[int, int] | None = None,
        dl_device: tuple[int, int] | None = None,
        copy: bool | None = None,
    ) -> Any:
        """A DLPack capsule of this tensor's memory (shared, no copy unless asked):
        ``torch.from_dlpack(t)`` and ``np.from_dlpack(t)`` see and change the same numbers.
        ``firefly.from_dlpack`` is the other direction."""
        if self._requires_grad:
            raise RuntimeError(
                "__dlpack__: cannot export a tensor that requires grad (the consumer would not "
                "record into firefly's graph); use tensor.detach()"
            )
        if dl_device is not None and tuple(dl_device)[0] != self.__dlpack_device__()[0]:
            raise BufferError(f"__dlpack__: firefly tensors are on the CPU, not on {dl_device}")
        kwargs: dict[str, Any] = {} if max_version is None else {"max_version": max_version}
        if copy is not None:
            kwargs["copy"] = copy
        return self._data.__dlpack__(stream=stream, **kwargs)

    def __dlpack_device__(self) -> tuple[int, int]:
        return (1, 0)  # kDLCPU, device 0: firefly tensors live in CPU memory

    def __array__(self, dtype: DTypeLike | None = None, copy: bool | None = None) -> np.ndarray:
        if copy:
            return np.array(self._data, dtype=dtype, copy=True)
        return self._data if dtype is None else self._data.astype(dtype, copy=False)

    def item(self) -> Any:
        if self._data.size != 1:
            raise ValueError(
                "item(): only one-element tensors convert to a Python number, "
                f"shape is {self.shape}"
            )
        return self._data.item()

    def _one_value(self, kind: str) -> Any:
        if self._data.size != 1:
            raise ValueError(
                f"{kind}(): only a one-element tensor converts to a Python {kind}, this one has "
                f"shape {self.shape}; reduce it first (.sum(), .any(), .item() of one element)"
            )
        return self._data.reshape(()).item()

    def __float__(self) -> float:
        return float(self._one_value("float"))

    def __int__(self) -> int:
        return int(self._one_value("int"))

    def __index__(self) -> int:
        """A one-element integer tensor as a Python int (``range(n)``, ``list[t]``)."""
        if self._data.dtype.kind not in "iub":
            raise TypeError(
                "only integer tensors of one element can be used as an index, "
                f"this one is {self.dtype}"
            )
        return operator.index(self._one_value("int"))

    def __bool__(self) -> bool:
        if self._data.size != 1:
            raise RuntimeError(
                f"bool(): the truth value of a tensor of shape {self.shape} is ambiguous; use "
                ".any() or .all() (or compare one element)"
            )
        return bool(self._data.reshape(()).item())

    def tolist(self) -> Any:
        """Nested Python lists of Python numbers (a number for a 0-d tensor)."""
        return self._data.tolist()

    def detach(self) -> Tensor:
        """A new leaf sharing this tensor's data, cut off from the graph."""
        return Tensor._wrap(self._data)

    def clone(self) -> Tensor:
        """A copy with its own memory; gradients flow back through it (unlike ``detach``)."""
        if self._data.dtype not in FLOAT_DTYPES:
            return Tensor._wrap(self._data.copy())
        return _op("cast", self, dtype=self._data.dtype)

    def to(
        self,
        *args: Any,
        dtype: DTypeLike | None = None,
        device: devices.DeviceLike = None,
        non_blocking: bool = False,
        copy: bool = False,
        memory_format: object = None,
    ) -> Tensor:
        """``to(dtype)``, ``to(device)``, ``to(device, dtype)`` or ``to(other_tensor)``, as in
        PyTorch: converts, differentiably between float32 and float64. The device must be the
        CPU. Returns ``self`` when nothing changes (unless ``copy``)."""
        for arg in args:
            if isinstance(arg, Tensor):
                dtype = arg.dtype
            elif devices.is_device(arg):
                device = arg
            else:
                dtype = arg
        devices.as_device("to()", device)
        if dtype is None:
            return self.clone() if copy else self
        dtype = tensor_dtype("to()", dtype)
        if dtype == self._data.dtype and not copy:
            return self
        if dtype in FLOAT_DTYPES and self._data.dtype in FLOAT_DTYPES:
            return _op("cast", self, dtype=dtype)
        # To or from integers and bools: no gradient crosses it, as in PyTorch.
        return Tensor._wrap(self._data.astype(dtype))

    def float(self) -> Tensor:
        return self.to(np.float32)

    def double(self) -> Tensor:
        return self.to(np.float64)

    def long(self) -> Tensor:
        return self.to(np.int64)

    def int(self) -> Tensor:
        return self.to(np.int32)

    def bool(self) -> Tensor:
        return self.to(np.bool_)

    def type_as(self, other: Tensor) -> Tensor:
        return self.to(other.dtype)

    def backward(
        self,
        grad: Tensor | np.ndarray | None = None,
        retain_graph: builtins.bool | None = None,  # ``builtins.bool`` here is the method above
        create_graph: builtins.bool = False,
        inputs: Sequence[Tensor] | None = None,
    ) -> None:
        """Accumulate this tensor's gradient into ``.grad`` of the leaves (or of ``inputs``), as
        torch's; ``create_graph=True`` records it so that it can be differentiated again."""
        autograd.backward(self, grad, retain_graph, create_graph, inputs)

    def register_hook(self, hook: Callable[[Tensor], Tensor | None]) -> autograd.RemovableHandle:
        """``hook(grad)`` runs when this tensor's gradient is computed and may return a
        replacement; returns a handle with ``remove()``."""
        return autograd.register_hook(self, hook)

    def retain_grad(self) -> None:
        """Keep this non-leaf tensor's gradient in ``.grad`` after backward."""
        autograd.retain_grad(self)

    @property
    def retains_grad(self) -> builtins.bool:
        return autograd.retains_grad(self)

    @property
    def grad_fn(self) -> autograd.Node | None:
        """The recorded op that made this tensor (``grad_fn.name()``), None for a leaf."""
        return self._node

    def zero_grad(self) -> None:
        """Drop the accumulated gradient (PyTorch's default ``set_to_none=True``)."""
        self.grad = None

    def __repr__(self) -> str:
        body = np.array2string(self._data, separator=", ", prefix="Tensor(")
        extra = f", dtype={self.dtype}"
        if self._node is not None:
            extra += f", grad_fn=<{self._node.op.name}>"
        elif self._requires_grad:
            extra += ", requires_grad=True"
        return f"Tensor({body}{extra})"

    # ------------------------------------------------------------------ arithmetic
    def __add__(self, other: Operand) -> Tensor:
        try:
            return _op("add", self, other)
        except TypeError:  # free unless raised: bool and integer operands take this path
            return _mixed("add", self, other)

    def __radd__(self, other: Operand) -> Tensor:
        try:
            return _op("add", other, self)
        except TypeError:
            return _mixed("add", other, self)

    def __sub__(self, other: Operand) -> Tensor:
        try:
            return _op("sub", self, other)
        except TypeError:  # free unless raised: bool and integer operands take this path
            return _mixed("sub", self, other)

    def __rsub__(self, other: Operand) -> Tensor:
        try:
            return _op("sub", other, self)
        except TypeError:
            return _mixed("sub", other, self)

    def __mul__(self, other: Operand) -> Tensor:
        try:
            return _op("mul", self, other)
        except TypeError:  # free unless raised: bool and integer operands take this path
            return _mixed("mul", self, other)

    def __rmul__(self, other: Operand) -> Tensor:
        try:
            return _op("mul", other, self)
        except TypeError:
            return _mixed("mul", other, self)

    def __truediv__(self, other: Operand) -> Tensor:
        try:
            return _op("div", self, other)
        except TypeError:  # free unless raised: bool and integer operands take this path
            return _mixed("div", self, other)

    def __rtruediv__(self, other: Operand) -> Tensor:
        try:
            return _op("div", other, self)
        except TypeError:
            return _mixed("div", other, self)

    def __pow__(self, other: Operand) -> Tensor:
        try:
            return _op("pow", self, other)
        except TypeError:  # free unless raised: bool and integer operands take this path
            return _mixed("pow", self, other)

    def __rpow__(self, other: Operand) -> Tensor:
        try:
            return _op("pow", other, self)
        except TypeError:
            return _mixed("pow", other, self)

    def __mod__(self, other: Operand) -> Tensor:
        try:
            return _op("remainder", self, other)
        except TypeError:  # free unless raised: bool and integer operands take this path
            return _mixed("remainder", self, other)

    def __rmod__(self, other: Operand) -> Tensor:
        try:
            return _op("remainder", other, self)
        except TypeError:
            return _mixed("remainder", other, self)

    def __floordiv__(self, other: Tensor | builtins.float) -> Tensor:
        return floor_divide(self, other)

    def __rfloordiv__(self, other: Tensor | builtins.float) -> Tensor:
        return floor_divide(other, self)

    def __matmul__(self, other: Operand) -> Tensor:
        return _op("matmul", self, other)

    def __rmatmul__(self, other: Operand) -> Tensor:
        return _op("matmul", other, self)

    def __neg__(self) -> Tensor:
        try:
            return _op("neg", self)
        except TypeError:
            if self._data.dtype.kind not in "iu":
                raise
            return Tensor._wrap(
                -self._data
            )  # an integer tensor negates without a graph, as in torch

    def __abs__(self) -> Tensor:
        return _op("abs", self)

    def matmul(self, other: Operand) -> Tensor:
        return _op("matmul", self, other)

    add = __add__
    sub = __sub__
    mul = __mul__
    div = __truediv__
    pow = __pow__
    neg = __neg__
    remainder = __mod__
    floor_divide = __floordiv__

    def atan2(self, other: Operand) -> Tensor:
        try:
            return _op("atan2", self, other)
        except TypeError:  # bool and integer operands, by PyTorch's promotion
            return _mixed("atan2", self, other)

    def fmod(self, other: Operand) -> Tensor:
        try:
            return _op("fmod", self, other)
        except TypeError:  # bool and integer operands, by PyTorch's promotion
            return _mixed("fmod", self, other)

    # ------------------------------------------------------------------ comparisons
    # Elementwise, broadcasting, any dtype; bool results that record no graph.
    def __eq__(self, other: object) -> Tensor:  # type: ignore[override]  # elementwise
        return _compare("eq", self, other)

    def __ne__(self, other: object) -> Tensor:  # type: ignore[override]  # elementwise
        return _compare("ne", self, other)

    def __lt__(self, other: object) -> Tensor:
        return _compare("lt", self, other)

    def __le__(self, other: object) -> Tensor:
        return _compare("le", self, other)

    def __gt__(self, other: object) -> Tensor:
        return _compare("gt", self, other)

    def __ge__(self, other: object) -> Tensor:
        return _compare("ge", self, other)

    eq, ne, lt, le, gt, ge = __eq__, __ne__, __lt__, __le__, __gt__, __ge__

    def logical_not(self) -> Tensor:
        return Tensor._wrap(discrete.compare("eq", self._data, 0))

    __invert__ = logical_not

    def __and__(self, other: Operand) -> Tensor:
        return Tensor._wrap(discrete.logical("and", self._data, _array_of(other)))

    def __or__(self, other: Operand) -> Tensor:
        return Tensor._wrap(discrete.logical("or", self._data, _array_of(other)))

    def __xor__(self, other: Operand) -> Tensor:
        return Tensor._wrap(discrete.logical("xor", self._data, _array_of(other)))

    __rand__, __ror__, __rxor__ = __and__, __or__, __xor__

    def any(
        self,
        dim: DimsArg = _UNSET,
        keepdim: FlagArg = _UNSET,
        *,
        axis: DimsArg = _UNSET,
        keepdims: FlagArg = _UNSET,
    ) -> Tensor:
        axis = pick("any", "dim", dim, "axis", axis, None)
        keepdims = pick("any", "keepdim", keepdim, "keepdims", keepdims, False)
        return Tensor._wrap(discrete.any_all("any", self._data, axis, keepdims))

    def all(
        self,
        dim: DimsArg = _UNSET,
        keepdim: FlagArg = _UNSET,
        *,
        axis: DimsArg = _UNSET,
        keepdims: FlagArg = _UNSET,
    ) -> Tensor:
        axis = pick("all", "dim", dim, "axis", axis, None)
        keepdims = pick("all", "keepdim", keepdim, "keepdims", keepdims, False)
        return Tensor._wrap(discrete.any_all("all", self._data, axis, keepdims))

    def argmax(
        self,
        dim: DimsArg = _UNSET,
        keepdim: FlagArg = _UNSET,
        *,
        axis: DimsArg = _UNSET,
        keepdims: FlagArg = _UNSET,
    ) -> Tensor:
        """int64 indices of the maxima along ``dim`` (of the flattened tensor when None)."""
        axis = pick("argmax", "dim", dim, "axis", axis, None)
        keepdims = pick("argmax", "keepdim", keepdim, "keepdims", keepdims, False)
        return Tensor._wrap(discrete.arg_reduce("argmax", self._data, axis, keepdims))

    def argmin(
        self,
        dim: DimsArg = _UNSET,
        keepdim: FlagArg = _UNSET,
        *,
        axis: DimsArg = _UNSET,
        keepdims: FlagArg = _UNSET,
    ) -> Tensor:
        axis = pick("argmin", "dim", dim, "axis", axis, None)
        keepdims = pick("argmin", "keepdim", keepdim, "keepdims", keepdims, False)
        return Tensor._wrap(discrete.arg_reduce("argmin", self._data, axis, keepdims))

    # ------------------------------------------------------------------ elementwise
    def relu(self) -> Tensor:
        return _op("relu", self)

    def exp(self) -> Tensor:
        return _op("exp", self)

    def log(self) -> Tensor:
        return _op("log", self)

    def sigmoid(self) -> Tensor:
        return _op("sigmoid", self)

    def tanh(self) -> Tensor:
        return _op("tanh", self)

    def sin(self) -> Tensor:
        return _op("sin", self)

    def cos(self) -> Tensor:
        return _op("cos", self)

    def erf(self) -> Tensor:
        return _op("erf", self)

    def erfc(self) -> Tensor:
        return _op("erfc", self)

    def tan(self) -> Tensor:
        return _op("tan", self)

    def asin(self) -> Tensor:
        return _op("asin", self)

    def acos(self) -> Tensor:
        return _op("acos", self)

    def atan(self) -> Tensor:
        return _op("atan", self)

    def sinh(self) -> Tensor:
        return _op("sinh", self)

    def cosh(self) -> Tensor:
        return _op("cosh", self)

    def log1p(self) -> Tensor:
        return _op("log1p", self)

    def expm1(self) -> Tensor:
        return _op("expm1", self)

    def log2(self) -> Tensor:
        return _op("log2", self)

    def log10(self) -> Tensor:
        return _op("log10", self)

    def rsqrt(self) -> Tensor:
        return _op("rsqrt", self)

    def reciprocal(self) -> Tensor:
        return _op("reciprocal", self)

    def square(self) -> Tensor:
        return _op("square", self)

    def floor(self) -> Tensor:
        return _op("floor", self)

    def ceil(self) -> Tensor:
        return _op("ceil", self)

    def round(self) -> Tensor:
        return _op("round", self)

    def trunc(self) -> Tensor:
        return _op("trunc", self)

    def frac(self) -> Tensor:
        return _op("frac", self)

    def abs(self) -> Tensor:
        return _op("abs", self)

    def sqrt(self) -> Tensor:
        return _op("sqrt", self)

    def sign(self) -> Tensor:
        return _op("sign", self)

    def clamp(self, min: Operand | None = None, max: Operand | None = None) -> Tensor:
        """Limit values to [min, max] (either may be None). The gradient passes where the
        input lies inside the closed interval, as in PyTorch."""
        if min is None and max is None:
            raise ValueError("clamp: give min, max or both")
        return _op("clamp", self, min=min, max=max)

    clip = clamp

    def maximum(self, other: Operand) -> Tensor:
        return _op("maximum", self, other)

    def minimum(self, other: Operand) -> Tensor:
        return _op("minimum", self, other)

    # ------------------------------------------------------------------ reductions
    def _converted_for(self, method: str, dtype: DTypeLike | None, out: object) -> Tensor:
        """``self`` in ``dtype`` first (PyTorch's ``sum(dtype=)``); NumPy's ``np.sum(t)`` passes
        ``out=None`` too, and any other ``out`` is refused."""
        if out is not None:
            raise TypeError(f"{method}(): out= is not supported; use the returned tensor")
        return self if dtype is None else self.to(dtype)

    def sum(
        self,
        dim: DimsArg = _UNSET,
        keepdim: FlagArg = _UNSET,
        *,
        dtype: DTypeLike | None = None,
        axis: DimsArg = _UNSET,
        keepdims: FlagArg = _UNSET,
        out: None = None,
    ) -> Tensor:
        """Sum over ``dim`` (None: every dimension). Bool and integer tensors sum to int64."""
        axis = pick("sum", "dim", dim, "axis", axis, None)
        keepdims = pick("sum", "keepdim", keepdim, "keepdims", keepdims, False)
        x = self._converted_for("sum", dtype, out)
        if x._data.dtype not in FLOAT_DTYPES:
            return Tensor._wrap(discrete.integer_sum(x._data, axis, keepdims))
        return _op("sum", x, axis=axis, keepdims=keepdims)

    reduce_sum = sum

    def mean(
        self,
        dim: DimsArg = _UNSET,
        keepdim: FlagArg = _UNSET,
        *,
        dtype: DTypeLike | None = None,
        axis: DimsArg = _UNSET,
        keepdims: FlagArg = _UNSET,
        out: None = None,
    ) -> Tensor:
        axis = pick("mean", "dim", dim, "axis", axis, None)
        keepdims = pick("mean", "keepdim", keepdim, "keepdims", keepdims, False)
        x = self._converted_for("mean", dtype, out)
        if x._data.dtype not in FLOAT_DTYPES:
            raise TypeError(
                f"mean(): a {x.dtype} tensor (shape {x.shape}) has no mean, as in PyTorch; "
                "convert it first, e.g. (preds == labels).float().mean()"
            )
        return _op("mean", x, axis=axis, keepdims=keepdims)

    def amax(
        self,
        dim: DimsArg = _UNSET,
        keepdim: FlagArg = _UNSET,
        *,
        axis: DimsArg = _UNSET,
        keepdims: FlagArg = _UNSET,
    ) -> Tensor:
        """The maximum over ``dim`` (any number of dims); the gradient is split among ties."""
        axis = pick("amax", "dim", dim, "axis", axis, None)
        return _op(
            "max",
            self,
            axis=axis,
            keepdims=pick("amax", "keepdim", keepdim, "keepdims", keepdims, False),
        )

    def amin(
        self,
        dim: DimsArg = _UNSET,
        keepdim: FlagArg = _UNSET,
        *,
        axis: DimsArg = _UNSET,
        keepdims: FlagArg = _UNSET,
    ) -> Tensor:
        axis = pick("amin", "dim", dim, "axis", axis, None)
        keepdims = pick("amin", "keepdim", keepdim, "keepdims", keepdims, False)
        return -_op("max", -self, axis=axis, keepdims=keepdims)

    def max(
        self,
        dim: DimsArg = _UNSET,
        keepdim: FlagArg = _UNSET,
        *,
        axis: DimsArg = _UNSET,
        keepdims: FlagArg = _UNSET,
    ) -> Any:
        """``max()`` and ``max(axis=...)``: the maximum (as ``amax``). ``max(dim)``, as in
        PyTorch: a ``(values, indices)`` pair along one dimension."""
        return self._extreme("max", dim, keepdim, axis, keepdims)

    def min(
        self,
        dim: DimsArg = _UNSET,
        keepdim: FlagArg = _UNSET,
        *,
        axis: DimsArg = _UNSET,
        keepdims: FlagArg = _UNSET,
    ) -> Any:
        return self._extreme("min", dim, keepdim, axis, keepdims)

    def _extreme(
        self, name: str, dim: DimsArg, keepdim: FlagArg, axis: DimsArg, keepdims: FlagArg
    ) -> Any:
        keepdims = pick(name, "keepdim", keepdim, "keepdims", keepdims, False)
        if dim is _UNSET or dim is None:
            axis = None if axis is _UNSET else axis
            return (
                self.amax(axis=axis, keepdims=keepdims)
                if name == "max"
                else self.amin(axis=axis, keepdims=keepdims)
            )
        if axis is not _UNSET:
            raise TypeError(f"{name}(): got both 'dim' and its alias 'axis'; give one of them")
        if isinstance(dim, (tuple, list)):
            raise TypeError(
                f"{name}(dim): dim must be one int (use amax/amin for several), got {dim!r}"
            )
        indices = Tensor._wrap(discrete.arg_reduce("arg" + name, self._data, dim, True))
        values = self.gather(cast(int, dim), indices)  # an int: the checks above
        if not keepdims:
            d = _dim_index(name, dim, self.ndim, self.shape)
            values, indices = values.squeeze(d), indices.squeeze(d)
        return MinMax(values, indices)

    def softmax(self, dim: DimArg = _UNSET, *, axis: DimArg = _UNSET) -> Tensor:
        return _op("softmax", self, axis=pick("softmax", "dim", dim, "axis", axis, -1))

    def log_softmax(self, dim: DimArg = _UNSET, *, axis: DimArg = _UNSET) -> Tensor:
        return _op("log_softmax", self, axis=pick("log_softmax", "dim", dim, "axis", axis, -1))

    # ------------------------------------------------------------------ shape
    def _plain(self, name: str, compute: Callable[[np.ndarray], np.ndarray]) -> Tensor:
        """A shape op on a bool or integer tensor: NumPy on a copy, no graph (none can carry a
        gradient)."""
        try:
            return Tensor._wrap(np.array(compute(self._data), order="C", copy=True))
        except (IndexError, ValueError, TypeError) as exc:
            raise type(exc)(f"{name}: {exc} (tensor of shape {self.shape}, {self.dtype})") from None

    def reshape(self, *shape: ShapeArg) -> Tensor:
        if self._data.dtype not in FLOAT_DTYPES:
            return self._plain("reshape", lambda a: a.reshape(_dims("reshape", shape)))
        return _op("reshape", self, shape=_dims("reshape", shape))

    def view(self, *shape: ShapeArg | DTypeLike) -> Tensor:
        """As ``reshape``: firefly never aliases, so the result is a copy (see the README)."""
        if len(shape) == 1 and not isinstance(shape[0], (tuple, list, int, np.integer)):
            return self.to(shape[0])  # view(dtype) reinterprets in PyTorch; here it converts
        return self.reshape(_dims("view", shape))

    def view_as(self, other: Tensor) -> Tensor:
        return self.reshape(other.shape)

    reshape_as = view_as

    def flatten(self, start_dim: builtins.int = 0, end_dim: builtins.int = -1) -> Tensor:
        shape = self._data.shape
        if not shape:
            return self.reshape(1)
        start = _dim_index("flatten", start_dim, len(shape), shape)
        end = _dim_index("flatten", end_dim, len(shape), shape)
        if start > end:
            raise ValueError(
                f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for shape {shape}"
            )
        merged = 1
        for d in shape[start : end + 1]:
            merged *= d
        return self.reshape(shape[:start] + (merged,) + shape[end + 1 :])

    def squeeze(self, dim: IntOrInts | None = None) -> Tensor:
        """Drop size-1 dimensions: all of them, or ``dim`` (an int or a tuple) where it has
        size 1."""
        shape = self._data.shape
        if dim is None:
            dims = {i for i, d in enumerate(shape) if d == 1}
        else:
            items = dim if isinstance(dim, (tuple, list)) else (dim,)
            dims = {_dim_index("squeeze", d, len(shape), shape) for d in items}
            dims = {d for d in dims if d < len(shape) and shape[d] == 1}
        return self.reshape(tuple(d for i, d in enumerate(shape) if i not in dims))

    def unsqueeze(self, dim: builtins.int) -> Tensor:
        shape = self._data.shape
        d = _dim_index("unsqueeze", dim, len(shape), shape, extra=1)
        return self.reshape(shape[:d] + (1,) + shape[d:])

    def expand(self, *sizes: ShapeArg) -> Tensor:
        """Broadcast to ``sizes`` (-1 keeps a dimension), as a copy; the gradient sums back."""
        given = _dims("expand", sizes)
        shape = self._data.shape
        if len(given) < len(shape):
            raise ValueError(
                f"expand: {len(given)} sizes {given} given for a tensor of shape {shape}; "
                f"give at least {len(shape)}"
            )
        lead = len(given) - len(shape)
        target = tuple(shape[i - lead] if s == -1 and i >= lead else s for i, s in enumerate(given))
        if self._data.dtype not in FLOAT_DTYPES:
            return self._plain("expand", lambda a: np.broadcast_to(a, target))
        return _op("expand", self, shape=target)

    def expand_as(self, other: Tensor) -> Tensor:
        return self.expand(other.shape)

    def permute(self, *axes: ShapeArg) -> Tensor:
        order: tuple[Any, ...] = (
            tuple(axes[0]) if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        )
        if self._data.dtype not in FLOAT_DTYPES:
            return self._plain("permute", lambda a: a.transpose(order))
        return _op("transpose", self, axes=order)

    def transpose(self, dim0: builtins.int = -2, dim1: builtins.int = -1) -> Tensor:
        """Swap two dimensions (PyTorch's meaning); ``permute`` takes a full order."""
        axes = list(range(self.ndim))
        try:
            axes[dim0], axes[dim1] = axes[dim1], axes[dim0]
        except (IndexError, TypeError):
            raise ValueError(
                f"transpose: dimensions ({dim0}, {dim1}) are out of range "
                f"for a tensor of shape {self.shape}"
            ) from None
        return self.permute(axes)

    @property
    def T(self) -> Tensor:
        """All dimensions reversed, as ``ndarray.T``."""
        return self.permute(tuple(range(self.ndim - 1, -1, -1)))

    def split(self, split_size_or_sections: IntOrInts, dim: builtins.int = 0) -> tuple[Tensor, ...]:
        """Pieces along ``dim``: of ``split_size`` each (the last may be shorter), or of the
        listed sizes, which must add up to the dimension's length."""
        shape = self._data.shape
        d = _dim_index("split", dim, len(shape), shape)
        length = shape[d]
        if isinstance(split_size_or_sections, (list, tuple)):
            sizes = [operator.index(s) for s in split_size_or_sections]
            if sum(sizes) != length or any(s < 0 for s in sizes):
                raise ValueError(
                    f"split: sections {sizes} do not add up to the length {length} of dim {dim} "
                    f"of a tensor of shape {shape}"
                )
        else:
            size = operator.index(split_size_or_sections)
            if size <= 0:
                raise ValueError(f"split: split_size must be a positive int, got {size}")
            sizes = [min(size, length - start) for start in range(0, length, size)] or [0]
        pieces, start = [], 0
        lead = (slice(None),) * d
        for size in sizes:
            pieces.append(self[lead + (slice(start, start + size),)])
            start += size
        return tuple(pieces)

    def chunk(self, chunks: builtins.int, dim: builtins.int = 0) -> tuple[Tensor, ...]:
        """At most ``chunks`` pieces of equal size along ``dim`` (the last may be smaller)."""
        chunks = operator.index(chunks)
        if chunks <= 0:
            raise ValueError(f"chunk: chunks must be a positive int, got {chunks}")
        shape = self._data.shape
        length = shape[_dim_index("chunk", dim, len(shape), shape)]
        return self.split(max(-(-length // chunks), 1), dim)

    def gather(self, dim: builtins.int, index: IndexArg) -> Tensor:
        """``out[i][j] = self[i][index[i][j]]`` for ``dim=1`` (PyTorch's ``gather``); ``index``
        is an integer tensor or array with as many dimensions as ``self``."""
        return _op("take", self, **discrete.gather_index(self.shape, dim, _array_of(index)))

    # ------------------------------------------------------------------ select and rearrange
    def _moved(self, positions: np.ndarray) -> Tensor:
        """The elements at flat ``positions`` (int64, of the result's shape): the differentiable
        ``take`` op on a float tensor, NumPy indexing on a bool or integer one."""
        positions = np.asarray(positions, dtype=np.int64, order="C")
        if self._data.dtype in FLOAT_DTYPES:
            return _op("take", self, index=positions)
        return Tensor._wrap(np.asarray(self._data.reshape(-1)[positions], order="C"))

    def _along(self, method: str, dim: object) -> tuple[builtins.int, tuple[builtins.int, ...]]:
        """``dim`` normalized, and the tensor's shape with a 0-d tensor read as one element."""
        shape = self._data.shape or (1,)
        return _dim_index(method, dim, self._data.ndim, self.shape), shape

    def narrow(self, dim: builtins.int, start: builtins.int, length: builtins.int) -> Tensor:
        """``length`` elements along ``dim`` from ``start`` (negative counts from the end)."""
        if self._data.ndim == 0:
            raise IndexError("narrow: cannot narrow a 0-d tensor; it has no dimension")
        d = _dim_index("narrow", dim, self.ndim, self.shape)
        start = rearrange.as_int("narrow", "start", start)
        length = rearrange.as_int("narrow", "length", length)
        size = self.shape[d]
        if not -size <= start <= size:
            raise IndexError(
                f"narrow: start {start} is out of range for dim {d} of size {size} "
                f"(tensor of shape {self.shape}); valid: {-size} to {size}"
            )
        start = start + size if start < 0 else start
        if length < 0 or start + length > size:
            raise ValueError(
                f"narrow: start ({start}) + length ({length}) exceeds dim {d} of size {size} "
                f"(tensor of shape {self.shape}), or length is negative"
            )
        return self[(slice(None),) * d + (slice(start, start + length),)]

    def flip(self, *dims: ShapeArg) -> Tensor:
        """The elements in reverse order along each of ``dims``."""
        dims = _dims("flip", dims)
        axes = {_dim_index("flip", d, self.ndim, self.shape) for d in dims}
        if len(axes) != len(dims):
            raise ValueError(f"flip: dims {dims} name a dimension more than once")
        if self._data.ndim == 0:
            return self.clone()
        return self[
            tuple(slice(None, None, -1) if i in axes else slice(None) for i in range(self.ndim))
        ]

    def fliplr(self) -> Tensor:
        if self._data.ndim < 2:
            raise ValueError(
                f"fliplr: input must have at least 2 dimensions, got shape {self.shape}"
            )
        return self.flip(1)

    def flipud(self) -> Tensor:
        if self._data.ndim < 1:
            raise ValueError("flipud: input must have at least 1 dimension, got a 0-d tensor")
        return self.flip(0)

    def roll(
        self,
        shifts: IntOrInts,
        dims: IntOrInts | None = None,
    ) -> Tensor:
        """Elements shifted by ``shifts`` along ``dims``, wrapping around (the flattened tensor
        when ``dims`` is None)."""
        shifts = tuple(shifts) if isinstance(shifts, (tuple, list)) else (shifts,)
        shifts = tuple(rearrange.as_int("roll", "shifts", s) for s in shifts)
        if dims is None:
            if len(shifts) != 1:
                raise ValueError(f"roll: give one shift when dims is None, got shifts {shifts}")
            return self._moved(rearrange.roll_positions(self.shape, shifts[0], None))
        dims = tuple(dims) if isinstance(dims, (tuple, list)) else (dims,)
        if len(dims) != len(shifts):
            raise ValueError(f"roll: shifts {shifts} and dims {dims} must have the same length")
        axes = tuple(_dim_index("roll", d, self.ndim, self.shape) for d in dims)
        if self._data.ndim == 0:
            return self.clone()
        return self._moved(rearrange.roll_positions(self.shape, shifts, axes))

    def repeat(self, *sizes: ShapeArg) -> Tensor:
        """The tensor tiled ``sizes[i]`` times along dim i (extra leading sizes add dims)."""
        sizes = _dims("repeat", sizes)
        if len(sizes) < self._data.ndim:
            raise ValueError(
                f"repeat: {len(sizes)} repeats {sizes} given for a tensor of shape {self.shape}; "
                f"give at least {self.ndim}"
            )
        if any(s < 0 for s in sizes):
            raise ValueError(f"repeat: repeats must be non-negative, got {sizes}")
        shape = (1,) * (len(sizes) - self.ndim) + self.shape
        if self._data.dtype not in FLOAT_DTYPES:
            return self._plain("repeat", lambda a: np.tile(a.reshape(shape), sizes))
        spaced = tuple(v for n in shape for v in (1, n))
        tiled = tuple(v for r, n in zip(sizes, shape) for v in (r, n))
        return (
            self.reshape(spaced).expand(tiled).reshape(tuple(r * n for r, n in zip(sizes, shape)))
        )

    def repeat_interleave(
        self,
        repeats: builtins.int | IndexArg,
        dim: builtins.int | None = None,
        *,
        output_size: builtins.int | None = None,
    ) -> Tensor:
        """Each element repeated ``repeats`` times (an int, or a count per element) along
        ``dim``; along the flattened tensor when ``dim`` is None."""
        x = self.reshape(-1) if dim is None else self
        d, shape = x._along("repeat_interleave", 0 if dim is None else dim)
        counts = rearrange.repeats_for(
            "repeat_interleave", _array_of(repeats), shape[d], d, self.shape
        )
        if output_size is not None and rearrange.as_int(
            "repeat_interleave", "output_size", output_size
        ) != int(counts.sum()):
            raise ValueError(
                f"repeat_interleave: output_size={output_size} does not match the "
                f"{int(counts.sum())} elements the repeats give"
            )
        picks = np.repeat(np.arange(shape[d], dtype=np.int64), counts)
        return x._moved(rearrange.select_positions(shape, d, picks))

    def _triangle(self, name: str, diagonal: builtins.int, lower: builtins.bool) -> Tensor:
        if self._data.ndim < 2:
            raise ValueError(
                f"{name}: input must have at least 2 dimensions, got shape {self.shape}"
            )
        diagonal = rearrange.as_int(name, "diagonal", diagonal)
        mask = rearrange.triangle_mask(self.shape, diagonal, lower)
        if self._data.dtype in FLOAT_DTYPES:
            return _op("where", self, 0.0, condition=mask)
        return Tensor._wrap(np.where(mask, self._data, np.zeros((), self._data.dtype)))

    def tril(self, diagonal: builtins.int = 0) -> Tensor:
        """The lower triangle of the last two dims (at and below diagonal ``diagonal``); zeros
        elsewhere."""
        return self._triangle("tril", diagonal, lower=True)

    def triu(self, diagonal: builtins.int = 0) -> Tensor:
        """The upper triangle of the last two dims (at and above diagonal ``diagonal``)."""
        return self._triangle("triu", diagonal, lower=False)

    def tril_(self, diagonal: builtins.int = 0) -> Tensor:
        return self._in_place("tril_", lambda: self.tril(diagonal))

    def triu_(self, diagonal: builtins.int = 0) -> Tensor:
        return self._in_place("triu_", lambda: self.triu(diagonal))

    def masked_fill(self, mask: IndexArg, value: Tensor | builtins.float) -> Tensor:
        """``value`` where the bool ``mask`` (broadcast to this shape) holds, else this tensor.
        ``value`` is a number or a 0-d tensor, differentiable as torch's."""
        mask = np.asarray(_array_of(mask))
        if mask.dtype != np.bool_:
            raise TypeError(
                f"masked_fill: mask must be a bool tensor, got {mask.dtype} (shape {mask.shape}); "
                "compare first, e.g. x.masked_fill(m == 0, value)"
            )
        try:
            fits = np.broadcast_shapes(mask.shape, self.shape) == self.shape
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(
                f"masked_fill: mask of shape {mask.shape} does not broadcast to the tensor's shape "
                f"{self.shape}"
            )
        if isinstance(value, Tensor):
            if value.ndim != 0:
                raise ValueError(
                    f"masked_fill: value must be a number or a 0-d tensor, got a tensor of shape "
                    f"{value.shape}"
                )
        elif isinstance(value, complex) or not isinstance(value, (numbers.Number, np.generic)):
            raise TypeError(
                f"masked_fill: value must be a number or a 0-d tensor, got "
                f"{type(value).__name__} {value!r}"
            )
        if self._data.dtype not in FLOAT_DTYPES:
            fill = np.asarray(_array_of(value)).astype(self._data.dtype)
            return Tensor._wrap(np.where(mask, fill, self._data))
        if isinstance(value, Tensor) and value.dtype != self.dtype:
            value = value.to(self.dtype)
        return _op("where", value, self, condition=mask)

    def masked_fill_(self, mask: IndexArg, value: Tensor | builtins.float) -> Tensor:
        return self._in_place("masked_fill_", lambda: self.masked_fill(mask, value))

    def index_select(self, dim: builtins.int, index: IndexArg) -> Tensor:
        """The slices along ``dim`` at the positions in the 1-D integer ``index``."""
        d, shape = self._along("index_select", dim)
        picks = rearrange.index_array("index_select", "index", _array_of(index), ndim=1)
        rearrange.check_in_range("index_select", "index", picks, shape[d], d, self.shape)
        positions = rearrange.select_positions(shape, d, picks.reshape(-1))
        return self._moved(positions.reshape(()) if self._data.ndim == 0 else positions)

    def _index_targets(
        self,
        method: str,
        dim: builtins.int,
        index: IndexArg,
        source_shape: tuple[builtins.int, ...] | None,
    ) -> tuple[builtins.int, np.ndarray]:
        """(dim, the flat positions in this tensor that each element of a ``source`` of
        ``source_shape`` goes to) for ``index_add``/``index_copy``: ``source`` is this tensor's
        shape with ``len(index)`` along ``dim``."""
        d, shape = self._along(method, dim)
        picks = rearrange.index_array(method, "index", _array_of(index), ndim=1).reshape(-1)
        rearrange.check_in_range(method, "index", picks, shape[d], d, self.shape)
        expected = shape[:d] + (picks.size,) + shape[d + 1 :]
        if source_shape is not None and tuple(source_shape or (1,)) != expected:
            raise ValueError(
                f"{method}: source has shape {source_shape} but index picks {picks.size} along "
                f"dim {d} of a tensor of shape {self.shape}; source must have shape {expected}"
            )
        return d, rearrange.select_positions(shape, d, picks)

    def index_add(
        self, dim: builtins.int, index: IndexArg, source: Tensor, *, alpha: builtins.float = 1
    ) -> Tensor:
        """This tensor with ``alpha * source`` added at the slices ``index`` along ``dim``
        (repeated indices add up), as torch.index_add."""
        if not isinstance(source, Tensor):
            raise TypeError(f"index_add: source must be a Tensor, got {type(source).__name__}")
        _, targets = self._index_targets("index_add", dim, index, source.shape)
        scaled = source if alpha == 1 else source * alpha
        if self._data.dtype not in FLOAT_DTYPES:
            out = self._data.copy().reshape(-1)
            np.add.at(out, targets.reshape(-1), scaled._data.reshape(-1))
            return Tensor._wrap(out.reshape(self.shape))
        if scaled.dtype != self.dtype:
            raise TypeError(f"index_add: source is {source.dtype} but the tensor is {self.dtype}")
        added = _op("add_at", scaled.reshape(targets.shape), index=targets, size=self._data.size)
        return self + added.reshape(self.shape)

    def index_copy(self, dim: builtins.int, index: IndexArg, source: Tensor) -> Tensor:
        """This tensor with the slices ``index`` along ``dim`` replaced by ``source``'s."""
        if not isinstance(source, Tensor):
            raise TypeError(f"index_copy: source must be a Tensor, got {type(source).__name__}")
        d, _ = self._index_targets("index_copy", dim, index, source.shape)
        picks = rearrange.index_array("index_copy", "index", _array_of(index), ndim=1)
        shape = self.shape or (1,)
        spread = np.broadcast_to(
            picks.reshape((1,) * d + (-1,) + (1,) * (len(shape) - d - 1)),
            shape[:d] + (picks.size,) + shape[d + 1 :],
        )
        return self.scatter(
            d, Tensor._wrap(np.ascontiguousarray(spread)), source.reshape(spread.shape)
        )

    def index_fill(
        self, dim: builtins.int, index: IndexArg, value: Tensor | builtins.float
    ) -> Tensor:
        """This tensor with the slices ``index`` along ``dim`` set to the number ``value``."""
        _, targets = self._index_targets("index_fill", dim, index, None)
        mask = np.zeros(self._data.size, dtype=bool)
        mask[targets.reshape(-1)] = True
        return self.masked_fill(Tensor._wrap(mask.reshape(self.shape)), value)

    def index_add_(
        self, dim: builtins.int, index: IndexArg, source: Tensor, *, alpha: builtins.float = 1
    ) -> Tensor:
        return self._in_place("index_add_", lambda: self.index_add(dim, index, source, alpha=alpha))

    def index_copy_(self, dim: builtins.int, index: IndexArg, source: Tensor) -> Tensor:
        return self._in_place("index_copy_", lambda: self.index_copy(dim, index, source))

    def index_fill_(
        self, dim: builtins.int, index: IndexArg, value: Tensor | builtins.float
    ) -> Tensor:
        return self._in_place("index_fill_", lambda: self.index_fill(dim, index, value))

    def _at(self, indices: np.ndarray, dim: builtins.int) -> ValuesIndices:
        """(values, indices): this tensor's elements at ``indices`` along ``dim``."""
        shape = self._data.shape or (1,)
        positions = np.take_along_axis(rearrange.flat_positions(shape), indices, axis=dim)
        if self._data.ndim == 0:
            positions, indices = positions.reshape(()), indices.reshape(())
        return ValuesIndices(self._moved(positions), Tensor._wrap(np.asarray(indices, order="C")))

    def topk(
        self,
        k: builtins.int,
        dim: builtins.int = -1,
        largest: builtins.bool = True,
        sorted: builtins.bool = True,
    ) -> ValuesIndices:
        """The ``k`` largest (``largest=False``: smallest) elements along ``dim`` and their
        int64 indices, largest first. The values are differentiable; the indices record
        nothing."""
        k = rearrange.as_int("topk", "k", k)
        d, shape = self._along("topk", dim)
        if not 0 <= k <= shape[d]:
            raise ValueError(
                f"topk: k={k} is out of range for dim {d} of size {shape[d]} (tensor of shape "
                f"{self.shape}); k must lie in 0 to {shape[d]}"
            )
        return self._at(rearrange.topk_order(self._data.reshape(shape), d, k, largest), d)

    def sort(
        self,
        dim: builtins.int = -1,
        descending: builtins.bool = False,
        *,
        stable: builtins.bool = False,
    ) -> ValuesIndices:
        """(values, int64 indices) sorted along ``dim``; NaN counts as the largest value."""
        d, shape = self._along("sort", dim)
        return self._at(rearrange.sort_order(self._data.reshape(shape), d, descending, stable), d)

    def kthvalue(
        self, k: builtins.int, dim: builtins.int = -1, keepdim: builtins.bool = False
    ) -> ValuesIndices:
        """(the ``k``-th smallest value along ``dim``, counting from 1, and its index)."""
        k = rearrange.as_int("kthvalue", "k", k)
        d, shape = self._along("kthvalue", dim)
        if not 1 <= k <= shape[d]:
            raise ValueError(
                f"kthvalue: k={k} is out of range for dim {d} of size {shape[d]} (tensor of "
                f"shape {self.shape}); k must lie in 1 to {shape[d]}"
            )
        order = rearrange.sort_order(self._data.reshape(shape), d, False, stable=True)
        values, indices = self._at(np.take(order, [k - 1], axis=d), d)
        if not keepdim and self._data.ndim:
            values, indices = values.squeeze(d), indices.squeeze(d)
        return ValuesIndices(values, indices)

    def median(self, dim: builtins.int | None = None, keepdim: builtins.bool = False) -> Any:
        """The lower median (torch's: no averaging for an even count): of every element when
        ``dim`` is None, else (values, indices) along ``dim``."""
        if dim is None:
            if self._data.size == 0:
                raise ValueError("median: the median of an empty tensor is undefined")
            flat = self.reshape(-1)
            return flat.kthvalue((flat.shape[0] + 1) // 2, 0).values
        d, shape = self._along("median", dim)
        return self.kthvalue((shape[d] + 1) // 2, d, keepdim)

    def argsort(
        self,
        dim: builtins.int = -1,
        descending: builtins.bool = False,
        *,
        stable: builtins.bool = False,
    ) -> Tensor:
        """The int64 indices that sort along ``dim`` (no graph)."""
        return self.sort(dim, descending, stable=stable).indices

    def multinomial(
        self,
        num_samples: builtins.int,
        replacement: builtins.bool = False,
        *,
        generator: random.Generator | None = None,
    ) -> Tensor:
        """int64 category indices drawn with probabilities proportional to this tensor's
        weights (1-D, or one row of categories per sample set), from ``generator`` or firefly's
        default. Without replacement each category is drawn at most once."""
        if self._data.dtype not in FLOAT_DTYPES:
            raise TypeError(
                f"multinomial: input must be a float tensor of weights, got {self.dtype} "
                f"(shape {self.shape})"
            )
        if self._data.ndim not in (1, 2) or self.shape[-1] == 0:
            raise ValueError(
                f"multinomial: input must be 1-D or 2-D with at least one category, got shape "
                f"{self.shape}"
            )
        num_samples = rearrange.as_int("multinomial", "num_samples", num_samples)
        if num_samples <= 0:
            raise ValueError(f"multinomial: num_samples must be positive, got {num_samples}")
        if not replacement and num_samples > self.shape[-1]:
            raise ValueError(
                f"multinomial: cannot draw num_samples={num_samples} without replacement from "
                f"{self.shape[-1]} categories; pass replacement=True or draw fewer"
            )
        rng = random.generator(random.checked("multinomial", generator), "multinomial")
        draws = rearrange.multinomial_draws(self._data, num_samples, bool(replacement), rng)
        return Tensor._wrap(draws)

    def cumsum(self, dim: builtins.int, *, dtype: DTypeLike | None = None) -> Tensor:
        """Running sums along ``dim``. Bool and integer tensors sum to int64, as in PyTorch."""
        x = self if dtype is None else self.to(dtype)
        if x._data.dtype not in FLOAT_DTYPES:
            d, shape = x._along("cumsum", dim)
            sums = np.cumsum(x._data.reshape(shape), axis=d, dtype=np.int64)
            return Tensor._wrap(np.asarray(sums.reshape(self.shape), order="C"))
        return _op("cumsum", x, dim=dim)

    def cumprod(self, dim: builtins.int, *, dtype: DTypeLike | None = None) -> Tensor:
        """Running products along ``dim``, by log2(n) doubling steps of elementwise products
        (each element times the running product ``s`` places before it), so that zeros need
        no special case and every order of derivative is the product's."""
        x = self if dtype is None else self.to(dtype)
        d, shape = x._along("cumprod", dim)
        if x._data.dtype not in FLOAT_DTYPES:
            products = np.cumprod(x._data.reshape(shape), axis=d, dtype=np.int64)
            return Tensor._wrap(np.asarray(products.reshape(self.shape), order="C"))
        if x._data.ndim == 0:
            return x.clone()
        out, n, step = x, shape[d], 1
        while step < n:
            ones = Tensor._wrap(np.ones(shape[:d] + (step,) + shape[d + 1 :], x._data.dtype))
            out = out * _op("cat", ones, out.narrow(d, 0, n - step), dim=d)
            step *= 2
        return out

    def _scatter(
        self,
        name: str,
        dim: builtins.int,
        index: IndexArg,
        src: object,
        value: object,
        accumulate: builtins.bool,
    ) -> Tensor:
        d = _dim_index(name, dim, self.ndim, self.shape)
        index = rearrange.index_array(name, "index", _array_of(index))
        if src is not None:
            if not isinstance(src, Tensor):
                raise TypeError(f"{name}: src must be a Tensor, got {type(src).__name__} {src!r}")
            if src.dtype != self.dtype:
                raise TypeError(
                    f"{name}: src is {src.dtype} but the tensor is {self.dtype}; they must match"
                )
        target, source = rearrange.scatter_positions(
            name, self.shape, d, index, None if src is None else src.shape
        )
        if not accumulate:  # repeated positions: the last write wins
            keep = rearrange.last_writes(target)
            target = target.reshape(-1)[keep]
            source = None if source is None else source.reshape(-1)[keep]
        if self._data.dtype not in FLOAT_DTYPES:
            out = self._data.copy().reshape(-1)
            values: Any = (
                value
                if src is None
                else src._data.reshape(-1)[cast(np.ndarray, source).reshape(-1)]
            )  # src given: scatter_positions returned its source positions
            if accumulate:
                np.add.at(out, target.reshape(-1), values)
            else:
                out[target.reshape(-1)] = values
            return Tensor._wrap(out.reshape(self.shape))
        written = np.zeros(self._data.size, dtype=bool)
        written[target.reshape(-1)] = True
        written = written.reshape(self.shape)
        if src is None:
            return _op("where", value, self, condition=written)
        values = _op("take", src, index=np.asarray(source, order="C"))
        added = _op("add_at", values, index=np.asarray(target, order="C"), size=self._data.size)
        base = self if accumulate else _op("where", self, 0.0, condition=~written)
        return base + added.reshape(self.shape)

    def scatter(
        self,
        dim: builtins.int,
        index: IndexArg,
        src: Tensor | builtins.float | None = None,
        value: builtins.float | None = None,
        *,
        reduce: str | None = None,
    ) -> Tensor:
        """This tensor with ``src``'s elements (or the number ``value``) written at ``index``
        along ``dim``, as torch.scatter; ``reduce="add"`` adds them instead."""
        if isinstance(src, (numbers.Number, np.generic)) and value is None:
            src, value = None, src  # scatter(dim, index, 1.5): the value form
        if (src is None) == (value is None):
            raise TypeError("scatter: give exactly one of src (a Tensor) and value (a number)")
        if value is not None and not isinstance(value, (numbers.Number, np.generic)):
            raise TypeError(f"scatter: value must be a number, got {type(value).__name__}")
        if reduce not in (None, "add"):
            raise ValueError(f"scatter: reduce must be None or 'add', got {reduce!r}")
        if reduce == "add" and value is not None:
            src, value = self.new_full(_array_of(index).shape, value), None
        return self._scatter("scatter", dim, index, src, value, accumulate=reduce == "add")

    def scatter_add(self, dim: builtins.int, index: IndexArg, src: Tensor) -> Tensor:
        """This tensor with ``src``'s elements added at ``index`` along ``dim`` (repeats add)."""
        return self._scatter("scatter_add", dim, index, src, None, accumulate=True)

    def scatter_(
        self,
        dim: builtins.int,
        index: IndexArg,
        src: Tensor | builtins.float | None = None,
        value: builtins.float | None = None,
        *,
        reduce: str | None = None,
    ) -> Tensor:
        return self._in_place(
            "scatter_", lambda: self.scatter(dim, index, src, value, reduce=reduce)
        )

    def scatter_add_(self, dim: builtins.int, index: IndexArg, src: Tensor) -> Tensor:
        return self._in_place("scatter_add_", lambda: self.scatter_add(dim, index, src))

    def _axes_of(self, method: str, dim: IntOrInts | None) -> tuple[builtins.int, ...]:
        """``dim`` (None, an int or a sequence) as a tuple of distinct non-negative dims."""
        if dim is None:
            return tuple(range(self._data.ndim))
        items = tuple(dim) if isinstance(dim, (tuple, list)) else (dim,)
        axes = tuple(_dim_index(method, d, self.ndim, self.shape) for d in items)
        if len(set(axes)) != len(axes):
            raise ValueError(f"{method}: dim {dim} names a dimension more than once")
        return axes

    def var(
        self,
        dim: IntOrInts | builtins.bool | None = None,
        unbiased: builtins.bool | None = None,
        keepdim: builtins.bool = False,
        *,
        correction: builtins.float | None = None,
    ) -> Tensor:
        """The variance over ``dim`` (None: every element) with ``correction`` (default 1,
        Bessel's; ``unbiased=False`` is 0), as torch; no more elements than ``correction``
        gives NaN or inf, as in torch."""
        if isinstance(dim, bool):  # var(False): the legacy unbiased flag
            dim, unbiased = None, dim
        if unbiased is not None and correction is not None:
            raise TypeError("var: give unbiased or correction, not both")
        if correction is None:
            correction = 0 if unbiased is False else 1
        if isinstance(correction, bool) or not isinstance(correction, numbers.Real):
            raise TypeError(f"var: correction must be a number, got {correction!r}")
        if self._data.dtype not in FLOAT_DTYPES:
            raise TypeError(
                f"var: input must be a float tensor, got {self.dtype} (shape {self.shape})"
            )
        axes = self._axes_of("var", dim)
        count = 1
        for a in axes:
            count *= self.shape[a]
        centered = self - self.mean(dim=axes, keepdim=True)
        total = (centered * centered).sum(dim=axes, keepdim=keepdim)
        return total / float(count - correction)

    def std(
        self,
        dim: IntOrInts | builtins.bool | None = None,
        unbiased: builtins.bool | None = None,
        keepdim: builtins.bool = False,
        *,
        correction: builtins.float | None = None,
    ) -> Tensor:
        """The standard deviation: ``var(...).sqrt()``."""
        return self.var(dim, unbiased, keepdim, correction=correction).sqrt()

    def logsumexp(
        self,
        dim: IntOrInts | None = None,
        keepdim: builtins.bool = False,
    ) -> Tensor:
        """log(sum(exp(x))) over ``dim`` without overflow: the maximum is taken out first (as
        a constant: the gradient is softmax's either way)."""
        axes = self._axes_of("logsumexp", dim)
        if self._data.dtype not in FLOAT_DTYPES:
            raise TypeError(f"logsumexp: input must be a float tensor, got {self.dtype}")
        peak = np.amax(self._data, axis=axes, keepdims=True) if self._data.size else None
        if peak is None:
            return (self.exp()).sum(dim=axes, keepdim=keepdim).log()
        shift = Tensor._wrap(np.where(np.isfinite(peak), peak, 0.0).astype(self._data.dtype))
        total = (self - shift).exp().sum(dim=axes, keepdim=keepdim).log()
        return total + (shift if keepdim else shift.reshape(total.shape))

    def prod(
        self,
        dim: builtins.int | None = None,
        keepdim: builtins.bool = False,
        *,
        dtype: DTypeLike | None = None,
    ) -> Tensor:
        """The product over ``dim`` (None: every element), with torch's gradient where
        elements are 0: the product of the others for a single zero, 0 for two or more. The
        non-zero factors multiply as exp(sum(log|x|)) with their sign, and each zero enters as a
        factor of its own, so that every order of derivative is the product's."""
        x = self if dtype is None else self.to(dtype)
        if isinstance(dim, (tuple, list)):
            raise TypeError(f"prod: dim must be one int or None, got {dim!r}")
        axes = x._axes_of("prod", dim)
        if x._data.dtype not in FLOAT_DTYPES:
            kept = np.prod(x._data, axis=axes, keepdims=keepdim, dtype=np.int64)
            return Tensor._wrap(np.asarray(kept, order="C"))
        zero = x._data == 0
        ones = Tensor._wrap(np.ones((), x._data.dtype))
        nonzero = _op("where", ones, x, condition=zero)
        magnitude = nonzero.abs().log().sum(dim=axes, keepdim=keepdim).exp()
        # exp(sum(log)) carries the gradient; a constant factor within rounding of 1 (the
        # sign where it underflows) makes the value NumPy's exact product.
        exact = np.prod(nonzero._data, axis=axes, keepdims=keepdim)
        usable = (magnitude._data != 0) & np.isfinite(magnitude._data)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(usable, exact / magnitude._data, np.sign(exact))
        result = magnitude * Tensor._wrap(np.asarray(scale, dtype=x._data.dtype, order="C"))
        if not zero.any():
            return result
        # The zeros' product, exact to every order: per output element, its slice's zeros
        # taken one at a time (a 1, appended after the elements, where a slice has fewer).
        ends = tuple(range(-len(axes), 0))
        slices = np.moveaxis(rearrange.flat_positions(x.shape), axes, ends)
        slices = slices.reshape(result._data.size, -1)
        in_slice = np.moveaxis(zero, axes, ends).reshape(slices.shape)
        table = np.full((int(in_slice.sum(1).max()), slices.shape[0]), x._data.size, np.int64)
        for row, (where_zero, positions) in enumerate(zip(in_slice, slices)):
            found = positions[where_zero]
            table[: found.size, row] = found
        padded = _op("cat", x.reshape(-1), Tensor._wrap(np.ones(1, x._data.dtype)), dim=0)
        for picks in table:
            result = result * _op("take", padded, index=picks.reshape(result.shape))
        return result

    def clamp_min(self, min: Operand) -> Tensor:
        return self.clamp(min=min)

    def clamp_max(self, max: Operand) -> Tensor:
        return self.clamp(max=max)

    def addcmul(self, tensor1: Tensor, tensor2: Tensor, *, value: builtins.float = 1) -> Tensor:
        """``self + value * tensor1 * tensor2``."""
        return self + (tensor1 * tensor2 if value == 1 else value * tensor1 * tensor2)

    def addcdiv(self, tensor1: Tensor, tensor2: Tensor, *, value: builtins.float = 1) -> Tensor:
        """``self + value * tensor1 / tensor2``."""
        return self + (tensor1 / tensor2 if value == 1 else value * tensor1 / tensor2)

    def lerp(self, end: Tensor, weight: Operand) -> Tensor:
        """``self + weight * (end - self)``."""
        return self + weight * (end - self)

    def hypot(self, other: Tensor | builtins.float) -> Tensor:
        return (self * self + other * other).sqrt()

    def logaddexp(self, other: Tensor | builtins.float) -> Tensor:
        """log(exp(self) + exp(other)) without overflow."""
        peak = _op("maximum", self, other).detach()
        peak = Tensor._wrap(np.where(np.isfinite(peak._data), peak._data, 0.0).astype(peak.dtype))
        return ((self - peak).exp() + (other - peak).exp()).log() + peak

    def isnan(self) -> Tensor:
        return Tensor._wrap(np.asarray(np.isnan(self._data), order="C"))

    def isinf(self) -> Tensor:
        return Tensor._wrap(np.asarray(np.isinf(self._data), order="C"))

    def isfinite(self) -> Tensor:
        return Tensor._wrap(np.asarray(np.isfinite(self._data), order="C"))

    def nan_to_num(
        self,
        nan: builtins.float = 0.0,
        posinf: builtins.float | None = None,
        neginf: builtins.float | None = None,
    ) -> Tensor:
        """NaN, inf and -inf replaced (by 0 and the dtype's largest and smallest finite values
        unless given); the gradient passes where the element was finite."""
        if self._data.dtype not in FLOAT_DTYPES:
            return self.clone()
        finite = np.isfinite(self._data)
        if finite.all():
            return self.clone()
        replaced = np.nan_to_num(self._data, nan=nan, posinf=posinf, neginf=neginf)
        return _op("where", self, Tensor._wrap(replaced), condition=finite)

    def nonzero(self, *, as_tuple: builtins.bool = False) -> Tensor | tuple[Tensor, ...]:
        """The int64 coordinates of the non-zero elements: (N, ndim), or a tuple per dim."""
        found = np.nonzero(self._data.reshape(self.shape or (1,)))
        if as_tuple:
            return tuple(Tensor._wrap(np.asarray(c, dtype=np.int64)) for c in found)
        coords = np.stack(found, axis=1) if found else np.zeros((0, 0))
        if not self._data.ndim:
            coords = coords[:, :0]
        return Tensor._wrap(np.asarray(coords, dtype=np.int64, order="C"))

    def argwhere(self) -> Tensor | tuple[Tensor, ...]:
        return self.nonzero()

    def count_nonzero(self, dim: IntOrInts | None = None) -> Tensor:
        axes = self._axes_of("count_nonzero", dim)
        return Tensor._wrap(np.asarray(np.count_nonzero(self._data, axis=axes), dtype=np.int64))

    def unique(
        self,
        sorted: builtins.bool = True,
        return_inverse: builtins.bool = False,
        return_counts: builtins.bool = False,
        dim: builtins.int | None = None,
    ) -> Tensor | tuple[Tensor, ...]:
        """The distinct values (sorted), and on request each element's position among them and
        how often each occurs, as torch.unique. No graph."""
        axis = None if dim is None else _dim_index("unique", dim, self.ndim, self.shape)
        values, inverse, counts = np.unique(
            self._data, return_inverse=True, return_counts=True, axis=axis
        )
        result = [Tensor._wrap(np.asarray(values, order="C"))]
        if return_inverse:
            shape = self.shape if axis is None else (self.shape[axis],)
            result.append(Tensor._wrap(np.asarray(inverse.reshape(shape), dtype=np.int64)))
        if return_counts:
            result.append(Tensor._wrap(np.asarray(counts, dtype=np.int64)))
        return result[0] if len(result) == 1 else tuple(result)

    def bincount(self, weights: IndexArg | None = None, minlength: builtins.int = 0) -> Tensor:
        """How often each non-negative int occurs in this 1-D tensor (weighted: summed)."""
        if self._data.ndim != 1 or self._data.dtype.kind not in "iu":
            raise TypeError(
                f"bincount: input must be a 1-D integer tensor, got {self.dtype} of shape "
                f"{self.shape}"
            )
        if self._data.size and self._data.min() < 0:
            raise ValueError(f"bincount: values must be non-negative, got {int(self._data.min())}")
        w = None if weights is None else np.asarray(_array_of(weights))
        counts = np.bincount(self._data, weights=w, minlength=minlength)
        dtype = np.int64 if w is None else (w.dtype if w.dtype in FLOAT_DTYPES else np.float64)
        return Tensor._wrap(np.asarray(counts, dtype=dtype))

    def diagonal(
        self, offset: builtins.int = 0, dim1: builtins.int = 0, dim2: builtins.int = 1
    ) -> Tensor:
        """The diagonal ``offset`` of the matrices in dims ``dim1`` and ``dim2``, as a last
        dimension (torch's layout)."""
        if self._data.ndim < 2:
            raise ValueError(f"diagonal: input must have at least 2 dimensions, got {self.shape}")
        offset = rearrange.as_int("diagonal", "offset", offset)
        d1 = _dim_index("diagonal", dim1, self.ndim, self.shape)
        d2 = _dim_index("diagonal", dim2, self.ndim, self.shape)
        if d1 == d2:
            raise ValueError(f"diagonal: dim1 and dim2 must differ, got {dim1} and {dim2}")
        positions = np.diagonal(rearrange.flat_positions(self.shape), offset, d1, d2)
        return self._moved(positions)

    def diag(self, diagonal: builtins.int = 0) -> Tensor:
        """A 1-D tensor: the square matrix with it on diagonal ``diagonal``. A 2-D tensor: that
        diagonal, as 1-D."""
        diagonal = rearrange.as_int("diag", "diagonal", diagonal)
        if self._data.ndim == 2:
            return self.diagonal(diagonal)
        if self._data.ndim != 1:
            raise ValueError(f"diag: input must be 1-D or 2-D, got shape {self.shape}")
        n = self.shape[0] + abs(diagonal)
        positions = np.diagonal(rearrange.flat_positions((n, n)), diagonal).copy()
        if self._data.dtype not in FLOAT_DTYPES:
            return Tensor._wrap(np.diag(self._data, diagonal))
        return _op("add_at", self, index=positions, size=n * n).reshape(n, n)

    def trace(self) -> Tensor:
        if self._data.ndim != 2:
            raise ValueError(f"trace: input must be 2-D, got shape {self.shape}")
        return self.diagonal().sum()

    def cross(self, other: Tensor, dim: builtins.int | None = None) -> Tensor:
        """The cross product of 3-vectors along ``dim`` (None: the first dim of size 3, as
        torch.cross without dim), broadcasting."""
        if not isinstance(other, Tensor):
            raise TypeError(f"cross: other must be a Tensor, got {type(other).__name__}")
        try:
            shape = np.broadcast_shapes(self.shape, other.shape)
        except ValueError:
            raise ValueError(
                f"cross: shapes {self.shape} and {other.shape} do not broadcast"
            ) from None
        if dim is None:
            sizes = [i for i, n in enumerate(shape) if n == 3]
            if not sizes:
                raise ValueError(f"cross: no dim of size 3 in shape {shape}")
            dim = sizes[0]
        d = _dim_index("cross", dim, len(shape), shape)
        if shape[d] != 3:
            raise ValueError(f"cross: dim {d} must have size 3, got shape {shape}")
        a = self if self.shape == shape else self.expand(shape)
        b = other if other.shape == shape else other.expand(shape)
        a1, a2, a3 = (a.select(d, i) for i in range(3))
        b1, b2, b3 = (b.select(d, i) for i in range(3))
        parts = [(a2 * b3 - a3 * b2), (a3 * b1 - a1 * b3), (a1 * b2 - a2 * b1)]
        joined = _op("cat", parts[0].unsqueeze(d), parts[1].unsqueeze(d), dim=d)
        return _op("cat", joined, parts[2].unsqueeze(d), dim=d)

    def outer(self, vec2: Tensor) -> Tensor:
        """The outer product of two 1-D tensors."""
        if self._data.ndim != 1 or getattr(vec2, "ndim", None) != 1:
            raise ValueError(
                f"outer: both operands must be 1-D, got shapes {self.shape} and "
                f"{getattr(vec2, 'shape', type(vec2).__name__)}"
            )
        return self.unsqueeze(1) * vec2.unsqueeze(0)

    ger = outer

    def dot(self, other: Tensor) -> Tensor:
        """The inner product of two 1-D tensors of one length."""
        if self._data.ndim != 1 or getattr(other, "shape", None) != self.shape:
            raise ValueError(
                f"dot: both operands must be 1-D of one length, got shapes {self.shape} and "
                f"{getattr(other, 'shape', type(other).__name__)}"
            )
        return (self * other).sum()

    def masked_select(self, mask: IndexArg) -> Tensor:
        """The elements where the bool ``mask`` holds (both broadcast together), as 1-D."""
        mask = np.asarray(_array_of(mask))
        if mask.dtype != np.bool_:
            raise TypeError(
                f"masked_select: mask must be a bool tensor, got {mask.dtype} (shape {mask.shape})"
            )
        try:
            shape = np.broadcast_shapes(mask.shape, self.shape)
        except ValueError:
            raise ValueError(
                f"masked_select: mask of shape {mask.shape} and the tensor of shape {self.shape} "
                "do not broadcast"
            ) from None
        x = self if self.shape == shape else self.expand(shape)
        return x[np.broadcast_to(mask, shape)]

    def select(self, dim: builtins.int, index: builtins.int) -> Tensor:
        """The slice at ``index`` along ``dim``, that dim removed."""
        if self._data.ndim == 0:
            raise IndexError("select: cannot select from a 0-d tensor")
        d = _dim_index("select", dim, self.ndim, self.shape)
        index = rearrange.as_int("select", "index", index)
        if not -self.shape[d] <= index < self.shape[d]:
            raise IndexError(
                f"select: index {index} is out of range for dim {d} of size {self.shape[d]}"
            )
        return self[(slice(None),) * d + (index,)]

    def unbind(self, dim: builtins.int = 0) -> tuple[Tensor, ...]:
        """The slices along ``dim``, as a tuple."""
        d, shape = self._along("unbind", dim)
        return tuple(self.select(d, i) for i in range(shape[d]))

    def swapaxes(self, axis0: builtins.int, axis1: builtins.int) -> Tensor:
        return self.transpose(axis0, axis1)

    swapdims = swapaxes

    def movedim(
        self,
        source: IntOrInts,
        destination: IntOrInts,
    ) -> Tensor:
        """Dims ``source`` moved to positions ``destination``, the others in their order."""
        src = tuple(source) if isinstance(source, (tuple, list)) else (source,)
        dst = tuple(destination) if isinstance(destination, (tuple, list)) else (destination,)
        if len(src) != len(dst):
            raise ValueError(
                f"movedim: source {source} and destination {destination} differ in length"
            )
        src = tuple(_dim_index("movedim", d, self.ndim, self.shape) for d in src)
        dst = tuple(_dim_index("movedim", d, self.ndim, self.shape) for d in dst)
        if len(set(src)) != len(src) or len(set(dst)) != len(dst):
            raise ValueError(f"movedim: source {source} or destination {destination} repeats a dim")
        order = [a for a in range(self.ndim) if a not in src]
        for to, moved in sorted(zip(dst, src)):
            order.insert(to, moved)
        return self.permute(tuple(order))

    moveaxis = movedim

    def broadcast_to(self, size: Sequence[builtins.int]) -> Tensor:
        return self.expand(size)

    def unflatten(self, dim: builtins.int, sizes: Sequence[builtins.int]) -> Tensor:
        """Dim ``dim`` split into ``sizes`` (one may be -1)."""
        d = _dim_index("unflatten", dim, self.ndim, self.shape)
        sizes = _dims("unflatten", (sizes,))
        known = 1
        for n in sizes:
            known *= n if n != -1 else 1
        if sizes.count(-1) == 1 and known:
            sizes = tuple(self.shape[d] // known if n == -1 else n for n in sizes)
        if known == 0 or (sizes.count(-1) == 0 and np.prod(sizes) != self.shape[d]):
            raise ValueError(
                f"unflatten: sizes {sizes} do not multiply to the size {self.shape[d]} of dim {d}"
            )
        return self.reshape(self.shape[:d] + sizes + self.shape[d + 1 :])

    def take_along_dim(self, indices: IndexArg, dim: builtins.int | None = None) -> Tensor:
        """``np.take_along_axis``: the elements at ``indices`` along ``dim`` (the flattened
        tensor when None), the two broadcast together."""
        index = rearrange.index_array("take_along_dim", "indices", _array_of(indices))
        if dim is None:
            x, d = self.reshape(-1), 0
            index = index.reshape(-1)
        else:
            x, d = self, _dim_index("take_along_dim", dim, self.ndim, self.shape)
        shape = x.shape or (1,)
        rearrange.check_in_range("take_along_dim", "indices", index, shape[d], d, self.shape)
        try:
            positions = np.take_along_axis(rearrange.flat_positions(shape), index, axis=d)
        except ValueError:
            raise ValueError(
                f"take_along_dim: indices of shape {index.shape} do not broadcast against the "
                f"tensor of shape {self.shape} outside dim {d}"
            ) from None
        return x._moved(positions)

    def diff(self, n: builtins.int = 1, dim: builtins.int = -1) -> Tensor:
        """The ``n``-th forward difference along ``dim``."""
        n = rearrange.as_int("diff", "n", n)
        if n < 0:
            raise ValueError(f"diff: n must be non-negative, got {n}")
        d, _ = self._along("diff", dim)
        out = self
        for _ in range(n):
            length = out.shape[d]
            if length == 0:
                break
            out = out.narrow(d, 1, length - 1) - out.narrow(d, 0, length - 1)
        return out

    # ------------------------------------------------------------------ products and norms
    def _product_shape(
        self, method: str, other: object, ndim: builtins.int
    ) -> tuple[builtins.int, ...]:
        """The shape of mm's (``ndim`` 2) or bmm's (3) product, after the checks: both operands
        ``ndim``-D Tensors with matching inner (and batch) sizes."""
        if not isinstance(other, Tensor):
            raise TypeError(f"{method}: expected a Tensor operand, got {type(other).__name__}")
        if self._data.ndim != ndim or other._data.ndim != ndim:
            raise ValueError(
                f"{method}: both operands must be {ndim}-D, got shapes {self.shape} and "
                f"{other.shape}"
            )
        if self.shape[-1] != other.shape[-2] or self.shape[:-2] != other.shape[:-2]:
            raise ValueError(
                f"{method}: shapes {self.shape} and {other.shape} cannot be multiplied"
                + (" (batch sizes differ)" if self.shape[:-2] != other.shape[:-2] else "")
            )
        return self.shape[:-1] + other.shape[-1:]

    def mm(self, mat2: Tensor) -> Tensor:
        """The matrix product of two 2-D tensors."""
        self._product_shape("mm", mat2, 2)
        return _op("matmul", self, mat2)

    def bmm(self, mat2: Tensor) -> Tensor:
        """Batched matrix products of two 3-D tensors of one batch size."""
        self._product_shape("bmm", mat2, 3)
        return _op("matmul", self, mat2)

    def _added_product(
        self,
        method: str,
        first: Tensor,
        second: Tensor,
        ndim: builtins.int,
        beta: builtins.float,
        alpha: builtins.float,
    ) -> Tensor:
        """``beta * self + alpha * (first @ second)``, ``self`` broadcast to the product's
        shape; with ``beta == 0`` this tensor is ignored (NaN in it does not propagate), as in
        torch."""
        if not isinstance(first, Tensor):
            raise TypeError(f"{method}: expected Tensor operands, got {type(first).__name__}")
        shape = first._product_shape(method, second, ndim)
        try:
            fits = np.broadcast_shapes(self.shape, shape) == shape
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(
                f"{method}: input of shape {self.shape} does not broadcast to the product's "
                f"shape {shape}"
            )
        for name, value in (("beta", beta), ("alpha", alpha)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"{method}: {name} must be a number, got {value!r}")
        product = _op("matmul", first, second)
        scaled = product if alpha == 1 else product * alpha
        if beta == 0:
            return scaled
        return scaled + (self if beta == 1 else self * beta)

    def addmm(
        self, mat1: Tensor, mat2: Tensor, *, beta: builtins.float = 1, alpha: builtins.float = 1
    ) -> Tensor:
        """``beta * self + alpha * (mat1 @ mat2)`` for 2-D ``mat1`` and ``mat2``."""
        return self._added_product("addmm", mat1, mat2, 2, beta, alpha)

    def baddbmm(
        self,
        batch1: Tensor,
        batch2: Tensor,
        *,
        beta: builtins.float = 1,
        alpha: builtins.float = 1,
    ) -> Tensor:
        """``beta * self + alpha * bmm(batch1, batch2)`` (attention scores with a bias)."""
        return self._added_product("baddbmm", batch1, batch2, 3, beta, alpha)

    def norm(
        self,
        p: str | builtins.float = "fro",
        dim: IntOrInts | None = None,
        keepdim: builtins.bool = False,
        dtype: DTypeLike | None = None,
    ) -> Tensor:
        """The ``p``-norm over ``dim`` (all elements when None), as torch.norm: ``"fro"`` is
        the 2-norm of the elements, a number ``p`` the vector p-norm (inf: max |x|)."""
        if isinstance(p, str):
            if p != "fro":
                raise ValueError(
                    f"norm: p={p!r} is not supported; use 'fro' or a number (for the nuclear "
                    "norm, firefly.linalg.matrix_norm(x, 'nuc'), as torch recommends)"
                )
            p = 2
        return vector_norm("norm", self, p, dim, keepdim, dtype)

    def __getitem__(self, index: Any) -> Tensor:
        items = index if isinstance(index, tuple) else (index,)
        advanced = False
        for item in items:
            if _is_advanced_index(item):
                advanced = True
                break
        if self._data.dtype not in FLOAT_DTYPES:
            if advanced:
                attrs = discrete.advanced_index(self.shape, _arrays_in(index))
                return Tensor._wrap(self._data.reshape(-1)[attrs["index"]])
            return self._plain("getitem", lambda a: a[index])
        if advanced:
            return _op("take", self, **discrete.advanced_index(self.shape, _arrays_in(index)))
        return _op("getitem", self, index=index)

    def __setitem__(self, index: Any, value: Operand) -> None:
        """``x[index] = value`` writes in place, under the in-place rules (see ``add_``)."""
        if autograd.is_grad_enabled() and (
            self._requires_grad or getattr(value, "_requires_grad", False)
        ):
            raise RuntimeError(
                "__setitem__: assigning into a tensor that requires grad (or a value that does) "
                "would need a recorded in-place op, which firefly does not record for "
                "indexing; write it under firefly.no_grad(), or build the result with "
                "firefly.where()"
            )
        if isinstance(index, Tensor) or (
            isinstance(index, tuple) and any(isinstance(i, Tensor) for i in index)
        ):
            items = index if isinstance(index, tuple) else (index,)
            index = tuple(i._data if isinstance(i, Tensor) else i for i in items)
            index = index if len(index) > 1 or not isinstance(index[0], np.ndarray) else index[0]
        array = value._data if isinstance(value, Tensor) else value
        try:
            self._data[index] = array
        except (IndexError, ValueError) as exc:
            raise type(exc)(
                f"__setitem__: index {index!r} into a tensor of shape {self.shape}: {exc}"
            ) from None
        autograd.mark_modified(self._data)

    # ------------------------------------------------------------------ in place
    def _write(self, name: str, value: Operand) -> Tensor:
        """Write ``value`` (a Tensor, array or number broadcastable to this shape) into this
        tensor's own storage, recording nothing."""
        new = value._data if isinstance(value, Tensor) else np.asarray(value)
        try:
            np.copyto(self._data, np.broadcast_to(new, self._data.shape), casting="same_kind")
        except (ValueError, TypeError) as exc:
            raise type(exc)(
                f"{name}: cannot write a value of shape {new.shape} ({new.dtype}) into a tensor of "
                f"shape {self.shape} ({self.dtype}): {exc}"
            ) from None
        autograd.mark_modified(self._data)
        return self

    def _in_place(self, name: str, result_of: Callable[[], Tensor]) -> Tensor:
        """PyTorch's leaf rule, then ``result_of()`` written into this tensor."""
        if self._node is None and self._requires_grad and autograd.is_grad_enabled():
            raise RuntimeError(
                f"{name}: a leaf tensor that requires grad is being used in an in-place operation. "
                "Update it under `with firefly.no_grad():` (as an optimizer does), or use the "
                "out-of-place form and a new name"
            )
        result = result_of()
        if result.shape != self._data.shape:
            raise RuntimeError(
                f"{name}: the result has shape {result.shape}, which does not match the shape "
                f"{self.shape} of the tensor written in place (broadcasting may not grow it)"
            )
        if result.dtype != self._data.dtype:
            if self._data.dtype not in FLOAT_DTYPES:
                raise TypeError(
                    f"{name}: the result is {result.dtype} and cannot be written "
                    f"into a {self.dtype} tensor"
                )
            result = _op("cast", result, dtype=self._data.dtype)
        return autograd.write_in_place(self, result)

    def add_(self, other: Operand, alpha: builtins.float = 1) -> Tensor:
        return self._in_place("add_", lambda: self + (other if alpha == 1 else other * alpha))

    def sub_(self, other: Operand, alpha: builtins.float = 1) -> Tensor:
        return self._in_place("sub_", lambda: self - (other if alpha == 1 else other * alpha))

    def mul_(self, other: Operand) -> Tensor:
        return self._in_place("mul_", lambda: self * other)

    def div_(self, other: Operand) -> Tensor:
        return self._in_place("div_", lambda: self / other)

    def clamp_(self, min: Operand | None = None, max: Operand | None = None) -> Tensor:
        return self._in_place("clamp_", lambda: self.clamp(min, max))

    clip_ = clamp_

    def __iadd__(self, other: Operand) -> Tensor:
        return self._in_place("+=", lambda: self + other)

    def __isub__(self, other: Operand) -> Tensor:
        return self._in_place("-=", lambda: self - other)

    def __imul__(self, other: Operand) -> Tensor:
        return self._in_place("*=", lambda: self * other)

    def __itruediv__(self, other: Operand) -> Tensor:
        return self._in_place("/=", lambda: self / other)

    def zero_(self) -> Tensor:
        return self.fill_(0)

    def fill_(self, value: Operand) -> Tensor:
        """Set every element to ``value`` in place (recording nothing, as under ``no_grad``)."""
        self._check_plain_write("fill_")
        return self._write("fill_", value)

    def copy_(self, src: Operand) -> Tensor:
        """Copy ``src`` (broadcast to this shape, cast to this dtype) into this tensor in place.
        A ``src`` that requires grad is recorded: gradients flow from this tensor to ``src``."""
        if autograd.is_grad_enabled() and isinstance(src, Tensor) and src._requires_grad:
            return self._in_place(
                "copy_", lambda: src.expand(self.shape) if src.shape != self.shape else src.clone()
            )
        self._check_plain_write("copy_")
        return self._write("copy_", src)

    def _check_plain_write(self, name: str) -> None:
        """fill_, zero_ and copy_ overwrite without a recorded op: refused where a graph needs
        one."""
        if self._requires_grad and autograd.is_grad_enabled():
            if self._node is None:
                raise RuntimeError(
                    f"{name}: a leaf tensor that requires grad is being used in an in-place "
                    "operation. Update it under `with firefly.no_grad():`"
                )
            raise RuntimeError(
                f"{name}: this tensor was computed by '{self._node.op.name}' in a recorded graph, "
                f"and {name} would cut it off; write into a detach()ed copy, or build the value "
                "with firefly.where() or firefly.full_like()"
            )

    # ------------------------------------------------------------------ torch's surface
    # .data, devices, contiguity, new_* and whole-tensor comparisons: PyTorch names over what
    # exists (no new ops; nothing here records a graph).
    @property
    def data(self) -> Tensor:
        """A Tensor sharing this tensor's storage, cut off from the graph and never requiring
        grad, as PyTorch's ``.data``: ``p.data.add_(u)`` and ``init.normal_(w.data)`` write into
        this tensor. Writes through it count as in-place writes (a recorded op that saved this
        storage then raises at backward, where PyTorch would silently use the new values). For
        the ndarray, use ``numpy()``."""
        return Tensor._wrap(self._data)

    @data.setter
    def data(self, value: Tensor | np.ndarray) -> None:
        """``t.data = v``: ``v``'s value becomes this tensor's, recording nothing. A value of the
        same shape and dtype is written into the existing storage (views of it, such as an
        optimizer's flat buffer, see it); any other shape or dtype replaces the storage with
        ``v``'s, as PyTorch does."""
        if not isinstance(value, (Tensor, np.ndarray)):
            raise TypeError(
                f"data: the new value must be a Tensor (or an ndarray), got {type(value).__name__}"
            )
        array = value._data if isinstance(value, Tensor) else as_array(value)
        if array.shape == self._data.shape and array.dtype == self._data.dtype:
            self._write("data", array)
            return
        tensor_dtype("data", array.dtype)
        if self._requires_grad and array.dtype not in FLOAT_DTYPES:
            raise TypeError(
                f"data: a tensor that requires grad cannot take {array.dtype} data (shape "
                f"{array.shape}); only float32 and float64 tensors can require grad"
            )
        autograd.mark_modified(self._data)
        self._data = np.ascontiguousarray(array)

    @property
    def device(self) -> devices.device:
        """``device(type='cpu')``: firefly tensors live on the CPU."""
        return devices.CPU

    is_cuda = False
    is_mps = False

    def cpu(self, memory_format: object = None) -> Tensor:
        """``self``: the tensor is on the CPU already."""
        return self

    def cuda(
        self,
        device: devices.DeviceLike = None,
        non_blocking: builtins.bool = False,
        memory_format: object = None,
    ) -> None:
        """Raises a ValueError: firefly runs on the CPU only."""
        devices.refuse_cuda("cuda()", device)

    def get_device(self) -> builtins.int:
        """-1, PyTorch's answer for a CPU tensor."""
        return -1

    def type(
        self, dtype: DTypeLike | None = None, non_blocking: builtins.bool = False
    ) -> str | Tensor:
        """``type(dtype)`` converts as ``to(dtype)`` (torch's type names such as
        ``"torch.FloatTensor"`` are accepted); ``type()`` returns that name for this dtype."""
        if dtype is None:
            return "torch." + _TYPE_NAMES[self._data.dtype]
        if isinstance(dtype, str) and dtype.removeprefix("torch.") in _TYPE_NAMES.values():
            name = dtype.removeprefix("torch.")
            dtype = next(d for d, n in _TYPE_NAMES.items() if n == name)
        return self.to(dtype)

    def contiguous(self, memory_format: object = None) -> Tensor:
        """``self``: firefly tensors are always C-contiguous."""
        return self

    def is_contiguous(self, memory_format: object = None) -> builtins.bool:
        return True

    def element_size(self) -> builtins.int:
        """Bytes per element."""
        return self._data.itemsize

    nelement = numel

    def t(self) -> Tensor:
        """The transpose of a tensor of at most 2 dimensions (``self`` when fewer than 2)."""
        if self._data.ndim > 2:
            raise ValueError(
                f"t(): expects a tensor with <= 2 dimensions, got shape {self.shape}; use "
                "transpose(dim0, dim1) or permute"
            )
        return self if self._data.ndim < 2 else self.transpose(0, 1)

    def _new(
        self,
        name: str,
        array: np.ndarray,
        dtype: DTypeLike | None,
        device: devices.DeviceLike,
        requires_grad: builtins.bool,
    ) -> Tensor:
        devices.as_device(name, device)
        dtype = self._data.dtype if dtype is None else tensor_dtype(name, dtype)
        result = Tensor._wrap(np.ascontiguousarray(array, dtype=dtype))
        if requires_grad:
            result.requires_grad = True
        return result

    def new_zeros(
        self,
        *size: ShapeArg,
        dtype: DTypeLike | None = None,
        device: devices.DeviceLike = None,
        requires_grad: builtins.bool = False,
    ) -> Tensor:
        """Zeros of ``size`` with this tensor's dtype (unless ``dtype`` says otherwise)."""
        return self._new(
            "new_zeros", np.zeros(_sizes("new_zeros", size)), dtype, device, requires_grad
        )

    def new_ones(
        self,
        *size: ShapeArg,
        dtype: DTypeLike | None = None,
        device: devices.DeviceLike = None,
        requires_grad: builtins.bool = False,
    ) -> Tensor:
        return self._new(
            "new_ones", np.ones(_sizes("new_ones", size)), dtype, device, requires_grad
        )

    def new_empty(
        self,
        *size: ShapeArg,
        dtype: DTypeLike | None = None,
        device: devices.DeviceLike = None,
        requires_grad: builtins.bool = False,
    ) -> Tensor:
        return self._new(
            "new_empty", np.empty(_sizes("new_empty", size)), dtype, device, requires_grad
        )

    def new_full(
        self,
        size: Sequence[builtins.int],
        fill_value: builtins.float,
        dtype: DTypeLike | None = None,
        device: devices.DeviceLike = None,
        requires_grad: builtins.bool = False,
    ) -> Tensor:
        if not isinstance(fill_value, (numbers.Number, np.generic)):
            raise TypeError(
                f"new_full: fill_value must be a number, got "
                f"{type(fill_value).__name__} {fill_value!r}"
            )
        shape = _sizes("new_full", (size,))
        return self._new("new_full", np.full(shape, fill_value), dtype, device, requires_grad)

    def new_tensor(
        self,
        data: object,
        dtype: DTypeLike | None = None,
        device: devices.DeviceLike = None,
        requires_grad: builtins.bool = False,
    ) -> Tensor:
        """A copy of ``data`` with this tensor's dtype (unless ``dtype`` says otherwise)."""
        dtype = self._data.dtype if dtype is None else tensor_dtype("new_tensor", dtype)
        array = data._data if isinstance(data, Tensor) else as_array(data, dtype)
        return self._new("new_tensor", array.copy(), dtype, device, requires_grad)

    def equal(self, other: Tensor | np.ndarray | builtins.float) -> builtins.bool:
        """True when ``other`` has this shape and equal elements (PyTorch's ``torch.equal``)."""
        other = _comparand("equal", other)
        return self._data.shape == other.shape and bool(np.array_equal(self._data, other))

    def isclose(
        self,
        other: Tensor | np.ndarray | builtins.float,
        rtol: builtins.float = 1e-05,
        atol: builtins.float = 1e-08,
        equal_nan: builtins.bool = False,
    ) -> Tensor:
        """Elementwise ``|self - other| <= atol + rtol * |other|`` as a bool tensor (no graph)."""
        other = _comparand("isclose", other)
        _tolerances("isclose", rtol, atol)
        try:
            close = np.isclose(self._data, other, rtol=rtol, atol=atol, equal_nan=equal_nan)
        except ValueError:
            raise ValueError(
                f"isclose: shapes {self.shape} and {other.shape} do not broadcast"
            ) from None
        return Tensor._wrap(np.ascontiguousarray(close))

    def allclose(
        self,
        other: Tensor | np.ndarray | builtins.float,
        rtol: builtins.float = 1e-05,
        atol: builtins.float = 1e-08,
        equal_nan: builtins.bool = False,
    ) -> builtins.bool:
        """True when every element ``isclose``."""
        _tolerances("allclose", rtol, atol)
        return bool(self.isclose(other, rtol, atol, equal_nan)._data.all())


def vector_norm(
    method: str,
    x: Tensor,
    ord: object,  # checked below: linalg.norm passes its ord through
    dim: int | Sequence[int] | None,
    keepdim: bool,
    dtype: DTypeLike | None,
) -> Tensor:
    """The vector ``ord``-norm of ``x`` over ``dim`` (None: every element), composed of
    recorded ops (``Tensor.norm``, ``firefly.linalg.vector_norm``, ``F.normalize``). Where the
    norm is 0 its gradient is 0, as in torch: the root is taken only where the sum is positive."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{method}: input must be a Tensor, got {type(x).__name__}")
    if dtype is not None:
        x = x.to(dtype)
    if x._data.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{method}: input must be a float tensor, got {x.dtype} (shape {x.shape}); "
            "convert it with .float()"
        )
    if isinstance(ord, (bool, np.bool_)) or not isinstance(ord, numbers.Real):
        raise TypeError(f"{method}: ord must be a number, got {type(ord).__name__} {ord!r}")
    if isinstance(dim, list):
        dim = tuple(dim)
    if dim is not None:
        items = dim if isinstance(dim, tuple) else (dim,)
        axes = [_dim_index(method, d, x.ndim, x.shape) for d in items]
        if len(set(axes)) != len(axes):
            raise ValueError(f"{method}: dim {dim} names a dimension more than once")
    ord = float(ord)
    if ord in (np.inf, -np.inf):
        if x._data.size == 0:
            raise ValueError(
                f"{method}: the inf-norm of an empty tensor (shape {x.shape}) is undefined"
            )
        magnitude = x.abs()
        if ord > 0:
            return magnitude.amax(dim=dim, keepdim=keepdim)
        return magnitude.amin(dim=dim, keepdim=keepdim)
    if ord == 0:  # the count of non-zero elements: no gradient, as in torch
        return (x != 0).sum(dim=dim, keepdim=keepdim).to(x.dtype)
    if ord == 1:
        return x.abs().sum(dim=dim, keepdim=keepdim)
    total = (x * x if ord == 2 else x.abs() ** ord).sum(dim=dim, keepdim=keepdim)
    positive = total._data > 0
    if positive.all():
        return total.sqrt() if ord == 2 else total ** (1.0 / ord)
    safe = _op("where", total, 1.0, condition=positive)
    root = safe.sqrt() if ord == 2 else safe ** (1.0 / ord)
    return _op("where", root, 0.0, condition=positive)


autograd.bind_tensor_type(Tensor)
