"""``firefly.autograd.Function``: a custom op written in Python with Tensors, as torch's.

A subclass gives ``forward(ctx, *args)`` and ``backward(ctx, *grads)`` as static methods and
is called through ``apply``; a torch custom Function ports by changing the import::

    class Exp(firefly.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            y = x.exp()
            ctx.save_for_backward(y)
            return y

        @staticmethod
        def backward(ctx, grad):
            (y,) = ctx.saved_tensors
            return grad * y

``forward`` runs without recording; ``apply`` records one node whose backward calls the
subclass's ``backward``. Written with firefly ops, that backward is recorded in its turn under
``create_graph=True``, so the Function can be differentiated again. See docs/autograd.md for
when to write a Function and when a kernel op.
"""

from typing import Any

import numpy as np

from firefly import autograd
from firefly.dtypes import promote
from firefly.ops.base import Op


class FunctionCtx(autograd.Node):
    """The ``ctx`` of a Function: ``save_for_backward`` / ``saved_tensors``,
    ``needs_input_grad``, ``mark_non_differentiable``, ``set_materialize_grads``, and any
    attribute forward sets."""

    def __init__(self, op, needs_input_grad, inputs, dtype, args):
        super().__init__(op, needs_input_grad, inputs, dtype, args, {})
        self.non_differentiable = ()
        self.materialize_grads = True

    def mark_non_differentiable(self, *tensors: Any) -> None:
        self.non_differentiable += tensors

    def set_materialize_grads(self, value: bool) -> None:
        self.materialize_grads = bool(value)


class _FunctionOp(Op):
    """The engine's view of one Function subclass (made for each): backward calls the
    subclass's ``backward`` on Tensors, without recording, or recording with create_graph."""

    function = None

    @classmethod
    def backward(cls, ctx, grad):
        with autograd.no_grad():
            grads = cls._grads(ctx, autograd.Tensor._wrap(grad))
        return tuple(
            None if g is None else np.asarray(g._data, dtype=ctx.dtype, order="C") for g in grads
        )

    @classmethod
    def backward_graph(cls, ctx, grad, inputs, out):
        return cls._grads(ctx, grad)

    @classmethod
    def _grads(cls, ctx, grad):
        name = cls.function.__name__
        outputs = ctx.output_count
        grads = [None] * outputs
        grads[ctx.differentiable_index] = grad
        if ctx.materialize_grads:
            for i, shape in enumerate(ctx.output_shapes):
                if grads[i] is None:
                    grads[i] = autograd.Tensor._wrap(np.zeros(shape, dtype=grad.dtype))
        result = cls.function.backward(ctx, *grads)
        result = result if isinstance(result, tuple) else (result,)
        if len(result) != len(ctx.inputs):
            raise RuntimeError(
                f"{name}.backward returned {len(result)} gradient(s), but forward took "
                f"{len(ctx.inputs)} input(s); return one per input of forward (None for an "
                "input that needs none)"
            )
        checked = []
        for i, (g, x, need) in enumerate(zip(result, ctx.applied_to, ctx.needs_input_grad)):
            if g is not None and not isinstance(g, autograd.Tensor):
                raise TypeError(
                    f"{name}.backward: gradient {i} must be a Tensor or None, got "
                    f"{type(g).__name__}"
                )
            if g is not None and need and g.shape != x.shape:
                raise RuntimeError(
                    f"{name}.backward: gradient {i} has shape {g.shape}, but input {i} has "
                    f"shape {x.shape}"
                )
            checked.append(g if need else None)
        return tuple(checked)


class Function:
    """Base class of custom autograd Functions, with torch's spelling (see the module doc)."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._op = type(f"{cls.__name__}Op", (_FunctionOp,), {"name": cls.__name__, "function": cls})

    @staticmethod
    def forward(ctx, *args):
        raise NotImplementedError("a Function subclass defines forward(ctx, *args)")

    @staticmethod
    def backward(ctx, *grads):
        raise NotImplementedError("a Function subclass defines backward(ctx, *grads)")

    @classmethod
    def apply(cls, *args: Any) -> Any:
        Tensor = autograd.Tensor
        needs = tuple(isinstance(a, Tensor) and a._requires_grad for a in args)
        record = autograd.is_grad_enabled() and True in needs
        dtype = None
        for a in args:
            if isinstance(a, Tensor) and a._data.dtype.kind == "f":
                dtype = promote(dtype, a._data.dtype)
        inputs = tuple(a if need else None for a, need in zip(args, needs))
        ctx = FunctionCtx(
            cls._op,
            needs if record else (False,) * len(args),
            inputs,
            dtype,
            tuple(a if isinstance(a, Tensor) else None for a in args),
        )
        with autograd.no_grad():
            output = cls.forward(ctx, *args)
        if not record:
            return output
        outputs = output if isinstance(output, tuple) else (output,)
        marked = {id(t) for t in ctx.non_differentiable}
        differentiable = [
            i
            for i, t in enumerate(outputs)
            if isinstance(t, Tensor) and id(t) not in marked and t._data.dtype.kind == "f"
        ]
        if len(differentiable) != 1:
            raise NotImplementedError(
                f"{cls.__name__}.forward returned {len(differentiable)} differentiable Tensor "
                "outputs; firefly records a Function with exactly one (mark the others with "
                "ctx.mark_non_differentiable)"
            )
        (index,) = differentiable
        raw = outputs[index]
        data = raw._data.copy() if any(raw is a for a in args) else raw._data
        recorded = Tensor._wrap(data, ctx)
        ctx.output_count, ctx.differentiable_index = len(outputs), index
        ctx.output_shapes = tuple(getattr(t, "shape", ()) for t in outputs)
        # A saved output is the recorded one, so that a second backward goes through it.
        ctx.saved_tensors = tuple(recorded if t is raw else t for t in ctx.saved_tensors or ())
        if not isinstance(output, tuple):
            return recorded
        return tuple(recorded if i == index else t for i, t in enumerate(outputs))
