"""Activation layers: Modules around the elementwise ops, for use in Sequential."""

from firefly import ops
from firefly.nn.module import Module


class ReLU(Module):
    def forward(self, x):
        return ops.apply("relu", x)


class Sigmoid(Module):
    def forward(self, x):
        return ops.apply("sigmoid", x)


class Tanh(Module):
    def forward(self, x):
        return ops.apply("tanh", x)


class Softmax(Module):
    """``Softmax(dim=None)``: softmax along ``dim`` (the last dimension when None)."""

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return ops.apply("softmax", x, axis=-1 if self.dim is None else self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class LogSoftmax(Module):
    """``LogSoftmax(dim=None)``: log-softmax along ``dim`` (the last dimension when None)."""

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return ops.apply("log_softmax", x, axis=-1 if self.dim is None else self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class _WithArguments(Module):
    """An activation op with keyword attributes, stored on the module and shown by repr."""

    op = None

    def __init__(self, **attrs):
        super().__init__()
        self.attrs = attrs

    def forward(self, x):
        return ops.apply(self.op, x, **self.attrs)

    def extra_repr(self):
        return ", ".join(f"{k}={v!r}" for k, v in self.attrs.items())


class GELU(_WithArguments):
    """``GELU(approximate="none")``: x * Phi(x); ``approximate="tanh"`` uses torch's tanh form."""

    op = "gelu"

    def __init__(self, approximate="none"):
        super().__init__(approximate=approximate)


class LeakyReLU(_WithArguments):
    """``LeakyReLU(negative_slope=0.01)``."""

    op = "leaky_relu"

    def __init__(self, negative_slope=0.01, inplace=False):
        super().__init__(negative_slope=negative_slope)


class ELU(_WithArguments):
    """``ELU(alpha=1.0)``: x for x > 0, alpha * (exp(x) - 1) otherwise."""

    op = "elu"

    def __init__(self, alpha=1.0, inplace=False):
        super().__init__(alpha=alpha)


class SiLU(_WithArguments):
    """x * sigmoid(x)."""

    op = "silu"

    def __init__(self, inplace=False):
        super().__init__()


class Softplus(_WithArguments):
    """``Softplus(beta=1.0, threshold=20.0)``: log(1 + exp(beta x)) / beta, linear above the threshold."""

    op = "softplus"

    def __init__(self, beta=1.0, threshold=20.0):
        super().__init__(beta=beta, threshold=threshold)


class Hardtanh(_WithArguments):
    """``Hardtanh(min_val=-1.0, max_val=1.0)``: x clamped to [min_val, max_val]."""

    op = "hardtanh"

    def __init__(self, min_val=-1.0, max_val=1.0, inplace=False):
        super().__init__(min_val=min_val, max_val=max_val)


class LogSigmoid(_WithArguments):
    """log(sigmoid(x)), computed without overflow."""

    op = "log_sigmoid"
