"""The seed's ``firefly.nn.optimizers.base.BaseOptimizer``: ``firefly.optim.Optimizer``."""

from firefly.optim.optimizer import BaseOptimizer

__all__ = ["BaseOptimizer"]
