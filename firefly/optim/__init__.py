"""Optimizers: PyTorch's ``torch.optim`` names, each ``step()`` fused over flat per-dtype
buffers, with param groups, ``state_dict`` in torch's layout, and ``lr_scheduler``."""

from firefly.optim import lr_scheduler
from firefly.optim.adadelta import Adadelta
from firefly.optim.adagrad import Adagrad
from firefly.optim.adam import Adam, AdamW
from firefly.optim.adamax import Adamax
from firefly.optim.asgd import ASGD
from firefly.optim.lbfgs import LBFGS
from firefly.optim.nadam import NAdam
from firefly.optim.optimizer import BaseOptimizer, FusedOptimizer, Optimizer
from firefly.optim.radam import RAdam
from firefly.optim.rmsprop import RMSprop
from firefly.optim.rprop import Rprop
from firefly.optim.sgd import SGD

__all__ = [
    "Optimizer",
    "BaseOptimizer",
    "FusedOptimizer",
    "SGD",
    "Adam",
    "AdamW",
    "RMSprop",
    "Adagrad",
    "Adamax",
    "Adadelta",
    "NAdam",
    "RAdam",
    "Rprop",
    "ASGD",
    "LBFGS",
    "lr_scheduler",
]
