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

from firefly import functions, ops, rearrange
from firefly.creation import as_tensor
from firefly.dtypes import float_or_default
from firefly.ops.conv import pair
from firefly.tensor import Tensor, vector_norm
from firefly.validation import as_int

__all__ = [
    "linear",
    "conv1d",
    "conv2d",
    "conv_transpose1d",
    "conv_transpose2d",
    "max_pool2d",
    "avg_pool2d",
    "adaptive_avg_pool2d",
    "max_pool1d",
    "avg_pool1d",
    "adaptive_avg_pool1d",
    "adaptive_max_pool1d",
    "adaptive_max_pool2d",
    "max_unpool1d",
    "max_unpool2d",
    "batch_norm",
    "layer_norm",
    "group_norm",
    "dropout",
    "embedding",
    "scaled_dot_product_attention",
    "packed_self_attention",
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
    "normalize",
    "cosine_similarity",
    "pairwise_distance",
    "one_hot",
    "kl_div",
    "margin_ranking_loss",
    "cosine_embedding_loss",
    "triplet_margin_loss",
    "poisson_nll_loss",
    "gaussian_nll_loss",
    "soft_margin_loss",
    "multilabel_soft_margin_loss",
    "pad",
    "pixel_shuffle",
    "pixel_unshuffle",
    "interpolate",
    "upsample",
    "instance_norm",
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
        return out if bias is None else ops.apply("add", out, bias)
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


def conv_transpose2d(
    input: _TensorLike,
    weight: _TensorLike,
    bias: _TensorLike | None = None,
    stride: _Size2d = 1,
    padding: _Size2d = 0,
    output_padding: _Size2d = 0,
    groups: int = 1,
    dilation: _Size2d = 1,
) -> Tensor:
    """The transposed convolution (the input gradient of ``conv2d`` by the same weight), weight
    (in_channels, out_channels / groups, kH, kW) as torch's."""
    if bias is None:
        bias = _constant(input, 0.0, np.shape(weight)[1] * groups if np.ndim(weight) > 1 else 0)
    return ops.apply(
        "conv_transpose2d",
        input,
        weight,
        bias,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        groups=groups,
        dilation=dilation,
    )


def conv_transpose1d(
    input: _TensorLike,
    weight: _TensorLike,
    bias: _TensorLike | None = None,
    stride: int | tuple[int] = 1,
    padding: int | tuple[int] = 0,
    output_padding: int | tuple[int] = 0,
    groups: int = 1,
    dilation: int | tuple[int] = 1,
) -> Tensor:
    """``conv_transpose2d`` over sequences (N, C, L); weight (in_channels, out_channels /
    groups, kL)."""
    if bias is None:
        bias = _constant(input, 0.0, np.shape(weight)[1] * groups if np.ndim(weight) > 1 else 0)
    return ops.apply(
        "conv_transpose1d",
        input,
        weight,
        bias,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        groups=groups,
        dilation=dilation,
    )


def _max_pool(op: str, input: _TensorLike, return_indices: bool, **attrs: Any) -> Any:
    """A max pooling op's output, and with ``return_indices`` the pair (output, int64 indices
    of the maxima as flat positions in each input plane), as torch returns them."""
    if not return_indices:
        return ops.apply(op, input, **attrs)
    indices: list[np.ndarray] = []
    out = ops.apply(op, input, indices_out=indices, **attrs)
    return out, Tensor._wrap(indices[0])


def max_pool2d(
    input: _TensorLike,
    kernel_size: _Size2d,
    stride: _Size2d | None = None,
    padding: _Size2d = 0,
    dilation: _Size2d = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Any:
    """torch's ``F.max_pool2d``; with ``return_indices=True`` the pair (output, indices), the
    indices int64 flat positions in each (H, W) input plane (``max_unpool2d`` takes them)."""
    return _max_pool(
        "max_pool2d",
        input,
        return_indices,
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
    (written into ``input`` with ``inplace``); otherwise, or with p = 0, return ``input``
    itself, as torch's does."""
    if not training or p == 0.0:
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


def packed_self_attention(
    qkv: _TensorLike,
    num_heads: int,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
) -> Tensor:
    """Multi-head self-attention on packed projections, one fused op (firefly's; torch has
    none). qkv (..., T, 3 * C) holds the queries, keys and values side by side and, within
    each, ``num_heads`` heads of C / num_heads side by side, as ``nn.Linear(C, 3 * C)`` gives
    them; the result is (..., T, C), the heads side by side again. It equals torch's
    ``q, k, v = qkv.split(C, -1)``, each ``.view(..., T, num_heads, C // num_heads)
    .transpose(-3, -2)``, ``scaled_dot_product_attention(q, k, v, dropout_p=dropout_p,
    is_causal=is_causal, scale=scale)``, ``.transpose(-3, -2).reshape(..., T, C)``, without
    the copies those views make here: the kernels read and write the heads in place."""
    return ops.apply(
        "packed_self_attention",
        qkv,
        num_heads=num_heads,
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


def normalize(
    input: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12, out: None = None
) -> Tensor:
    """``input`` divided by its ``p``-norm along ``dim``, the norm clamped to at least ``eps``."""
    if out is not None:
        raise TypeError("normalize: out= is not supported; use the returned tensor")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or eps < 0:
        raise ValueError(f"normalize: eps must be a non-negative number, got {eps!r}")
    x = as_tensor(input)
    return x / vector_norm("normalize", x, p, dim, True, None).clamp(min=eps)


def cosine_similarity(x1: Tensor, x2: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """The cosine similarity along ``dim`` (``firefly.cosine_similarity``)."""
    return functions.cosine_similarity(x1, x2, dim, eps)


def pairwise_distance(
    x1: Tensor, x2: Tensor, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False
) -> Tensor:
    """The ``p``-norm of ``x1 - x2 + eps`` along the last dim, as torch's."""
    difference = as_tensor(x1) - as_tensor(x2) + eps
    dim = -1 if difference.ndim else None
    return vector_norm("pairwise_distance", difference, p, dim, keepdim, None)


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """int64 one-hot codes of the int64 class indices in ``tensor``: a last dim of
    ``num_classes`` (-1: the largest index + 1). No graph: the result is discrete."""
    labels = np.asarray(getattr(tensor, "_data", tensor))
    return Tensor._wrap(rearrange.one_hot(labels, num_classes))


# ---------------------------------------------------------------------------------------------
# 1-D pooling: the 2-D ops on a sequence viewed as an image of height 1.


def _sequence_image(name: str, input: _TensorLike) -> tuple[Tensor, bool]:
    """``input`` (N, C, L) or (C, L) as a Tensor (N, C, 1, L), and whether it had no batch."""
    x = input if isinstance(input, Tensor) else Tensor(input)
    if x.ndim not in (2, 3):
        raise ValueError(
            f"{name}: input must be 3-D (N, C, L) or 2-D (C, L), got shape {tuple(x.shape)}"
        )
    unbatched = x.ndim == 2
    return x.reshape((1,) * unbatched + tuple(x.shape[:-1]) + (1, x.shape[-1])), unbatched


def _sequence_out(out: Tensor, unbatched: bool) -> Tensor:
    shape = tuple(out.shape[:2]) + (out.shape[-1],)
    return out.reshape(shape[1:] if unbatched else shape)


def _one(name: str, arg: str, value: Any, minimum: int) -> int:
    return pair(name, arg, value, minimum, 1)[0]


def max_pool1d(
    input: _TensorLike,
    kernel_size: int | tuple[int],
    stride: int | tuple[int] | None = None,
    padding: int | tuple[int] = 0,
    dilation: int | tuple[int] = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Any:
    """torch's ``F.max_pool1d``; with ``return_indices=True`` the pair (output, int64 indices
    into each input sequence)."""
    kernel = _one("max_pool1d", "kernel_size", kernel_size, 1)
    step = kernel if stride is None or stride == () else _one("max_pool1d", "stride", stride, 1)
    pad, spread = (
        _one("max_pool1d", "padding", padding, 0),
        _one("max_pool1d", "dilation", dilation, 1),
    )
    image, unbatched = _sequence_image("max_pool1d", input)
    out = _max_pool(
        "max_pool2d",
        image,
        return_indices,
        kernel_size=(1, kernel),
        stride=(1, step),
        padding=(0, pad),
        dilation=(1, spread),
        ceil_mode=ceil_mode,
    )
    return _sequences_out(out, unbatched)


def _sequences_out(out: Any, unbatched: bool) -> Any:
    """``_sequence_out`` of a pooling's output, or of both tensors of an (output, indices)
    pair: positions in a (1, L) plane are positions in the sequence."""
    if isinstance(out, tuple):
        return tuple(_sequence_out(t, unbatched) for t in out)
    return _sequence_out(out, unbatched)


def avg_pool1d(
    input: _TensorLike,
    kernel_size: int | tuple[int],
    stride: int | tuple[int] | None = None,
    padding: int | tuple[int] = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> Tensor:
    kernel = _one("avg_pool1d", "kernel_size", kernel_size, 1)
    step = kernel if stride is None or stride == () else _one("avg_pool1d", "stride", stride, 1)
    pad = _one("avg_pool1d", "padding", padding, 0)
    image, unbatched = _sequence_image("avg_pool1d", input)
    out = ops.apply(
        "avg_pool2d",
        image,
        kernel_size=(1, kernel),
        stride=(1, step),
        padding=(0, pad),
        ceil_mode=ceil_mode,
        count_include_pad=count_include_pad,
    )
    return _sequence_out(out, unbatched)


def adaptive_avg_pool1d(input: _TensorLike, output_size: int | tuple[int]) -> Tensor:
    size = _one("adaptive_avg_pool1d", "output_size", output_size, 1)
    image, unbatched = _sequence_image("adaptive_avg_pool1d", input)
    return _sequence_out(ops.apply("adaptive_avg_pool2d", image, output_size=(1, size)), unbatched)


def adaptive_max_pool2d(
    input: _TensorLike,
    output_size: int | tuple[int | None, int | None] | None,
    return_indices: bool = False,
) -> Any:
    """torch's ``F.adaptive_max_pool2d``; with ``return_indices=True`` the pair (output, int64
    flat positions of the maxima in each (H, W) input plane)."""
    return _max_pool("adaptive_max_pool2d", input, return_indices, output_size=output_size)


def adaptive_max_pool1d(
    input: _TensorLike, output_size: int | tuple[int], return_indices: bool = False
) -> Any:
    """torch's ``F.adaptive_max_pool1d``; with ``return_indices=True`` the pair (output, int64
    indices into each input sequence)."""
    size = _one("adaptive_max_pool1d", "output_size", output_size, 1)
    image, unbatched = _sequence_image("adaptive_max_pool1d", input)
    out = _max_pool("adaptive_max_pool2d", image, return_indices, output_size=(1, size))
    return _sequences_out(out, unbatched)


def _unpool_size(
    name: str,
    input: Tensor,
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    output_size: Sequence[int] | None,
) -> tuple[int, ...]:
    """torch's ``_unpool_output_size``: (in - 1) * stride - 2 * padding + kernel per spatial
    dim, or ``output_size`` (its spatial dims, or all of them), which must lie within a
    stride of that."""
    spatial = len(kernel)
    default = tuple(
        (n - 1) * s - 2 * p + k
        for n, k, s, p in zip(input.shape[-spatial:], kernel, stride, padding)
    )
    if output_size is None:
        sizes = default
    else:
        given = tuple(output_size)
        if len(given) in (spatial + 1, spatial + 2):
            given = given[-spatial:]
        if len(given) != spatial or any(
            isinstance(g, bool) or not isinstance(g, (int, np.integer)) for g in given
        ):
            raise ValueError(
                f"{name}: output_size must be {spatial} ints (or with the batch and channel "
                f"sizes in front), got {output_size!r}"
            )
        for g, d, s in zip(given, default, stride):
            if not d - s < g < d + s:
                raise ValueError(
                    f"{name}: output_size {tuple(output_size)} must lie strictly between "
                    f"{tuple(d - s for d, s in zip(default, stride))} and "
                    f"{tuple(d + s for d, s in zip(default, stride))} for input of shape "
                    f"{tuple(input.shape)} (kernel {kernel}, stride {stride}, padding {padding})"
                )
        sizes = tuple(int(g) for g in given)
    if min(sizes) < 1:
        raise ValueError(
            f"{name}: the output size {sizes} is empty for input of shape {tuple(input.shape)} "
            f"(kernel {kernel}, stride {stride}, padding {padding})"
        )
    return sizes


def _indices_array(name: str, indices: _TensorLike, input: Tensor) -> np.ndarray:
    index = np.asarray(getattr(indices, "_data", indices))
    if index.dtype != np.int64:
        raise TypeError(f"{name}: indices must be an int64 tensor, got {index.dtype}")
    if index.shape != tuple(input.shape):
        raise ValueError(
            f"{name}: indices of shape {index.shape} must have the input's shape "
            f"{tuple(input.shape)}"
        )
    return np.ascontiguousarray(index)


def max_unpool2d(
    input: _TensorLike,
    indices: _TensorLike,
    kernel_size: _Size2d,
    stride: _Size2d | None = None,
    padding: _Size2d = 0,
    output_size: Sequence[int] | None = None,
) -> Tensor:
    """torch's ``F.max_unpool2d``: ``max_pool2d``'s inverse in the maxima, each value written
    at its index into zeros of the output size; differentiable in ``input``."""
    x = _tensor(input)
    if x.ndim not in (3, 4):
        raise ValueError(
            f"max_unpool2d: input must be 4-D (N, C, H, W) or 3-D (C, H, W), got shape "
            f"{tuple(x.shape)}"
        )
    kernel = pair("max_unpool2d", "kernel_size", kernel_size, 1)
    step = kernel if stride is None else pair("max_unpool2d", "stride", stride, 1)
    pad = pair("max_unpool2d", "padding", padding, 0)
    sizes = _unpool_size("max_unpool2d", x, kernel, step, pad, output_size)
    index = _indices_array("max_unpool2d", indices, x)
    return ops.apply("max_unpool2d", x, indices=index, output_size=sizes)


def max_unpool1d(
    input: _TensorLike,
    indices: _TensorLike,
    kernel_size: int | tuple[int],
    stride: int | tuple[int] | None = None,
    padding: int | tuple[int] = 0,
    output_size: Sequence[int] | None = None,
) -> Tensor:
    """torch's ``F.max_unpool1d`` over (N, C, L) or (C, L): ``max_pool1d``'s inverse in the
    maxima, differentiable in ``input``."""
    kernel = _one("max_unpool1d", "kernel_size", kernel_size, 1)
    step = kernel if stride is None else _one("max_unpool1d", "stride", stride, 1)
    pad = _one("max_unpool1d", "padding", padding, 0)
    x = _tensor(input)
    (length,) = _unpool_size("max_unpool1d", x, (kernel,), (step,), (pad,), output_size)
    index = _indices_array("max_unpool1d", indices, x)
    image, unbatched = _sequence_image("max_unpool1d", x)
    index = index.reshape(image.shape)
    out = ops.apply("max_unpool2d", image, indices=index, output_size=(1, length))
    return _sequence_out(out, unbatched)


# ---------------------------------------------------------------------------------------------
# Losses composed from differentiable ops (their gradients, to any order, come from the ops).


def _tensor(value: _TensorLike) -> Tensor:
    return value if isinstance(value, Tensor) else Tensor(np.asarray(value))


def _target(value: _TensorLike, like: Tensor) -> Tensor:
    """A target as a float Tensor: integer and bool labels (+1/-1, 0/1) in ``like``'s dtype."""
    target = _tensor(value)
    if target.dtype in (np.float32, np.float64):
        return target
    return Tensor(target.numpy().astype(like.dtype))


def legacy_reduction(size_average: bool | None, reduce: bool | None, reduction: str) -> str:
    """torch's reading of the deprecated ``size_average`` and ``reduce`` arguments: either given
    overrides ``reduction`` (both default to True)."""
    if size_average is None and reduce is None:
        return reduction
    if reduce is False:
        return "none"
    return "sum" if size_average is False else "mean"


def _check_reduction(name: str, reduction: str, allowed=("mean", "sum", "none")) -> None:
    if reduction not in allowed:
        raise ValueError(f"{name}: reduction must be one of {allowed}, got {reduction!r}")


def loss_reduction(
    name: str,
    size_average: bool | None,
    reduce: bool | None,
    reduction: str,
    allowed=("mean", "sum", "none"),
) -> str:
    reduction = legacy_reduction(size_average, reduce, reduction)
    _check_reduction(name, reduction, allowed)
    return reduction


def _reduced(losses: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return losses.mean()
    return losses.sum() if reduction == "sum" else losses


def _same_shapes(name: str, **tensors: Tensor) -> None:
    shapes = {arg: tuple(t.shape) for arg, t in tensors.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{arg} {shape}" for arg, shape in shapes.items())
        raise ValueError(f"{name}: {listed} must have the same shape")


def _mask(value: Tensor, test) -> np.ndarray:
    return np.asarray(test(value.numpy()), dtype=bool)


def kl_div(
    input: _TensorLike,
    target: _TensorLike,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    log_target: bool = False,
) -> Tensor:
    """``target * (log(target) - input)`` (0 where target is 0), or with ``log_target``
    ``exp(target) * (target - input)``; ``reduction="batchmean"`` divides the sum by the batch
    size, the KL divergence's definition."""
    reduction = loss_reduction(
        "kl_div", size_average, reduce, reduction, ("mean", "batchmean", "sum", "none")
    )
    x, t = _tensor(input), _tensor(target)
    _same_shapes("kl_div", input=x, target=t)
    if log_target:
        losses = t.exp() * (t - x)
    else:  # xlogy(t, t): 0 where t is 0; log reads 1 there so that no inf or NaN appears
        positive = _mask(t, lambda a: a > 0)
        safe = ops.apply("where", t, Tensor(np.ones((), dtype=t.dtype)), condition=positive)
        losses = t * safe.log() - t * x
    if reduction == "batchmean":
        total = losses.sum()
        return total / x.shape[0] if x.ndim else total
    return _reduced(losses, reduction)


def margin_ranking_loss(
    input1: _TensorLike,
    input2: _TensorLike,
    target: _TensorLike,
    margin: float = 0.0,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Tensor:
    """``max(0, -target * (input1 - input2) + margin)``, target +1 or -1."""
    reduction = loss_reduction("margin_ranking_loss", size_average, reduce, reduction)
    x1, x2 = _tensor(input1), _tensor(input2)
    t = _target(target, x1)
    _same_shapes("margin_ranking_loss", input1=x1, input2=x2, target=t)
    losses = (-t * (x1 - x2) + margin).clamp(min=0.0)
    return _reduced(losses, reduction)


def cosine_embedding_loss(
    input1: _TensorLike,
    input2: _TensorLike,
    target: _TensorLike,
    margin: float = 0.0,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Tensor:
    """``1 - cos(input1, input2)`` where target is 1, ``max(0, cos - margin)`` where it is -1,
    the cosine over the last dimension of (N, D) or (D,) inputs, as torch's."""
    reduction = loss_reduction("cosine_embedding_loss", size_average, reduce, reduction)
    x1, x2, t = _tensor(input1), _tensor(input2), _tensor(target)
    _same_shapes("cosine_embedding_loss", input1=x1, input2=x2)
    if x1.ndim not in (1, 2) or tuple(t.shape) != tuple(x1.shape[:-1]):
        raise ValueError(
            "cosine_embedding_loss: inputs must be (N, D) with target (N,), or (D,) with a 0-d "
            f"target; got inputs {tuple(x1.shape)} and target {tuple(t.shape)}"
        )
    epsilon = 1e-12  # torch's, against a zero vector
    dim = x1.ndim - 1
    products = (x1 * x2).sum(dim=dim)
    squares1, squares2 = (x1 * x1).sum(dim=dim) + epsilon, (x2 * x2).sum(dim=dim) + epsilon
    cos = products / (squares1 * squares2).sqrt()
    zero = Tensor(np.zeros((), dtype=cos.dtype))
    similar = ops.apply("where", 1.0 - cos, zero, condition=_mask(t, lambda a: a == 1))
    dissimilar = ops.apply(
        "where", (cos - margin).clamp(min=0.0), zero, condition=_mask(t, lambda a: a == -1)
    )
    losses = similar + dissimilar
    return _reduced(losses, reduction)


def triplet_margin_loss(
    anchor: _TensorLike,
    positive: _TensorLike,
    negative: _TensorLike,
    margin: float = 1.0,
    p: float = 2,
    eps: float = 1e-6,
    swap: bool = False,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Tensor:
    """``max(0, margin + d(anchor, positive) - d(anchor, negative))`` with the p-norm
    distance of ``pairwise_distance``; ``swap`` takes the smaller of d(a, n) and d(p, n)."""
    reduction = loss_reduction("triplet_margin_loss", size_average, reduce, reduction)
    a, pos, neg = _tensor(anchor), _tensor(positive), _tensor(negative)
    _same_shapes("triplet_margin_loss", anchor=a, positive=pos, negative=neg)
    if a.ndim not in (1, 2):
        raise ValueError(
            f"triplet_margin_loss: inputs must be 2-D (N, D) or 1-D (D,), got {tuple(a.shape)}"
        )
    d_pos = pairwise_distance(a, pos, p, eps)
    d_neg = pairwise_distance(a, neg, p, eps)
    if swap:
        d_neg = d_neg.minimum(pairwise_distance(pos, neg, p, eps))
    losses = (margin + d_pos - d_neg).clamp(min=0.0)
    return _reduced(losses, reduction)


def poisson_nll_loss(
    input: _TensorLike,
    target: _TensorLike,
    log_input: bool = True,
    full: bool = False,
    size_average: bool | None = None,
    eps: float = 1e-8,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Tensor:
    """``exp(input) - target * input`` (``log_input``) or ``input - target * log(input +
    eps)``; ``full`` adds Stirling's approximation of log(target!) where target > 1."""
    reduction = loss_reduction("poisson_nll_loss", size_average, reduce, reduction)
    x, t = _tensor(input), _tensor(target)
    _same_shapes("poisson_nll_loss", input=x, target=t)
    losses = x.exp() - t * x if log_input else x - t * (x + eps).log()
    if full:
        above_one = _mask(t, lambda a: a > 1)
        safe = ops.apply("where", t, Tensor(np.full((), 2.0, dtype=t.dtype)), condition=above_one)
        stirling = safe * safe.log() - safe + 0.5 * (2 * np.pi * safe).log()
        losses = losses + ops.apply(
            "where", stirling, Tensor(np.zeros((), dtype=t.dtype)), condition=above_one
        )
    return _reduced(losses, reduction)


def gaussian_nll_loss(
    input: _TensorLike,
    target: _TensorLike,
    var: _TensorLike | float,
    full: bool = False,
    eps: float = 1e-6,
    reduction: str = "mean",
) -> Tensor:
    """``0.5 * (log(var) + (input - target) ** 2 / var)`` (+ 0.5 log(2 pi) with ``full``), var
    clamped below at ``eps`` without changing its gradient, as torch's. ``var`` has the input's
    shape, or one dimension of size 1 (or the last missing): one variance for several
    expectations."""
    x, t = _tensor(input), _tensor(target)
    _check_reduction("gaussian_nll_loss", reduction)
    if isinstance(var, (int, float)) and not isinstance(var, bool):
        if var < 0:
            raise ValueError(f"gaussian_nll_loss: var must be non-negative, got {var}")
        v = Tensor(np.full(tuple(x.shape), float(var), dtype=x.dtype))
    else:
        v = _tensor(var)
        if (v.numpy() < 0).any():
            raise ValueError("gaussian_nll_loss: var has negative entries")
    if tuple(v.shape) != tuple(x.shape):
        if tuple(x.shape[:-1]) == tuple(v.shape):
            v = v.unsqueeze(-1)
        elif not (v.ndim == x.ndim and sum(b for a, b in zip(x.shape, v.shape) if a != b) == 1):
            raise ValueError(
                f"gaussian_nll_loss: var of shape {tuple(v.shape)} does not fit input of shape "
                f"{tuple(x.shape)}: it must have the input's shape, or one dimension of size 1, "
                "or the last one missing"
            )
    # torch clamps a clone under no_grad: the value moves up to eps, the gradient stays 1.
    values = v.numpy()
    v = v + Tensor(np.maximum(values, eps) - values)
    losses = 0.5 * (v.log() + (x - t) ** 2 / v)
    if full:
        losses = losses + 0.5 * float(np.log(2 * np.pi))
    return _reduced(losses, reduction)


def soft_margin_loss(
    input: _TensorLike,
    target: _TensorLike,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Tensor:
    """``log(1 + exp(-target * input))``, target +1 or -1."""
    reduction = loss_reduction("soft_margin_loss", size_average, reduce, reduction)
    x = _tensor(input)
    t = _target(target, x)
    _same_shapes("soft_margin_loss", input=x, target=t)
    losses = (-t * x).exp().log1p()
    return _reduced(losses, reduction)


def multilabel_soft_margin_loss(
    input: _TensorLike,
    target: _TensorLike,
    weight: _TensorLike | None = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Tensor:
    """The binary cross-entropy of logits (N, C) against 0/1 targets, averaged over the C
    classes, then reduced over N; ``weight`` (C,) rescales each class."""
    reduction = loss_reduction("multilabel_soft_margin_loss", size_average, reduce, reduction)
    x = _tensor(input)
    t = _target(target, x)
    _same_shapes("multilabel_soft_margin_loss", input=x, target=t)
    if x.ndim == 0:
        raise ValueError("multilabel_soft_margin_loss: input must have a class dimension, got 0-D")
    losses = -(t * ops.apply("log_sigmoid", x) + (1 - t) * ops.apply("log_sigmoid", -x))
    if weight is not None:
        losses = losses * _tensor(weight)
    losses = losses.sum(dim=x.ndim - 1) / x.shape[-1]
    return _reduced(losses, reduction)


# ---------------------------------------------------------------------------------------------
# Padding, pixel shuffle and interpolation: gathers (``take``) and products with constant
# matrices, whose gradients to any order come from those ops.

_PAD_MODES = ("constant", "reflect", "replicate", "circular")


def _pad_sources(mode: str, size: int, before: int, after: int) -> np.ndarray:
    """For each output position along one axis, the input position it reads (-1: the fill)."""
    src = np.arange(-before, size + after)
    if mode == "constant":
        return np.where((src >= 0) & (src < size), src, -1)
    if mode == "reflect":
        src = np.abs(src)
        return np.where(src >= size, 2 * (size - 1) - src, src)
    if mode == "replicate":
        return np.clip(src, 0, size - 1)
    return src % size  # circular


def pad(
    input: _TensorLike, pad: Sequence[int], mode: str = "constant", value: float | None = None
) -> Tensor:
    """torch's ``F.pad``: ``pad`` lists (before, after) amounts from the last dimension
    backwards. "constant" fills with ``value`` (default 0) and takes negative amounts to crop;
    "reflect", "replicate" and "circular" pad the last 1, 2 or 3 dimensions of an input with
    one or two more."""
    x = _tensor(input)
    if mode not in _PAD_MODES:
        raise ValueError(f"pad: mode must be one of {_PAD_MODES}, got {mode!r}")
    amounts = tuple(pad) if isinstance(pad, (tuple, list)) else None
    if (
        amounts is None
        or len(amounts) % 2
        or any(isinstance(p, bool) or not isinstance(p, (int, np.integer)) for p in amounts)
    ):
        raise TypeError(f"pad: pad must be a tuple of an even number of ints, got {pad!r}")
    dims = len(amounts) // 2
    if dims > x.ndim:
        raise ValueError(
            f"pad: pad {amounts} covers {dims} dimensions but the input of shape "
            f"{tuple(x.shape)} has {x.ndim}"
        )
    if mode != "constant":
        if value not in (None, 0):
            raise ValueError(f"pad: value is only for mode='constant', got value={value!r}")
        if not 1 <= dims <= 3 or x.ndim not in (dims + 1, dims + 2):
            raise ValueError(
                f"pad: mode={mode!r} pads the last 1, 2 or 3 dimensions of an input with one or "
                f"two more; got pad {amounts} for an input of shape {tuple(x.shape)}"
            )
        if any(p < 0 for p in amounts):
            raise ValueError(f"pad: mode={mode!r} needs non-negative amounts, got {amounts}")
    shape = tuple(x.shape)
    sources = []
    for axis in range(x.ndim):
        size, back = shape[axis], x.ndim - 1 - axis
        before, after = amounts[2 * back : 2 * back + 2] if back < dims else (0, 0)
        limit = size - 1 if mode == "reflect" else size
        if mode != "constant" and (before > limit or after > limit):
            raise ValueError(
                f"pad: mode={mode!r} needs padding at most {limit} on dimension {axis} of size "
                f"{size}, got ({before}, {after})"
            )
        if size + before + after < 0:
            raise ValueError(
                f"pad: padding ({before}, {after}) leaves a negative size on dimension {axis} "
                f"of size {size}"
            )
        sources.append(_pad_sources(mode, size, before, after))
    strides = np.cumprod((1,) + shape[:0:-1])[::-1]
    grids = np.ix_(*sources) if sources else ()
    positions = np.zeros(tuple(len(s) for s in sources), dtype=np.int64)
    fill = np.zeros(positions.shape, dtype=bool)
    for grid, stride in zip(grids, strides):
        positions = positions + grid * int(stride)
        fill = fill | (grid < 0)
    flat = x.reshape(-1)
    if fill.any():
        positions = np.where(fill, x.numel(), positions)
        slot = Tensor(np.full(1, 0.0 if value is None else value, dtype=x.dtype))
        flat = ops.apply("cat", flat, slot, dim=0)
    return ops.apply("take", flat, index=positions.astype(np.int64))


def pixel_shuffle(input: _TensorLike, upscale_factor: int) -> Tensor:
    """(*, C r^2, H, W) -> (*, C, H r, W r)."""
    x, r = _tensor(input), as_int("pixel_shuffle", "upscale_factor", upscale_factor, 1)
    if x.ndim < 3 or x.shape[-3] % (r * r):
        raise ValueError(
            f"pixel_shuffle: input must be at least 3-D (*, C * {r}^2, H, W) with channels "
            f"divisible by upscale_factor^2 = {r * r}, got shape {tuple(x.shape)}"
        )
    *lead, c, h, w = x.shape
    k = len(lead)
    y = x.reshape(*lead, c // (r * r), r, r, h, w)
    y = y.permute(*range(k), k, k + 3, k + 1, k + 4, k + 2)
    return y.reshape(*lead, c // (r * r), h * r, w * r)


def pixel_unshuffle(input: _TensorLike, downscale_factor: int) -> Tensor:
    """(*, C, H r, W r) -> (*, C r^2, H, W), pixel_shuffle's inverse."""
    x, r = _tensor(input), as_int("pixel_unshuffle", "downscale_factor", downscale_factor, 1)
    if x.ndim < 3 or x.shape[-2] % r or x.shape[-1] % r:
        raise ValueError(
            f"pixel_unshuffle: input must be at least 3-D (*, C, H, W) with H and W divisible "
            f"by downscale_factor={r}, got shape {tuple(x.shape)}"
        )
    *lead, c, h, w = x.shape
    k = len(lead)
    y = x.reshape(*lead, c, h // r, r, w // r, r)
    y = y.permute(*range(k), k, k + 2, k + 4, k + 1, k + 3)
    return y.reshape(*lead, c * r * r, h // r, w // r)


_INTERPOLATE_MODES = {
    "nearest": (3, 4, 5),
    "nearest-exact": (3, 4, 5),
    "linear": (3,),
    "bilinear": (4,),
    "bicubic": (4,),
    "area": (3, 4),
}


def _nearest_sources(mode: str, size: int, out: int, scale: float | None) -> np.ndarray:
    """torch's nearest indices, in its float32 arithmetic."""
    if out == size:
        return np.arange(out)
    step = np.float32(1.0 / scale if scale else size / out)
    dst = np.arange(out, dtype=np.float32)
    if mode == "nearest-exact":
        dst = dst + np.float32(0.5)
    return np.minimum(np.floor(dst * step).astype(np.int64), size - 1)


def _linear_matrix(size: int, out: int, align_corners: bool, scale: float | None) -> np.ndarray:
    """(out, size): each output position's two weights, torch's source positions (clamped at
    0 from below, as torch does for the linear modes)."""
    src = _source_positions(size, out, align_corners, scale)
    if not align_corners:
        src = np.maximum(src, 0.0)
    low = src.astype(np.int64)
    high = low + (low < size - 1)
    weight_high = np.clip(src - low, 0.0, 1.0)
    matrix = np.zeros((out, size))
    np.add.at(matrix, (np.arange(out), low), 1.0 - weight_high)
    np.add.at(matrix, (np.arange(out), high), weight_high)
    return matrix


def _source_positions(size: int, out: int, align_corners: bool, scale: float | None) -> np.ndarray:
    """torch's area_pixel_compute_source_index before clamping: each output position's
    source coordinate (align_corners maps the corner pixels' centres onto each other)."""
    if align_corners:
        return ((size - 1) / (out - 1) if out > 1 else 0.0) * np.arange(out)
    step = 1.0 / scale if scale else size / out
    return step * (np.arange(out) + 0.5) - 0.5


def _cubic_matrix(size: int, out: int, align_corners: bool, scale: float | None) -> np.ndarray:
    """(out, size): each output position's four cubic-convolution weights (torch's A = -0.75)
    on the taps floor(src) - 1 .. floor(src) + 2, the taps outside the input clamped onto its
    border pixels, as torch's upsample_bicubic2d."""
    src = _source_positions(size, out, align_corners, scale)
    low = np.floor(src)
    t = src - low
    a = -0.75

    def near(d: np.ndarray) -> np.ndarray:  # Keys' kernel on |d| <= 1
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d: np.ndarray) -> np.ndarray:  # and on 1 < |d| < 2
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    # The taps lie at distances 1 + t, t, 1 - t and 2 - t from the source position.
    weights = np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=1)
    taps = np.clip(low.astype(np.int64)[:, None] + np.arange(-1, 3), 0, size - 1)
    matrix = np.zeros((out, size))
    np.add.at(matrix, (np.repeat(np.arange(out), 4), taps.reshape(-1)), weights.reshape(-1))
    return matrix


def interpolate(
    input: _TensorLike,
    size: int | Sequence[int] | None = None,
    scale_factor: float | Sequence[float] | None = None,
    mode: str = "nearest",
    align_corners: bool | None = None,
    recompute_scale_factor: bool | None = None,
    antialias: bool = False,
) -> Tensor:
    """torch's ``F.interpolate`` for modes "nearest", "nearest-exact", "linear" (3-D input),
    "bilinear" and "bicubic" (4-D) and "area", with torch's output sizes, source positions and
    ``align_corners``. Linear, bilinear and bicubic resample each spatial axis by a matrix of
    interpolation weights (a matmul each way, so gradients follow to any order)."""
    x = _tensor(input)
    if mode not in _INTERPOLATE_MODES:
        supported = ", ".join(repr(m) for m in _INTERPOLATE_MODES)
        raise ValueError(
            f"interpolate: mode must be one of {supported} (trilinear is not supported by "
            f"firefly), got {mode!r}"
        )
    if x.ndim not in _INTERPOLATE_MODES[mode]:
        ranks = " or ".join(f"{d}-D" for d in _INTERPOLATE_MODES[mode])
        raise ValueError(
            f"interpolate: mode={mode!r} needs a {ranks} input (N, C, ...), got shape "
            f"{tuple(x.shape)}"
        )
    if antialias:
        raise NotImplementedError("interpolate: antialias=True is not supported by firefly")
    if align_corners is not None and mode not in ("linear", "bilinear", "bicubic"):
        raise ValueError(
            f"interpolate: align_corners can only be set with the interpolating modes linear, "
            f"bilinear and bicubic, got mode={mode!r}"
        )
    spatial = x.ndim - 2
    in_sizes = tuple(x.shape[2:])
    if (size is None) == (scale_factor is None):
        raise ValueError("interpolate: give exactly one of size and scale_factor")
    if size is not None:
        sizes = (size,) * spatial if isinstance(size, (int, np.integer)) else tuple(size)
        if len(sizes) != spatial or any(
            isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in sizes
        ):
            raise ValueError(
                f"interpolate: size must be a positive int or {spatial} of them for a "
                f"{x.ndim}-D input, got {size!r}"
            )
        scales: tuple[float | None, ...] = (None,) * spatial
    else:
        factors = (
            (scale_factor,) * spatial
            if isinstance(scale_factor, (int, float))
            else tuple(scale_factor)  # type: ignore[arg-type]
        )
        if len(factors) != spatial or any(not f > 0 for f in factors):
            raise ValueError(
                f"interpolate: scale_factor must be a positive number or {spatial} of them for "
                f"a {x.ndim}-D input, got {scale_factor!r}"
            )
        sizes = tuple(int(np.floor(n * float(f))) for n, f in zip(in_sizes, factors))
        if min(sizes) < 1:
            raise ValueError(
                f"interpolate: scale_factor {scale_factor!r} makes an empty output from input "
                f"sizes {in_sizes}"
            )
        scales = (None,) * spatial if recompute_scale_factor else tuple(map(float, factors))
    if mode == "area":
        if spatial == 1:
            return adaptive_avg_pool1d(x, sizes[0])
        return ops.apply("adaptive_avg_pool2d", x, output_size=sizes)
    if mode in ("nearest", "nearest-exact"):
        sources = [_nearest_sources(mode, n, o, s) for n, o, s in zip(in_sizes, sizes, scales)]
        planes = x.shape[0] * x.shape[1]
        grids = np.ix_(np.arange(planes), *sources)
        positions = grids[0] * int(np.prod(in_sizes))
        for grid, stride in zip(grids[1:], np.cumprod((1,) + in_sizes[:0:-1])[::-1]):
            positions = positions + grid * int(stride)
        out = ops.apply("take", x.reshape(-1), index=positions.astype(np.int64))
        return out.reshape(tuple(x.shape[:2]) + sizes)
    weights = _cubic_matrix if mode == "bicubic" else _linear_matrix
    matrices = [
        Tensor(weights(n, o, bool(align_corners), s).astype(x.dtype))
        for n, o, s in zip(in_sizes, sizes, scales)
    ]
    out = x @ matrices[-1].t()
    return matrices[0] @ out if spatial == 2 else out


def upsample(
    input: _TensorLike,
    size: int | Sequence[int] | None = None,
    scale_factor: float | Sequence[float] | None = None,
    mode: str = "nearest",
    align_corners: bool | None = None,
) -> Tensor:
    """``interpolate`` under torch's older name."""
    return interpolate(input, size, scale_factor, mode, align_corners)


# ---------------------------------------------------------------------------------------------
# Instance normalization: group_norm with a group per channel, and batch_norm's evaluation
# with running statistics.


def instance_norm(
    input: _TensorLike,
    running_mean: _TensorLike | None = None,
    running_var: _TensorLike | None = None,
    weight: _TensorLike | None = None,
    bias: _TensorLike | None = None,
    use_input_stats: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Normalize each (sample, channel) over its positions. With ``use_input_stats`` the
    instance's statistics normalize, and ``running_mean``/``running_var`` (when given) move by
    ``momentum`` towards their averages over the batch (the variance unbiased), as torch's;
    otherwise the running statistics normalize."""
    x = _tensor(input)
    if x.ndim < 3:
        raise ValueError(
            f"instance_norm: input must be at least 3-D (N, C, ...), got shape {tuple(x.shape)}"
        )
    channels = x.shape[1]
    if not use_input_stats:
        if running_mean is None or running_var is None:
            raise ValueError(
                "instance_norm: use_input_stats=False needs running_mean and running_var"
            )
        return batch_norm(x, running_mean, running_var, weight, bias, False, eps=eps)
    if (running_mean is None) != (running_var is None):
        raise ValueError("instance_norm: give both running_mean and running_var, or neither")
    weight = _constant(x, 1.0, channels) if weight is None else weight
    bias = _constant(x, 0.0, channels) if bias is None else bias
    out = ops.apply("group_norm", x, weight, bias, num_groups=channels, eps=eps)
    if running_mean is not None:
        mean, var = _array(running_mean), _array(running_var)
        for name, buffer in (("running_mean", mean), ("running_var", var)):
            if not isinstance(buffer, np.ndarray) or buffer.shape != (channels,):
                raise ValueError(
                    f"instance_norm: {name} must have shape ({channels},), got "
                    f"{getattr(buffer, 'shape', type(buffer).__name__)}"
                )
        values = x.numpy().reshape(x.shape[0], channels, -1)
        unbiased = (
            values.var(axis=2, ddof=1) if values.shape[2] > 1 else np.full(values.shape[:2], np.nan)
        )
        mean *= 1.0 - momentum
        mean += momentum * values.mean(axis=2).mean(axis=0)
        var *= 1.0 - momentum
        var += momentum * unbiased.mean(axis=0)
    return out
