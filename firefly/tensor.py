"""Tensor: an ndarray, an optional gradient, and the graph edge that produced it.

Every operator and method dispatches by op name through ``firefly.ops``; no maths lives here.
"""
import numbers

import numpy as np

from firefly import autograd
from firefly.dtypes import FLOAT_DTYPES
from firefly.ops import registry


def as_array(data, dtype=None):
    """Convert ``data`` to a C-contiguous ndarray under firefly's dtype rules.

    Python numbers and integer or bool arrays become float32 (unless ``dtype`` says otherwise);
    float32 and float64 arrays keep their dtype and share memory when already contiguous.
    """
    if dtype is not None:
        try:
            dtype = np.dtype(dtype)
        except TypeError:
            raise TypeError(f"Tensor: {dtype!r} is not a dtype; use np.float32 or np.float64") from None
        if dtype.kind not in "fiub" or dtype.itemsize > 8 or dtype == np.float16:
            raise TypeError(f"Tensor: unsupported dtype {dtype}; use float32, float64 or an integer type")
    if isinstance(data, Tensor):
        arr = data._data
    elif isinstance(data, np.ndarray):
        arr = data
    elif isinstance(data, (numbers.Number, list, tuple, np.generic)) and not isinstance(data, complex):
        try:
            arr = np.array(data)
        except ValueError as exc:  # ragged nested lists
            raise ValueError(f"Tensor: data must be rectangular (nested lists of equal length): {exc}") from None
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
        raise TypeError(f"Tensor: data must hold numbers, got an array of dtype {arr.dtype} (shape {arr.shape})")
    if dtype is None:
        dtype = arr.dtype if arr.dtype in FLOAT_DTYPES else np.dtype(np.float32)
    return np.asarray(arr, dtype=dtype, order="C")


_ops = registry._ops


def _op(name, *args, **attrs):
    # Built-in names are always registered: the dict lookup is the whole dispatch cost.
    return autograd.apply(_ops.get(name) or registry.get(name), *args, **attrs)


class Tensor:
    """An n-dimensional array that can record the ops applied to it and differentiate them.

    ``Tensor(data, requires_grad=False, dtype=None)``: ``data`` is an ndarray, a nested list or
    a number. A Python number makes a float32 0-d tensor; a float32/float64 ndarray keeps its
    dtype and is not copied when contiguous (like ``torch.from_numpy``).
    """

    __slots__ = ("_data", "requires_grad", "grad", "_node", "__weakref__")
    __array_ufunc__ = None  # ndarray <op> Tensor defers to the Tensor's reflected operator

    def __init__(self, data, requires_grad=False, dtype=None):
        self._data = as_array(data, dtype)
        if requires_grad and self._data.dtype not in FLOAT_DTYPES:
            raise TypeError(f"Tensor: only float32 and float64 tensors can require grad, got {self._data.dtype}")
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self._node = None

    @classmethod
    def _wrap(cls, array, node=None):
        """A Tensor around an array that is already contiguous and of a valid dtype: a leaf, or
        the output of the recorded ``node``."""
        t = cls.__new__(cls)
        t._data, t.requires_grad, t.grad, t._node = array, node is not None, None, node
        return t

    # ------------------------------------------------------------------ attributes
    @property
    def shape(self):
        return self._data.shape

    @property
    def dtype(self):
        return self._data.dtype

    @property
    def ndim(self):
        return self._data.ndim

    def size(self, dim=None):
        """The shape, or the length of dimension ``dim`` (PyTorch's ``Tensor.size``)."""
        return self._data.shape if dim is None else self._data.shape[dim]

    def numel(self):
        return self._data.size

    def __len__(self):
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    @property
    def is_leaf(self):
        return self._node is None

    # ------------------------------------------------------------------ values and graph
    def numpy(self):
        """The underlying ndarray (shared, not copied)."""
        return self._data

    to_numpy = numpy

    def __array__(self, dtype=None, copy=None):
        if copy:
            return np.array(self._data, dtype=dtype, copy=True)
        return self._data if dtype is None else self._data.astype(dtype, copy=False)

    def item(self):
        if self._data.size != 1:
            raise ValueError(f"item(): only one-element tensors convert to a Python number, shape is {self.shape}")
        return self._data.item()

    def detach(self):
        """A new leaf sharing this tensor's data, cut off from the graph."""
        return Tensor._wrap(self._data)

    def backward(self, grad=None, retain_graph=False):
        autograd.backward(self, grad, retain_graph)

    def zero_grad(self):
        """Drop the accumulated gradient (PyTorch's default ``set_to_none=True``)."""
        self.grad = None

    def __repr__(self):
        body = np.array2string(self._data, separator=", ", prefix="Tensor(")
        extra = f", dtype={self.dtype}"
        if self._node is not None:
            extra += f", grad_fn=<{self._node.op.name}>"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"Tensor({body}{extra})"

    # ------------------------------------------------------------------ arithmetic
    def __add__(self, other):
        return _op("add", self, other)

    def __radd__(self, other):
        return _op("add", other, self)

    def __sub__(self, other):
        return _op("sub", self, other)

    def __rsub__(self, other):
        return _op("sub", other, self)

    def __mul__(self, other):
        return _op("mul", self, other)

    def __rmul__(self, other):
        return _op("mul", other, self)

    def __truediv__(self, other):
        return _op("div", self, other)

    def __rtruediv__(self, other):
        return _op("div", other, self)

    def __pow__(self, other):
        return _op("pow", self, other)

    def __rpow__(self, other):
        return _op("pow", other, self)

    def __matmul__(self, other):
        return _op("matmul", self, other)

    def __rmatmul__(self, other):
        return _op("matmul", other, self)

    def __neg__(self):
        return _op("neg", self)

    def matmul(self, other):
        return _op("matmul", self, other)

    # ------------------------------------------------------------------ elementwise
    def relu(self):
        return _op("relu", self)

    def exp(self):
        return _op("exp", self)

    def log(self):
        return _op("log", self)

    def sigmoid(self):
        return _op("sigmoid", self)

    def tanh(self):
        return _op("tanh", self)

    # ------------------------------------------------------------------ reductions
    def sum(self, axis=None, keepdims=False):
        return _op("sum", self, axis=axis, keepdims=keepdims)

    reduce_sum = sum

    def mean(self, axis=None, keepdims=False):
        return _op("mean", self, axis=axis, keepdims=keepdims)

    def max(self, axis=None, keepdims=False):
        return _op("max", self, axis=axis, keepdims=keepdims)

    def softmax(self, axis=-1):
        return _op("softmax", self, axis=axis)

    def log_softmax(self, axis=-1):
        return _op("log_softmax", self, axis=axis)

    # ------------------------------------------------------------------ shape
    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return _op("reshape", self, shape=shape)

    def permute(self, *axes):
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return _op("transpose", self, axes=axes)

    def transpose(self, dim0=-2, dim1=-1):
        """Swap two dimensions (PyTorch's meaning); ``permute`` takes a full order."""
        axes = list(range(self.ndim))
        try:
            axes[dim0], axes[dim1] = axes[dim1], axes[dim0]
        except (IndexError, TypeError):
            raise ValueError(
                f"transpose: dimensions ({dim0}, {dim1}) are out of range for a tensor of shape {self.shape}"
            ) from None
        return _op("transpose", self, axes=tuple(axes))

    @property
    def T(self):
        """All dimensions reversed, as ``ndarray.T``."""
        return _op("transpose", self, axes=tuple(range(self.ndim - 1, -1, -1)))

    def __getitem__(self, index):
        return _op("getitem", self, index=index)


autograd.bind_tensor_type(Tensor)
