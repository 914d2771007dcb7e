"""Normalization layers: BatchNorm1d, BatchNorm2d, LayerNorm and GroupNorm, with torch's
arguments, initialization (weight 1, bias 0) and buffers."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
from numpy.typing import DTypeLike

from firefly.nn import functional as F
from firefly.nn.module import Module
from firefly.nn.parameter import Parameter
from firefly.tensor import Tensor
from firefly.validation import as_int


def _check_eps(owner: str, eps: Any) -> float:
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not float(eps) >= 0:
        raise ValueError(f"{owner}: eps must be a non-negative number, got {eps!r}")
    return float(eps)


class _BatchNorm(Module):
    """Batch normalization over dimension 1. In ``train()`` mode the batch's statistics
    normalize and update the running ones (``running_mean``, ``running_var`` with torch's
    unbiased variance, ``num_batches_tracked``: buffers, saved in ``state_dict``); in
    ``eval()`` mode the running statistics normalize. ``momentum=None`` keeps a cumulative
    average. With ``track_running_stats=False`` the batch's statistics are always used."""

    input_dims: tuple[int, ...] = ()
    momentum: float | None
    weight: Parameter | None
    bias: Parameter | None
    # Buffers: Tensors with track_running_stats, else None.
    running_mean: Tensor | None
    running_var: Tensor | None
    num_batches_tracked: Tensor | None

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        dtype: DTypeLike | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.num_features = as_int(name, "num_features", num_features, 1)
        self.eps = _check_eps(name, eps)
        if momentum is not None and (
            isinstance(momentum, bool) or not isinstance(momentum, numbers.Real)
        ):
            raise ValueError(f"{name}: momentum must be a number or None, got {momentum!r}")
        self.momentum, self.affine, self.track_running_stats = (
            momentum,
            bool(affine),
            bool(track_running_stats),
        )
        dtype = np.dtype(dtype or np.float32)
        if self.affine:
            self.weight = Parameter(np.ones(self.num_features), dtype=dtype)
            self.bias = Parameter(np.zeros(self.num_features), dtype=dtype)
        else:
            self.weight = self.bias = None
        if self.track_running_stats:
            self.register_buffer("running_mean", Tensor(np.zeros(self.num_features, dtype=dtype)))
            self.register_buffer("running_var", Tensor(np.ones(self.num_features, dtype=dtype)))
            self.register_buffer(
                "num_batches_tracked", Tensor(np.array(0, dtype=np.int64), dtype=np.int64)
            )
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            # Tensors: registered so whenever track_running_stats is set.
            cast(Tensor, self.running_mean).numpy()[...] = 0.0
            cast(Tensor, self.running_var).numpy()[...] = 1.0
            cast(Tensor, self.num_batches_tracked).numpy()[...] = 0

    def forward(self, x: Tensor) -> Tensor:
        ndim = len(np.shape(x))
        if ndim not in self.input_dims:
            dims = " or ".join(f"{d}-D" for d in self.input_dims)
            raise ValueError(
                f"{type(self).__name__}: expected {dims} input, got shape {np.shape(x)}"
            )
        use_batch_stats = self.training or self.running_mean is None
        # In training the running statistics are updated; without tracking there are none.
        track = not self.training or self.track_running_stats
        # The op advances num_batches_tracked (and with momentum=None derives the cumulative
        # average's factor from it) in its kernel: a step that firefly.compile replays counts too.
        return F.batch_norm(
            x,
            self.running_mean if track else None,
            self.running_var if track else None,
            None if self.weight is None else self.weight.tensor,
            None if self.bias is None else self.bias.tensor,
            use_batch_stats,
            self.momentum,
            self.eps,
            num_batches_tracked=self.num_batches_tracked if track else None,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"track_running_stats={self.track_running_stats}"
        )


class BatchNorm1d(_BatchNorm):
    """``BatchNorm1d(num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True)``
    over (N, C) or (N, C, L)."""

    input_dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """``BatchNorm2d(num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True)``
    over (N, C, H, W)."""

    input_dims = (4,)


class LayerNorm(Module):
    """``LayerNorm(normalized_shape, eps=1e-5, elementwise_affine=True, bias=True)``: normalizes
    over the last ``len(normalized_shape)`` dimensions."""

    def __init__(
        self,
        normalized_shape: int | Sequence[int],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        dtype: DTypeLike | None = None,
    ) -> None:
        super().__init__()
        shape = (
            (normalized_shape,)
            if isinstance(normalized_shape, (int, np.integer))
            else tuple(normalized_shape)
        )
        self.normalized_shape = tuple(as_int("LayerNorm", "normalized_shape", d, 1) for d in shape)
        self.eps = _check_eps("LayerNorm", eps)
        self.elementwise_affine = bool(elementwise_affine)
        dtype = np.dtype(dtype or np.float32)
        self.weight = (
            Parameter(np.ones(self.normalized_shape), dtype=dtype) if elementwise_affine else None
        )
        self.bias = (
            Parameter(np.zeros(self.normalized_shape), dtype=dtype)
            if elementwise_affine and bias
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(
            x,
            self.normalized_shape,
            None if self.weight is None else self.weight.tensor,
            None if self.bias is None else self.bias.tensor,
            self.eps,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
        )


class GroupNorm(Module):
    """``GroupNorm(num_groups, num_channels, eps=1e-5, affine=True)``."""

    def __init__(
        self,
        num_groups: int,
        num_channels: int,
        eps: float = 1e-5,
        affine: bool = True,
        dtype: DTypeLike | None = None,
    ) -> None:
        super().__init__()
        self.num_groups = as_int("GroupNorm", "num_groups", num_groups, 1)
        self.num_channels = as_int("GroupNorm", "num_channels", num_channels, 1)
        if self.num_channels % self.num_groups:
            raise ValueError(
                f"GroupNorm: num_channels ({num_channels}) "
                f"must be divisible by num_groups ({num_groups})"
            )
        self.eps, self.affine = _check_eps("GroupNorm", eps), bool(affine)
        dtype = np.dtype(dtype or np.float32)
        self.weight = Parameter(np.ones(self.num_channels), dtype=dtype) if affine else None
        self.bias = Parameter(np.zeros(self.num_channels), dtype=dtype) if affine else None

    def forward(self, x: Tensor) -> Tensor:
        return F.group_norm(
            x,
            self.num_groups,
            None if self.weight is None else self.weight.tensor,
            None if self.bias is None else self.bias.tensor,
            self.eps,
        )

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"


class _InstanceNorm(Module):
    """Instance normalization: each (sample, channel) normalized over its positions. With
    ``track_running_stats`` the running statistics (buffers, as torch's) follow the batches in
    ``train()`` mode and normalize in ``eval()`` mode. torch's defaults: no affine parameters,
    no running statistics."""

    spatial = 1
    weight: Parameter | None
    bias: Parameter | None
    # Buffers: Tensors with track_running_stats, else None.
    running_mean: Tensor | None
    running_var: Tensor | None
    num_batches_tracked: Tensor | None

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = False,
        track_running_stats: bool = False,
        dtype: DTypeLike | None = None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.num_features = as_int(name, "num_features", num_features, 1)
        self.eps = _check_eps(name, eps)
        if momentum is not None and (
            isinstance(momentum, bool) or not isinstance(momentum, numbers.Real)
        ):
            raise ValueError(f"{name}: momentum must be a number or None, got {momentum!r}")
        self.momentum = momentum
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)
        dtype = np.dtype(dtype or np.float32)
        self.weight = Parameter(np.ones(self.num_features), dtype=dtype) if self.affine else None
        self.bias = (
            Parameter(np.zeros(self.num_features), dtype=dtype) if self.affine and bias else None
        )
        if self.track_running_stats:
            self.register_buffer("running_mean", Tensor(np.zeros(self.num_features, dtype=dtype)))
            self.register_buffer("running_var", Tensor(np.ones(self.num_features, dtype=dtype)))
            self.register_buffer(
                "num_batches_tracked", Tensor(np.array(0, dtype=np.int64), dtype=np.int64)
            )
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def forward(self, x: Tensor) -> Tensor:
        name, shape = type(self).__name__, tuple(np.shape(x))
        if len(shape) not in (self.spatial + 1, self.spatial + 2):
            raise ValueError(
                f"{name}: expected {self.spatial + 2}-D (N, C, ...) or {self.spatial + 1}-D "
                f"(C, ...) input, got shape {shape}"
            )
        unbatched = len(shape) == self.spatial + 1
        channels = shape[-self.spatial - 1]
        if channels != self.num_features and (self.affine or self.track_running_stats):
            raise ValueError(
                f"{name}: expected {self.num_features} channels (num_features), got {channels} "
                f"in input of shape {shape}"
            )
        x = x if isinstance(x, Tensor) else Tensor(x)
        out = F.instance_norm(
            x.unsqueeze(0) if unbatched else x,
            self.running_mean,
            self.running_var,
            None if self.weight is None else self.weight.tensor,
            None if self.bias is None else self.bias.tensor,
            self.training or not self.track_running_stats,
            0.0 if self.momentum is None else self.momentum,  # torch's reading of None here
            self.eps,
        )
        return out[0] if unbatched else out

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"track_running_stats={self.track_running_stats}"
        )


class InstanceNorm1d(_InstanceNorm):
    """``InstanceNorm1d(num_features, eps=1e-5, momentum=0.1, affine=False,
    track_running_stats=False, bias=True)`` over (N, C, L) or (C, L)."""

    spatial = 1


class InstanceNorm2d(_InstanceNorm):
    """``InstanceNorm2d(num_features, eps=1e-5, momentum=0.1, affine=False,
    track_running_stats=False, bias=True)`` over (N, C, H, W) or (C, H, W)."""

    spatial = 2
