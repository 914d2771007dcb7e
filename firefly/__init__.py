"""firefly: a small, fast deep-learning library on NumPy and Numba."""
from firefly.autograd import is_grad_enabled, no_grad
from firefly.tensor import Tensor
from firefly import ops
from firefly.random import manual_seed
from firefly.serialization import load, save
from firefly import nn, optim
from firefly import data, distributed  # distributed imports mpi4py only when used
from firefly.compile import compile

__version__ = "0.1.0"
float32 = __import__("numpy").float32
float64 = __import__("numpy").float64

__all__ = [
    "Tensor", "no_grad", "is_grad_enabled", "ops", "nn", "optim", "data", "distributed", "manual_seed", "save", "load", "compile",
    "float32", "float64", "__version__",
]
