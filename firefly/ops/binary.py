"""Binary elementwise ops with NumPy broadcasting.

Forward kernels read both operands in the 3-D broadcast form; backward kernels write
output-shaped gradients, and ``reduce_to_shape`` sums each back to its input's shape.
"""
import numpy as np

from firefly.kernels import elementwise as K
from firefly.kernels.reduce import sum_forward
from firefly.ops.base import Op
from firefly.ops.broadcast import broadcast_operands, reduce_to_shape
from firefly.ops.elementwise import flat_map
from firefly.ops.registry import register


def broadcast_partner(rng, shape):
    """A random shape that broadcasts against ``shape``: leading dims dropped, some set to 1."""
    keep = int(rng.integers(0, len(shape) + 1))
    partner = list(shape[len(shape) - keep:])
    for i in range(len(partner)):
        if rng.random() < 0.4:
            partner[i] = 1
    return tuple(partner)


class BinaryOp(Op):
    """Shared shape handling of the broadcasting binary ops."""

    arity = 2

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        a = rng.uniform(-2.0, 2.0, size=shape).astype(dtype)
        b = rng.uniform(-2.0, 2.0, size=broadcast_partner(rng, shape)).astype(dtype)
        return ((a, b) if rng.random() < 0.5 else (b, a)), {}


def run_forward(ctx, kernel, a, b):
    a3, b3, shape, out3 = broadcast_operands(ctx.op.name, a, b)
    out = np.empty(shape, dtype=a.dtype)
    kernel(a3, b3, out.reshape(out3))
    ctx.shapes, ctx.out3 = (a.shape, b.shape), out3
    return out, a3, b3


def unbroadcast(ctx, da, db):
    """Output-shaped gradients summed back to each input's shape; None where none is needed."""
    need_a, need_b = ctx.needs_input_grad
    return (reduce_to_shape(da, ctx.shapes[0]) if need_a else None,
            reduce_to_shape(db, ctx.shapes[1]) if need_b else None)


def run_backward(ctx, kernel, grad, *saved):
    """Run a backward kernel that writes output-shaped da and db, then un-broadcast them."""
    g3 = grad.reshape(ctx.out3)
    da, db = np.empty_like(grad), np.empty_like(grad)
    kernel(g3, *saved, da.reshape(ctx.out3), db.reshape(ctx.out3))
    return unbroadcast(ctx, da, db)


@register
class Add(BinaryOp):
    name = "add"
    forward_kernel, backward_kernel = K.add_forward, sum_forward  # backward only un-broadcasts

    @staticmethod
    def forward(ctx, a, b):
        return run_forward(ctx, K.add_forward, a, b)[0]

    @staticmethod
    def backward(ctx, grad):
        return unbroadcast(ctx, grad, grad)


@register
class Sub(BinaryOp):
    name = "sub"
    forward_kernel, backward_kernel = K.sub_forward, K.neg_forward

    @staticmethod
    def forward(ctx, a, b):
        return run_forward(ctx, K.sub_forward, a, b)[0]

    @staticmethod
    def backward(ctx, grad):
        da, db = unbroadcast(ctx, grad, grad)
        return da, (None if db is None else flat_map(K.neg_forward, db))


@register
class Mul(BinaryOp):
    name = "mul"
    forward_kernel, backward_kernel = K.mul_forward, K.mul_backward

    @staticmethod
    def forward(ctx, a, b):
        out, a3, b3 = run_forward(ctx, K.mul_forward, a, b)
        ctx.save_for_backward(a3, b3)
        return out

    @staticmethod
    def backward(ctx, grad):
        return run_backward(ctx, K.mul_backward, grad, *ctx.saved_tensors)


@register
class Div(BinaryOp):
    name = "div"
    forward_kernel, backward_kernel = K.div_forward, K.div_backward

    @staticmethod
    def forward(ctx, a, b):
        out, a3, b3 = run_forward(ctx, K.div_forward, a, b)
        ctx.save_for_backward(a3, b3)
        return out

    @staticmethod
    def backward(ctx, grad):
        return run_backward(ctx, K.div_backward, grad, *ctx.saved_tensors)

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        (a, b), attrs = super().sample_inputs(rng, shape, dtype)
        return (a, np.where(np.abs(b) < 0.3, 0.5, b).astype(dtype)), attrs


@register
class Pow(BinaryOp):
    name = "pow"
    forward_kernel, backward_kernel = K.pow_forward, K.pow_backward

    @staticmethod
    def forward(ctx, a, b):
        out, a3, b3 = run_forward(ctx, K.pow_forward, a, b)
        ctx.save_for_backward(a3, b3, out.reshape(ctx.out3))
        return out

    @staticmethod
    def backward(ctx, grad):
        return run_backward(ctx, K.pow_backward, grad, *ctx.saved_tensors)

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        (a, b), attrs = super().sample_inputs(rng, shape, dtype)
        return (np.abs(a) + 0.5, b), attrs  # a positive base keeps a**b real
