"""``nll_loss``: negative log-likelihood of log-probabilities, with torch's ``weight``,
``ignore_index`` and ``reduction``.

``apply("nll_loss", log_probs, target=labels, weight=None, ignore_index=-100, reduction="mean")``:
log_probs (C,), (N, C) or (N, C, d1, ...), targets (), (N,) or (N, d1, ...) of class indices
(an attribute: integers get no gradient). The weighted mean divides by the summed weights of
the samples that count, as torch.
"""

import numpy as np

from firefly.kernels import classification_loss as K
from firefly.ops.base import Op
from firefly.ops.loss import REDUCTIONS, check_reduction
from firefly.ops.registry import register


def class_layout(ctx, x, target, weight, ignore_index):
    """Validate logits/log-probabilities against class-index targets; return x as (outer, C, inner),
    the targets as int64 (outer, inner), and the class weights (C,) in x's dtype."""
    if x.ndim == 0:
        raise ctx.error("the input needs a class dimension: (C,), (N, C) or (N, C, d1, ...)", x)
    target = np.asarray(getattr(target, "_data", target))
    if target.dtype.kind not in "iu":
        raise ctx.error(
            f"target must hold integer class indices, got dtype {target.dtype}; convert the labels "
            "with .astype(np.int64)",
            x,
            target,
            kind=TypeError,
        )
    expected = () if x.ndim == 1 else (x.shape[0],) + x.shape[2:]
    if target.shape != expected:
        what = "logits" if ctx.op.name == "cross_entropy" else "an input"
        raise ctx.error(
            f"target must have shape {expected} for {what} of shape {x.shape}", x, target
        )
    classes = x.shape[0] if x.ndim == 1 else x.shape[1]
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
        raise TypeError(f"{ctx.op.name}: ignore_index must be an int, got {ignore_index!r}")
    counted = target[target != ignore_index]
    if counted.size and (counted.min() < 0 or counted.max() >= classes):
        bad = int(counted.min()) if counted.min() < 0 else int(counted.max())
        raise ctx.error(
            f"class index {bad} is out of range: labels must be in [0, {classes - 1}] "
            f"(or ignore_index={ignore_index})",
            x,
            target,
        )
    if weight is None:
        weight = np.ones(classes, dtype=x.dtype)
    else:
        weight = np.ascontiguousarray(getattr(weight, "_data", weight), dtype=x.dtype)
        if weight.shape != (classes,):
            raise ctx.error(f"weight must have one entry per class, shape ({classes},)", x, weight)
    outer = 1 if x.ndim == 1 else x.shape[0]
    x3 = x.reshape(outer, classes, int(np.prod(x.shape[2:], dtype=np.int64)))
    target2 = np.ascontiguousarray(target, dtype=np.int64).reshape(outer, x3.shape[2])
    return x3, target2, weight, target.shape


def picked(x, target, weight, ignore_index):
    """Tensor x's entries at the target classes (class dimension 0 for 1-D x, else 1), as
    (outer, inner), by a recorded ``take``; each one's class weight, 0 where ignored; and
    the class weights (C,) as an array."""
    from firefly.ops import apply

    classes = x.shape[0] if x.ndim == 1 else x.shape[1]
    outer = 1 if x.ndim == 1 else x.shape[0]
    inner = int(np.prod(x.shape[2:], dtype=np.int64))
    target = np.asarray(getattr(target, "_data", target)).astype(np.int64).reshape(outer, inner)
    counted = target != ignore_index
    target = np.where(counted, target, 0)
    weights = (
        np.ones(classes, dtype=x.dtype)
        if weight is None
        else np.asarray(getattr(weight, "_data", weight), dtype=x.dtype)
    )
    positions = (np.arange(outer)[:, None] * classes + target) * inner + np.arange(inner)
    picks = apply("take", x, index=positions.astype(np.int64))
    return picks, np.where(counted, weights[target], 0.0).astype(x.dtype), weights


@register
class NLLLoss(Op):
    name = "nll_loss"
    forward_kernel, backward_kernel = K.nll_forward, K.nll_backward

    @staticmethod
    def forward(ctx, x, target=None, weight=None, ignore_index=-100, reduction="mean"):
        check_reduction("nll_loss", reduction)
        if target is None:
            raise TypeError("nll_loss: missing target=, the integer class index of each sample")
        x3, target2, weight, target_shape = class_layout(ctx, x, target, weight, ignore_index)
        losses = np.empty(target2.shape, dtype=x.dtype)
        total, weights = ctx.op.forward_kernel(x3, target2, weight, int(ignore_index), losses)
        ctx.save_for_backward(target2, weight)
        ctx.x_shape, ctx.reduction, ctx.ignore_index = x.shape, reduction, int(ignore_index)
        ctx.scale = 1.0 / weights if reduction == "mean" and weights else 1.0
        if reduction == "none":
            return losses.reshape(target_shape)
        if reduction == "sum":
            return np.array(total, dtype=x.dtype)
        return np.array(
            total / weights if weights else np.nan, dtype=x.dtype
        )  # torch: NaN when nothing counts

    @staticmethod
    def backward(ctx, grad):
        target2, weight = ctx.saved_tensors
        outer = target2.shape[0]
        dx = np.empty(
            (outer, ctx.x_shape[0 if len(ctx.x_shape) == 1 else 1], target2.shape[1]),
            dtype=grad.dtype,
        )
        per_sample = ctx.reduction == "none"
        g2 = grad.reshape(target2.shape) if per_sample else grad.reshape(1, 1)
        ctx.op.backward_kernel(g2, per_sample, ctx.scale, target2, weight, ctx.ignore_index, dx)
        return dx.reshape(ctx.x_shape)

    @staticmethod
    def decomposition(x, target=None, weight=None, ignore_index=-100, reduction="mean"):
        picks, counted_weights, _ = picked(x, target, weight, ignore_index)
        losses = -picks * counted_weights
        if reduction == "none":
            return losses.reshape(np.shape(getattr(target, "_data", target)))
        total = losses.sum()
        return total if reduction == "sum" else total / float(counted_weights.sum())

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        shape = list(shape) or [3]
        class_axis = 0 if len(shape) == 1 else 1
        shape[class_axis] = max(shape[class_axis], 2)
        x = rng.uniform(-3.0, 0.0, size=shape).astype(dtype)
        target_shape = () if len(shape) == 1 else (shape[0],) + tuple(shape[2:])
        target = rng.integers(0, shape[class_axis], size=target_shape)
        attrs = {"target": target, "reduction": REDUCTIONS[int(rng.integers(0, 3))]}
        if rng.random() < 0.5:
            attrs["weight"] = rng.uniform(0.5, 2.0, size=shape[class_axis])
        if target.size > 1 and rng.random() < 0.5:
            attrs["ignore_index"] = int(target.reshape(-1)[0])
            if np.all(target == attrs["ignore_index"]):
                del attrs["ignore_index"]
        return (x,), attrs


@register
class CrossEntropy(Op):
    """``apply("cross_entropy", logits, target=..., weight=None, ignore_index=-100,
    reduction="mean", label_smoothing=0.0)``: log-softmax and the loss fused, one kernel each way.

    ``target`` holds class indices (integers, shape (N, d1, ...)) or class probabilities (floats,
    the logits' shape). As torch: the weighted mean over class indices divides by the summed
    weights of the counted samples, over probabilities by the sample count; label smoothing
    mixes the target with the uniform distribution. The target is an attribute: it gets no
    gradient, probabilities included.
    """

    name = "cross_entropy"
    forward_kernel, backward_kernel = K.cross_entropy_forward, K.cross_entropy_backward

    @staticmethod
    def forward(
        ctx, x, target=None, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0
    ):
        check_reduction("cross_entropy", reduction)
        if target is None:
            raise TypeError(
                "cross_entropy: missing target=, the class index (or probabilities) of each sample"
            )
        if (
            isinstance(label_smoothing, bool)
            or not isinstance(label_smoothing, (int, float))
            or not 0.0 <= label_smoothing <= 1.0
        ):
            raise ValueError(
                f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing!r}"
            )
        target = np.asarray(getattr(target, "_data", target))
        prob_targets = target.dtype.kind == "f"
        index_shape = () if x.ndim <= 1 else (x.shape[0],) + x.shape[2:]
        if prob_targets and target.shape == index_shape and target.shape != x.shape:
            raise ctx.error(
                f"target must hold integer class indices, got dtype {target.dtype} "
                "(probability targets would have the logits' shape); convert the labels "
                "with .astype(np.int64) (or Tensor(labels, dtype=np.int64))",
                x,
                target,
                kind=TypeError,
            )
        if prob_targets:
            if target.shape != x.shape:
                raise ctx.error(
                    "probability targets (a float target) must have the logits' shape", x, target
                )
            if ignore_index != -100:
                raise ValueError(
                    "cross_entropy: ignore_index is not supported with probability targets"
                )
            x3, _, weight, target_shape = class_layout(
                ctx, x, np.zeros(index_shape, dtype=np.int64), weight, -100
            )
            probs = np.ascontiguousarray(target, dtype=x.dtype).reshape(x3.shape)
            indices = np.zeros((1, 1), dtype=np.int64)
        else:
            x3, indices, weight, target_shape = class_layout(ctx, x, target, weight, ignore_index)
            probs = np.zeros((1, 1, 1), dtype=x.dtype)
        # contiguous: the kernels read each sample's logits as a row of x3.reshape(outer, -1)
        x3 = np.ascontiguousarray(x3)
        losses = np.empty((x3.shape[0], x3.shape[2]), dtype=x.dtype)
        shift, log_sum = np.empty_like(losses), np.empty_like(losses)
        total, divisor = ctx.op.forward_kernel(
            x3,
            indices,
            probs,
            prob_targets,
            weight,
            int(ignore_index),
            float(label_smoothing),
            losses,
            shift,
            log_sum,
        )
        ctx.save_for_backward(x3, indices, probs, weight, shift, log_sum)
        ctx.attrs = (prob_targets, int(ignore_index), float(label_smoothing))
        ctx.x_shape, ctx.reduction = x.shape, reduction
        ctx.scale = 1.0 / divisor if reduction == "mean" and divisor else 1.0
        if reduction == "none":
            return losses.reshape(target_shape)
        if reduction == "sum":
            return np.array(total, dtype=x.dtype)
        return np.array(
            total / divisor if divisor else np.nan, dtype=x.dtype
        )  # NaN when nothing counts, as torch

    @staticmethod
    def backward(ctx, grad):
        x3, indices, probs, weight, shift, log_sum = ctx.saved_tensors
        prob_targets, ignore_index, smoothing = ctx.attrs
        dx = np.empty_like(x3)
        per_sample = ctx.reduction == "none"
        g2 = grad.reshape(shift.shape) if per_sample else grad.reshape(1, 1)
        ctx.op.backward_kernel(
            g2,
            per_sample,
            ctx.scale,
            x3,
            indices,
            probs,
            prob_targets,
            weight,
            ignore_index,
            smoothing,
            shift,
            log_sum,
            dx,
        )
        return dx.reshape(ctx.x_shape)

    @staticmethod
    def decomposition(
        x, target=None, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0
    ):
        axis = 0 if x.ndim == 1 else 1
        classes = x.shape[axis]
        log_p = x.log_softmax(axis)
        along = [1] * x.ndim
        along[axis] = classes
        target = np.asarray(getattr(target, "_data", target))
        if target.dtype.kind == "f":
            weights = (
                np.ones(classes) if weight is None else np.asarray(getattr(weight, "_data", weight))
            )
            mixed = target * (1.0 - label_smoothing) + label_smoothing / classes
            losses = -(log_p * (mixed * weights.reshape(along)).astype(x.dtype)).sum(axis=axis)
            divisor = float(losses.numpy().size)
        else:
            picks, counted_weights, weights = picked(log_p, target, weight, ignore_index)
            losses = -picks * counted_weights
            if label_smoothing:
                counted = (target.reshape(counted_weights.shape) != ignore_index).astype(x.dtype)
                smooth = -(log_p * weights.reshape(along)).sum(axis=axis).reshape(losses.shape)
                losses = (1.0 - label_smoothing) * losses + (
                    label_smoothing / classes
                ) * smooth * counted
            losses = losses.reshape(target.shape)
            divisor = float(counted_weights.sum())
        if reduction == "none":
            return losses
        total = losses.sum()
        return total if reduction == "sum" else total / divisor

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        shape = list(shape) or [3]
        class_axis = 0 if len(shape) == 1 else 1
        shape[class_axis] = max(
            shape[class_axis], 2
        )  # at least two classes, so softmax is not constant
        x = rng.uniform(-3.0, 3.0, size=shape).astype(dtype)
        target_shape = () if len(shape) == 1 else (shape[0],) + tuple(shape[2:])
        attrs = {"reduction": REDUCTIONS[int(rng.integers(0, 3))]}
        if rng.random() < 0.3:
            probs = rng.uniform(0.0, 1.0, size=shape)
            attrs["target"] = probs / probs.sum(axis=class_axis, keepdims=True)
        else:
            attrs["target"] = rng.integers(0, shape[class_axis], size=target_shape)
            if attrs["target"].size > 1 and rng.random() < 0.3:
                first = int(attrs["target"].reshape(-1)[0])
                if not np.all(attrs["target"] == first):
                    attrs["ignore_index"] = first
        if rng.random() < 0.4:
            attrs["weight"] = rng.uniform(0.5, 2.0, size=shape[class_axis])
        if rng.random() < 0.4:
            attrs["label_smoothing"] = float(rng.choice([0.1, 0.3]))
        return (x,), attrs
