"""Neural-network building blocks: Parameter, Module, layers, losses, functional, init and optimizers."""
from firefly.nn.parameter import Parameter
from firefly.nn.module import Module
from firefly.nn import functional, init
from firefly.nn.layers import (
    ELU, GELU, AdaptiveAvgPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv1d, Conv2d, Dropout, Embedding, Flatten,
    GroupNorm, Hardtanh, Identity, LayerNorm, LeakyReLU, Linear, LogSigmoid, LogSoftmax, MaxPool2d, ModuleList, ReLU,
    Sequential, Sigmoid, SiLU, Softmax, Softplus, Tanh, Unflatten,
)
from firefly.nn.losses import (
    BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, L1Loss, MSELoss, NLLLoss, SmoothL1Loss,
)
from firefly.nn import optimizers, utils

__all__ = [
    "Parameter", "Module", "functional", "init", "Linear", "Conv1d", "Conv2d", "MaxPool2d", "AvgPool2d",
    "AdaptiveAvgPool2d", "BatchNorm1d", "BatchNorm2d", "LayerNorm", "GroupNorm", "Dropout", "Embedding",
    "Flatten", "Unflatten", "Identity", "ReLU", "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "GELU", "LeakyReLU",
    "ELU", "SiLU", "Softplus", "Hardtanh", "LogSigmoid", "Sequential",
    "ModuleList", "MSELoss", "CrossEntropyLoss", "NLLLoss", "L1Loss", "SmoothL1Loss", "HuberLoss", "BCELoss",
    "BCEWithLogitsLoss", "optimizers", "utils",
]
