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
from firefly.ops.registry import register

REDUCTIONS = ("mean", "sum", "none")


def class_layout(ctx, x, target, weight, ignore_index):
    """Validate logits/log-probabilities against class-index targets; return x as (outer, C, inner),
    the targets as int64 (outer, inner), and the class weights (C,) in x's dtype."""
    if x.ndim == 0:
        raise ctx.error("the input needs a class dimension: (C,), (N, C) or (N, C, d1, ...)", x)
    target = np.asarray(getattr(target, "_data", target))
    if target.dtype.kind not in "iu":
        raise ctx.error(f"target must hold integer class indices, got dtype {target.dtype}; convert the labels "
                        "with .astype(np.int64)", x, target, kind=TypeError)
    expected = () if x.ndim == 1 else (x.shape[0],) + x.shape[2:]
    if target.shape != expected:
        raise ctx.error(f"target must have shape {expected} for an input of shape {x.shape}", x, target)
    classes = x.shape[0] if x.ndim == 1 else x.shape[1]
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
        raise TypeError(f"{ctx.op.name}: ignore_index must be an int, got {ignore_index!r}")
    counted = target[target != ignore_index]
    if counted.size and (counted.min() < 0 or counted.max() >= classes):
        bad = int(counted.min()) if counted.min() < 0 else int(counted.max())
        raise ctx.error(f"class index {bad} is out of range: labels must be in [0, {classes - 1}] "
                        f"(or ignore_index={ignore_index})", x, target)
    if weight is None:
        weight = np.ones(classes, dtype=x.dtype)
    else:
        weight = np.ascontiguousarray(getattr(weight, "_data", weight), dtype=x.dtype)
        if weight.shape != (classes,):
            raise ctx.error(f"weight must have one entry per class, shape ({classes},)", x, weight)
    outer = 1 if x.ndim == 1 else x.shape[0]
    x3 = x.reshape(outer, classes, -1)
    target2 = np.ascontiguousarray(target, dtype=np.int64).reshape(outer, x3.shape[2])
    return x3, target2, weight, target.shape


@register
class NLLLoss(Op):
    name = "nll_loss"
    forward_kernel, backward_kernel = K.nll_forward, K.nll_backward

    @staticmethod
    def forward(ctx, x, target=None, weight=None, ignore_index=-100, reduction="mean"):
        if reduction not in REDUCTIONS:
            raise ValueError(f"nll_loss: reduction must be one of {REDUCTIONS}, got {reduction!r}")
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
        return np.array(total / weights if weights else np.nan, dtype=x.dtype)  # torch: NaN when nothing counts

    @staticmethod
    def backward(ctx, grad):
        target2, weight = ctx.saved_tensors
        outer = target2.shape[0]
        dx = np.empty((outer, ctx.x_shape[0 if len(ctx.x_shape) == 1 else 1], target2.shape[1]), dtype=grad.dtype)
        per_sample = ctx.reduction == "none"
        g2 = grad.reshape(target2.shape) if per_sample else grad.reshape(1, 1)
        ctx.op.backward_kernel(g2, per_sample, ctx.scale, target2, weight, ctx.ignore_index, dx)
        return dx.reshape(ctx.x_shape)

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
