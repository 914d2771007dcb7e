"""PyTorch-style home of the optimizers: the same classes as ``firefly.nn.optimizers``."""
from firefly.nn.optimizers import SGD, Adam, AdamW, BaseOptimizer

__all__ = ["BaseOptimizer", "SGD", "Adam", "AdamW"]
