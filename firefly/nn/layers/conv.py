"""Convolution layers: Conv1d and Conv2d, torch's arguments, weight layout and initialization."""

import math

import numpy as np

from firefly import random
from firefly.nn import functional as F
from firefly.nn.module import Module
from firefly.nn.parameter import Parameter
from firefly.ops.conv import pair
from firefly.validation import as_int


class _ConvNd(Module):
    spatial = 2
    functional = None

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        bias=True,
        padding_mode="zeros",
        dtype=None,
    ):
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

    def forward(self, x):
        return type(self).functional(
            x,
            self.weight.tensor,
            None if self.bias is None else self.bias.tensor,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
        )

    def extra_repr(self):
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
