"""Ops: the ``Op`` contract, the registry, the family base classes and the built-in ops.

``apply(name, *tensors, **attrs)`` runs any registered op, a plugin op included. An
elementwise op is scalar math on ``UnaryOp`` or ``BinaryOp``; any other op subclasses ``Op``
(see docs/writing-an-op.md).
"""
from firefly.ops.base import Context, Op, declared_kernels
from firefly.ops.registry import get, names, origin, register, unregister
from firefly.ops.plugins import load_plugins
from firefly.ops.families import BinaryOp, UnaryOp
from firefly.ops import elementwise, binary, reduce, softmax, linalg, shape, loss  # noqa: F401  (registers built-ins)
from firefly.ops import conv, pool, norm, dropout, embedding, pointwise_loss, classification_loss, activation  # noqa: F401  (registers built-ins)


def apply(name, *tensors, **attrs):
    """Run the op registered as ``name`` on ``tensors``, recording it for autograd."""
    from firefly.autograd import apply as _apply

    return _apply(get(name), *tensors, **attrs)


__all__ = ["Op", "Context", "UnaryOp", "BinaryOp", "declared_kernels", "register", "get", "names", "origin",
           "unregister", "apply", "load_plugins"]
