"""Shape layers: Flatten, Unflatten and Identity."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from firefly import ops
from firefly.nn.module import Module
from firefly.tensor import Tensor


def _dim(name: str, dim: int, ndim: int) -> int:
    if not -ndim <= dim < ndim:
        raise ValueError(
            f"{name}: dimension {dim} is out of range for an input with {ndim} dimensions"
        )
    return dim % ndim


class Flatten(Module):
    """``Flatten(start_dim=1, end_dim=-1)``: dimensions start_dim..end_dim become one."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        if not shape:
            return ops.apply("reshape", x, shape=(1,))
        start, end = (
            _dim("Flatten", self.start_dim, len(shape)),
            _dim("Flatten", self.end_dim, len(shape)),
        )
        if start > end:
            raise ValueError(
                f"Flatten: start_dim {self.start_dim} comes after end_dim {self.end_dim} "
                f"for an input of shape {shape}"
            )
        new = shape[:start] + (math.prod(shape[start : end + 1]),) + shape[end + 1 :]
        return ops.apply("reshape", x, shape=new)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    """``Unflatten(dim, unflattened_size)``: dimension ``dim`` becomes ``unflattened_size``."""

    def __init__(self, dim: int, unflattened_size: Sequence[int]) -> None:
        super().__init__()
        self.dim, self.unflattened_size = dim, tuple(unflattened_size)

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        dim = _dim("Unflatten", self.dim, len(shape))
        sizes = self.unflattened_size
        if (
            sizes.count(-1) > 1
            or math.prod(s for s in sizes if s != -1) == 0
            or (-1 not in sizes and math.prod(sizes) != shape[dim])
            or (-1 in sizes and shape[dim] % math.prod(s for s in sizes if s != -1))
        ):
            raise ValueError(
                f"Unflatten: sizes {sizes} do not multiply to dimension {self.dim} of size "
                f"{shape[dim]} (input shape {shape})"
            )
        return ops.apply("reshape", x, shape=shape[:dim] + sizes + shape[dim + 1 :])

    def extra_repr(self) -> str:
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"


class Identity(Module):
    """Returns its input; accepts and ignores any constructor arguments, as torch."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def forward(self, x: Tensor) -> Tensor:
        return x
