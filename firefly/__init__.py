"""firefly: a small, fast deep-learning library on NumPy and Numba."""
import numpy as _np

from firefly.autograd import is_grad_enabled, no_grad
from firefly.tensor import Tensor
from firefly import ops
from firefly.creation import (
    arange, as_tensor, empty, empty_like, eye, from_numpy, full, full_like, linspace, ones,
    ones_like, rand, rand_like, randint, randn, randn_like, tensor, zeros, zeros_like,
)
from firefly.functions import (  # noqa: A004  (PyTorch's names: firefly.max, firefly.sum, ...)
    abs, all, amax, amin, any, argmax, argmin, cat, chunk, clamp, clip, clone, concat, eq, exp,
    flatten, gather, ge, gt, le, log, log_softmax, lt, matmul, max, maximum, mean, min, minimum,
    ne, numel, permute, relu, reshape, sigmoid, sign, softmax, split, sqrt, squeeze, stack, sum,
    tanh, transpose, unsqueeze, where,
)
from firefly.random import manual_seed
from firefly.serialization import load, save
from firefly import nn, optim
from firefly import data, distributed  # distributed imports mpi4py only when used
from firefly.compile import compile

__version__ = "0.1.0"
# dtypes under PyTorch's names (NumPy dtypes: firefly tensors hold ndarrays)
float32 = float = _np.float32
float64 = double = _np.float64
int64 = long = _np.int64
int32 = int = _np.int32
bool = _np.bool_

__all__ = [
    "Tensor", "no_grad", "is_grad_enabled", "ops", "nn", "optim", "data", "distributed", "manual_seed", "save", "load", "compile",
    "float32", "float64", "float", "double", "int64", "long", "int32", "int", "bool", "__version__",
    "tensor", "zeros", "ones", "full", "empty", "arange", "linspace", "eye", "rand", "randn",
    "randint", "zeros_like", "ones_like", "full_like", "empty_like", "rand_like", "randn_like",
    "from_numpy", "as_tensor",
    "cat", "concat", "stack", "where", "maximum", "minimum", "clamp", "clip", "sum", "mean", "max",
    "min", "amax", "amin", "argmax", "argmin", "exp", "log", "abs", "sqrt", "sign", "sigmoid", "tanh",
    "relu", "softmax", "log_softmax", "matmul", "reshape", "flatten", "squeeze", "unsqueeze",
    "transpose", "permute", "gather", "clone", "numel", "split", "chunk", "any", "all", "eq", "ne",
    "lt", "le", "gt", "ge",
]
