"""``firefly.nn.optimizers.base.BaseOptimizer``, an older import path kept so that code using
it runs: the class is ``firefly.optim.Optimizer``."""

from firefly.optim.optimizer import BaseOptimizer

__all__ = ["BaseOptimizer"]
