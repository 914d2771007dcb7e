"""Layers: Linear, convolution, pooling, normalization, dropout, embedding, attention, shape
layers, activations, containers and the Transformer layers."""

from firefly.nn.layers.activation import (
    ELU,
    GELU,
    Hardtanh,
    LeakyReLU,
    LogSigmoid,
    LogSoftmax,
    ReLU,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Tanh,
)
from firefly.nn.layers.attention import MultiheadAttention
from firefly.nn.layers.container import (
    ModuleDict,
    ModuleList,
    ParameterDict,
    ParameterList,
    Sequential,
)
from firefly.nn.layers.conv import Conv1d, Conv2d
from firefly.nn.layers.dropout import Dropout
from firefly.nn.layers.embedding import Embedding
from firefly.nn.layers.flatten import Flatten, Identity, Unflatten
from firefly.nn.layers.linear import Linear
from firefly.nn.layers.norm import BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm
from firefly.nn.layers.pool import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
from firefly.nn.layers.transformer import (
    Transformer,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
)

__all__ = [
    "Linear",
    "Conv1d",
    "Conv2d",
    "MaxPool2d",
    "AvgPool2d",
    "AdaptiveAvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "LayerNorm",
    "GroupNorm",
    "Dropout",
    "Embedding",
    "MultiheadAttention",
    "Flatten",
    "Unflatten",
    "Identity",
    "ReLU",
    "Sigmoid",
    "Tanh",
    "Softmax",
    "LogSoftmax",
    "GELU",
    "LeakyReLU",
    "ELU",
    "SiLU",
    "Softplus",
    "Hardtanh",
    "LogSigmoid",
    "Sequential",
    "ModuleList",
    "ModuleDict",
    "ParameterList",
    "ParameterDict",
    "TransformerEncoderLayer",
    "TransformerDecoderLayer",
    "TransformerEncoder",
    "TransformerDecoder",
    "Transformer",
]
