"""Parameter: a trainable array that keeps its identity (and storage) while its value changes."""
import numpy as np

from firefly.tensor import FLOAT_DTYPES, Tensor, as_array



def _float_dtype(dtype):
    dtype = np.dtype(dtype)
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"Parameter: dtype must be float32 or float64, got {dtype}")
    return dtype


class Parameter:
    """A leaf Tensor owned by a Module: ``Parameter(data=None, shape=None, trainable=True, dtype=None)``.

    Give ``data`` (an ndarray, a Tensor, a nested list or a number; it is copied, so the
    parameter never writes into the caller's array) or ``shape`` (zeros). Without ``dtype``,
    ``data`` follows the Tensor rules (float32 and float64 arrays keep their dtype, anything
    else becomes float32) and ``shape`` makes float32.

    ``.tensor`` is the leaf that ops read and that collects ``.grad``; it requires grad when
    ``trainable``. ``update(value)`` writes a new value into the same array, so views of it
    (an optimizer's flat buffer, a saved reference) see the change.
    """

    __slots__ = ("tensor",)

    def __init__(self, data=None, shape=None, trainable=True, dtype=None):
        if (data is None) == (shape is None):
            raise ValueError("Parameter: give exactly one of data= or shape=")
        if dtype is not None:
            dtype = _float_dtype(dtype)
        if shape is not None:
            if isinstance(shape, (int, np.integer)):
                shape = (shape,)
            try:
                array = np.zeros(tuple(shape), dtype=dtype or np.float32)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"Parameter: shape must be a tuple of non-negative ints, got {shape!r} ({exc})") from None
        else:
            array = np.array(as_array(data, dtype), copy=True)
            _float_dtype(array.dtype)
        self.tensor = Tensor(array, requires_grad=bool(trainable))

    @property
    def trainable(self):
        return self.tensor.requires_grad

    @trainable.setter
    def trainable(self, value):
        self.tensor.requires_grad = bool(value)

    @property
    def data(self):
        """The value as an ndarray (the parameter's own storage, not a copy)."""
        return self.tensor._data

    def numpy(self):
        return self.tensor._data

    @property
    def grad(self):
        return self.tensor.grad

    @property
    def shape(self):
        return self.tensor.shape

    @property
    def dtype(self):
        return self.tensor.dtype

    @property
    def size(self):
        return self.tensor._data.size

    def update(self, value):
        """Write ``value`` (a Tensor, an ndarray or a number) into the parameter in place.

        The shape must match; the value is cast to the parameter's dtype. The tensor stays a
        leaf, cut off from whatever graph produced ``value``; its ``.grad`` is kept.
        """
        new = value._data if isinstance(value, Tensor) else np.asarray(value)
        if new.shape != self.tensor.shape:
            raise ValueError(
                f"Parameter.update: the new value has shape {new.shape} but the parameter has "
                f"shape {self.tensor.shape}; reshape it first"
            )
        if new.dtype.kind not in "fiub":
            raise TypeError(f"Parameter.update: the new value must hold numbers, got dtype {new.dtype}")
        # Only the array's contents change: the tensor stays the same leaf, with no graph edge
        # to the ops that computed ``value``.
        np.copyto(self.tensor._data, new, casting="unsafe")

    def __repr__(self):
        body = np.array2string(self.tensor._data, separator=", ", prefix="Parameter(")
        extra = "" if self.trainable else ", trainable=False"
        return f"Parameter({body}, dtype={self.dtype}{extra})"
