"""Fused elementwise losses: ``l1_loss``, ``smooth_l1_loss``, ``huber_loss``,
``binary_cross_entropy`` and ``binary_cross_entropy_with_logits``.

``apply(name, input, target, reduction="mean", ...)``: input and target have the same shape
(as for ``mse_loss``, shapes that would broadcast are refused); ``reduction`` is "mean", "sum"
or "none"; one kernel computes the losses and their reduction, one kernel both gradients.
``weight`` and ``pos_weight`` (binary cross-entropy) are attributes that broadcast to the input.
"""

import numpy as np

from firefly.kernels import pointwise_loss as K
from firefly.ops.base import Op
from firefly.ops.families import select
from firefly.ops.loss import REDUCTIONS, check_reduction, reduce_losses
from firefly.ops.registry import register
from firefly.validation import check_number


def _only_number_attr(name, arg, attrs, allow_zero):
    """The op's one attribute ``arg`` (default 1.0), a number >= 0 (> 0 unless ``allow_zero``);
    any other attribute is refused."""
    value = attrs.pop(arg, 1.0)
    value = float(check_number(name, arg, value, minimum=0.0, minimum_open=not allow_zero))
    if attrs:
        raise TypeError(f"{name}: unexpected arguments {sorted(attrs)}")
    return value


def _broadcast_attr(ctx, arg, value, x):
    """``value`` (None: ones) as a contiguous array of x's shape and dtype."""
    if value is None:
        return np.ones(x.shape, dtype=x.dtype)
    array = np.asarray(getattr(value, "_data", value), dtype=x.dtype)
    try:
        return np.ascontiguousarray(np.broadcast_to(array, x.shape))
    except ValueError:
        raise ctx.error(
            f"{arg} of shape {array.shape} does not broadcast to the input", x
        ) from None


class _PointwiseLoss(Op):
    arity = 2

    @staticmethod
    def parameters(ctx, input, attrs):
        """Extra kernel arguments, between target and the reduce flag, from the op's attributes."""
        return ()

    @staticmethod
    def forward(ctx, input, target, reduction="mean", **attrs):
        name = ctx.op.name
        check_reduction(name, reduction)
        if input.shape != target.shape:
            raise ctx.error("input and target must have the same shape", input, target)
        extra = ctx.op.parameters(ctx, input, attrs)
        flat_in, flat_target = input.reshape(-1), target.reshape(-1)
        flat_extra = tuple(e.reshape(-1) if isinstance(e, np.ndarray) else e for e in extra)
        ctx.save_for_backward(flat_in, flat_target)
        ctx.extra, ctx.reduction, ctx.shape = flat_extra, reduction, input.shape
        if reduction == "none":
            out = np.empty_like(input)
            ctx.op.forward_kernel(flat_in, flat_target, *flat_extra, False, out.reshape(-1))
            return out
        total = ctx.op.forward_kernel(
            flat_in, flat_target, *flat_extra, True, np.empty(1, dtype=input.dtype)
        )
        if reduction == "mean":  # the mean over no elements is NaN, as in torch
            total = total / input.size if input.size else np.nan
        return np.array(total, dtype=input.dtype)

    @staticmethod
    def backward(ctx, grad):
        flat_in, flat_target = ctx.saved_tensors
        need_target = ctx.needs_input_grad[1]
        dinput = np.empty_like(flat_in)
        dtarget = np.empty_like(flat_target) if need_target else dinput
        per_element = ctx.reduction == "none"
        scale = 1.0 / flat_in.size if ctx.reduction == "mean" and flat_in.size else 1.0
        ctx.op.backward_kernel(
            grad.reshape(-1),
            per_element,
            scale,
            flat_in,
            flat_target,
            *ctx.extra,
            need_target,
            dinput,
            dtarget,
        )
        return dinput.reshape(ctx.shape), (dtarget.reshape(ctx.shape) if need_target else None)

    @classmethod
    def decomposition(cls, input, target, reduction="mean", **attrs):
        return reduce_losses(cls.losses(input, target, **attrs), reduction)

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        input = rng.uniform(-2.0, 2.0, size=shape).astype(dtype)
        # Differences kept away from the kinks at 0 and +-beta/delta (1.0 in the samples).
        offset = (
            rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.1, 0.4, size=shape)
            + rng.choice([-1.0, 0.0, 1.0], size=shape) * 1.5
        )
        target = (input + offset).astype(dtype)
        return (input, target), {"reduction": REDUCTIONS[int(rng.integers(0, 3))]}


@register
class L1Loss(_PointwiseLoss):
    """Mean (or summed) absolute error; the gradient at a zero difference is 0, as torch's sign."""

    name = "l1_loss"
    forward_kernel, backward_kernel = K.l1_forward, K.l1_backward

    @staticmethod
    def parameters(ctx, input, attrs):
        return (0.0,)  # the shared difference-loss kernels take a parameter; L1's ignores it

    @staticmethod
    def losses(input, target):
        return (input - target).abs()


@register
class SmoothL1Loss(_PointwiseLoss):
    """``beta=1.0``: 0.5 d^2 / beta where |d| < beta, else |d| - beta / 2 (beta 0 is the L1
    loss)."""

    name = "smooth_l1_loss"
    forward_kernel, backward_kernel = K.smooth_l1_forward, K.smooth_l1_backward

    @staticmethod
    def parameters(ctx, input, attrs):
        beta = _only_number_attr("smooth_l1_loss", "beta", attrs, allow_zero=True)
        return (beta,) if beta > 0 else (0.0,)

    @staticmethod
    def losses(input, target, beta=1.0):
        d = input - target
        size = d.abs()
        if beta == 0:
            return size
        return select(size.numpy() < beta, 0.5 * d * d / beta, size - 0.5 * beta)


@register
class HuberLoss(_PointwiseLoss):
    """``delta=1.0``: 0.5 d^2 where |d| <= delta, else delta (|d| - delta / 2)."""

    name = "huber_loss"
    forward_kernel, backward_kernel = K.huber_forward, K.huber_backward

    @staticmethod
    def parameters(ctx, input, attrs):
        return (_only_number_attr("huber_loss", "delta", attrs, allow_zero=False),)

    @staticmethod
    def losses(input, target, delta=1.0):
        d = input - target
        size = d.abs()
        return select(size.numpy() <= delta, 0.5 * d * d, delta * (size - 0.5 * delta))


@register
class BinaryCrossEntropy(_PointwiseLoss):
    """Binary cross-entropy of probabilities in [0, 1]; ``weight`` rescales each element."""

    name = "binary_cross_entropy"
    forward_kernel, backward_kernel = K.bce_forward, K.bce_backward

    @staticmethod
    def parameters(ctx, input, attrs):
        weight = attrs.pop("weight", None)
        if attrs:
            raise TypeError(f"binary_cross_entropy: unexpected arguments {sorted(attrs)}")
        if input.size and not (input.min() >= 0.0 and input.max() <= 1.0):
            raise ctx.error(
                "every input must be a probability in [0, 1]; for logits use "
                "binary_cross_entropy_with_logits (BCEWithLogitsLoss)",
                input,
            )
        return (_broadcast_attr(ctx, "weight", weight, input),)

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        input = rng.uniform(0.05, 0.95, size=shape).astype(dtype)
        target = rng.uniform(0.0, 1.0, size=shape).astype(dtype)
        attrs = {"reduction": REDUCTIONS[int(rng.integers(0, 3))]}
        if rng.random() < 0.5:
            attrs["weight"] = rng.uniform(0.5, 2.0, size=shape[-1:])
        return (input, target), attrs

    @staticmethod
    def losses(input, target, weight=None):
        log_p = input.log().clamp(min=-100.0)
        log_not_p = (1.0 - input).log().clamp(min=-100.0)
        losses = -(target * log_p + (1.0 - target) * log_not_p)
        return losses if weight is None else losses * _constant_like(weight, input)


@register
class BinaryCrossEntropyWithLogits(_PointwiseLoss):
    """Binary cross-entropy of logits, computed stably in one pass (no sigmoid then log);
    ``weight`` rescales each element, ``pos_weight`` the positive term (both broadcast)."""

    name = "binary_cross_entropy_with_logits"
    forward_kernel, backward_kernel = K.bce_with_logits_forward, K.bce_with_logits_backward

    @staticmethod
    def parameters(ctx, input, attrs):
        weight, pos_weight = attrs.pop("weight", None), attrs.pop("pos_weight", None)
        if attrs:
            raise TypeError(
                f"binary_cross_entropy_with_logits: unexpected arguments {sorted(attrs)}"
            )
        return _broadcast_attr(ctx, "weight", weight, input), _broadcast_attr(
            ctx, "pos_weight", pos_weight, input
        )

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        input = rng.uniform(-3.0, 3.0, size=shape).astype(dtype)
        target = rng.uniform(0.0, 1.0, size=shape).astype(dtype)
        attrs = {"reduction": REDUCTIONS[int(rng.integers(0, 3))]}
        if rng.random() < 0.5:
            attrs["weight"] = rng.uniform(0.5, 2.0, size=shape[-1:])
            attrs["pos_weight"] = rng.uniform(0.5, 3.0, size=shape[-1:])
        return (input, target), attrs

    @staticmethod
    def losses(input, target, weight=None, pos_weight=None):
        softplus_neg = ((-input.abs()).exp() + 1.0).log() + (-input).relu()
        positive = 1.0 if pos_weight is None else _constant_like(pos_weight, input)
        losses = (1.0 - target) * input + (1.0 + (positive - 1.0) * target) * softplus_neg
        return losses if weight is None else losses * _constant_like(weight, input)


def _constant_like(value, x):
    """An attribute (array, Tensor or number) as a constant Tensor in x's dtype."""
    return type(x)(np.asarray(getattr(value, "_data", value), dtype=x.dtype))
