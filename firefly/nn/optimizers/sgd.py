"""``firefly.nn.optimizers.sgd.SGD``, an older import path kept so that code using it runs:
the class is ``firefly.optim.SGD``."""

from firefly.optim.sgd import SGD

__all__ = ["SGD"]
