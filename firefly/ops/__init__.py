"""Ops: the ``Op`` contract, the registry, the family base classes and the built-in ops.

``apply(name, *tensors, **attrs)`` runs any registered op, a plugin op included. An
elementwise op is scalar math on ``UnaryOp`` or ``BinaryOp``; any other op subclasses ``Op``
(see docs/writing-an-op.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from firefly.ops import (  # noqa: F401  (registers built-ins)
    activation,
    attention,
    binary,
    classification_loss,
    conv,
    dropout,
    elementwise,
    embedding,
    linalg,
    loss,
    norm,
    pointwise_loss,
    pool,
    recurrent,
    reduce,
    scan,
    select,
    shape,
    softmax,
)  # noqa: F401  (registers built-ins)
from firefly.ops.base import Context, Op, declared_kernels
from firefly.ops.families import BinaryOp, UnaryOp
from firefly.ops.plugins import load_plugins
from firefly.ops.registry import get, names, origin, register, unregister

if TYPE_CHECKING:
    from firefly.tensor import Tensor

# firefly.autograd.apply, bound by firefly.autograd when it is imported. The engine imports this
# package, so this package cannot import the engine; a function-level import inside apply()
# would cost every call a module lookup (benchmarks/bench_overhead.py), the bound function one
# global read. docs/architecture.md lists this and the other run-time bindings.
_engine_apply: Callable[..., Tensor] | None = None


def bind_engine(engine_apply: Callable[..., Tensor]) -> None:
    """Called once by ``firefly.autograd``: the function that runs and records an Op class."""
    global _engine_apply
    _engine_apply = engine_apply


def apply(name: str, *tensors: Any, **attrs: Any) -> Tensor:
    """Run the op registered as ``name`` on ``tensors`` (Tensors, arrays or Python numbers),
    recording it for autograd."""
    return _engine_apply(get(name), *tensors, **attrs)  # type: ignore[misc]  # bound at import


__all__ = [
    "Op",
    "Context",
    "UnaryOp",
    "BinaryOp",
    "declared_kernels",
    "register",
    "get",
    "names",
    "origin",
    "unregister",
    "apply",
    "load_plugins",
]
