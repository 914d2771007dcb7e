"""Linear: y = x @ weight.T + bias, with torch's (out_features, in_features) weight."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import DTypeLike

from firefly import ops, random
from firefly.nn import functional as F
from firefly.nn.module import Module
from firefly.nn.parameter import Parameter
from firefly.tensor import Tensor
from firefly.validation import as_int


class Linear(Module):
    """``Linear(in_features, out_features, bias=True, dtype=None)``.

    ``weight`` is (out_features, in_features), as in torch, and ``bias`` (out_features,), so
    torch state_dicts load as they are, ``F.linear(x, layer.weight)`` works and an output
    layer can share an Embedding's (vocabulary, dim) weight. Both start
    U(-1/sqrt(in_features), 1/sqrt(in_features)), PyTorch's default, drawn from firefly's
    generator (see ``firefly.manual_seed``). Parameters are float32 unless ``dtype`` says otherwise.
    """

    # Checkpoints of format 1 (firefly.serialization) hold this weight as (in, out).
    _transposed_before_format_2 = ("weight",)

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, dtype: DTypeLike | None = None
    ) -> None:
        super().__init__()
        self.in_features = as_int("Linear", "in_features", in_features, 1)
        self.out_features = as_int("Linear", "out_features", out_features, 1)
        dtype = np.dtype(dtype or np.float32)
        bound = 1.0 / math.sqrt(self.in_features)
        rng = random.generator()
        # Drawn (in, out) and transposed: the draws of firefly's earlier (in, out) layout, so
        # that a seeded run initializes every weight as it did before the layout changed.
        drawn = rng.uniform(-bound, bound, size=(self.in_features, self.out_features))
        self.weight = Parameter(np.ascontiguousarray(drawn.T), dtype=dtype)
        self.bias = (
            Parameter(rng.uniform(-bound, bound, size=self.out_features), dtype=dtype)
            if bias
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.bias is None:
            return F.linear(x, self.weight)
        return ops.apply("linear", x, self.weight, self.bias)  # F.linear's checks, skipped

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )
