"""Op base classes over the kernel families: an elementwise op is its scalar math as data.

A subclass of ``UnaryOp`` or ``BinaryOp`` that sets ``scalar_forward`` (and
``scalar_backward``) gets its kernels built by ``firefly.kernels.families`` when the class is
created (nothing compiles until first use), declared as ``forward_kernel`` and
``backward_kernel``, and run by the base class's ``forward`` and ``backward``::

    @register
    class Softsign(UnaryOp):
        name = "softsign"
        backward_reads = "input"

        def scalar_forward(x):
            return x / (1.0 + abs(x))

        def scalar_backward(grad, x):
            d = 1.0 + abs(x)
            return grad / (d * d)

The scalar functions are plain Python (or compiled with ``firefly.kernels.scalar``) that
Numba can compile: arithmetic, comparisons, ``math``/``np`` scalar functions and the
vectorizable ``firefly.kernels.vmath`` functions. They are written in the class body without
``self`` or ``staticmethod``: they are data that the family reads, never called as methods.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from numpy.typing import DTypeLike

from firefly.kernels import families
from firefly.kernels.reduce import sum_forward
from firefly.kernels.shape import gather_strided
from firefly.ops import samples
from firefly.ops.base import Op
from firefly.ops.shapes import broadcast_operands, flat_shape, reduce_to_shape

if TYPE_CHECKING:
    from firefly.tensor import Tensor

BACKWARD_READS = ("input", "output", None)


def _check_cost(cls: type[Op], attr: str) -> str:
    cost = getattr(cls, attr)
    if cost not in families.COSTS:
        raise ValueError(
            f"op {cls.name!r}: {attr} must be one of {sorted(families.COSTS)}, got {cost!r}"
        )
    return cost


def _builds_own(cls: type[Op], scalar: str) -> bool:
    """Whether ``cls`` gets a kernel of its own for ``scalar``: where it names an op and writes
    the scalar function, or inherits it from a base class that names no op and so built no
    kernel (the rounding ops share their zero derivative); a subclass of a named op keeps the
    kernels it inherits."""
    if cls.name is None or getattr(cls, scalar) is None:
        return False
    if scalar in cls.__dict__:
        return True
    owner = next(base for base in cls.__mro__ if scalar in base.__dict__)
    return getattr(owner, "name", None) is None


class UnaryOp(Op):
    """An elementwise op of one input, defined by its scalar math.

    - ``scalar_forward(x)``: the output at one element;
    - ``scalar_backward(grad, v)``: the input's gradient at one element, given the output's
      gradient ``grad`` and ``v``, the value that ``backward_reads`` names: ``"input"`` (x),
      ``"output"`` (the forward's result: cheaper for exp, sigmoid, tanh) or None (v is grad
      itself, for a derivative that needs neither);
    - ``forward_cost`` and ``backward_cost``: ``"memory"`` (cheap arithmetic) or
      ``"transcendental"`` (exp, log, tanh per element), which sets the size from which the
      parallel build runs;
    - ``domain``: the interval ``check_op`` samples inputs from;
    - ``derivative(grad, x, out)``: ``scalar_backward`` written with firefly ops on Tensors
      (``grad * (1.0 - out * out)`` for tanh), which the engine records for higher-order
      gradients (``create_graph=True``).

    The kernels are ``forward_kernel(x, out)`` and ``backward_kernel(grad, v, dx)`` over flat
    arrays (``firefly.kernels.families.unary_map`` and ``unary_grad``).
    """

    # Scalar functions that Numba compiles; written in the class body as plain functions.
    scalar_forward: Callable[..., Any] | None = None
    scalar_backward: Callable[..., Any] | None = None
    backward_reads: str | None = "input"
    forward_cost = "memory"
    backward_cost = "memory"
    domain: tuple[float, float] = (-2.0, 2.0)
    derivative: Callable[..., Any] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Bound classmethods: the same underlying function where forward is not overridden.
        cls.forward_output_trusted = (
            cast(Any, cls.forward).__func__ is vars(UnaryOp)["forward"].__func__
        )
        if cls.derivative is not None and "backward_graph" not in cls.__dict__:
            # A classmethod, which the attribute's Callable type cannot spell: read, it binds.
            cls.backward_graph = classmethod(_unary_backward_graph)  # type: ignore[assignment]
        if cls.backward_reads not in BACKWARD_READS:
            raise ValueError(
                f"op {cls.name!r}: backward_reads must be one of {BACKWARD_READS}, "
                f"got {cls.backward_reads!r}"
            )
        if _builds_own(cls, "scalar_forward"):
            cls.forward_kernel = families.unary_map(
                f"{cls.name}_forward", cls.scalar_forward, _check_cost(cls, "forward_cost")
            )
        if _builds_own(cls, "scalar_backward"):
            cls.backward_kernel = families.unary_grad(
                f"{cls.name}_backward", cls.scalar_backward, _check_cost(cls, "backward_cost")
            )

    # forward and backward narrow Op's (ctx, *arrays) to the family's arity, hence the ignores.
    @classmethod
    def forward(cls, ctx: Any, x: np.ndarray) -> np.ndarray:  # type: ignore[override]
        out = np.empty(x.shape, x.dtype)
        cls.forward_kernel(x.ravel(), out.ravel())
        reads = cls.backward_reads
        if reads == "input":
            ctx.save_for_backward(x)
        elif reads == "output":
            ctx.save_for_backward(out)
        return out

    @classmethod
    def backward(cls, ctx: Any, grad: np.ndarray) -> np.ndarray:  # type: ignore[override]
        saved = ctx.saved_tensors[0] if ctx.saved_tensors else grad
        dx = np.empty(grad.shape, grad.dtype)
        cls.backward_kernel(grad.ravel(), saved.ravel(), dx.ravel())
        return dx

    @classmethod
    def sample_inputs(
        cls, rng: np.random.Generator, shape: tuple[int, ...], dtype: DTypeLike
    ) -> tuple[tuple[np.ndarray, ...], dict[str, Any]]:
        return (samples.uniform(rng, shape, dtype, *cls.domain),), {}


class BinaryOp(Op):
    """An elementwise op of two inputs that broadcast as in NumPy, defined by its scalar math.

    - ``scalar_forward(a, b)``: the output at one element;
    - ``scalar_backward(grad, a, b, out)``: the pair (gradient of a, gradient of b) at one
      element; ``out`` is the forward's result where ``backward_reads_output`` is True (pow),
      and meaningless otherwise (the derivative must not read it);
    - ``forward_cost``, ``backward_cost`` and ``domain`` as for ``UnaryOp``;
    - ``derivative(grad, a, b, out)``: ``scalar_backward`` written with firefly ops on Tensors,
      the pair at the output's shape; the family sums each back to its input's shape.

    Declared kernels: forward ``(flat zip, broadcast zip, gather_strided)``: the flat kernel
    for equal shapes and single-element operands, the broadcast one for the rest, and the
    third materializing operands whose broadcast pattern has more than three runs; backward
    ``(flat gradient, broadcast gradient, sum_forward)``, each gradient kernel writing both
    gradients in one pass and the last summing each back to its input's shape.
    """

    arity = 2
    scalar_forward: Callable[..., Any] | None = None
    scalar_backward: Callable[..., Any] | None = None
    backward_reads_output = False
    forward_cost = "memory"
    backward_cost = "memory"
    domain: tuple[float, float] = (-2.0, 2.0)
    derivative: Callable[..., Any] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.forward_output_trusted = (
            cast(Any, cls.forward).__func__ is vars(BinaryOp)["forward"].__func__
        )
        if cls.derivative is not None and "backward_graph" not in cls.__dict__:
            cls.backward_graph = classmethod(_binary_backward_graph)  # type: ignore[assignment]
        if "scalar_forward" in cls.__dict__:
            cost = _check_cost(cls, "forward_cost")
            cls.forward_kernel = (
                families.flat_zip(f"{cls.name}_forward", cls.scalar_forward, cost),
                families.broadcast_zip(f"{cls.name}_broadcast_forward", cls.scalar_forward, cost),
                gather_strided,
            )
        if "scalar_backward" in cls.__dict__:
            cost = _check_cost(cls, "backward_cost")
            cls.backward_kernel = (
                families.flat_zip_grad(f"{cls.name}_backward", cls.scalar_backward, cost),
                families.broadcast_zip_grad(
                    f"{cls.name}_broadcast_backward", cls.scalar_backward, cost
                ),
                sum_forward,
            )

    @classmethod
    def forward(cls, ctx: Any, a: np.ndarray, b: np.ndarray) -> np.ndarray:  # type: ignore[override]
        ctx.shapes = (a.shape, b.shape)
        shape = flat_shape(a, b)
        if shape is not None:  # ravel(): a view, as the engine hands ops C-contiguous arrays
            out = np.empty(shape, dtype=a.dtype)
            a, b = a.ravel(), b.ravel()
            cls.forward_kernel[0](a, b, out.ravel())
            ctx.out3 = None  # backward runs the flat gradient kernel
        else:
            a, b, shape, out3 = broadcast_operands(cls.name, a, b, cls.forward_kernel[2])
            out = np.empty(shape, dtype=a.dtype)
            cls.forward_kernel[1](a, b, out.reshape(out3))
            ctx.out3 = out3
        ctx.saved_tensors = (a, b, out if cls.backward_reads_output else None)
        return out

    @classmethod
    def backward(  # type: ignore[override]
        cls, ctx: Any, grad: np.ndarray
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        a, b, out = ctx.saved_tensors
        da = np.empty(grad.shape, grad.dtype)
        # The kernel reads the forward's output from db's buffer (see flat_zip_grad).
        db = np.empty(grad.shape, grad.dtype) if out is None else out.copy()
        out3 = ctx.out3
        if out3 is None:
            cls.backward_kernel[0](grad.ravel(), a, b, da.ravel(), db.ravel())
        else:
            cls.backward_kernel[1](grad.reshape(out3), a, b, da.reshape(out3), db.reshape(out3))
        return unbroadcast(ctx, da, db, cls.backward_kernel[2])

    @classmethod
    def sample_inputs(
        cls, rng: np.random.Generator, shape: tuple[int, ...], dtype: DTypeLike
    ) -> tuple[tuple[np.ndarray, ...], dict[str, Any]]:
        a = samples.uniform(rng, shape, dtype, *cls.domain)
        b = samples.uniform(rng, samples.broadcast_partner(rng, shape), dtype, *cls.domain)
        return ((a, b) if rng.random() < 0.5 else (b, a)), {}


def _unary_backward_graph(
    cls: type[UnaryOp], ctx: Any, grad: Tensor, inputs: tuple[Tensor, ...], out: Tensor
) -> Tensor:
    derivative = cast("Callable[..., Tensor]", cls.derivative)  # set: the rule is installed for it
    return derivative(grad, inputs[0], out)


def _binary_backward_graph(
    cls: type[BinaryOp], ctx: Any, grad: Tensor, inputs: tuple[Tensor, ...], out: Tensor
) -> tuple[Tensor | None, Tensor | None]:
    a, b = inputs
    derivative = cast("Callable[..., tuple[Tensor, Tensor]]", cls.derivative)  # set, as above
    da, db = derivative(grad, a, b, out)
    need_a, need_b = ctx.needs_input_grad
    return (
        sum_to_shape(da, a.shape) if need_a else None,
        sum_to_shape(db, b.shape) if need_b else None,
    )


def sum_to_shape(t: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Tensor ``t`` summed, as recorded ops, over the dimensions ``shape`` broadcast to get
    ``t``'s shape: the differentiable ``reduce_to_shape``."""
    if t.shape == shape:
        return t
    lead = t.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, d in enumerate(shape) if d == 1 and t.shape[lead + i] != 1
    )
    return as_shape(t.sum(axis=axes), shape)


def as_shape(t: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Tensor ``t`` reshaped to ``shape`` by a recorded op, or ``t`` itself when it has it."""
    return t if t.shape == tuple(shape) else t.reshape(shape)


def select(condition: Any, a: Tensor | float, b: Tensor | float) -> Tensor:
    """``a`` where the bool array ``condition`` holds, else ``b``, as a recorded ``where`` (the
    branch not taken gets no gradient)."""
    from firefly.ops import apply

    return apply("where", a, b, condition=np.asarray(condition))


def unbroadcast(
    ctx: Any, da: np.ndarray, db: np.ndarray, sum_kernel: Callable[..., Any]
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Output-shaped gradients summed back to each input's shape; None where none is needed."""
    need_a, need_b = ctx.needs_input_grad
    return (
        reduce_to_shape(da, ctx.shapes[0], sum_kernel) if need_a else None,
        reduce_to_shape(db, ctx.shapes[1], sum_kernel) if need_b else None,
    )
