"""Linear: y = x @ weight + bias, the weight stored as (in_features, out_features), the
transpose of torch's layout."""

import math

import numpy as np

from firefly import ops, random
from firefly.nn.module import Module
from firefly.nn.parameter import Parameter
from firefly.validation import as_int


class Linear(Module):
    """``Linear(in_features, out_features, bias=True, dtype=None)``.

    ``weight`` is (in_features, out_features) and ``bias`` (out_features,); both start
    U(-1/sqrt(in_features), 1/sqrt(in_features)), PyTorch's default, drawn from firefly's
    generator (see ``firefly.manual_seed``). Parameters are float32 unless ``dtype`` says otherwise.
    """

    def __init__(self, in_features, out_features, bias=True, dtype=None):
        super().__init__()
        self.in_features = as_int("Linear", "in_features", in_features, 1)
        self.out_features = as_int("Linear", "out_features", out_features, 1)
        dtype = np.dtype(dtype or np.float32)
        bound = 1.0 / math.sqrt(self.in_features)
        rng = random.generator()
        self.weight = Parameter(
            rng.uniform(-bound, bound, size=(self.in_features, self.out_features)), dtype=dtype
        )
        self.bias = (
            Parameter(rng.uniform(-bound, bound, size=self.out_features), dtype=dtype)
            if bias
            else None
        )

    def forward(self, x):
        if self.bias is None:
            return ops.apply("matmul", x, self.weight.tensor)
        return ops.apply("linear", x, self.weight.tensor, self.bias.tensor)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
