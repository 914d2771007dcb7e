"""Padding layers, torch's: ZeroPad1d/2d, ConstantPad1d/2d, ReflectionPad1d/2d and
ReplicationPad1d/2d, each ``F.pad`` with its mode."""

from __future__ import annotations

from collections.abc import Sequence

from firefly.nn import functional as F
from firefly.nn.module import Module
from firefly.ops.conv import pair
from firefly.tensor import Tensor


class _PadNd(Module):
    spatial = 2
    mode = "constant"

    def __init__(self, padding: int | Sequence[int], value: float = 0.0) -> None:
        super().__init__()
        self.padding = pair(type(self).__name__, "padding", padding, 0, 2 * self.spatial)
        self.value = float(value)

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "constant":
            return F.pad(x, self.padding, "constant", self.value)
        return F.pad(x, self.padding, self.mode)

    def extra_repr(self) -> str:
        text = f"{self.padding}"
        return text + f", value={self.value}" if self.mode == "constant" else text


class ConstantPad1d(_PadNd):
    """``ConstantPad1d(padding, value)``: padding an int or (left, right)."""

    spatial = 1


class ConstantPad2d(_PadNd):
    """``ConstantPad2d(padding, value)``: padding an int or (left, right, top, bottom)."""


class ZeroPad1d(ConstantPad1d):
    """``ZeroPad1d(padding)``."""

    def __init__(self, padding: int | Sequence[int]) -> None:
        super().__init__(padding, 0.0)


class ZeroPad2d(ConstantPad2d):
    """``ZeroPad2d(padding)``: padding an int or (left, right, top, bottom)."""

    def __init__(self, padding: int | Sequence[int]) -> None:
        super().__init__(padding, 0.0)


class ReflectionPad1d(_PadNd):
    """``ReflectionPad1d(padding)``: the input mirrored at its edges (the edge not repeated)."""

    spatial, mode = 1, "reflect"


class ReflectionPad2d(_PadNd):
    """``ReflectionPad2d(padding)``."""

    mode = "reflect"


class ReplicationPad1d(_PadNd):
    """``ReplicationPad1d(padding)``: the edge values repeated."""

    spatial, mode = 1, "replicate"


class ReplicationPad2d(_PadNd):
    """``ReplicationPad2d(padding)``."""

    mode = "replicate"
