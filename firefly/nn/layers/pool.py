"""Pooling layers: MaxPool1d/2d, AvgPool1d/2d, AdaptiveAvgPool1d/2d, AdaptiveMaxPool1d/2d,
MaxUnpool1d/2d."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from firefly.nn import functional as F
from firefly.nn.module import Module
from firefly.tensor import Tensor

# A 2-D pooling size: one int for both dims, or (height, width).
Size2d = int | tuple[int, int]
# A 1-D pooling size: an int, or a 1-tuple.
Size1d = int | tuple[int]


class MaxPool2d(Module):
    """``MaxPool2d(kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
    ceil_mode=False)``; stride defaults to kernel_size."""

    def __init__(
        self,
        kernel_size: Size2d,
        stride: Size2d | None = None,
        padding: Size2d = 0,
        dilation: Size2d = 1,
        return_indices: bool = False,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dilation, self.ceil_mode = dilation, ceil_mode
        self.return_indices = bool(return_indices)

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(
            x,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            self.ceil_mode,
            self.return_indices,
        )

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride or self.kernel_size}, "
            f"padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode={self.ceil_mode}"
        )


class AvgPool2d(Module):
    """``AvgPool2d(kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
    divisor_override=None)``."""

    def __init__(
        self,
        kernel_size: Size2d,
        stride: Size2d | None = None,
        padding: Size2d = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode, self.count_include_pad, self.divisor_override = (
            ceil_mode,
            count_include_pad,
            divisor_override,
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(
            x,
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
            self.divisor_override,
        )

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride or self.kernel_size}, "
            f"padding={self.padding}"
        )


class AdaptiveAvgPool2d(Module):
    """``AdaptiveAvgPool2d(output_size)``: an int, a pair, or None in a pair to keep that size."""

    def __init__(self, output_size: int | tuple[int | None, int | None] | None) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, x: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class MaxPool1d(Module):
    """``MaxPool1d(kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
    ceil_mode=False)`` over (N, C, L) or (C, L)."""

    def __init__(
        self,
        kernel_size: Size1d,
        stride: Size1d | None = None,
        padding: Size1d = 0,
        dilation: Size1d = 1,
        return_indices: bool = False,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dilation, self.ceil_mode = dilation, ceil_mode
        self.return_indices = bool(return_indices)

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool1d(
            x,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            self.ceil_mode,
            self.return_indices,
        )

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride or self.kernel_size}, "
            f"padding={self.padding}, dilation={self.dilation}, ceil_mode={self.ceil_mode}"
        )


class AvgPool1d(Module):
    """``AvgPool1d(kernel_size, stride=None, padding=0, ceil_mode=False,
    count_include_pad=True)`` over (N, C, L) or (C, L)."""

    def __init__(
        self,
        kernel_size: Size1d,
        stride: Size1d | None = None,
        padding: Size1d = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
    ) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool1d(
            x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad
        )

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride or self.kernel_size}, "
            f"padding={self.padding}"
        )


class _Adaptive(Module):
    functional: Callable[..., Tensor]  # F.adaptive_*, set by each subclass

    def __init__(
        self, output_size: int | tuple[int | None, ...] | None, return_indices: bool = False
    ) -> None:
        super().__init__()
        self.output_size = output_size
        self.return_indices = bool(return_indices)

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        if self.return_indices:
            return type(self).functional(x, self.output_size, True)
        return type(self).functional(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveAvgPool1d(_Adaptive):
    """``AdaptiveAvgPool1d(output_size)`` over (N, C, L) or (C, L)."""

    functional = staticmethod(F.adaptive_avg_pool1d)

    def __init__(self, output_size: Size1d) -> None:
        super().__init__(output_size)


class AdaptiveMaxPool1d(_Adaptive):
    """``AdaptiveMaxPool1d(output_size, return_indices=False)`` over (N, C, L) or (C, L)."""

    functional = staticmethod(F.adaptive_max_pool1d)


class AdaptiveMaxPool2d(_Adaptive):
    """``AdaptiveMaxPool2d(output_size, return_indices=False)``: an int, a pair, or None in a
    pair to keep that size."""

    functional = staticmethod(F.adaptive_max_pool2d)


class _MaxUnpool(Module):
    """Keeps kernel_size, stride (kernel_size when None) and padding as tuples of one per
    spatial dim, as torch's MaxUnpool layers do."""

    functional: Callable[..., Tensor]  # F.max_unpool1d/2d, set by each subclass
    spatial = 0

    def __init__(
        self,
        kernel_size: int | tuple[int, ...],
        stride: int | tuple[int, ...] | None = None,
        padding: int | tuple[int, ...] = 0,
    ) -> None:
        super().__init__()
        self.kernel_size = self._per_dim(kernel_size)
        self.stride = self.kernel_size if stride is None else self._per_dim(stride)
        self.padding = self._per_dim(padding)

    def _per_dim(self, value: int | tuple[int, ...]) -> tuple[int, ...]:
        return tuple(value) if isinstance(value, (tuple, list)) else (value,) * self.spatial

    def forward(
        self, input: Tensor, indices: Tensor, output_size: Sequence[int] | None = None
    ) -> Tensor:
        return type(self).functional(
            input, indices, self.kernel_size, self.stride, self.padding, output_size
        )

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxUnpool1d(_MaxUnpool):
    """``MaxUnpool1d(kernel_size, stride=None, padding=0)``; ``forward(input, indices,
    output_size=None)`` with the indices of ``MaxPool1d(return_indices=True)``."""

    functional = staticmethod(F.max_unpool1d)
    spatial = 1


class MaxUnpool2d(_MaxUnpool):
    """``MaxUnpool2d(kernel_size, stride=None, padding=0)``; ``forward(input, indices,
    output_size=None)`` with the indices of ``MaxPool2d(return_indices=True)``."""

    functional = staticmethod(F.max_unpool2d)
    spatial = 2
