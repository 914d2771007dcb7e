"""Parameter: a leaf Tensor owned by a Module, which keeps its identity (and storage) while its
value changes."""

from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from firefly import autograd
from firefly.dtypes import float_dtype
from firefly.tensor import Tensor, as_array


class Parameter(Tensor):
    """A Tensor that a Module registers and trains: ``Parameter(data=None, shape=None,
    trainable=True, dtype=None, *, requires_grad=None)``.

    It is a Tensor in every way (``x @ p``, ``p.numel()``, ``p.requires_grad = False``).
    Give ``data`` (an ndarray, a Tensor, a nested list or a number; it is copied, so the
    parameter never writes into the caller's array) or ``shape`` (zeros). Without ``dtype``,
    ``data`` follows the Tensor rules (float32 and float64 arrays keep their dtype, anything
    else becomes float32) and ``shape`` makes float32. ``requires_grad`` (PyTorch's name) and
    ``trainable`` (firefly's older name) are the same flag; ``Parameter(t, False)`` reads as
    PyTorch's ``Parameter(t, requires_grad=False)``.

    Two older spellings stay: ``.tensor`` is the parameter itself, and ``update(value)`` writes a
    new value into the same array, so views of it (an optimizer's flat buffer, a saved
    reference) see the change.
    """

    __slots__ = ()

    def __init__(
        self,
        data: Any = None,
        shape: int | tuple[int, ...] | list[int] | bool | None = None,
        trainable: bool = True,
        dtype: DTypeLike | None = None,
        *,
        requires_grad: bool | None = None,
    ) -> None:
        if isinstance(shape, bool):  # PyTorch's Parameter(data, requires_grad): no shape is a bool
            shape, requires_grad = None, shape
        if (data is None) == (shape is None):
            raise ValueError("Parameter: give exactly one of data= or shape=")
        if dtype is not None:
            dtype = float_dtype("Parameter", dtype)
        if shape is not None:
            if isinstance(shape, (int, np.integer)):
                shape = (shape,)
            try:
                array = np.zeros(tuple(shape), dtype=dtype or np.float32)
            except (TypeError, ValueError) as exc:
                raise ValueError(
                    f"Parameter: shape must be a tuple of non-negative ints, got {shape!r} ({exc})"
                ) from None
        else:
            array = np.array(as_array(data, dtype), copy=True)
            float_dtype("Parameter", array.dtype)
        super().__init__(
            array, requires_grad=bool(trainable if requires_grad is None else requires_grad)
        )

    @property
    def tensor(self) -> "Parameter":
        """The parameter itself: ``param.tensor is param`` (an older spelling code still uses)."""
        return self

    @property
    def trainable(self) -> bool:
        return self._requires_grad

    @trainable.setter
    def trainable(self, value: bool) -> None:
        self.requires_grad = value

    def update(self, value: Any) -> None:
        """Write ``value`` (a Tensor, an ndarray or a number) into the parameter in place.

        The shape must match; the value is cast to the parameter's dtype. The parameter stays
        a leaf, cut off from whatever graph produced ``value``; its ``.grad`` is kept.
        """
        new = value._data if isinstance(value, Tensor) else np.asarray(value)
        if new.shape != self.shape:
            raise ValueError(
                f"Parameter.update: the new value has shape {new.shape} but the parameter has "
                f"shape {self.shape}; reshape it first"
            )
        if new.dtype.kind not in "fiub":
            raise TypeError(
                f"Parameter.update: the new value must hold numbers, got dtype {new.dtype}"
            )
        np.copyto(self._data, new, casting="unsafe")
        autograd.mark_modified(self._data)

    def __repr__(self) -> str:
        body = np.array2string(self._data, separator=", ", prefix="Parameter(")
        extra = "" if self.trainable else ", trainable=False"
        return f"Parameter({body}, dtype={self.dtype}{extra})"
