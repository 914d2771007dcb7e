"""Neural-network building blocks: Parameter, Module, layers, losses, functional, init and
optimizers."""

from firefly.nn import functional, init, optimizers, utils
from firefly.nn import layers as _layers
from firefly.nn.layers import *  # noqa: F403  (its __all__: Linear, Conv2d, ReLU, ...)
from firefly.nn.losses import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    HuberLoss,
    L1Loss,
    MSELoss,
    NLLLoss,
    SmoothL1Loss,
)
from firefly.nn.module import Module
from firefly.nn.parameter import Parameter

__all__ = [
    "Parameter",
    "Module",
    "functional",
    "init",
    "MSELoss",
    "CrossEntropyLoss",
    "NLLLoss",
    "L1Loss",
    "SmoothL1Loss",
    "HuberLoss",
    "BCELoss",
    "BCEWithLogitsLoss",
    "optimizers",
    "utils",
    *_layers.__all__,
]
