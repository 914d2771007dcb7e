"""Loss ops: ``mse_loss``, the fused mean squared error (``cross_entropy`` and the other losses
live in ``classification_loss`` and ``pointwise_loss``)."""

import numpy as np

from firefly.kernels import loss as K
from firefly.ops.base import Op
from firefly.ops.registry import register

REDUCTIONS = ("mean", "sum", "none")


def reduce_losses(losses, reduction):
    """A Tensor of per-element losses reduced as ``reduction`` says, by recorded ops."""
    if reduction == "mean":
        return losses.mean()
    return losses.sum() if reduction == "sum" else losses


def check_reduction(op_name, reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"{op_name}: reduction must be one of {REDUCTIONS}, got {reduction!r}")


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
        cls.backward_kernel(
            input.reshape(-1),
            target.reshape(-1),
            float(grad) * ctx.scale,
            need_target,
            dinput.reshape(-1),
            dtarget.reshape(-1),
        )
        return dinput, (dtarget if need_target else None)

    @staticmethod
    def decomposition(input, target, reduction="mean"):
        difference = input - target
        return reduce_losses(difference * difference, reduction)

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        input = rng.uniform(-2.0, 2.0, size=shape).astype(dtype)
        target = rng.uniform(-2.0, 2.0, size=shape).astype(dtype)
        return (input, target), {"reduction": "mean" if rng.random() < 0.5 else "sum"}
