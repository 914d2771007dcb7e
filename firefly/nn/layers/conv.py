"""Convolution layers: Conv1d, Conv2d, ConvTranspose1d and ConvTranspose2d, torch's arguments,
weight layouts and initialization."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import DTypeLike

from firefly import random
from firefly.nn import functional as F
from firefly.nn.module import Module
from firefly.nn.parameter import Parameter
from firefly.ops.conv import pair
from firefly.tensor import Tensor
from firefly.validation import as_int


class _ConvNd(Module):
    spatial = 2
    functional: Callable[..., Tensor]  # F.conv*, set by each subclass

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] | str = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        dtype: DTypeLike | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.in_channels = as_int(name, "in_channels", in_channels, 1)
        self.out_channels = as_int(name, "out_channels", out_channels, 1)
        self.groups = as_int(name, "groups", groups, 1)
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(
                f"{name}: in_channels ({in_channels}) and out_channels ({out_channels}) must both "
                f"be divisible by groups ({groups})"
            )
        if padding_mode != "zeros":
            raise NotImplementedError(
                f"{name}: only padding_mode='zeros' is supported, got {padding_mode!r}"
            )
        self.kernel_size = pair(name, "kernel_size", kernel_size, 1, self.spatial)
        self.stride = pair(name, "stride", stride, 1, self.spatial)
        self.dilation = pair(name, "dilation", dilation, 1, self.spatial)
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(
                    f"{name}: padding must be an int, a tuple, 'same' or 'valid', got {padding!r}"
                )
            if padding == "same" and self.stride != (1,) * self.spatial:
                raise ValueError(f"{name}: padding='same' needs stride 1, got stride {stride}")
            self.padding = padding
        else:
            self.padding = pair(name, "padding", padding, 0, self.spatial)
        self.padding_mode = padding_mode
        dtype = np.dtype(dtype or np.float32)
        # torch's default: kaiming_uniform_(a=sqrt(5)) for the weight, which is U(-1/sqrt(fan_in),
        # 1/sqrt(fan_in)), and the same bound for the bias.
        fan_in = self.in_channels // self.groups * math.prod(self.kernel_size)
        bound = 1.0 / math.sqrt(fan_in)
        rng = random.generator()
        shape = (self.out_channels, self.in_channels // self.groups) + self.kernel_size
        self.weight = Parameter(rng.uniform(-bound, bound, size=shape), dtype=dtype)
        self.bias = (
            Parameter(rng.uniform(-bound, bound, size=self.out_channels), dtype=dtype)
            if bias
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        return type(self).functional(
            x,
            self.weight.tensor,
            None if self.bias is None else self.bias.tensor,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
        )

    def extra_repr(self) -> str:
        text = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        )
        if self.padding != (0,) * self.spatial:
            text += f", padding={self.padding}"
        if self.dilation != (1,) * self.spatial:
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        return text


class Conv2d(_ConvNd):
    """``Conv2d(in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
    groups=1, bias=True)`` over (N, C, H, W) or (C, H, W); weight (out, in/groups, kH, kW)."""

    spatial = 2
    functional = staticmethod(F.conv2d)


class Conv1d(_ConvNd):
    """``Conv1d(in_channels, out_channels, kernel_size, ...)`` over (N, C, L) or (C, L)."""

    spatial = 1
    functional = staticmethod(F.conv1d)


class _ConvTransposeNd(Module):
    spatial = 2
    functional: Callable[..., Tensor]  # F.conv*, set by each subclass

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        output_padding: int | Sequence[int] = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: int | Sequence[int] = 1,
        padding_mode: str = "zeros",
        dtype: DTypeLike | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.in_channels = as_int(name, "in_channels", in_channels, 1)
        self.out_channels = as_int(name, "out_channels", out_channels, 1)
        self.groups = as_int(name, "groups", groups, 1)
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(
                f"{name}: in_channels ({in_channels}) and out_channels ({out_channels}) must both "
                f"be divisible by groups ({groups})"
            )
        if padding_mode != "zeros":
            raise ValueError(
                f"{name}: only padding_mode='zeros' is supported, got {padding_mode!r}"
            )
        self.kernel_size = pair(name, "kernel_size", kernel_size, 1, self.spatial)
        self.stride = pair(name, "stride", stride, 1, self.spatial)
        self.padding = pair(name, "padding", padding, 0, self.spatial)
        self.dilation = pair(name, "dilation", dilation, 1, self.spatial)
        self.output_padding = pair(name, "output_padding", output_padding, 0, self.spatial)
        if any(o >= s for o, s in zip(self.output_padding, self.stride)):
            raise ValueError(
                f"{name}: output_padding {self.output_padding} must be smaller than stride "
                f"{self.stride}"
            )
        self.padding_mode = padding_mode
        dtype = np.dtype(dtype or np.float32)
        # torch's default, kaiming_uniform_(a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for
        # weight and bias, fan_in read from the weight's dimension 1 (out_channels / groups).
        fan_in = self.out_channels // self.groups * math.prod(self.kernel_size)
        bound = 1.0 / math.sqrt(fan_in)
        rng = random.generator()
        shape = (self.in_channels, self.out_channels // self.groups) + self.kernel_size
        self.weight = Parameter(rng.uniform(-bound, bound, size=shape), dtype=dtype)
        self.bias = (
            Parameter(rng.uniform(-bound, bound, size=self.out_channels), dtype=dtype)
            if bias
            else None
        )

    def _output_padding(self, x: Tensor, output_size: Sequence[int] | None) -> tuple[int, ...]:
        """torch's: the output_padding that gives ``output_size`` (its last ``spatial``
        entries), which must lie within ``stride - 1`` of the smallest output."""
        if output_size is None:
            return self.output_padding
        name = type(self).__name__
        sizes = [int(s) for s in output_size][-self.spatial :]
        if len(sizes) != self.spatial:
            raise ValueError(
                f"{name}: output_size must end in {self.spatial} spatial sizes, got {output_size!r}"
            )
        padding = []
        for i, size in enumerate(sizes):
            n = np.shape(x)[-self.spatial + i]
            smallest = (
                (n - 1) * self.stride[i]
                - 2 * self.padding[i]
                + self.dilation[i] * (self.kernel_size[i] - 1)
                + 1
            )
            if not smallest <= size < smallest + self.stride[i]:
                raise ValueError(
                    f"{name}: output_size {tuple(sizes)} is not reachable: dimension {i} must "
                    f"lie in [{smallest}, {smallest + self.stride[i] - 1}] for input size {n}"
                )
            padding.append(size - smallest)
        return tuple(padding)

    def forward(self, x: Tensor, output_size: Sequence[int] | None = None) -> Tensor:
        return type(self).functional(
            x,
            self.weight.tensor,
            None if self.bias is None else self.bias.tensor,
            self.stride,
            self.padding,
            self._output_padding(x, output_size),
            self.groups,
            self.dilation,
        )

    def extra_repr(self) -> str:
        text = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        )
        if self.padding != (0,) * self.spatial:
            text += f", padding={self.padding}"
        if self.output_padding != (0,) * self.spatial:
            text += f", output_padding={self.output_padding}"
        if self.dilation != (1,) * self.spatial:
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        return text


class ConvTranspose2d(_ConvTransposeNd):
    """``ConvTranspose2d(in_channels, out_channels, kernel_size, stride=1, padding=0,
    output_padding=0, groups=1, bias=True, dilation=1)`` over (N, C, H, W) or (C, H, W); weight
    (in, out/groups, kH, kW); ``forward(x, output_size=None)``."""

    spatial = 2
    functional = staticmethod(F.conv_transpose2d)


class ConvTranspose1d(_ConvTransposeNd):
    """``ConvTranspose1d(in_channels, out_channels, kernel_size, ...)`` over (N, C, L) or
    (C, L)."""

    spatial = 1
    functional = staticmethod(F.conv_transpose1d)
