"""``firefly.nn.functional``: torch.nn.functional's names, arguments and defaults for what
firefly has. Each function runs registered ops; ``import firefly.nn.functional as F``.

Layouts follow torch: ``conv2d`` weights are (out_channels, in_channels/groups, kH, kW) and
``linear`` takes torch's (out_features, in_features) weight, the layout of
``firefly.nn.Linear.weight``.
"""

from collections.abc import Sequence
from typing import Any, overload

import numpy as np
from numpy.typing import ArrayLike

from firefly import ops
from firefly.dtypes import float_or_default
from firefly.tensor import Tensor

__all__ = [
    "linear",
    "conv1d",
    "conv2d",
    "max_pool2d",
    "avg_pool2d",
    "adaptive_avg_pool2d",
    "batch_norm",
    "layer_norm",
    "group_norm",
    "dropout",
    "embedding",
    "scaled_dot_product_attention",
    "relu",
    "sigmoid",
    "tanh",
    "gelu",
    "leaky_relu",
    "elu",
    "silu",
    "softplus",
    "hardtanh",
    "logsigmoid",
    "softmax",
    "log_softmax",
    "cross_entropy",
    "nll_loss",
    "mse_loss",
    "l1_loss",
    "smooth_l1_loss",
    "huber_loss",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
]

# What the functions take as input: a Tensor, or data a Tensor is made from (an ndarray, a number).
_TensorLike = Tensor | ArrayLike
# A kernel size, stride, padding or dilation: one int for both spatial dimensions, or one each.
_Size2d = int | tuple[int, int]


def _constant(x, value, size):
    """A Tensor of ``size`` copies of ``value`` in x's dtype: the weight or bias torch treats
    as absent."""
    return Tensor(np.full(size, value, dtype=float_or_default(getattr(x, "dtype", None))))


def _array(buffer):
    return None if buffer is None else getattr(buffer, "_data", buffer)


def _channels(name, input, dim):
    shape = np.shape(input)
    if len(shape) <= dim:
        raise ValueError(f"{name}: input of shape {shape} has no channel dimension {dim}")
    return shape[dim]


def linear(input: _TensorLike, weight: _TensorLike, bias: _TensorLike | None = None) -> Tensor:
    """``input @ weight.T + bias`` with torch's (out_features, in_features) weight, as one
    ``linear`` op; a 1-D weight (in_features,) gives ``input @ weight`` (+ bias), as in torch."""
    if np.ndim(weight) != 2:
        out = ops.apply("matmul", input, weight)
        return out if bias is None else out + bias
    if bias is None:  # a zero bias costs one row sum in backward; a second op would cost more
        bias = _constant(input, 0.0, np.shape(weight)[0])
    return ops.apply("linear", input, weight, bias)


def conv2d(
    input: _TensorLike,
    weight: _TensorLike,
    bias: _TensorLike | None = None,
    stride: _Size2d = 1,
    padding: _Size2d | str = 0,
    dilation: _Size2d = 1,
    groups: int = 1,
) -> Tensor:
    if bias is None:
        bias = _constant(input, 0.0, np.shape(weight)[0])
    return ops.apply(
        "conv2d",
        input,
        weight,
        bias,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
    )


def conv1d(
    input: _TensorLike,
    weight: _TensorLike,
    bias: _TensorLike | None = None,
    stride: int | tuple[int] = 1,
    padding: int | tuple[int] | str = 0,
    dilation: int | tuple[int] = 1,
    groups: int = 1,
) -> Tensor:
    if bias is None:
        bias = _constant(input, 0.0, np.shape(weight)[0])
    return ops.apply(
        "conv1d",
        input,
        weight,
        bias,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
    )


def max_pool2d(
    input: _TensorLike,
    kernel_size: _Size2d,
    stride: _Size2d | None = None,
    padding: _Size2d = 0,
    dilation: _Size2d = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Tensor:
    if return_indices:
        raise NotImplementedError("max_pool2d: return_indices=True is not supported by firefly")
    return ops.apply(
        "max_pool2d",
        input,
        kernel_size=kernel_size,
        stride=stride,
        padding=padding,
        dilation=dilation,
        ceil_mode=ceil_mode,
    )


def avg_pool2d(
    input: _TensorLike,
    kernel_size: _Size2d,
    stride: _Size2d | None = None,
    padding: _Size2d = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Tensor:
    return ops.apply(
        "avg_pool2d",
        input,
        kernel_size=kernel_size,
        stride=stride,
        padding=padding,
        ceil_mode=ceil_mode,
        count_include_pad=count_include_pad,
        divisor_override=divisor_override,
    )


def adaptive_avg_pool2d(
    input: _TensorLike, output_size: int | tuple[int | None, int | None] | None
) -> Tensor:
    return ops.apply("adaptive_avg_pool2d", input, output_size=output_size)


def batch_norm(
    input: _TensorLike,
    running_mean: _TensorLike | None,
    running_var: _TensorLike | None,
    weight: _TensorLike | None = None,
    bias: _TensorLike | None = None,
    training: bool = False,
    momentum: float | None = 0.1,
    eps: float = 1e-5,
    *,
    num_batches_tracked: _TensorLike | None = None,
) -> Tensor:
    """Normalize per channel (dimension 1). ``running_mean``/``running_var`` (Tensors or arrays,
    or None) are updated in place when ``training``. Beyond torch: ``num_batches_tracked`` (a
    BatchNorm layer's int64 counter) is advanced by each update, and ``momentum=None`` then
    makes the update a cumulative average, as the layers do."""
    channels = _channels("batch_norm", input, 1)
    weight = _constant(input, 1.0, channels) if weight is None else weight
    bias = _constant(input, 0.0, channels) if bias is None else bias
    return ops.apply(
        "batch_norm",
        input,
        weight,
        bias,
        running_mean=_array(running_mean),
        running_var=_array(running_var),
        training=training,
        momentum=momentum,
        eps=eps,
        num_batches_tracked=_array(num_batches_tracked),
    )


def layer_norm(
    input: _TensorLike,
    normalized_shape: int | Sequence[int],
    weight: _TensorLike | None = None,
    bias: _TensorLike | None = None,
    eps: float = 1e-5,
) -> Tensor:
    shape = (
        (normalized_shape,)
        if isinstance(normalized_shape, (int, np.integer))
        else tuple(normalized_shape)
    )
    weight = _constant(input, 1.0, shape) if weight is None else weight
    bias = _constant(input, 0.0, shape) if bias is None else bias
    return ops.apply("layer_norm", input, weight, bias, normalized_shape=shape, eps=eps)


def group_norm(
    input: _TensorLike,
    num_groups: int,
    weight: _TensorLike | None = None,
    bias: _TensorLike | None = None,
    eps: float = 1e-5,
) -> Tensor:
    channels = _channels("group_norm", input, 1)
    weight = _constant(input, 1.0, channels) if weight is None else weight
    bias = _constant(input, 0.0, channels) if bias is None else bias
    return ops.apply("group_norm", input, weight, bias, num_groups=num_groups, eps=eps)


@overload
def dropout(
    input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False
) -> Tensor: ...
@overload
def dropout(
    input: ArrayLike, p: float = 0.5, training: bool = True, inplace: bool = False
) -> _TensorLike: ...
def dropout(
    input: _TensorLike, p: float = 0.5, training: bool = True, inplace: bool = False
) -> _TensorLike:
    """Zero elements with probability ``p`` and scale the rest by 1 / (1 - p) when ``training``
    (written into ``input`` with ``inplace``); otherwise return ``input`` itself."""
    if not training:
        return input
    return activation("dropout", input, inplace, p=p, training=True)


def embedding(
    input: _TensorLike,
    weight: _TensorLike,
    padding_idx: int | None = None,
    max_norm: float | None = None,
) -> Tensor:
    """Rows of ``weight`` picked by the integer ``input``; no gradient reaches row
    ``padding_idx``."""
    if max_norm is not None:
        raise NotImplementedError("embedding: max_norm is not supported by firefly")
    return ops.apply("embedding", weight, indices=_array(input), padding_idx=padding_idx)


def scaled_dot_product_attention(
    query: _TensorLike,
    key: _TensorLike,
    value: _TensorLike,
    attn_mask: _TensorLike | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> Tensor:
    """softmax(query @ key^T * scale + mask) @ value over the last two dimensions, as torch's:
    query (..., L, E), key (..., S, E), value (..., S, Ev) -> (..., L, Ev). ``attn_mask``
    broadcasts to (..., L, S): bool (True: attend) or float (added to the scores);
    ``is_causal`` lets query i attend keys 0..i; ``scale`` defaults to 1 / sqrt(E); dropout
    (``dropout_p``, applied whatever the mode, as torch) draws from firefly's generator. A query
    row that can attend no key gives zeros, as torch. One fused op: the (L, S) scores are never
    held, in the forward or the backward."""
    if enable_gqa:
        raise NotImplementedError(
            "scaled_dot_product_attention: enable_gqa=True is not supported by firefly; "
            "repeat key and value along the head dimension instead"
        )
    bias: _TensorLike = 0.0
    bool_mask = None
    if attn_mask is not None:
        if is_causal:
            raise ValueError(
                "scaled_dot_product_attention: pass attn_mask or is_causal=True, not both "
                "(as torch)"
            )
        mask_dtype = np.dtype(getattr(attn_mask, "dtype", None) or np.asarray(attn_mask).dtype)
        if mask_dtype == np.bool_:
            bool_mask = _array(attn_mask)
        elif mask_dtype.kind == "f":
            bias = attn_mask
        else:
            raise TypeError(
                "scaled_dot_product_attention: attn_mask must be bool (True: attend) or "
                f"float (added to the scores), got dtype {mask_dtype} (shape "
                f"{np.shape(attn_mask)})"
            )
    return ops.apply(
        "scaled_dot_product_attention",
        query,
        key,
        value,
        bias,
        bool_mask=bool_mask,
        is_causal=is_causal,
        scale=scale,
        dropout_p=dropout_p,
    )


def activation(name: str, input: _TensorLike, inplace: bool, **attrs: Any) -> Tensor:
    """Op ``name`` applied to ``input``; with ``inplace``, written into ``input`` (torch's
    ``inplace=True``, under its in-place rules: a leaf that requires grad is refused, and in a
    recorded graph the write is recorded like any in-place op)."""
    if not inplace:
        return ops.apply(name, input, **attrs)
    if not isinstance(input, Tensor):
        raise TypeError(
            f"{name}(inplace=True): input must be a Tensor to write into, got "
            f"{type(input).__name__}"
        )
    # Tensor._in_place holds the leaf rule, the shape check and the recording for every
    # in-place method; an in-place activation is one more of them.
    return input._in_place(f"{name}(inplace=True)", lambda: ops.apply(name, input, **attrs))


def relu(input: _TensorLike, inplace: bool = False) -> Tensor:
    return activation("relu", input, inplace)


def sigmoid(input: _TensorLike) -> Tensor:
    return ops.apply("sigmoid", input)


def tanh(input: _TensorLike) -> Tensor:
    return ops.apply("tanh", input)


def gelu(input: _TensorLike, approximate: str = "none") -> Tensor:
    return ops.apply("gelu", input, approximate=approximate)


def leaky_relu(input: _TensorLike, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    return activation("leaky_relu", input, inplace, negative_slope=negative_slope)


def elu(input: _TensorLike, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    return activation("elu", input, inplace, alpha=alpha)


def silu(input: _TensorLike, inplace: bool = False) -> Tensor:
    return activation("silu", input, inplace)


def softplus(input: _TensorLike, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    return ops.apply("softplus", input, beta=beta, threshold=threshold)


def hardtanh(
    input: _TensorLike, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False
) -> Tensor:
    return activation("hardtanh", input, inplace, min_val=min_val, max_val=max_val)


def logsigmoid(input: _TensorLike) -> Tensor:
    return ops.apply("log_sigmoid", input)


def softmax(input: _TensorLike, dim: int | None = None) -> Tensor:
    return ops.apply("softmax", input, axis=-1 if dim is None else dim)


def log_softmax(input: _TensorLike, dim: int | None = None) -> Tensor:
    return ops.apply("log_softmax", input, axis=-1 if dim is None else dim)


def cross_entropy(
    input: _TensorLike,
    target: _TensorLike,
    weight: _TensorLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    return ops.apply(
        "cross_entropy",
        input,
        target=_array(target),
        weight=_array(weight),
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
    )


def mse_loss(input: _TensorLike, target: _TensorLike, reduction: str = "mean") -> Tensor:
    if reduction == "none":
        diff = ops.apply("sub", input, target)
        return ops.apply("mul", diff, diff)
    return ops.apply("mse_loss", input, target, reduction=reduction)


def nll_loss(
    input: _TensorLike,
    target: _TensorLike,
    weight: _TensorLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    return ops.apply(
        "nll_loss",
        input,
        target=_array(target),
        weight=_array(weight),
        ignore_index=ignore_index,
        reduction=reduction,
    )


def l1_loss(input: _TensorLike, target: _TensorLike, reduction: str = "mean") -> Tensor:
    return ops.apply("l1_loss", input, target, reduction=reduction)


def smooth_l1_loss(
    input: _TensorLike, target: _TensorLike, reduction: str = "mean", beta: float = 1.0
) -> Tensor:
    return ops.apply("smooth_l1_loss", input, target, reduction=reduction, beta=beta)


def huber_loss(
    input: _TensorLike, target: _TensorLike, reduction: str = "mean", delta: float = 1.0
) -> Tensor:
    return ops.apply("huber_loss", input, target, reduction=reduction, delta=delta)


def binary_cross_entropy(
    input: _TensorLike,
    target: _TensorLike,
    weight: _TensorLike | None = None,
    reduction: str = "mean",
) -> Tensor:
    return ops.apply(
        "binary_cross_entropy", input, target, weight=_array(weight), reduction=reduction
    )


def binary_cross_entropy_with_logits(
    input: _TensorLike,
    target: _TensorLike,
    weight: _TensorLike | None = None,
    reduction: str = "mean",
    pos_weight: _TensorLike | None = None,
) -> Tensor:
    return ops.apply(
        "binary_cross_entropy_with_logits",
        input,
        target,
        weight=_array(weight),
        pos_weight=_array(pos_weight),
        reduction=reduction,
    )
