"""Neural-network building blocks: Parameter, Module, layers, losses, functional, init and
optimizers."""

from firefly.nn import functional, init, optimizers, utils
from firefly.nn import layers as _layers
from firefly.nn.layers import *  # noqa: F403  (its __all__: Linear, Conv2d, ReLU, ...)
from firefly.nn.losses import (
    BCELoss,
    BCEWithLogitsLoss,
    CosineEmbeddingLoss,
    CrossEntropyLoss,
    GaussianNLLLoss,
    HuberLoss,
    KLDivLoss,
    L1Loss,
    MarginRankingLoss,
    MSELoss,
    MultiLabelSoftMarginLoss,
    NLLLoss,
    PoissonNLLLoss,
    SmoothL1Loss,
    SoftMarginLoss,
    TripletMarginLoss,
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
    "KLDivLoss",
    "MarginRankingLoss",
    "CosineEmbeddingLoss",
    "TripletMarginLoss",
    "PoissonNLLLoss",
    "GaussianNLLLoss",
    "SoftMarginLoss",
    "MultiLabelSoftMarginLoss",
    "optimizers",
    "utils",
    *_layers.__all__,
]
