"""Flat buffers: the parameters of one dtype packed into one contiguous value array, with a
gradient array and state arrays of the same layout.

Packing makes each parameter's array a view into the value buffer (its values are kept) and
gives it a gradient that is a view into the gradient buffer, so backward accumulates straight
into the buffer that a fused optimizer step, a gradient clip or a distributed all-reduce reads
in one pass. Members are laid out in the optimizer's parameter order, and that order is
param group by param group, so every group is one contiguous segment of each buffer.
"""

import itertools
import weakref
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from firefly.tensor import Tensor

# id(memory owner of a gradient buffer) -> its FlatBuffer, for code that meets a gradient view
# and wants the buffer it lives in (firefly.nn.utils.clip_grad_norm_). A buffer holds its
# arrays, so an id in here cannot be reused while its entry is alive.
_by_grad_buffer: "weakref.WeakValueDictionary[int, FlatBuffer]" = weakref.WeakValueDictionary()

HUGE_PAGE = 1 << 21


def _owner(array: np.ndarray) -> np.ndarray:
    """The array that owns ``array``'s memory (NumPy points every view's base at it)."""
    return array if array.base is None else array.base


def allocate(size: int, dtype: Any, fill: float | None = None) -> np.ndarray:
    """A flat buffer of ``size`` elements (filled with ``fill`` when given). One of 2 MiB or
    more starts on a 2 MiB boundary, so that Linux can back it with transparent huge pages
    (NumPy asks for them on large allocations): the streaming update kernels ran 25% faster
    on aligned buffers, fewer TLB misses."""
    dtype = np.dtype(dtype)
    nbytes = size * dtype.itemsize
    if nbytes < HUGE_PAGE:
        array = np.empty(size, dtype)
    else:
        raw = np.empty(nbytes + HUGE_PAGE, np.uint8)
        start = -raw.ctypes.data % HUGE_PAGE
        array = raw[start : start + nbytes].view(dtype)
    if fill is not None:
        array.fill(fill)
    return array


def buffer_of_grad(array: np.ndarray) -> "FlatBuffer | None":
    """The FlatBuffer whose gradient buffer ``array`` is a view of, or None."""
    return _by_grad_buffer.get(id(_owner(array))) if array.base is not None else None


class FlatBuffer:
    """The parameters of one dtype, packed.

    ``members`` are the indices of the parameters in the optimizer's order, ``tensors`` their
    leaf Tensors, ``segments`` one (param group index, first member, end member) triple per
    param group with members of this dtype. ``state`` holds flat state buffers by name
    (allocated on first use), ``live[name]`` which members' slots of it hold state (the others
    are zeros), ``steps`` how many updates each member has had.
    """

    def __init__(
        self,
        dtype: Any,
        members: Iterable[int],
        tensors: Iterable[Tensor],
        segments: Iterable[tuple[int, int, int]],
    ) -> None:
        self.dtype = np.dtype(dtype)
        self.members = list(members)
        self.tensors = list(tensors)
        self.segments = list(segments)
        self.last_run_arrays: Any = (
            None  # (values, arrays) of the last update's run arrays, for reuse
        )
        self.slot = {id(tensor): k for k, tensor in enumerate(self.tensors)}
        self.shapes = [t.shape for t in self.tensors]
        self.offsets = [0, *itertools.accumulate(t._data.size for t in self.tensors)]
        self.values = allocate(self.offsets[-1], self.dtype)
        self.grads = allocate(self.offsets[-1], self.dtype, fill=0)
        self.value_views: list[np.ndarray] = []
        self.grad_tensors: list[Tensor] = []
        for k, tensor in enumerate(self.tensors):
            view = self.view(self.values, k)
            view[...] = tensor._data
            tensor._data = view
            self.value_views.append(view)
            self.grad_tensors.append(Tensor._wrap(self.view(self.grads, k)))
        self.state: dict[str, np.ndarray] = {}
        self.live: dict[str, np.ndarray] = {}
        self.live_complete: set[str] = (
            set()
        )  # names whose ``live`` is all True (it only ever grows)
        self.steps = np.zeros(len(self.members), np.int64)
        _by_grad_buffer[id(_owner(self.grads))] = self

    def view(self, flat: np.ndarray, k: int) -> np.ndarray:
        """Member ``k``'s slot of a flat buffer, in the parameter's shape."""
        return flat[self.offsets[k] : self.offsets[k + 1]].reshape(self.shapes[k])

    def elements(self, first: int, end: int) -> slice:
        """The slice of a flat buffer that members ``first`` to ``end - 1`` occupy."""
        return slice(self.offsets[first], self.offsets[end])

    def buffer(self, name: str, fill: float = 0.0) -> np.ndarray:
        """Flat state buffer ``name``, allocated (filled with ``fill``) on first use."""
        flat = self.state.get(name)
        if flat is None:
            flat = self.state[name] = allocate(self.values.size, self.dtype, fill)
            self.live[name] = np.zeros(len(self.members), bool)
        return flat

    def install_grad(self, k: int) -> bool:
        """Make member ``k``'s ``.grad`` its gradient slot (copying in a gradient that backward
        or the user put elsewhere); returns False, changing nothing, when it has none."""
        tensor = self.tensors[k]
        grad = tensor.grad
        installed = self.grad_tensors[k]
        if grad is installed:
            return True
        if grad is None:
            return False
        array = grad._data if isinstance(grad, Tensor) else grad
        if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiu":
            raise TypeError(f"is a {type(grad).__name__}; it must be a float Tensor")
        if array.shape != self.shapes[k]:
            raise ValueError(f"has shape {array.shape}; it must have the parameter's shape")
        np.copyto(installed._data, array, casting="same_kind")
        tensor.grad = installed
        return True

    def rebind_value(self, k: int) -> None:
        """Copy a parameter array replaced behind the optimizer's back into its slot, and make
        the tensor a view of the slot again. Errors complete "parameter <index> ..."."""
        tensor = self.tensors[k]
        array = tensor._data
        if array.shape != self.shapes[k] or array.dtype != self.dtype:
            raise ValueError(
                f"now has shape {array.shape} and dtype {array.dtype}, but had shape "
                f"{self.shapes[k]} and dtype {self.dtype} when the optimizer was created; "
                "create a new optimizer after changing parameters"
            )
        self.value_views[k][...] = array
        tensor._data = self.value_views[k]

    def runs(
        self, active: Sequence[bool], first: int, end: int, split: Sequence[bool] | None = None
    ) -> list[tuple[slice, slice, int, bool]]:
        """(element slice, member slice, step count, split flag) for each maximal run of
        consecutive active members in ``first:end`` that share a step count (and ``split``
        flag, when given): the rows of one update kernel call, usually one per segment."""
        runs: list[tuple[slice, slice, int, bool]] = []
        k = first
        while k < end:
            if not active[k]:
                k += 1
                continue
            start, step = k, self.steps[k]
            flag = bool(split[k]) if split is not None else False
            while (
                k < end
                and active[k]
                and self.steps[k] == step
                and (split is None or bool(split[k]) == flag)
            ):
                k += 1
            runs.append((self.elements(start, k), slice(start, k), int(step), flag))
        return runs
