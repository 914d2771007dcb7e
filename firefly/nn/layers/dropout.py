"""Dropout: zeroes elements with probability p while training; the identity in eval()."""

from __future__ import annotations

import numbers

from firefly.nn import functional as F
from firefly.nn.module import Module
from firefly.tensor import Tensor


class Dropout(Module):
    """``Dropout(p=0.5, inplace=False)``: in ``train()`` mode each element is zeroed with
    probability p (drawn from firefly's generator) and the rest scaled by 1 / (1 - p); in
    ``eval()`` mode, or with p = 0, the input passes through unchanged (the same tensor, as
    torch's)."""

    p: float
    inplace: bool

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be a probability in [0, 1], got {p!r}")
        self.p, self.inplace = float(p), inplace

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training, self.inplace)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"
