"""The seed's ``firefly.nn.optimizers.sgd.SGD``: ``firefly.optim.SGD``."""

from firefly.optim.sgd import SGD

__all__ = ["SGD"]
