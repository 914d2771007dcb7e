"""Loss ops: ``cross_entropy``, fused log-softmax + negative log-likelihood with integer targets,
and ``mse_loss``, the fused mean squared error.

``apply("cross_entropy", logits, target=labels, reduction="mean")``. Logits are (C,), (N, C)
or (N, C, d1, ...) as in PyTorch, with targets (), (N,) or (N, d1, ...) of class indices.
Targets are an attribute, not a tensor input: they are integers and get no gradient.
"""
import numpy as np

from firefly.kernels import loss as K
from firefly.ops.base import Op
from firefly.ops.registry import register

REDUCTIONS = ("mean", "sum", "none")


def check_reduction(op_name, reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"{op_name}: reduction must be one of {REDUCTIONS}, got {reduction!r}")


@register
class CrossEntropy(Op):
    name = "cross_entropy"
    arity = 1
    forward_kernel, backward_kernel = K.cross_entropy_forward, K.cross_entropy_backward

    @classmethod
    def forward(cls, ctx, x, target=None, reduction="mean"):
        check_reduction(ctx.op.name, reduction)
        if target is None:
            raise TypeError("cross_entropy: missing target=, the integer class index of each sample")
        target = np.asarray(target)
        if x.ndim == 0:
            raise ctx.error("logits need a class dimension: (C,), (N, C) or (N, C, d1, ...)", x)
        if target.dtype.kind not in "iu":
            raise ctx.error(
                f"target must hold integer class indices, got dtype {target.dtype}; convert the "
                "labels with .astype(np.int64) (or Tensor(labels, dtype=np.int64))", x, target, kind=TypeError)
        expected = () if x.ndim == 1 else (x.shape[0],) + x.shape[2:]
        if target.shape != expected:
            raise ctx.error(f"target must have shape {expected} for logits of shape {x.shape}", x, target)
        classes = x.shape[0] if x.ndim == 1 else x.shape[1]
        if target.size:
            low, high = int(target.min()), int(target.max())
            if low < 0 or high >= classes:
                bad = low if low < 0 else high
                raise ctx.error(f"class index {bad} is out of range: labels must be in [0, {classes - 1}]", x, target)
        outer = 1 if x.ndim == 1 else x.shape[0]
        x3 = x.reshape(outer, classes, int(np.prod(x.shape[2:], dtype=np.int64)))
        target2 = np.ascontiguousarray(target, dtype=np.int64).reshape(x3.shape[0], x3.shape[2])
        losses = np.empty(target2.shape, dtype=x.dtype)
        shift, log_sum = np.empty_like(losses), np.empty_like(losses)
        total = cls.forward_kernel(x3, target2, losses, shift, log_sum) if losses.size else 0.0
        ctx.save_for_backward(x3, target2, shift, log_sum)
        ctx.x_shape, ctx.reduction = x.shape, reduction
        if reduction == "none":
            return losses.reshape(target.shape)
        if reduction == "sum":
            return np.array(total, dtype=x.dtype)
        # The mean over no samples is NaN, as in PyTorch.
        return np.array(total / losses.size if losses.size else np.nan, dtype=x.dtype)

    @classmethod
    def backward(cls, ctx, grad):
        x3, target2, shift, log_sum = ctx.saved_tensors
        dx = np.empty_like(x3)
        if dx.size:
            per_sample = ctx.reduction == "none"
            scale = 1.0 / target2.size if ctx.reduction == "mean" else 1.0
            g2 = grad.reshape(target2.shape) if per_sample else grad.reshape(1, 1)
            cls.backward_kernel(g2, per_sample, scale, x3, target2, shift, log_sum, dx)
        return dx.reshape(ctx.x_shape)

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        shape = list(shape) or [3]
        class_axis = 0 if len(shape) == 1 else 1
        shape[class_axis] = max(shape[class_axis], 2)  # at least two classes, so softmax is not constant
        x = rng.uniform(-3.0, 3.0, size=shape).astype(dtype)
        target_shape = () if len(shape) == 1 else (shape[0],) + tuple(shape[2:])
        target = rng.integers(0, shape[class_axis], size=target_shape)
        reduction = REDUCTIONS[int(rng.integers(0, len(REDUCTIONS)))]
        return (x,), {"target": target, "reduction": reduction}


@register
class MSELoss(Op):
    """Mean (or summed) squared error of two same-shaped inputs, as one fused kernel each way.
    ``reduction="none"`` has its own output shape and is ``(input - target) ** 2`` from the
    elementwise ops (see ``firefly.nn.MSELoss``)."""

    name = "mse_loss"
    arity = 2
    forward_kernel, backward_kernel = K.mse_forward, K.mse_backward

    @classmethod
    def forward(cls, ctx, input, target, reduction="mean"):
        if reduction not in ("mean", "sum"):
            raise ValueError(f"mse_loss: reduction must be 'mean' or 'sum', got {reduction!r}")
        if input.shape != target.shape:
            raise ctx.error("input and target must have the same shape", input, target)
        if reduction == "sum":
            scale = 1.0
        else:  # the mean over no elements is NaN, as in PyTorch
            scale = 1.0 / input.size if input.size else float("nan")
        out = np.empty(1, dtype=input.dtype)
        cls.forward_kernel(input.reshape(-1), target.reshape(-1), scale, out)
        ctx.save_for_backward(input, target)
        ctx.scale = scale
        return out.reshape(())

    @classmethod
    def backward(cls, ctx, grad):
        input, target = ctx.saved_tensors
        need_target = ctx.needs_input_grad[1]
        dinput = np.empty_like(input)
        dtarget = np.empty_like(target) if need_target else dinput
        cls.backward_kernel(input.reshape(-1), target.reshape(-1), float(grad) * ctx.scale, need_target,
                       dinput.reshape(-1), dtarget.reshape(-1))
        return dinput, (dtarget if need_target else None)

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        input = rng.uniform(-2.0, 2.0, size=shape).astype(dtype)
        target = rng.uniform(-2.0, 2.0, size=shape).astype(dtype)
        return (input, target), {"reduction": "mean" if rng.random() < 0.5 else "sum"}
