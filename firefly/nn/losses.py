"""Loss modules: ``MSELoss`` and ``CrossEntropyLoss``, with PyTorch's ``reduction`` argument."""
import numpy as np

from firefly import ops
from firefly.nn.module import Module
from firefly.ops.loss import check_reduction
from firefly.tensor import Tensor


class _Loss(Module):
    def __init__(self, reduction="mean"):
        super().__init__()
        check_reduction(type(self).__name__, reduction)
        self.reduction = reduction

    def extra_repr(self):
        return f"reduction={self.reduction!r}"


class MSELoss(_Loss):
    """Mean squared error: ``reduce((input - target) ** 2)``.

    ``input`` and ``target`` must have the same shape: a (N, 1) prediction against a (N,)
    target would silently broadcast to (N, N), a classic bug, so it raises instead.
    """

    def forward(self, input, target):
        input_shape, target_shape = np.shape(input), np.shape(target)
        if input_shape != target_shape:
            raise ValueError(
                f"MSELoss: input has shape {input_shape} but target has shape {target_shape}; "
                "reshape one of them so they match"
            )
        if self.reduction != "none":
            return ops.apply("mse_loss", input, target, reduction=self.reduction)
        diff = ops.apply("sub", input, target)
        return ops.apply("mul", diff, diff)


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy over logits (N, C) (or (C,), or (N, C, d1, ...)) against integer
    class indices (N,) (or (), or (N, d1, ...)), as one fused kernel (op ``cross_entropy``)."""

    def forward(self, input, target):
        labels = target._data if isinstance(target, Tensor) else np.asarray(target)
        return ops.apply("cross_entropy", input, target=labels, reduction=self.reduction)
