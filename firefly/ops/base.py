"""The contract every op follows, built-in or plugin: ``Op`` and the ``Context`` it saves into."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
from numpy.typing import DTypeLike


def describe(arrays: Iterable[Any]) -> str:
    """'shapes (2, 3) and (4,), dtypes float32 and float64' for an error message."""
    arrays = [a for a in arrays if isinstance(a, np.ndarray)]
    if not arrays:
        return "no array inputs"
    shapes = " and ".join(str(a.shape) for a in arrays)
    dtypes = " and ".join(str(a.dtype) for a in arrays)
    noun = "shapes" if len(arrays) > 1 else "shape"
    return f"{noun} {shapes}, dtype{'s' if len(arrays) > 1 else ''} {dtypes}"


def declared_kernels(kernels: Any) -> tuple[Any, ...]:
    """An op's ``forward_kernel`` or ``backward_kernel`` as a tuple: one kernel, or several."""
    return kernels if isinstance(kernels, tuple) else (kernels,)


def _op_classes() -> list[type[Op]]:
    found: list[type[Op]] = []
    todo: list[type[Op]] = [Op]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


_kernel_users: list[type] = []  # classes outside the ops that declare kernels as ops do


def declares_kernels(cls: type) -> type:
    """Class decorator for code outside the ops that runs kernels (gradient clipping): it
    reaches them only through the class's ``forward_kernel`` tuple, as an op does, and
    ``substituted_kernels`` then covers those kernels too."""
    _kernel_users.append(cls)
    return cls


@contextlib.contextmanager
def substituted_kernels(substitute: Callable[[Any], Any]) -> Iterator[None]:
    """Hook point: inside the block, each kernel that an Op class (built-in or plugin), or a
    class marked with ``declares_kernels``, declares in its own ``forward_kernel``/
    ``backward_kernel`` is replaced by ``substitute(kernel)`` (kept when that returns the
    kernel itself); the declarations are restored on exit.

    Ops reach kernels only through these attributes (the op contract, which ``check_op``
    proves), as does gradient clipping, so this sees every kernel call a step makes outside
    the optimizers (whose ``step`` is replayed as Python) and costs nothing outside the
    block.
    ``firefly.compile`` records a step's kernel calls through it. Not thread-safe: the
    substitution is visible to every thread while the block runs."""
    undo = []
    try:
        for cls in [*_op_classes(), *_kernel_users]:
            for attr in ("forward_kernel", "backward_kernel"):
                value = cls.__dict__.get(attr)
                if value is None:
                    continue
                if isinstance(value, tuple):
                    replaced = tuple(substitute(k) for k in value)
                else:
                    replaced = substitute(value)
                undo.append((cls, attr, value))
                setattr(cls, attr, replaced)
        yield
    finally:
        for cls, attr, value in reversed(undo):
            setattr(cls, attr, value)


class Context:
    """What an op's forward leaves for its backward, as in ``torch.autograd.Function``.

    ``save_for_backward(*arrays)`` stores arrays; ``saved_tensors`` gives them back.
    ``needs_input_grad`` says, per input, whether backward must produce a gradient.
    Any other attribute (an axis, a shape) can be set freely.
    """

    def __init__(self, op: type[Op], needs_input_grad: tuple[bool, ...]) -> None:
        self.op = op
        self.needs_input_grad = needs_input_grad
        self.saved_tensors: tuple[Any, ...] | None = ()

    def save_for_backward(self, *arrays: Any) -> None:
        self.saved_tensors = arrays

    def error(self, message: str, *arrays: Any, kind: type[Exception] = ValueError) -> Exception:
        """An exception naming the op, the message, and the inputs' shapes and dtypes."""
        return kind(f"{self.op.name}: {message} (got {describe(arrays)})")


class Op:
    """Base class of every op. A subclass sets:

    - ``name``: the registry name, a Python identifier;
    - ``forward_kernel`` and ``backward_kernel``: every Numba-compiled kernel that ``forward``
      (and ``backward``) runs: one kernel, or a tuple of them where a direction runs several
      (a product and an un-broadcast sum, say). ``forward`` and ``backward`` reach kernels only
      through these attributes (``cls.forward_kernel[1]``), never through a module import,
      and ``firefly.testing.check_op`` proves that exactly the declared kernels run;
    - ``arity``: how many tensor inputs ``forward`` takes;
    - ``forward(ctx, *arrays, **attrs)``: validate the inputs (raise ``ctx.error(...)``), run the
      forward kernel(s), save what backward needs, return a new contiguous ndarray. Write it as
      a classmethod, ``forward(cls, ctx, ...)``, to reach the kernels as ``cls.forward_kernel``
      (``ctx.op`` is the class too);
    - ``backward(ctx, grad)``: return one gradient per input, each with that input's shape and
      dtype, or None where ``ctx.needs_input_grad`` is False.

    For higher-order gradients (``backward(create_graph=True)``, ``firefly.autograd.grad``)
    an op also gives one of these, both written with firefly ops on Tensors, so that the
    engine records them:

    - ``backward_graph(ctx, grad, inputs, out)``: ``backward`` as ops: ``grad`` is the output's
      gradient, ``inputs`` the Tensors the op was applied to (constants where no gradient is
      needed) and ``out`` its output, all Tensors; ``ctx`` is what ``forward`` saved on, with
      the attributes as ``ctx.applied_attrs``. Returns one Tensor (or None) per input;
    - ``decomposition(*inputs, **attrs)``: the forward written with other ops; the engine
      differentiates it (the way fused losses, norms, conv and pooling get theirs).

    Neither runs on the plain ``backward()``, which stays on the fused kernels.

    Elementwise ops need none of this: they are scalar math on ``firefly.ops.UnaryOp`` or
    ``BinaryOp`` (``firefly.ops.families``).

    Inputs arrive as C-contiguous ndarrays of one floating dtype (float32 or float64), already
    promoted by the engine. Attributes (axis, shape, ...) arrive as keyword arguments.

    ``sample_inputs`` feeds the test battery (``firefly.testing.check_op``): given a random
    generator, a shape and a dtype, it returns ``(arrays, attrs)`` that the op accepts. Override
    it when the op needs particular shapes, attributes or a restricted domain.
    """

    # The registry name. None only on Op itself and on a subclass that forgot to set it, which
    # register() refuses, so every registered op has a str: that is what the checker sees.
    name: str = None  # type: ignore[assignment]
    # Numba-compiled functions (dispatchers), one or a tuple:
    forward_kernel: Any = None
    backward_kernel: Any = None
    arity = 1
    # True where the base class's own forward makes the output (the kernel families): the
    # engine then skips checking that it is a C-contiguous ndarray of the inputs' dtype.
    forward_output_trusted = False

    # The differentiable backward (see above); None where the op has no second-order rule.
    backward_graph: Callable[..., Any] | None = None
    decomposition: Callable[..., Any] | None = None

    @staticmethod
    def forward(ctx: Any, *arrays: np.ndarray, **attrs: Any) -> np.ndarray:
        raise NotImplementedError

    @staticmethod
    def backward(ctx: Any, grad: np.ndarray) -> Any:  # one ndarray or None per input
        raise NotImplementedError

    @classmethod
    def sample_inputs(
        cls, rng: np.random.Generator, shape: tuple[int, ...], dtype: DTypeLike
    ) -> tuple[tuple[np.ndarray, ...], dict[str, Any]]:
        arrays = tuple(rng.uniform(-2.0, 2.0, size=shape).astype(dtype) for _ in range(cls.arity))
        return arrays, {}
