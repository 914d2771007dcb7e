"""Loss modules with PyTorch's ``reduction`` argument: ``MSELoss``, ``CrossEntropyLoss``,
``NLLLoss``, ``L1Loss``, ``SmoothL1Loss``, ``HuberLoss``, ``BCELoss`` and ``BCEWithLogitsLoss``
(fused ops), and ``KLDivLoss``, ``MarginRankingLoss``, ``CosineEmbeddingLoss``,
``TripletMarginLoss``, ``PoissonNLLLoss``, ``GaussianNLLLoss``, ``SoftMarginLoss`` and
``MultiLabelSoftMarginLoss`` (their ``firefly.nn.functional`` compositions)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from firefly import ops
from firefly.nn import functional as F
from firefly.nn.module import Module
from firefly.ops.loss import check_reduction
from firefly.tensor import Tensor
from firefly.validation import check_number

# A target, or an input beside a Tensor: anything the ops convert (arrays, lists, numbers).
TensorLike = Tensor | ArrayLike
# A per-class or per-element weight: a Tensor or anything NumPy converts, or None for none.
Weight = Tensor | ArrayLike | None


class _Loss(Module):
    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        check_reduction(type(self).__name__, reduction)
        self.reduction = reduction

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class MSELoss(_Loss):
    """Mean squared error: ``reduce((input - target) ** 2)``.

    ``input`` and ``target`` must have the same shape: a (N, 1) prediction against a (N,)
    target would silently broadcast to (N, N), a classic bug, so it raises instead.
    """

    def forward(self, input: Tensor, target: TensorLike) -> Tensor:
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

    def __init__(
        self,
        weight: Weight = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(reduction)
        self.weight, self.ignore_index = _weight_array("CrossEntropyLoss", weight), ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, input: Tensor, target: TensorLike) -> Tensor:
        return ops.apply(
            "cross_entropy",
            input,
            target=_target_array(target),
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
        )


def _target_array(target: TensorLike) -> np.ndarray:
    return target._data if isinstance(target, Tensor) else np.asarray(target)


def _weight_array(owner: str, weight: Weight) -> np.ndarray | None:
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

    def __init__(
        self, weight: Weight = None, ignore_index: int = -100, reduction: str = "mean"
    ) -> None:
        super().__init__(reduction)
        self.weight, self.ignore_index = _weight_array("NLLLoss", weight), ignore_index

    def forward(self, input: Tensor, target: TensorLike) -> Tensor:
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

    def forward(self, input: Tensor, target: TensorLike) -> Tensor:
        return ops.apply("l1_loss", input, target, reduction=self.reduction)


class SmoothL1Loss(_Loss):
    """``SmoothL1Loss(reduction="mean", beta=1.0)``: quadratic below ``beta``, linear above."""

    def __init__(self, reduction: str = "mean", beta: float = 1.0) -> None:
        super().__init__(reduction)
        self.beta = beta

    def forward(self, input: Tensor, target: TensorLike) -> Tensor:
        return ops.apply("smooth_l1_loss", input, target, reduction=self.reduction, beta=self.beta)


class HuberLoss(_Loss):
    """``HuberLoss(reduction="mean", delta=1.0)``: quadratic up to ``delta``, then linear with
    slope delta."""

    def __init__(self, reduction: str = "mean", delta: float = 1.0) -> None:
        super().__init__(reduction)
        self.delta = delta

    def forward(self, input: Tensor, target: TensorLike) -> Tensor:
        return ops.apply("huber_loss", input, target, reduction=self.reduction, delta=self.delta)


class BCELoss(_Loss):
    """Binary cross-entropy of probabilities; ``weight`` rescales elements (it broadcasts)."""

    def __init__(self, weight: Weight = None, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.weight = _weight_array("BCELoss", weight)

    def forward(self, input: Tensor, target: TensorLike) -> Tensor:
        return ops.apply(
            "binary_cross_entropy", input, target, reduction=self.reduction, weight=self.weight
        )


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy of logits, in one stable fused pass; ``weight`` rescales elements,
    ``pos_weight`` the positive term (per class along the last dimension, as torch)."""

    def __init__(
        self, weight: Weight = None, reduction: str = "mean", pos_weight: Weight = None
    ) -> None:
        super().__init__(reduction)
        self.weight = _weight_array("BCEWithLogitsLoss", weight)
        self.pos_weight = _weight_array("BCEWithLogitsLoss", pos_weight)

    def forward(self, input: Tensor, target: TensorLike) -> Tensor:
        return ops.apply(
            "binary_cross_entropy_with_logits",
            input,
            target,
            reduction=self.reduction,
            weight=self.weight,
            pos_weight=self.pos_weight,
        )


class _ComposedLoss(Module):
    """A loss whose ``forward`` is its ``firefly.nn.functional`` function with the module's
    arguments; torch's deprecated ``size_average`` and ``reduce`` are read as torch reads them."""

    allowed: tuple[str, ...] = ("mean", "sum", "none")

    def __init__(
        self, size_average: bool | None = None, reduce: bool | None = None, reduction: str = "mean"
    ) -> None:
        super().__init__()
        self.reduction = F.loss_reduction(
            type(self).__name__, size_average, reduce, reduction, self.allowed
        )

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class KLDivLoss(_ComposedLoss):
    """``KLDivLoss(size_average=None, reduce=None, reduction="mean", log_target=False)``: the
    KL divergence of ``target`` from the log-probabilities ``input``; use
    ``reduction="batchmean"`` for the divergence's definition (the sum over the batch size)."""

    allowed = ("mean", "batchmean", "sum", "none")

    def __init__(
        self,
        size_average: bool | None = None,
        reduce: bool | None = None,
        reduction: str = "mean",
        log_target: bool = False,
    ) -> None:
        super().__init__(size_average, reduce, reduction)
        self.log_target = bool(log_target)

    def forward(self, input: Tensor, target: TensorLike) -> Tensor:
        return F.kl_div(input, target, reduction=self.reduction, log_target=self.log_target)


class MarginRankingLoss(_ComposedLoss):
    """``MarginRankingLoss(margin=0.0, size_average=None, reduce=None, reduction="mean")``."""

    def __init__(
        self,
        margin: float = 0.0,
        size_average: bool | None = None,
        reduce: bool | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(size_average, reduce, reduction)
        self.margin = float(check_number("MarginRankingLoss", "margin", margin))

    def forward(self, input1: Tensor, input2: Tensor, target: TensorLike) -> Tensor:
        return F.margin_ranking_loss(input1, input2, target, self.margin, reduction=self.reduction)


class CosineEmbeddingLoss(_ComposedLoss):
    """``CosineEmbeddingLoss(margin=0.0, size_average=None, reduce=None, reduction="mean")``."""

    def __init__(
        self,
        margin: float = 0.0,
        size_average: bool | None = None,
        reduce: bool | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(size_average, reduce, reduction)
        self.margin = float(check_number("CosineEmbeddingLoss", "margin", margin))

    def forward(self, input1: Tensor, input2: Tensor, target: TensorLike) -> Tensor:
        return F.cosine_embedding_loss(
            input1, input2, target, self.margin, reduction=self.reduction
        )


class TripletMarginLoss(_ComposedLoss):
    """``TripletMarginLoss(margin=1.0, p=2.0, eps=1e-6, swap=False, size_average=None,
    reduce=None, reduction="mean")``."""

    def __init__(
        self,
        margin: float = 1.0,
        p: float = 2.0,
        eps: float = 1e-6,
        swap: bool = False,
        size_average: bool | None = None,
        reduce: bool | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(size_average, reduce, reduction)
        self.margin = float(check_number("TripletMarginLoss", "margin", margin))
        self.p = float(check_number("TripletMarginLoss", "p", p, minimum=0.0, minimum_open=True))
        self.eps, self.swap = float(check_number("TripletMarginLoss", "eps", eps)), bool(swap)

    def forward(self, anchor: Tensor, positive: Tensor, negative: Tensor) -> Tensor:
        return F.triplet_margin_loss(
            anchor,
            positive,
            negative,
            self.margin,
            self.p,
            self.eps,
            self.swap,
            reduction=self.reduction,
        )


class PoissonNLLLoss(_ComposedLoss):
    """``PoissonNLLLoss(log_input=True, full=False, size_average=None, eps=1e-8, reduce=None,
    reduction="mean")``."""

    def __init__(
        self,
        log_input: bool = True,
        full: bool = False,
        size_average: bool | None = None,
        eps: float = 1e-8,
        reduce: bool | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(size_average, reduce, reduction)
        self.log_input, self.full = bool(log_input), bool(full)
        self.eps = float(check_number("PoissonNLLLoss", "eps", eps, minimum=0.0))

    def forward(self, log_input: Tensor, target: TensorLike) -> Tensor:
        return F.poisson_nll_loss(
            log_input, target, self.log_input, self.full, eps=self.eps, reduction=self.reduction
        )


class GaussianNLLLoss(_ComposedLoss):
    """``GaussianNLLLoss(*, full=False, eps=1e-6, reduction="mean")``; ``forward(input, target,
    var)``."""

    def __init__(self, *, full: bool = False, eps: float = 1e-6, reduction: str = "mean") -> None:
        super().__init__(reduction=reduction)
        self.full = bool(full)
        self.eps = float(check_number("GaussianNLLLoss", "eps", eps, minimum=0.0))

    def forward(self, input: Tensor, target: TensorLike, var: TensorLike) -> Tensor:
        return F.gaussian_nll_loss(input, target, var, self.full, self.eps, self.reduction)


class SoftMarginLoss(_ComposedLoss):
    """``SoftMarginLoss(size_average=None, reduce=None, reduction="mean")``."""

    def forward(self, input: Tensor, target: TensorLike) -> Tensor:
        return F.soft_margin_loss(input, target, reduction=self.reduction)


class MultiLabelSoftMarginLoss(_ComposedLoss):
    """``MultiLabelSoftMarginLoss(weight=None, size_average=None, reduce=None,
    reduction="mean")``; ``weight`` (C,) rescales each class."""

    def __init__(
        self,
        weight: Weight = None,
        size_average: bool | None = None,
        reduce: bool | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(size_average, reduce, reduction)
        self.weight = None if weight is None else Tensor(_weight_array(type(self).__name__, weight))

    def forward(self, input: Tensor, target: TensorLike) -> Tensor:
        return F.multilabel_soft_margin_loss(input, target, self.weight, reduction=self.reduction)
