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
