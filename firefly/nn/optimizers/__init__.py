"""Older import paths of the optimizers, kept so that code using them runs. The optimizers
live in ``firefly.optim``."""

from firefly.optim import SGD, Adagrad, Adam, AdamW, BaseOptimizer, RMSprop

__all__ = ["BaseOptimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad"]
