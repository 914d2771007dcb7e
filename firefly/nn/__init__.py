"""Neural-network building blocks: Parameter, Module, layers, losses and optimizers."""
from firefly.nn.parameter import Parameter
from firefly.nn.module import Module
from firefly.nn.layers import Linear, ModuleList, ReLU, Sequential, Sigmoid, Tanh
from firefly.nn.losses import CrossEntropyLoss, MSELoss
from firefly.nn import optimizers, utils

__all__ = [
    "Parameter", "Module", "Linear", "ReLU", "Sigmoid", "Tanh", "Sequential", "ModuleList",
    "MSELoss", "CrossEntropyLoss", "optimizers", "utils",
]
