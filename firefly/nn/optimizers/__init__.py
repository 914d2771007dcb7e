"""The seed's optimizer import paths. The optimizers live in ``firefly.optim``."""

from firefly.optim import SGD, Adagrad, Adam, AdamW, BaseOptimizer, RMSprop

__all__ = ["BaseOptimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad"]
