"""Layers: Linear, activations and containers."""
from firefly.nn.layers.activation import ReLU, Sigmoid, Tanh
from firefly.nn.layers.container import ModuleList, Sequential
from firefly.nn.layers.linear import Linear

__all__ = ["Linear", "ReLU", "Sigmoid", "Tanh", "Sequential", "ModuleList"]
