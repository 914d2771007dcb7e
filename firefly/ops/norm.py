"""Normalization ops with fused kernels: ``batch_norm``, ``layer_norm`` and ``group_norm``.

Weight and bias are always inputs (``firefly.nn.functional`` passes ones and zeros when a layer
has no affine parameters). ``batch_norm``'s running statistics and batch counter are attributes:
arrays that the forward updates in place, as torch does with its buffers.
"""

import numbers

import numpy as np

from firefly.kernels import norm as K
from firefly.ops.base import Op
from firefly.ops.registry import register


def normalized(x, axes, eps):
    """Tensor x less its mean over ``axes``, divided by the standard deviation (biased
    variance plus eps), by recorded ops."""
    centered = x - x.mean(axis=axes, keepdims=True)
    variance = (centered * centered).mean(axis=axes, keepdims=True)
    return centered / (variance + eps).sqrt()


def _check_eps(name, eps):
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps >= 0:
        raise ValueError(f"{name}: eps must be a non-negative number, got {eps!r}")
    return float(eps)


def _check_running(name, arr, what, channels):
    if (
        not isinstance(arr, np.ndarray)
        or arr.shape != (channels,)
        or arr.dtype.kind != "f"
        or not arr.flags.c_contiguous
    ):
        raise ValueError(
            f"{name}: {what} must be a contiguous float array of shape ({channels},), got "
            f"{getattr(arr, 'shape', type(arr).__name__)} {getattr(arr, 'dtype', '')}"
        )


def _sample_affine(rng, channels, dtype):
    return (
        rng.uniform(0.5, 1.5, size=channels).astype(dtype),
        rng.uniform(-1.0, 1.0, size=channels).astype(dtype),
    )


@register
class BatchNorm(Op):
    """``apply("batch_norm", x, weight, bias, running_mean=None, running_var=None,
    training=False, momentum=0.1, eps=1e-5, num_batches_tracked=None)`` over x (N, C, *) per
    channel, as ``torch.nn.functional.batch_norm``. ``num_batches_tracked`` (a one-element int64
    array, the layer's buffer) is advanced by every update of the running statistics, and
    ``momentum=None`` then blends with ``1 / num_batches_tracked``: the layer's cumulative average,
    computed by the kernel so that a replayed step reads the count of its own time."""

    name = "batch_norm"
    arity = 3
    forward_kernel, backward_kernel = K.batch_norm_forward, K.batch_norm_backward

    @staticmethod
    def forward(
        ctx,
        x,
        weight,
        bias,
        running_mean=None,
        running_var=None,
        training=False,
        momentum=0.1,
        eps=1e-5,
        num_batches_tracked=None,
    ):
        if x.ndim < 2:
            raise ctx.error("input must be at least 2-D (N, C, ...)", x, weight, bias)
        channels = x.shape[1]
        if weight.shape != (channels,) or bias.shape != (channels,):
            raise ctx.error(
                f"weight and bias must have shape ({channels},) for {channels} channels",
                x,
                weight,
                bias,
            )
        eps = _check_eps("batch_norm", eps)
        if momentum is not None and (
            isinstance(momentum, bool) or not isinstance(momentum, numbers.Real)
        ):
            raise ValueError(f"batch_norm: momentum must be a number or None, got {momentum!r}")
        if (running_mean is None) != (running_var is None):
            raise ValueError("batch_norm: give both running_mean and running_var, or neither")
        if running_mean is not None:
            _check_running("batch_norm", running_mean, "running_mean", channels)
            _check_running("batch_norm", running_var, "running_var", channels)
        elif not training:
            raise ValueError(
                "batch_norm: evaluation (training=False) needs running_mean and running_var"
            )
        if num_batches_tracked is not None and (
            not isinstance(num_batches_tracked, np.ndarray)
            or num_batches_tracked.size != 1
            or num_batches_tracked.dtype != np.int64
        ):
            raise ValueError(
                "batch_norm: num_batches_tracked must be a one-element int64 array, got "
                f"{getattr(num_batches_tracked, 'shape', type(num_batches_tracked).__name__)} "
                f"{getattr(num_batches_tracked, 'dtype', '')}"
            )
        x3 = x.reshape(x.shape[0], channels, -1)
        if training and x3.shape[0] * x3.shape[2] < 2:
            raise ctx.error(
                "training needs more than one value per channel to compute a variance",
                x,
                weight,
                bias,
            )
        update = running_mean is not None and training
        if update and momentum is None and num_batches_tracked is None:
            raise ValueError(
                "batch_norm: momentum=None (a cumulative average) needs num_batches_tracked"
            )
        if running_mean is None:
            running_mean = running_var = np.zeros(channels)
        counter = (
            np.zeros(0, dtype=np.int64)
            if num_batches_tracked is None
            else num_batches_tracked.reshape(1)
        )
        mean, invstd = np.empty(channels), np.empty(channels)
        out = np.empty_like(x)
        ctx.op.forward_kernel(
            x3,
            weight,
            bias,
            running_mean,
            running_var,
            counter,
            bool(training),
            update,
            momentum is None,
            0.0 if momentum is None else float(momentum),
            eps,
            mean,
            invstd,
            out.reshape(x3.shape),
        )
        ctx.save_for_backward(x3, weight, mean, invstd)
        ctx.training = bool(training)
        return out

    @staticmethod
    def backward(ctx, grad):
        x3, weight, mean, invstd = ctx.saved_tensors
        need_dx = ctx.needs_input_grad[0]
        dx = np.empty(x3.shape if need_dx else (0, 0, 0), dtype=grad.dtype)
        dweight, dbias = np.empty_like(weight), np.empty_like(weight)
        ctx.op.backward_kernel(
            grad.reshape(x3.shape),
            x3,
            weight,
            mean,
            invstd,
            ctx.training,
            need_dx,
            dx,
            dweight,
            dbias,
        )
        return (dx.reshape(grad.shape) if need_dx else None), dweight, dbias

    @staticmethod
    def decomposition(
        x, weight, bias, running_mean=None, running_var=None, training=False, eps=1e-5, **_
    ):
        # The statistics forward used; the running ones are read, never updated, here.
        along = (1, x.shape[1]) + (1,) * (x.ndim - 2)
        if training:
            y = normalized(x, (0,) + tuple(range(2, x.ndim)), eps)
        else:
            mean = np.asarray(running_mean, dtype=x.dtype).reshape(along)
            std = np.sqrt(np.asarray(running_var, dtype=np.float64) + eps).astype(x.dtype)
            y = (x - type(x)(mean)) / type(x)(std.reshape(along))
        return y * weight.reshape(along) + bias.reshape(along)

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        dims = tuple(int(d) for d in shape)
        shape = (max(dims[0], 2) if dims else 2, dims[1] if len(dims) > 1 else 3) + dims[2:]
        x = rng.uniform(-2.0, 2.0, size=shape).astype(dtype)
        weight, bias = _sample_affine(rng, shape[1], dtype)
        training = bool(rng.random() < 0.7)
        attrs = dict(training=training, momentum=0.1, eps=1e-5)
        if not training or rng.random() < 0.5:
            attrs.update(
                running_mean=rng.uniform(-0.5, 0.5, size=shape[1]),
                running_var=rng.uniform(0.5, 1.5, size=shape[1]),
            )
            if rng.random() < 0.5:  # a layer's batch counter, with its cumulative average
                attrs.update(
                    num_batches_tracked=np.array(rng.integers(0, 5), dtype=np.int64), momentum=None
                )
        return (x, weight, bias), attrs


@register
class LayerNorm(Op):
    """``apply("layer_norm", x, weight, bias, normalized_shape=..., eps=1e-5)``: each slice over
    the last ``len(normalized_shape)`` dimensions is normalized, as
    ``torch.nn.functional.layer_norm``."""

    name = "layer_norm"
    arity = 3
    forward_kernel, backward_kernel = K.layer_norm_forward, K.layer_norm_backward

    @staticmethod
    def forward(ctx, x, weight, bias, normalized_shape=None, eps=1e-5):
        if normalized_shape is None:
            normalized_shape = weight.shape
        if isinstance(normalized_shape, (int, np.integer)):
            normalized_shape = (normalized_shape,)
        normalized_shape = tuple(int(d) for d in normalized_shape)
        k = len(normalized_shape)
        if k == 0 or x.ndim < k or x.shape[x.ndim - k :] != normalized_shape:
            raise ctx.error(
                f"the input's last dimensions must be normalized_shape {normalized_shape}",
                x,
                weight,
                bias,
            )
        if weight.shape != normalized_shape or bias.shape != normalized_shape:
            raise ctx.error(
                f"weight and bias must have shape normalized_shape {normalized_shape}",
                x,
                weight,
                bias,
            )
        eps = _check_eps("layer_norm", eps)
        D = int(np.prod(normalized_shape))
        x2 = x.reshape(-1, D)
        mean, rstd = np.empty(x2.shape[0]), np.empty(x2.shape[0])
        out = np.empty_like(x)
        if D and x2.shape[0]:
            ctx.op.forward_kernel(
                x2, weight.reshape(D), bias.reshape(D), eps, mean, rstd, out.reshape(x2.shape)
            )
        ctx.save_for_backward(x2, weight, mean, rstd)
        return out

    @staticmethod
    def backward(ctx, grad):
        x2, weight, mean, rstd = ctx.saved_tensors
        need_dx = ctx.needs_input_grad[0]
        # The kernel writes every element of dx: no zero-filling pass over it.
        dx = np.empty(x2.shape if need_dx else (0, 0), dtype=grad.dtype)
        dweight, dbias = np.zeros_like(weight), np.zeros_like(weight)
        if x2.size:
            ctx.op.backward_kernel(
                grad.reshape(x2.shape),
                x2,
                weight.reshape(-1),
                mean,
                rstd,
                need_dx,
                dx,
                dweight.reshape(-1),
                dbias.reshape(-1),
            )
        return (dx.reshape(grad.shape) if need_dx else None), dweight, dbias

    @staticmethod
    def decomposition(x, weight, bias, normalized_shape=None, eps=1e-5):
        k = weight.ndim
        return normalized(x, tuple(range(x.ndim - k, x.ndim)), eps) * weight + bias

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        shape = tuple(int(d) for d in shape) or (3,)
        k = int(rng.integers(1, len(shape) + 1))
        normalized_shape = shape[len(shape) - k :]
        if int(np.prod(normalized_shape)) < 2:  # a single element normalizes to exactly 0
            normalized_shape = normalized_shape[:-1] + (3,)
            shape = shape[: len(shape) - 1] + (3,)
        x = rng.uniform(-2.0, 2.0, size=shape).astype(dtype)
        weight = rng.uniform(0.5, 1.5, size=normalized_shape).astype(dtype)
        bias = rng.uniform(-1.0, 1.0, size=normalized_shape).astype(dtype)
        return (x, weight, bias), {"normalized_shape": normalized_shape, "eps": 1e-5}


@register
class GroupNorm(Op):
    """``apply("group_norm", x, weight, bias, num_groups=..., eps=1e-5)`` over x (N, C, *):
    statistics per sample and group of C / num_groups channels; weight and bias per channel."""

    name = "group_norm"
    arity = 3
    forward_kernel, backward_kernel = K.group_norm_forward, K.group_norm_backward

    @staticmethod
    def forward(ctx, x, weight, bias, num_groups=1, eps=1e-5):
        if x.ndim < 2:
            raise ctx.error("input must be at least 2-D (N, C, ...)", x, weight, bias)
        channels = x.shape[1]
        if (
            isinstance(num_groups, bool)
            or not isinstance(num_groups, (int, np.integer))
            or num_groups < 1
        ):
            raise ValueError(f"group_norm: num_groups must be a positive int, got {num_groups!r}")
        if channels % num_groups:
            raise ctx.error(
                f"{channels} channels do not divide into num_groups={num_groups}", x, weight, bias
            )
        if weight.shape != (channels,) or bias.shape != (channels,):
            raise ctx.error(f"weight and bias must have shape ({channels},)", x, weight, bias)
        eps = _check_eps("group_norm", eps)
        x3 = x.reshape(x.shape[0], num_groups, -1)
        mean, rstd = np.empty(x3.shape[:2]), np.empty(x3.shape[:2])
        out = np.empty_like(x)
        cg = channels // num_groups
        if x3.size:
            ctx.op.forward_kernel(x3, weight, bias, cg, eps, mean, rstd, out.reshape(x3.shape))
        ctx.save_for_backward(x3, weight, mean, rstd)
        ctx.channels_per_group = cg
        return out

    @staticmethod
    def backward(ctx, grad):
        x3, weight, mean, rstd = ctx.saved_tensors
        need_dx = ctx.needs_input_grad[0]
        # The kernel writes every element of dx: no zero-filling pass over it.
        dx = np.empty(x3.shape if need_dx else (0, 0, 0), dtype=grad.dtype)
        dweight, dbias = np.zeros_like(weight), np.zeros_like(weight)
        if x3.size:
            ctx.op.backward_kernel(
                grad.reshape(x3.shape),
                x3,
                weight,
                ctx.channels_per_group,
                mean,
                rstd,
                need_dx,
                dx,
                dweight,
                dbias,
            )
        return (dx.reshape(grad.shape) if need_dx else None), dweight, dbias

    @staticmethod
    def decomposition(x, weight, bias, num_groups=1, eps=1e-5):
        groups = x.reshape(x.shape[0], num_groups, -1)
        y = normalized(groups, (2,), eps).reshape(x.shape)
        along = (1, x.shape[1]) + (1,) * (x.ndim - 2)
        return y * weight.reshape(along) + bias.reshape(along)

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        dims = tuple(int(d) for d in shape)
        groups = int(rng.integers(1, 3))
        spatial = (
            dims[2:] if int(np.prod(dims[2:])) > 1 else (2,)
        )  # a group of one element normalizes to 0
        shape = (dims[0] if dims else 2, groups * (dims[1] if len(dims) > 1 else 2)) + spatial
        x = rng.uniform(-2.0, 2.0, size=shape).astype(dtype)
        weight, bias = _sample_affine(rng, shape[1], dtype)
        return (x, weight, bias), {"num_groups": groups, "eps": 1e-5}
