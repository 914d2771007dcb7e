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
