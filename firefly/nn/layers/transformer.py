"""The Transformer layers, as torch's (arguments, defaults, state_dict names and forward
signatures): TransformerEncoderLayer, TransformerDecoderLayer, TransformerEncoder,
TransformerDecoder and Transformer. The attention is ``nn.MultiheadAttention``, over the fused
``F.scaled_dot_product_attention``; the rest is Linear, LayerNorm and Dropout."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np

from firefly import devices
from firefly.nn import functional as F
from firefly.nn import init
from firefly.nn.layers.attention import MultiheadAttention
from firefly.nn.layers.container import ModuleList
from firefly.nn.layers.dropout import Dropout
from firefly.nn.layers.linear import Linear
from firefly.nn.layers.norm import LayerNorm
from firefly.nn.module import Module
from firefly.tensor import Tensor
from firefly.validation import as_int, check_flag

Activation = Callable[[Tensor], Tensor]


def _activation(owner: str, activation: str | Activation) -> Activation:
    """``activation`` as a function: "relu" and "gelu" by name (as torch), or any callable."""
    if isinstance(activation, str):
        if activation == "relu":
            return F.relu
        if activation == "gelu":
            return F.gelu
        raise ValueError(
            f"{owner}: activation should be 'relu', 'gelu' or a callable, not {activation!r}"
        )
    if not callable(activation):
        raise TypeError(
            f"{owner}: activation should be 'relu', 'gelu' or a callable, "
            f"got {type(activation).__name__}"
        )
    return activation


def _check_sizes(
    owner: str, d_model: Any, nhead: Any, dim_feedforward: Any
) -> tuple[int, int, int]:
    d_model = as_int(owner, "d_model", d_model, 1)
    nhead = as_int(owner, "nhead", nhead, 1)
    if d_model % nhead:
        raise ValueError(f"{owner}: d_model ({d_model}) must be divisible by nhead ({nhead})")
    return d_model, nhead, as_int(owner, "dim_feedforward", dim_feedforward, 1)


def _check_input(owner: str, name: str, x: Any, d_model: int) -> None:
    """A sequence is (S, E) unbatched or (S, N, E) / (N, S, E) batched, with E = d_model."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{owner}: {name} must be a Tensor, got {type(x).__name__}")
    if x.ndim not in (2, 3) or x.shape[-1] != d_model:
        raise ValueError(
            f"{owner}: {name} must be (seq, {d_model}) or 3-D with last dimension d_model="
            f"{d_model}, got shape {tuple(x.shape)} ({x.dtype})"
        )


def _sequence_length(x: Tensor, batch_first: bool) -> int:
    return x.shape[1] if batch_first and x.ndim == 3 else x.shape[0]


def _generate_square_subsequent_mask(sz: int, dtype: Any = None) -> Tensor:
    mask = np.triu(np.full((sz, sz), -np.inf), 1)
    return Tensor(mask, dtype=np.dtype(dtype or np.float32))


def _detect_is_causal_mask(mask: Tensor | None, is_causal: bool | None, size: int) -> bool:
    """``is_causal`` when given; otherwise whether ``mask`` is the float causal mask of ``size``
    (as torch, which then lets the attention skip the mask)."""
    if is_causal is not None:
        return bool(is_causal)
    if mask is None or tuple(mask.shape) != (size, size):
        return False
    return bool(np.array_equal(mask.numpy(), np.triu(np.full((size, size), -np.inf), 1)))


class TransformerEncoderLayer(Module):
    """``TransformerEncoderLayer(d_model, nhead, dim_feedforward=2048, dropout=0.1,
    activation="relu", layer_norm_eps=1e-5, batch_first=False, norm_first=False, bias=True,
    dtype=None)``: self-attention then a feed-forward network (linear1, activation, linear2),
    each added to its input, with LayerNorm after each sum (``norm_first``: before each
    sub-layer instead), as torch's."""

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str | Activation = F.relu,
        layer_norm_eps: float = 1e-5,
        batch_first: bool = False,
        norm_first: bool = False,
        bias: bool = True,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        d_model, nhead, dim_feedforward = _check_sizes(owner, d_model, nhead, dim_feedforward)
        self.self_attn = MultiheadAttention(
            d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first, dtype=dtype
        )
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, dtype=dtype)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, dtype=dtype)
        self.norm_first = check_flag(owner, "norm_first", norm_first)
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.activation = _activation(owner, activation)
        self.d_model, self.batch_first = d_model, bool(batch_first)

    def forward(
        self,
        src: Tensor,
        src_mask: Tensor | None = None,
        src_key_padding_mask: Tensor | None = None,
        is_causal: bool = False,
    ) -> Tensor:
        _check_input(type(self).__name__, "src", src, self.d_model)
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            return x + self._ff_block(self.norm2(x))
        x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
        return self.norm2(x + self._ff_block(x))

    def _sa_block(
        self,
        x: Tensor,
        attn_mask: Tensor | None,
        key_padding_mask: Tensor | None,
        is_causal: bool,
    ) -> Tensor:
        x = self.self_attn(
            x,
            x,
            x,
            attn_mask=attn_mask,
            key_padding_mask=key_padding_mask,
            need_weights=False,
            is_causal=is_causal,
        )[0]
        return self.dropout1(x)

    def _ff_block(self, x: Tensor) -> Tensor:
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))


class TransformerDecoderLayer(Module):
    """``TransformerDecoderLayer(d_model, nhead, dim_feedforward=2048, dropout=0.1,
    activation="relu", layer_norm_eps=1e-5, batch_first=False, norm_first=False, bias=True,
    dtype=None)``: self-attention over the target, attention from the target to ``memory``
    (the encoder's output), then the feed-forward network, each with a residual sum and a
    LayerNorm (after, or before with ``norm_first``), as torch's."""

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str | Activation = F.relu,
        layer_norm_eps: float = 1e-5,
        batch_first: bool = False,
        norm_first: bool = False,
        bias: bool = True,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        d_model, nhead, dim_feedforward = _check_sizes(owner, d_model, nhead, dim_feedforward)
        self.self_attn = MultiheadAttention(
            d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first, dtype=dtype
        )
        self.multihead_attn = MultiheadAttention(
            d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first, dtype=dtype
        )
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, dtype=dtype)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, dtype=dtype)
        self.norm_first = check_flag(owner, "norm_first", norm_first)
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.norm3 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.dropout3 = Dropout(dropout)
        self.activation = _activation(owner, activation)
        self.d_model, self.batch_first = d_model, bool(batch_first)

    def forward(
        self,
        tgt: Tensor,
        memory: Tensor,
        tgt_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        tgt_key_padding_mask: Tensor | None = None,
        memory_key_padding_mask: Tensor | None = None,
        tgt_is_causal: bool = False,
        memory_is_causal: bool = False,
    ) -> Tensor:
        owner = type(self).__name__
        _check_input(owner, "tgt", tgt, self.d_model)
        _check_input(owner, "memory", memory, self.d_model)
        x = tgt
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), tgt_mask, tgt_key_padding_mask, tgt_is_causal)
            x = x + self._mha_block(
                self.norm2(x), memory, memory_mask, memory_key_padding_mask, memory_is_causal
            )
            return x + self._ff_block(self.norm3(x))
        x = self.norm1(x + self._sa_block(x, tgt_mask, tgt_key_padding_mask, tgt_is_causal))
        x = self.norm2(
            x + self._mha_block(x, memory, memory_mask, memory_key_padding_mask, memory_is_causal)
        )
        return self.norm3(x + self._ff_block(x))

    def _sa_block(
        self,
        x: Tensor,
        attn_mask: Tensor | None,
        key_padding_mask: Tensor | None,
        is_causal: bool,
    ) -> Tensor:
        x = self.self_attn(
            x,
            x,
            x,
            attn_mask=attn_mask,
            key_padding_mask=key_padding_mask,
            is_causal=is_causal,
            need_weights=False,
        )[0]
        return self.dropout1(x)

    def _mha_block(
        self,
        x: Tensor,
        memory: Tensor,
        attn_mask: Tensor | None,
        key_padding_mask: Tensor | None,
        is_causal: bool,
    ) -> Tensor:
        x = self.multihead_attn(
            x,
            memory,
            memory,
            attn_mask=attn_mask,
            key_padding_mask=key_padding_mask,
            is_causal=is_causal,
            need_weights=False,
        )[0]
        return self.dropout2(x)

    def _ff_block(self, x: Tensor) -> Tensor:
        return self.dropout3(self.linear2(self.dropout(self.activation(self.linear1(x)))))


def _clones(owner: str, layer: Module, kind: type, num_layers: Any) -> ModuleList:
    """``num_layers`` deep copies of ``layer`` (each starts with ``layer``'s weights, as torch)."""
    if not isinstance(layer, kind):
        raise TypeError(f"{owner}: expected a {kind.__name__}, got {type(layer).__name__}")
    count = as_int(owner, "num_layers", num_layers, 1)
    return ModuleList([copy.deepcopy(layer) for _ in range(count)])


class TransformerEncoder(Module):
    """``TransformerEncoder(encoder_layer, num_layers, norm=None)``: ``num_layers`` copies of
    ``encoder_layer`` (a TransformerEncoderLayer) applied in turn, then ``norm`` if given.
    ``enable_nested_tensor`` and ``mask_check`` are accepted for torch's signature; firefly has
    no nested tensors, so padded positions are computed (and masked) like any other."""

    def __init__(
        self,
        encoder_layer: TransformerEncoderLayer,
        num_layers: int,
        norm: Module | None = None,
        enable_nested_tensor: bool = True,
        mask_check: bool = True,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.layers = _clones(owner, encoder_layer, TransformerEncoderLayer, num_layers)
        self.num_layers = len(self.layers)
        self.norm = norm
        self.enable_nested_tensor, self.mask_check = enable_nested_tensor, mask_check

    def forward(
        self,
        src: Tensor,
        mask: Tensor | None = None,
        src_key_padding_mask: Tensor | None = None,
        is_causal: bool | None = None,
    ) -> Tensor:
        first = self.layers[0]
        _check_input(type(self).__name__, "src", src, first.d_model)
        is_causal = _detect_is_causal_mask(
            mask, is_causal, _sequence_length(src, first.batch_first)
        )
        output = src
        for layer in self.layers:
            output = layer(
                output,
                src_mask=mask,
                is_causal=is_causal,
                src_key_padding_mask=src_key_padding_mask,
            )
        return output if self.norm is None else self.norm(output)


class TransformerDecoder(Module):
    """``TransformerDecoder(decoder_layer, num_layers, norm=None)``: ``num_layers`` copies of
    ``decoder_layer`` (a TransformerDecoderLayer) applied in turn, then ``norm`` if given."""

    def __init__(
        self, decoder_layer: TransformerDecoderLayer, num_layers: int, norm: Module | None = None
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.layers = _clones(owner, decoder_layer, TransformerDecoderLayer, num_layers)
        self.num_layers = len(self.layers)
        self.norm = norm

    def forward(
        self,
        tgt: Tensor,
        memory: Tensor,
        tgt_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        tgt_key_padding_mask: Tensor | None = None,
        memory_key_padding_mask: Tensor | None = None,
        tgt_is_causal: bool | None = None,
        memory_is_causal: bool = False,
    ) -> Tensor:
        first = self.layers[0]
        _check_input(type(self).__name__, "tgt", tgt, first.d_model)
        tgt_is_causal = _detect_is_causal_mask(
            tgt_mask, tgt_is_causal, _sequence_length(tgt, first.batch_first)
        )
        output = tgt
        for layer in self.layers:
            output = layer(
                output,
                memory,
                tgt_mask=tgt_mask,
                memory_mask=memory_mask,
                tgt_key_padding_mask=tgt_key_padding_mask,
                memory_key_padding_mask=memory_key_padding_mask,
                tgt_is_causal=tgt_is_causal,
                memory_is_causal=memory_is_causal,
            )
        return output if self.norm is None else self.norm(output)


class Transformer(Module):
    """``Transformer(d_model=512, nhead=8, num_encoder_layers=6, num_decoder_layers=6,
    dim_feedforward=2048, dropout=0.1, activation="relu", custom_encoder=None,
    custom_decoder=None, layer_norm_eps=1e-5, batch_first=False, norm_first=False, bias=True,
    dtype=None)``: an encoder and a decoder stack, each ending in a LayerNorm, as torch's; every
    matrix parameter starts Xavier-uniform (from firefly's generator)."""

    def __init__(
        self,
        d_model: int = 512,
        nhead: int = 8,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str | Activation = F.relu,
        custom_encoder: Module | None = None,
        custom_decoder: Module | None = None,
        layer_norm_eps: float = 1e-5,
        batch_first: bool = False,
        norm_first: bool = False,
        bias: bool = True,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        layer_args = (d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps)
        layer_kwargs = dict(batch_first=batch_first, norm_first=norm_first, bias=bias, dtype=dtype)
        if custom_encoder is not None:
            self.encoder = custom_encoder
        else:
            self.encoder = TransformerEncoder(
                TransformerEncoderLayer(*layer_args, **layer_kwargs),
                num_encoder_layers,
                LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype),
            )
        if custom_decoder is not None:
            self.decoder = custom_decoder
        else:
            self.decoder = TransformerDecoder(
                TransformerDecoderLayer(*layer_args, **layer_kwargs),
                num_decoder_layers,
                LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype),
            )
        for param in self.parameters():
            if param.dim() > 1:
                init.xavier_uniform_(param)
        self.d_model, self.nhead, self.batch_first = d_model, nhead, bool(batch_first)

    def forward(
        self,
        src: Tensor,
        tgt: Tensor,
        src_mask: Tensor | None = None,
        tgt_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        src_key_padding_mask: Tensor | None = None,
        tgt_key_padding_mask: Tensor | None = None,
        memory_key_padding_mask: Tensor | None = None,
        src_is_causal: bool | None = None,
        tgt_is_causal: bool | None = None,
        memory_is_causal: bool = False,
    ) -> Tensor:
        owner = type(self).__name__
        _check_input(owner, "src", src, self.d_model)
        _check_input(owner, "tgt", tgt, self.d_model)
        if src.ndim != tgt.ndim:
            raise ValueError(
                f"{owner}: src and tgt must both be batched or both unbatched, got shapes "
                f"{tuple(src.shape)} and {tuple(tgt.shape)}"
            )
        batch_dim = 0 if self.batch_first else 1
        if src.ndim == 3 and src.shape[batch_dim] != tgt.shape[batch_dim]:
            raise ValueError(
                f"{owner}: src and tgt must have the same batch size (dimension {batch_dim} with "
                f"batch_first={self.batch_first}), got shapes {tuple(src.shape)} and "
                f"{tuple(tgt.shape)}"
            )
        memory = self.encoder(
            src, mask=src_mask, src_key_padding_mask=src_key_padding_mask, is_causal=src_is_causal
        )
        return self.decoder(
            tgt,
            memory,
            tgt_mask=tgt_mask,
            memory_mask=memory_mask,
            tgt_key_padding_mask=tgt_key_padding_mask,
            memory_key_padding_mask=memory_key_padding_mask,
            tgt_is_causal=tgt_is_causal,
            memory_is_causal=memory_is_causal,
        )

    @staticmethod
    def generate_square_subsequent_mask(sz: int, device: Any = None, dtype: Any = None) -> Tensor:
        """The (sz, sz) float causal mask: -inf above the diagonal, 0 on and below it (position
        i attends to positions up to i), float32 unless ``dtype`` says otherwise."""
        owner = "Transformer.generate_square_subsequent_mask"
        devices.as_device(owner, device)
        return _generate_square_subsequent_mask(as_int(owner, "sz", sz, 0), dtype)
