"""MultiheadAttention, with torch's arguments, parameter names and layouts."""

from typing import Any

import numpy as np

from firefly.nn import functional as F
from firefly.nn import init
from firefly.nn.layers.linear import Linear
from firefly.nn.module import Module
from firefly.nn.parameter import Parameter
from firefly.tensor import Tensor
from firefly.validation import as_int


def _mask_array(name: str, mask: Any) -> np.ndarray:
    """A mask's array: bool (True: masked out, torch's MultiheadAttention convention) or
    float (added to the scores); anything else is a TypeError naming it."""
    array = np.asarray(getattr(mask, "_data", mask))
    if array.dtype != np.bool_ and array.dtype.kind != "f":
        raise TypeError(
            f"MultiheadAttention: {name} must be bool (True: masked out) or float (added to "
            f"the scores), got dtype {array.dtype} (shape {array.shape})"
        )
    return array


def _as_bias(mask: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A bool mask (True: masked out) as the float -inf/0 bias torch turns it into."""
    if mask.dtype == np.bool_:
        return np.where(mask, -np.inf, 0.0).astype(dtype)
    return mask.astype(dtype, copy=False)


class MultiheadAttention(Module):
    """``MultiheadAttention(embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False,
    add_zero_attn=False, kdim=None, vdim=None, batch_first=False, dtype=None)``, as torch's.

    Parameters as torch names and lays them out, so that its state_dicts load: ``in_proj_weight``
    (3 * embed_dim, embed_dim) when key and value have embed_dim features, else
    ``q_proj_weight`` (embed_dim, embed_dim), ``k_proj_weight`` (embed_dim, kdim) and
    ``v_proj_weight`` (embed_dim, vdim); ``in_proj_bias`` (3 * embed_dim,) and ``out_proj`` (a
    Linear). Torch's init: Xavier-uniform projections, zero biases, ``out_proj.weight`` as a
    Linear's. ``forward(query, key, value, key_padding_mask=None, need_weights=True,
    attn_mask=None, average_attn_weights=True, is_causal=False)`` returns ``(output,
    weights)``; the weights (batch first, averaged over heads unless ``average_attn_weights``
    is False) come from an unfused path, as in torch; with ``need_weights=False`` the heads run
    through the fused ``F.scaled_dot_product_attention`` and the weights are None.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = False,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        self.embed_dim = as_int("MultiheadAttention", "embed_dim", embed_dim, 1)
        self.num_heads = as_int("MultiheadAttention", "num_heads", num_heads, 1)
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"MultiheadAttention: embed_dim ({embed_dim}) must be divisible by num_heads "
                f"({num_heads})"
            )
        if add_bias_kv or add_zero_attn:
            raise NotImplementedError(
                "MultiheadAttention: add_bias_kv and add_zero_attn are not supported by firefly"
            )
        if isinstance(dropout, bool) or not 0.0 <= float(dropout) <= 1.0:
            raise ValueError(f"MultiheadAttention: dropout must be in [0, 1], got {dropout!r}")
        self.kdim = (
            self.embed_dim if kdim is None else as_int("MultiheadAttention", "kdim", kdim, 1)
        )
        self.vdim = (
            self.embed_dim if vdim is None else as_int("MultiheadAttention", "vdim", vdim, 1)
        )
        self._qkv_same_embed_dim = self.kdim == self.embed_dim and self.vdim == self.embed_dim
        self.dropout = float(dropout)
        self.batch_first = bool(batch_first)
        self.head_dim = self.embed_dim // self.num_heads
        dtype = np.dtype(dtype or np.float32)
        e = self.embed_dim
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(np.zeros((3 * e, e)), dtype=dtype)
            self.register_parameter("q_proj_weight", None)
            self.register_parameter("k_proj_weight", None)
            self.register_parameter("v_proj_weight", None)
        else:
            self.q_proj_weight = Parameter(np.zeros((e, e)), dtype=dtype)
            self.k_proj_weight = Parameter(np.zeros((e, self.kdim)), dtype=dtype)
            self.v_proj_weight = Parameter(np.zeros((e, self.vdim)), dtype=dtype)
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = Parameter(np.zeros(3 * e), dtype=dtype)
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(e, e, bias=bias, dtype=dtype)
        self.bias_k = self.bias_v = None
        self.add_zero_attn = False
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            init.xavier_uniform_(self.q_proj_weight)
            init.xavier_uniform_(self.k_proj_weight)
            init.xavier_uniform_(self.v_proj_weight)
        if self.in_proj_bias is not None and self.out_proj.bias is not None:  # both, or neither
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)

    def _projections(self, query: Tensor, key: Tensor, value: Tensor) -> tuple[Tensor, ...]:
        e, b = self.embed_dim, self.in_proj_bias
        biases = (None, None, None) if b is None else (b[:e], b[e : 2 * e], b[2 * e :])
        if self._qkv_same_embed_dim:
            w = self.in_proj_weight
            if query is key and key is value:  # self-attention: one product, as torch
                packed = F.linear(query, w, b)
                return packed[..., :e], packed[..., e : 2 * e], packed[..., 2 * e :]
            weights = (w[:e], w[e : 2 * e], w[2 * e :])
        else:
            weights = (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight)
        return tuple(F.linear(x, w, bb) for x, w, bb in zip((query, key, value), weights, biases))

    def forward(
        self,
        query: Any,
        key: Any,
        value: Any,
        key_padding_mask: Any = None,
        need_weights: bool = True,
        attn_mask: Any = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        query, key, value = (x if isinstance(x, Tensor) else Tensor(x) for x in (query, key, value))
        batched = query.ndim == 3
        expected = 3 if batched else 2
        features = (self.embed_dim, self.kdim, self.vdim)
        for name, x, size in zip(("query", "key", "value"), (query, key, value), features):
            if x.ndim != expected or x.shape[-1] != size:
                raise ValueError(
                    f"MultiheadAttention: expected {name} of shape "
                    f"{'(batch, length, ' if batched and self.batch_first else '(length, '}"
                    f"{'' if not batched or self.batch_first else 'batch, '}{size}), got "
                    f"{tuple(x.shape)} (query {tuple(query.shape)}, key {tuple(key.shape)}, "
                    f"value {tuple(value.shape)})"
                )
        # Internally (batch, length, features); unbatched inputs get a batch of one.
        if not batched:
            query, key, value = (x.unsqueeze(0) for x in (query, key, value))
        elif not self.batch_first:
            # Kept identical objects when they were: self-attention's packed projection.
            same_kv = key is value
            same_qk = query is key
            query = query.transpose(0, 1)
            key = query if same_qk else key.transpose(0, 1)
            value = key if same_kv else value.transpose(0, 1)
        n, tq, _ = query.shape
        tk = key.shape[1]
        if key.shape[:2] != value.shape[:2] or key.shape[0] != n:
            raise ValueError(
                f"MultiheadAttention: query, key and value must share the batch size, and key "
                f"and value the length; got query {tuple(query.shape)}, key "
                f"{tuple(key.shape)} and value {tuple(value.shape)} (as batch, length, features)"
            )
        bias = self._mask(key_padding_mask, attn_mask, n, tq, tk, batched, query.dtype)
        if is_causal and attn_mask is None:
            raise ValueError(
                "MultiheadAttention: is_causal=True needs attn_mask (the causal mask, as torch; "
                "nn.Transformer.generate_square_subsequent_mask makes one)"
            )
        causal = is_causal and key_padding_mask is None and not need_weights
        q, k, v = self._projections(query, key, value)
        h, d = self.num_heads, self.head_dim
        q, k, v = (x.reshape(n, x.shape[1], h, d).transpose(1, 2) for x in (q, k, v))
        dropout_p = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            scores = (q * float(d) ** -0.5) @ k.transpose(-1, -2)
            if bias is not None:
                scores = scores + bias
            weights = scores.softmax(axis=-1)
            if dropout_p > 0.0:
                weights = F.dropout(weights, p=dropout_p)
            heads = weights @ v
            if average_attn_weights:
                weights = weights.mean(axis=1)
            if not batched:
                weights = weights.squeeze(0)
        else:
            heads = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=None if causal else bias,
                dropout_p=dropout_p,
                is_causal=causal,
            )
        out = self.out_proj(heads.transpose(1, 2).reshape(n, tq, self.embed_dim))
        if not batched:
            out = out.squeeze(0)
        elif not self.batch_first:
            out = out.transpose(0, 1)
        return out, weights

    def _mask(
        self,
        key_padding_mask: Any,
        attn_mask: Any,
        n: int,
        tq: int,
        tk: int,
        batched: bool,
        dtype: np.dtype,
    ) -> np.ndarray | None:
        """Both masks as one float bias of shape (n or 1, heads or 1, tq, tk), torch's merge: a
        bool mask becomes -inf where True, and the two are added."""
        bias = None
        if attn_mask is not None:
            mask = _mask_array("attn_mask", attn_mask)
            heads = (n * self.num_heads, tq, tk)
            if mask.shape == (tq, tk):
                bias = _as_bias(mask, dtype)[None, None]
            elif mask.ndim == 3 and mask.shape == heads:
                bias = _as_bias(mask, dtype).reshape(n, self.num_heads, tq, tk)
            else:
                raise ValueError(
                    f"MultiheadAttention: attn_mask must be (target length, source length) = "
                    f"{(tq, tk)} or (batch * num_heads, target, source) = {heads}, got "
                    f"{mask.shape}"
                )
        if key_padding_mask is not None:
            mask = _mask_array("key_padding_mask", key_padding_mask)
            expected = (n, tk) if batched else (tk,)
            if mask.shape != expected:
                raise ValueError(
                    f"MultiheadAttention: key_padding_mask must be (batch, source length) = "
                    f"{expected}, got {mask.shape}"
                )
            padding = _as_bias(mask, dtype).reshape(n, 1, 1, tk)
            bias = padding if bias is None else bias + padding
        return bias

    def extra_repr(self) -> str:
        return (
            f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}, "
            f"batch_first={self.batch_first}"
        )
