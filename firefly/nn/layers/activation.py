"""Activation layers: Modules around the elementwise ops, for use in Sequential. Those that
take ``inplace`` in torch take it here too (positionally as well: ``ReLU(True)``) and write
their result into the input when it is set."""

from __future__ import annotations

from typing import Any

from firefly import ops
from firefly.nn import functional as F
from firefly.nn.module import Module
from firefly.tensor import Tensor


class Sigmoid(Module):
    def forward(self, x: Tensor) -> Tensor:
        return ops.apply("sigmoid", x)


class Tanh(Module):
    def forward(self, x: Tensor) -> Tensor:
        return ops.apply("tanh", x)


class Softmax(Module):
    """``Softmax(dim=None)``: softmax along ``dim`` (the last dimension when None)."""

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return ops.apply("softmax", x, axis=-1 if self.dim is None else self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Module):
    """``LogSoftmax(dim=None)``: log-softmax along ``dim`` (the last dimension when None)."""

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return ops.apply("log_softmax", x, axis=-1 if self.dim is None else self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class _WithArguments(Module):
    """An activation op with keyword attributes, stored on the module and shown by repr.
    ``inplace`` is None for the activations that have no ``inplace`` in torch."""

    op: str  # the registered op, set by each subclass

    def __init__(self, inplace: bool | None = None, **attrs: Any) -> None:
        super().__init__()
        self.attrs = attrs
        self.inplace = inplace

    def forward(self, x: Tensor) -> Tensor:
        return F.activation(self.op, x, bool(self.inplace), **self.attrs)

    def extra_repr(self) -> str:
        shown = [f"{k}={v!r}" for k, v in self.attrs.items()]
        if self.inplace:  # torch shows inplace only when set
            shown.append("inplace=True")
        return ", ".join(shown)


class ReLU(_WithArguments):
    """``ReLU(inplace=False)``: max(x, 0)."""

    op = "relu"

    def __init__(self, inplace: bool = False) -> None:
        super().__init__(inplace)


class GELU(_WithArguments):
    """``GELU(approximate="none")``: x * Phi(x); ``approximate="tanh"`` uses torch's tanh form."""

    op = "gelu"

    def __init__(self, approximate: str = "none") -> None:
        super().__init__(approximate=approximate)


class LeakyReLU(_WithArguments):
    """``LeakyReLU(negative_slope=0.01, inplace=False)``."""

    op = "leaky_relu"

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False) -> None:
        super().__init__(inplace, negative_slope=negative_slope)


class ELU(_WithArguments):
    """``ELU(alpha=1.0, inplace=False)``: x for x > 0, alpha * (exp(x) - 1) otherwise."""

    op = "elu"

    def __init__(self, alpha: float = 1.0, inplace: bool = False) -> None:
        super().__init__(inplace, alpha=alpha)


class SiLU(_WithArguments):
    """x * sigmoid(x)."""

    op = "silu"

    def __init__(self, inplace: bool = False) -> None:
        super().__init__(inplace)


class Softplus(_WithArguments):
    """``Softplus(beta=1.0, threshold=20.0)``: log(1 + exp(beta x)) / beta, linear above the
    threshold."""

    op = "softplus"

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__(beta=beta, threshold=threshold)


class Hardtanh(_WithArguments):
    """``Hardtanh(min_val=-1.0, max_val=1.0, inplace=False)``: x clamped to [min_val, max_val]."""

    op = "hardtanh"

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> None:
        super().__init__(inplace, min_val=min_val, max_val=max_val)


class LogSigmoid(_WithArguments):
    """log(sigmoid(x)), computed without overflow."""

    op = "log_sigmoid"
