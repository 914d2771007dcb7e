"""Optimizers: the seed's ``BaseOptimizer`` and firefly's fused ``SGD``, ``Adam`` and ``AdamW``."""
from firefly.nn.optimizers.adam import Adam, AdamW
from firefly.nn.optimizers.base import BaseOptimizer
from firefly.nn.optimizers.sgd import SGD

__all__ = ["BaseOptimizer", "SGD", "Adam", "AdamW"]
