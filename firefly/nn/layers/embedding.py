"""Embedding: a lookup table of vectors indexed by integers."""

from __future__ import annotations

import numpy as np
from numpy.typing import DTypeLike

from firefly import random
from firefly.nn import functional as F
from firefly.nn.module import Module
from firefly.nn.parameter import Parameter
from firefly.tensor import Tensor
from firefly.validation import as_int


class Embedding(Module):
    """``Embedding(num_embeddings, embedding_dim, padding_idx=None, dtype=None)``: ``weight``
    (num_embeddings, embedding_dim) starts N(0, 1), as torch, with the ``padding_idx`` row zero;
    that row gets no gradient. Calling it with integer indices (an array or an integer Tensor)
    returns ``indices.shape + (embedding_dim,)``."""

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        dtype: DTypeLike | None = None,
    ) -> None:
        super().__init__()
        self.num_embeddings = as_int("Embedding", "num_embeddings", num_embeddings, 1)
        self.embedding_dim = as_int("Embedding", "embedding_dim", embedding_dim, 1)
        if max_norm is not None:
            raise NotImplementedError("Embedding: max_norm is not supported by firefly")
        if padding_idx is not None:
            padding_idx = as_int("Embedding", "padding_idx", padding_idx, -self.num_embeddings)
            if padding_idx >= self.num_embeddings:
                raise ValueError(
                    f"Embedding: padding_idx must be below num_embeddings ({num_embeddings}), "
                    f"got {padding_idx}"
                )
            padding_idx %= self.num_embeddings
        self.padding_idx = padding_idx
        weight = random.generator().normal(size=(self.num_embeddings, self.embedding_dim))
        if padding_idx is not None:
            weight[padding_idx] = 0.0
        self.weight = Parameter(weight, dtype=np.dtype(dtype or np.float32))

    def forward(self, indices: Tensor | np.ndarray) -> Tensor:
        return F.embedding(indices, self.weight.tensor, self.padding_idx)

    def extra_repr(self) -> str:
        text = f"{self.num_embeddings}, {self.embedding_dim}"
        return text + (f", padding_idx={self.padding_idx}" if self.padding_idx is not None else "")
