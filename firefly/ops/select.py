"""Selecting and rearranging ops: abs, sqrt, sign, maximum and minimum (scalar math on the
kernel families), and cast, clamp, where, expand, cat and take (the value move behind
integer-array, mask and ``gather`` indexing), which declare their kernels."""

import math
import numbers
import operator

import numpy as np

from firefly.dtypes import is_float_dtype
from firefly.kernels import select as K
from firefly.kernels.reduce import sum_forward
from firefly.kernels.shape import copy_flat, gather_strided
from firefly.ops import samples
from firefly.ops.base import Op
from firefly.ops.families import BinaryOp, UnaryOp, sum_to_shape
from firefly.ops.registry import register
from firefly.ops.shape import add_at_positions
from firefly.ops.shapes import materialize, reduce_to_shape


def _where(grad, mask):
    """Tensor ``grad`` where the bool array ``mask`` holds, 0 elsewhere, as a recorded op."""
    from firefly.ops import apply

    return apply("where", grad, 0.0, condition=np.broadcast_to(mask, grad.shape))


def away_from_zero(rng, shape, dtype, low=0.2, high=2.0):
    """Values with |x| in [low, high]: off the kink at 0, where finite differences fail."""
    magnitude = rng.uniform(low, high, size=shape)
    return (magnitude * rng.choice([-1.0, 1.0], size=shape)).astype(dtype)


@register
class Abs(UnaryOp):
    """|x|; the gradient at 0 is 0, as in PyTorch."""

    name = "abs"

    def scalar_forward(x):
        return -x if x < 0.0 else x

    def scalar_backward(grad, x):
        return grad if x > 0.0 else (-grad if x < 0.0 else 0.0 * grad)

    def derivative(grad, x, out):
        return grad * x.sign()

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        return (away_from_zero(rng, shape, dtype),), {}


@register
class Sqrt(UnaryOp):
    name = "sqrt"
    backward_reads = "output"
    domain = (0.2, 3.0)

    def scalar_forward(x):
        return np.sqrt(x)

    def scalar_backward(grad, y):
        return grad * 0.5 / y

    def derivative(grad, x, y):
        return grad * 0.5 / y


@register
class Sign(UnaryOp):
    """-1, 0 or 1 (NaN stays NaN); its gradient is 0 everywhere, as in PyTorch."""

    name = "sign"
    backward_reads = None

    def scalar_forward(x):
        return 1.0 if x > 0.0 else (-1.0 if x < 0.0 else x)

    def scalar_backward(grad, _):
        return 0.0 * grad

    def derivative(grad, x, out):
        return 0.0 * grad

    sample_inputs = Abs.sample_inputs


@register
class Maximum(BinaryOp):
    """Elementwise maximum with broadcasting; NaN propagates, and a tie splits the gradient
    evenly between the operands (PyTorch's rule)."""

    name = "maximum"

    def scalar_forward(a, b):
        return a if (a > b or a != a) else b

    def scalar_backward(grad, a, b, _):
        if a > b:
            return grad, 0.0 * grad
        if a < b:
            return 0.0 * grad, grad
        return 0.5 * grad, 0.5 * grad

    def derivative(grad, a, b, out):
        return _split_by(grad, a.numpy() > b.numpy(), a.numpy() == b.numpy())


@register
class Minimum(BinaryOp):
    name = "minimum"

    def scalar_forward(a, b):
        return a if (a < b or a != a) else b

    def scalar_backward(grad, a, b, _):
        if a < b:
            return grad, 0.0 * grad
        if a > b:
            return 0.0 * grad, grad
        return 0.5 * grad, 0.5 * grad

    def derivative(grad, a, b, out):
        return _split_by(grad, a.numpy() < b.numpy(), a.numpy() == b.numpy())


def _split_by(grad, first, tie):
    """``grad`` split between two operands: all to the first where ``first``, halves at a
    ``tie``, all to the second elsewhere, as the scalar derivative of maximum and minimum."""
    share = np.where(first, 1.0, np.where(tie, 0.5, 0.0)).astype(grad.dtype)
    return grad * share, grad * (1.0 - share)


@register
class Cast(Op):
    """A copy in another float dtype (or the same: ``clone``). The gradient is cast back."""

    name = "cast"
    forward_kernel = backward_kernel = copy_flat
    casts_dtype = True  # the engine lets this op's output differ from its inputs' dtype

    @classmethod
    def forward(cls, ctx, x, dtype=None):
        dtype = np.dtype(x.dtype if dtype is None else dtype)
        if not is_float_dtype(dtype):
            raise ctx.error(f"dtype must be float32 or float64, got {dtype}", x, kind=TypeError)
        out = np.empty(x.shape, dtype=dtype)
        cls.forward_kernel(x.reshape(-1), out.reshape(-1))
        return out

    @classmethod
    def backward(cls, ctx, grad):
        dx = np.empty(grad.shape, dtype=ctx.dtype)
        cls.backward_kernel(grad.reshape(-1), dx.reshape(-1))
        return dx

    @staticmethod
    def backward_graph(ctx, grad, inputs, out):
        return grad.to(inputs[0].dtype)

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        return (samples.uniform(rng, shape, dtype),), {"dtype": np.dtype(dtype)}


def _bound(ctx, name, value, x, default):
    if value is None:
        return x.dtype.type(default)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ctx.error(
            f"{name} must be a number or None, got {type(value).__name__} {value!r}",
            x,
            kind=TypeError,
        )
    return x.dtype.type(value)


@register
class Clamp(Op):
    """``clamp(x, min=None, max=None)``: min(max(x, min), max), as torch.clamp."""

    name = "clamp"
    forward_kernel, backward_kernel = K.clamp_forward, K.clamp_backward

    @classmethod
    def forward(cls, ctx, x, min=None, max=None):
        if min is None and max is None:
            raise ctx.error("give min, max or both", x)
        low, high = _bound(ctx, "min", min, x, -np.inf), _bound(ctx, "max", max, x, np.inf)
        out = np.empty_like(x)
        cls.forward_kernel(x.reshape(-1), low, high, out.reshape(-1))
        ctx.save_for_backward(x)
        ctx.bounds = (low, high)
        return out

    @classmethod
    def backward(cls, ctx, grad):
        (x,) = ctx.saved_tensors
        dx = np.empty_like(grad)
        cls.backward_kernel(grad.reshape(-1), x.reshape(-1), *ctx.bounds, dx.reshape(-1))
        return dx

    @staticmethod
    def backward_graph(ctx, grad, inputs, out):
        x = inputs[0].numpy()
        low, high = ctx.bounds
        return _where(grad, (x >= low) & (x <= high))

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        x = rng.uniform(-2.0, 2.0, size=shape)
        low, high = sorted(rng.uniform(-1.5, 1.5, size=2).round(1).tolist())
        x = np.where(np.abs(x - low) < 0.05, x + 0.1, x)  # no value at a bound's kink
        x = np.where(np.abs(x - high) < 0.05, x + 0.1, x)
        attrs = [{"min": low, "max": high}, {"min": low}, {"max": high}][int(rng.integers(3))]
        return (x.astype(dtype),), attrs


def _broadcast_shape(ctx, *shapes):
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise ctx.error(
            f"shapes {' and '.join(str(s) for s in shapes)} are not broadcastable; "
            "dimension sizes must match or be 1"
        ) from None


@register
class Where(Op):
    """``where(a, b, condition=mask)``: a where the bool ``condition`` holds, else b, all three
    broadcast together. Gradients go to a where it holds and to b elsewhere.

    Declared kernels: forward ``(where, gather_strided)``, the second broadcasting an operand
    to the output's shape; backward ``(where gradient, sum_forward)``, the second summing each
    gradient back to its input's shape."""

    name = "where"
    arity = 2
    forward_kernel = (K.where_forward, gather_strided)
    backward_kernel = (K.where_backward, sum_forward)

    @classmethod
    def forward(cls, ctx, a, b, condition=None):
        where_kernel, gather = cls.forward_kernel
        condition = np.asarray(condition)
        if condition.dtype != np.bool_:
            raise ctx.error(
                f"condition must be a bool tensor or array, got {condition.dtype} "
                f"(shape {condition.shape})",
                a,
                b,
                kind=TypeError,
            )
        shape = _broadcast_shape(ctx, condition.shape, a.shape, b.shape)
        a_full = a if a.shape == shape else materialize(a, shape, gather)
        b_full = b if b.shape == shape else materialize(b, shape, gather)
        mask = np.array(np.broadcast_to(condition, shape), order="C")
        out = np.empty(shape, dtype=a.dtype)
        where_kernel(mask.reshape(-1), a_full.reshape(-1), b_full.reshape(-1), out.reshape(-1))
        ctx.mask, ctx.shapes = mask, (a.shape, b.shape)
        return out

    @classmethod
    def backward(cls, ctx, grad):
        grad_kernel, sum_kernel = cls.backward_kernel
        da, db = np.empty_like(grad), np.empty_like(grad)
        grad_kernel(grad.reshape(-1), ctx.mask.reshape(-1), da.reshape(-1), db.reshape(-1))
        need_a, need_b = ctx.needs_input_grad
        return (
            reduce_to_shape(da, ctx.shapes[0], sum_kernel) if need_a else None,
            reduce_to_shape(db, ctx.shapes[1], sum_kernel) if need_b else None,
        )

    @staticmethod
    def backward_graph(ctx, grad, inputs, out):
        need_a, need_b = ctx.needs_input_grad
        return (
            sum_to_shape(_where(grad, ctx.mask), ctx.shapes[0]) if need_a else None,
            sum_to_shape(_where(grad, ~ctx.mask), ctx.shapes[1]) if need_b else None,
        )

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        a = samples.uniform(rng, shape, dtype)
        b = samples.uniform(rng, samples.broadcast_partner(rng, shape), dtype)
        a, b = (a, b) if rng.random() < 0.5 else (b, a)
        return (a, b), {"condition": rng.random(size=np.broadcast_shapes(a.shape, b.shape)) < 0.5}


@register
class Expand(Op):
    """``expand(x, shape=...)``: ``x`` broadcast to ``shape``, as a copy; the gradient sums back."""

    name = "expand"
    forward_kernel, backward_kernel = gather_strided, sum_forward

    @classmethod
    def forward(cls, ctx, x, shape=()):
        try:
            shape = tuple(operator.index(d) for d in shape)
        except TypeError:
            raise ctx.error(
                f"shape must be a tuple of ints, got {shape!r}", x, kind=TypeError
            ) from None
        if any(d < 0 for d in shape) or _broadcast_shape(ctx, x.shape, shape) != shape:
            raise ctx.error(
                f"cannot expand to shape {shape}: each size must equal the tensor's "
                "or the tensor's must be 1",
                x,
            )
        ctx.x_shape = x.shape
        return materialize(x, shape, cls.forward_kernel)

    @classmethod
    def backward(cls, ctx, grad):
        return reduce_to_shape(grad, ctx.x_shape, cls.backward_kernel)

    @staticmethod
    def backward_graph(ctx, grad, inputs, out):
        return sum_to_shape(grad, ctx.x_shape)

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        x = samples.uniform(rng, tuple(1 if rng.random() < 0.5 else d for d in shape), dtype)
        return (x,), {
            "shape": (int(rng.integers(1, 4)),) + tuple(shape)
        }  # always a new leading dim


def split3_at(shape, dim):
    """(outer, shape[dim], inner) around dimension ``dim``."""
    return math.prod(shape[:dim]), shape[dim], math.prod(shape[dim + 1 :])


@register
class Cat(Op):
    """``cat(a, b, dim=0)``: two tensors joined along ``dim`` (``firefly.cat`` joins many)."""

    name = "cat"
    arity = 2
    forward_kernel, backward_kernel = K.copy_into_block, K.copy_from_block

    @classmethod
    def forward(cls, ctx, a, b, dim=0):
        if a.ndim == 0 or a.ndim != b.ndim:
            raise ctx.error("needs tensors of one number of dimensions, at least 1", a, b)
        try:
            d = operator.index(dim)
        except TypeError:
            raise ctx.error(f"dim must be an int, got {dim!r}", a, b, kind=TypeError) from None
        if not -a.ndim <= d < a.ndim:
            raise ctx.error(
                f"dim {d} is out of range for {a.ndim}-d tensors", a, b, kind=IndexError
            )
        d %= a.ndim
        if a.shape[:d] + a.shape[d + 1 :] != b.shape[:d] + b.shape[d + 1 :]:
            raise ctx.error(f"sizes must match except in dim {d}", a, b)
        shape = a.shape[:d] + (a.shape[d] + b.shape[d],) + a.shape[d + 1 :]
        out = np.empty(shape, dtype=a.dtype)
        out3 = out.reshape(split3_at(shape, d))
        cls.forward_kernel(a.reshape(split3_at(a.shape, d)), 0, out3)
        cls.forward_kernel(b.reshape(split3_at(b.shape, d)), a.shape[d], out3)
        ctx.dim, ctx.shapes = d, (a.shape, b.shape)
        return out

    @classmethod
    def backward(cls, ctx, grad):
        grad3 = grad.reshape(split3_at(grad.shape, ctx.dim))
        grads, offset = [], 0
        for shape, needed in zip(ctx.shapes, ctx.needs_input_grad):
            if needed:
                g = np.empty(shape, dtype=grad.dtype)
                cls.backward_kernel(grad3, offset, g.reshape(split3_at(shape, ctx.dim)))
                grads.append(g)
            else:
                grads.append(None)
            offset += shape[ctx.dim]
        return tuple(grads)

    @staticmethod
    def backward_graph(ctx, grad, inputs, out):
        split, lead = ctx.shapes[0][ctx.dim], (slice(None),) * ctx.dim
        need_a, need_b = ctx.needs_input_grad
        return (
            grad[lead + (slice(0, split),)] if need_a else None,
            grad[lead + (slice(split, None),)] if need_b else None,
        )

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        shape = shape or (1,)
        dim = int(rng.integers(0, len(shape)))
        other = shape[:dim] + (int(rng.integers(1, 4)),) + shape[dim + 1 :]
        a, b = samples.uniform(rng, shape, dtype), samples.uniform(rng, other, dtype)
        return (a, b), {"dim": dim - len(shape) if rng.random() < 0.3 else dim}


@register
class Take(Op):
    """``take(x, index=positions)``: ``x.reshape(-1)[positions]``, shaped as ``positions`` (int64).
    Integer-array, mask and ``gather`` indexing compute the positions; backward scatter-adds,
    so repeated positions accumulate."""

    name = "take"
    forward_kernel, backward_kernel = K.take_forward, K.take_backward

    @classmethod
    def forward(cls, ctx, x, index=None):
        if not isinstance(index, np.ndarray) or index.dtype != np.int64:
            raise ctx.error(
                f"index must be an int64 ndarray of flat positions, got {type(index).__name__} "
                f"{getattr(index, 'dtype', '')}",
                x,
                kind=TypeError,
            )
        if index.size and (index.min() < 0 or index.max() >= x.size):
            bad = index[(index < 0) | (index >= x.size)].reshape(-1)[0]
            raise ctx.error(
                f"position {int(bad)} is out of range for {x.size} elements", x, kind=IndexError
            )
        index = np.asarray(index, order="C")
        out = np.empty(index.shape, dtype=x.dtype)
        cls.forward_kernel(x.reshape(-1), index.reshape(-1), out.reshape(-1))
        ctx.index, ctx.x_shape = index, x.shape
        return out

    @classmethod
    def backward(cls, ctx, grad):
        dx = np.zeros(ctx.x_shape, dtype=grad.dtype)
        cls.backward_kernel(grad.reshape(-1), ctx.index.reshape(-1), dx.reshape(-1))
        return dx

    @staticmethod
    def backward_graph(ctx, grad, inputs, out):
        return add_at_positions(grad, ctx.index, ctx.x_shape)

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        x = samples.uniform(rng, shape, dtype)
        # Repeats on purpose: their gradients must add up.
        index = rng.integers(0, x.size, size=tuple(int(d) for d in rng.integers(1, 4, size=2)))
        return (x,), {"index": index.astype(np.int64)}


@register
class AddAt(Op):
    """``add_at(x, index=positions, size=n)``: zeros of n elements with each element of x added
    at its flat position (int64, of x's shape), repeats accumulating: ``take``'s adjoint, which
    ``take`` and ``getitem`` record as their differentiable backward."""

    name = "add_at"
    forward_kernel, backward_kernel = K.take_backward, K.take_forward

    @classmethod
    def forward(cls, ctx, x, index=None, size=0):
        if not isinstance(index, np.ndarray) or index.dtype != np.int64 or index.shape != x.shape:
            raise ctx.error(
                f"index must be an int64 ndarray of x's shape, got {type(index).__name__} "
                f"{getattr(index, 'dtype', '')} {getattr(index, 'shape', '')}",
                x,
                kind=TypeError,
            )
        if index.size and (index.min() < 0 or index.max() >= size):
            raise ctx.error(f"positions must lie in [0, {size})", x, kind=IndexError)
        out = np.zeros(size, dtype=x.dtype)
        index = np.asarray(index, order="C")  # ascontiguousarray makes a 0-d index 1-d
        cls.forward_kernel(x.reshape(-1), index.reshape(-1), out)
        ctx.index = index
        return out

    @classmethod
    def backward(cls, ctx, grad):
        dx = np.empty(ctx.index.shape, dtype=grad.dtype)
        cls.backward_kernel(grad, ctx.index.reshape(-1), dx.reshape(-1))
        return dx

    @staticmethod
    def backward_graph(ctx, grad, inputs, out):
        from firefly.ops import apply

        return apply("take", grad, index=ctx.index)

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        x = samples.uniform(rng, shape, dtype)
        size = int(rng.integers(1, 6))
        return (x,), {"index": rng.integers(0, size, size=x.shape).astype(np.int64), "size": size}
