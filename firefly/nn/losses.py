"""Loss modules with PyTorch's ``reduction`` argument: ``MSELoss``, ``CrossEntropyLoss``,
``NLLLoss``, ``L1Loss``, ``SmoothL1Loss``, ``HuberLoss``, ``BCELoss`` and ``BCEWithLogitsLoss``."""

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
    """``CrossEntropyLoss(weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0)``:
    softmax cross-entropy over logits (N, C) (or (C,), or (N, C, d1, ...)) against integer class
    indices (N,) (or (), or (N, d1, ...)) or class probabilities of the logits' shape, as one
    fused kernel each way (op ``cross_entropy``). Weighted means divide as torch's do."""

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__(reduction)
        self.weight, self.ignore_index = _weight_array("CrossEntropyLoss", weight), ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, input, target):
        return ops.apply(
            "cross_entropy",
            input,
            target=_target_array(target),
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
        )


def _target_array(target):
    return target._data if isinstance(target, Tensor) else np.asarray(target)


def _weight_array(owner, weight):
    if weight is None:
        return None
    if isinstance(weight, Tensor):
        return weight._data
    array = np.asarray(weight)
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{owner}: weight must be numbers, got dtype {array.dtype}")
    return array


class NLLLoss(_Loss):
    """Negative log-likelihood of log-probabilities (N, C) (or (C,), or (N, C, d1, ...)) against
    integer class indices, with per-class ``weight`` and ``ignore_index``; the mean divides by
    the summed weights of the counted samples, as torch."""

    def __init__(self, weight=None, ignore_index=-100, reduction="mean"):
        super().__init__(reduction)
        self.weight, self.ignore_index = _weight_array("NLLLoss", weight), ignore_index

    def forward(self, input, target):
        return ops.apply(
            "nll_loss",
            input,
            target=_target_array(target),
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )


class L1Loss(_Loss):
    """Mean absolute error; input and target must have the same shape."""

    def forward(self, input, target):
        return ops.apply("l1_loss", input, target, reduction=self.reduction)


class SmoothL1Loss(_Loss):
    """``SmoothL1Loss(reduction="mean", beta=1.0)``: quadratic below ``beta``, linear above."""

    def __init__(self, reduction="mean", beta=1.0):
        super().__init__(reduction)
        self.beta = beta

    def forward(self, input, target):
        return ops.apply("smooth_l1_loss", input, target, reduction=self.reduction, beta=self.beta)


class HuberLoss(_Loss):
    """``HuberLoss(reduction="mean", delta=1.0)``: quadratic up to ``delta``, then linear with
    slope delta."""

    def __init__(self, reduction="mean", delta=1.0):
        super().__init__(reduction)
        self.delta = delta

    def forward(self, input, target):
        return ops.apply("huber_loss", input, target, reduction=self.reduction, delta=self.delta)


class BCELoss(_Loss):
    """Binary cross-entropy of probabilities; ``weight`` rescales elements (it broadcasts)."""

    def __init__(self, weight=None, reduction="mean"):
        super().__init__(reduction)
        self.weight = _weight_array("BCELoss", weight)

    def forward(self, input, target):
        return ops.apply(
            "binary_cross_entropy", input, target, reduction=self.reduction, weight=self.weight
        )


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy of logits, in one stable fused pass; ``weight`` rescales elements,
    ``pos_weight`` the positive term (per class along the last dimension, as torch)."""

    def __init__(self, weight=None, reduction="mean", pos_weight=None):
        super().__init__(reduction)
        self.weight = _weight_array("BCEWithLogitsLoss", weight)
        self.pos_weight = _weight_array("BCEWithLogitsLoss", pos_weight)

    def forward(self, input, target):
        return ops.apply(
            "binary_cross_entropy_with_logits",
            input,
            target,
            reduction=self.reduction,
            weight=self.weight,
            pos_weight=self.pos_weight,
        )
