"""Shape ops: reshape, transpose (any axis order) and basic slicing. Each returns fresh
contiguous memory, so no two tensors alias and in-place optimizer updates cannot reach a
recorded graph."""

import math
import operator

import numpy as np

from firefly.kernels import shape as K
from firefly.ops.base import Op
from firefly.ops.families import as_shape
from firefly.ops.registry import register
from firefly.ops.shapes import gather_geometry, permute_copy, view_geometry


def add_at_positions(grad, positions, shape):
    """Tensor ``grad`` added, as a recorded op, at the flat ``positions`` (an int64 array of
    its shape) of zeros of ``shape``: the differentiable adjoint of ``take``."""
    from firefly.ops import apply

    # as_shape: a recorded reshape only where the shape changes (not for a 1-D gradient)
    flat = apply(
        "add_at",
        as_shape(grad, (math.prod(grad.shape),)),
        index=np.ascontiguousarray(positions).reshape(-1),
        size=math.prod(shape),
    )
    return as_shape(flat, shape)


@register
class Reshape(Op):
    name = "reshape"
    forward_kernel = backward_kernel = K.copy_flat

    @classmethod
    def forward(cls, ctx, x, shape=()):
        try:
            shape = tuple(operator.index(d) for d in shape)
        except TypeError:
            raise ctx.error(
                f"shape must be a tuple of ints, got {shape!r}", x, kind=TypeError
            ) from None
        unknown = [i for i, d in enumerate(shape) if d == -1]
        known = math.prod(d for d in shape if d != -1)
        if len(unknown) > 1 or any(d < -1 for d in shape):
            raise ctx.error(f"invalid shape {shape}: at most one -1 and no other negative sizes", x)
        if unknown and known and x.size % known == 0:
            shape = shape[: unknown[0]] + (x.size // known,) + shape[unknown[0] + 1 :]
        if unknown and -1 in shape or math.prod(shape) != x.size:
            raise ctx.error(f"cannot reshape {x.size} elements into shape {shape}", x)
        out = np.empty(shape, dtype=x.dtype)
        cls.forward_kernel(x.reshape(-1), out.reshape(-1))
        ctx.x_shape = x.shape
        return out

    @classmethod
    def backward(cls, ctx, grad):
        dx = np.empty(ctx.x_shape, dtype=grad.dtype)
        cls.backward_kernel(grad.reshape(-1), dx.reshape(-1))
        return dx

    @staticmethod
    def backward_graph(ctx, grad, inputs, out):
        return grad.reshape(ctx.x_shape)

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        x = rng.uniform(-2.0, 2.0, size=shape).astype(dtype)
        return (x,), {"shape": (-1,) if rng.random() < 0.5 else (1, x.size, 1)}


@register
class Transpose(Op):
    name = "transpose"
    forward_kernel = backward_kernel = K.gather_strided

    @classmethod
    def forward(cls, ctx, x, axes=None):
        if axes is None:
            axes = tuple(range(x.ndim - 1, -1, -1))
        try:
            axes = tuple(
                operator.index(a) % max(x.ndim, 1) if -x.ndim <= a < x.ndim else -1 for a in axes
            )
        except TypeError:
            raise ctx.error(f"axes must be ints, got {axes!r}", x, kind=TypeError) from None
        if sorted(axes) != list(range(x.ndim)):
            raise ctx.error(f"axes must be an order of all {x.ndim} dimensions, got {axes}", x)
        ctx.inverse = tuple(np.argsort(axes))
        return permute_copy(x, axes, cls.forward_kernel)

    @classmethod
    def backward(cls, ctx, grad):
        return permute_copy(grad, ctx.inverse, cls.backward_kernel)

    @staticmethod
    def backward_graph(ctx, grad, inputs, out):
        return grad.permute(ctx.inverse)

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        x = rng.uniform(-2.0, 2.0, size=shape).astype(dtype)
        return (x,), {"axes": tuple(rng.permutation(len(shape)).tolist())}


def _check_basic_index(index, x):
    for item in index:
        if item is None or item is Ellipsis or isinstance(item, slice):
            continue
        if isinstance(item, (bool, np.bool_)) or not hasattr(item, "__index__"):
            raise TypeError(
                f"getitem: only basic indexing (ints, slices, ..., None) is supported, got "
                f"{type(item).__name__} for a tensor of shape {x.shape} ({x.dtype})"
            )


@register
class GetItem(Op):
    """Basic slicing. Backward scatters the gradient into zeros of the input's shape."""

    name = "getitem"
    forward_kernel, backward_kernel = K.gather_strided, K.scatter_add_strided

    @classmethod
    def forward(cls, ctx, x, index=()):
        index = index if isinstance(index, tuple) else (index,)
        _check_basic_index(index, x)
        if Ellipsis not in index:
            index += (Ellipsis,)  # so that a full integer index gives a 0-d view, not a scalar
        try:
            view = x[index]
        except IndexError as exc:
            raise IndexError(f"getitem: {exc} (tensor of shape {x.shape}, {x.dtype})") from None
        ctx.x_shape = x.shape
        ctx.geometry = view_geometry(x, view)
        return gather_geometry(x, ctx.geometry, view.shape, cls.forward_kernel)

    @classmethod
    def backward(cls, ctx, grad):
        dx = np.zeros(ctx.x_shape, dtype=grad.dtype)
        offset, shape, strides = ctx.geometry
        cls.backward_kernel(grad.reshape(-1), offset, shape, strides, dx.reshape(-1))
        return dx

    @staticmethod
    def backward_graph(ctx, grad, inputs, out):
        # Basic slicing picks each element once: the gradient goes back to the positions picked.
        index = ctx.applied_attrs.get("index", ())
        index = index if isinstance(index, tuple) else (index,)
        if not any(item is Ellipsis for item in index):
            index += (Ellipsis,)  # so that picking one element still gives an array
        positions = np.arange(math.prod(ctx.x_shape), dtype=np.int64).reshape(ctx.x_shape)[index]
        return add_at_positions(grad, positions, ctx.x_shape)

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        x = rng.uniform(-2.0, 2.0, size=shape).astype(dtype)
        index = tuple(
            slice(int(rng.integers(0, d)), None, int(rng.choice([1, 2, -1]))) if d else slice(None)
            for d in shape
        )
        if shape and shape[0] > 0 and rng.random() < 0.3:
            index = (int(rng.integers(-shape[0], shape[0])),) + index[1:]
        return (x,), {"index": index}
