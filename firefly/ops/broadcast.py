"""Broadcasting shared by every op: NumPy's rules, the canonical 3-D form the binary kernels
read, and the one un-broadcast step that sums a gradient back to its input's shape."""
import math

import numpy as np

from firefly.kernels.reduce import sum_forward
from firefly.ops.shape import gather_view


def broadcast_operands(op_name, a, b):
    """NumPy broadcasting of ``a`` and ``b``, in the binary kernels' 3-D form.

    Returns (a3, b3, out_shape, out3): both operands reshaped to (outer, middle, inner) with
    each dimension either the output's size or 1, and the output's shape before and after the
    same reshape. Adjacent dimensions where both operands behave the same way merge, so every
    broadcast of up to three alternating runs (elementwise, scalar, row bias, column...) is a
    reshape, not a copy; rarer patterns materialize the operands with a strided gather.
    """
    sa, sb = a.shape, b.shape
    if sa == sb:  # the common case first: it must stay cheap for small tensors
        n = a.size
        return a.reshape(1, 1, n), b.reshape(1, 1, n), sa, (1, 1, n)
    if b.size == 1 and b.ndim <= a.ndim:  # a scalar operand: stride 0 over one flat run
        n = a.size
        return a.reshape(1, 1, n), b.reshape(1, 1, 1), sa, (1, 1, n)
    if a.size == 1 and a.ndim <= b.ndim:
        n = b.size
        return a.reshape(1, 1, 1), b.reshape(1, 1, n), sb, (1, 1, n)
    nd = max(len(sa), len(sb))
    pa, pb = (1,) * (nd - len(sa)) + sa, (1,) * (nd - len(sb)) + sb
    out_shape = []
    pattern = []  # [(a spans, b spans), size] per run of output dims; size-1 dims drop out
    for da, db in zip(pa, pb):
        if da != db and da != 1 and db != 1:
            raise ValueError(
                f"{op_name}: shapes {sa} and {sb} are not broadcastable "
                f"(dtypes {a.dtype} and {b.dtype}); dimension sizes must match or be 1"
            )
        d = da if db == 1 else db
        out_shape.append(d)
        if d == 1:
            continue
        key = (da != 1, db != 1)
        if pattern and pattern[-1][0] == key:
            pattern[-1][1] *= d
        else:
            pattern.append([key, d])
    out_shape = tuple(out_shape)
    n = math.prod(out_shape)
    if len(pattern) > 3:
        a, b = materialize(a, out_shape), materialize(b, out_shape)
        return a.reshape(1, 1, n), b.reshape(1, 1, n), out_shape, (1, 1, n)
    pattern = [[(False, False), 1]] * (3 - len(pattern)) + pattern
    shape_a = tuple(d if key[0] else 1 for key, d in pattern)
    shape_b = tuple(d if key[1] else 1 for key, d in pattern)
    return a.reshape(shape_a), b.reshape(shape_b), out_shape, tuple(d for _, d in pattern)


def materialize(a, out_shape):
    """A contiguous copy of ``a`` broadcast to ``out_shape``."""
    return gather_view(a, np.broadcast_to(a, out_shape))


def split3(shape, run):
    """(outer, reduced, inner) sizes for a run of adjacent axes of ``shape``."""
    return math.prod(shape[:run[0]]), math.prod(shape[run[0]:run[-1] + 1]), math.prod(shape[run[-1] + 1:])


def axis_runs(axes):
    """Split sorted axes into runs of adjacent axes: (0, 1, 3) -> [(0, 1), (3,)]."""
    runs = []
    for ax in axes:
        if runs and runs[-1][-1] == ax - 1:
            runs[-1].append(ax)
        else:
            runs.append([ax])
    return runs


def sum_axes(x, axes, scale=1.0):
    """Sum ``x`` over sorted ``axes``, keeping them as size-1 dimensions, times ``scale``.

    Each run of adjacent axes is one pass of the (outer, reduced, inner) kernel, last run
    first, so no pass needs a copy.
    """
    if not axes:  # a 0-d tensor, or an empty tuple of axes: count is 1, so scale is too
        return x.copy()
    runs = axis_runs(axes)
    for i, run in enumerate(reversed(runs)):
        shape = x.shape
        outer, reduced, inner = split3(shape, run)
        out = np.empty(shape[:run[0]] + (1,) * len(run) + shape[run[-1] + 1:], dtype=x.dtype)
        run_scale = scale if i == len(runs) - 1 else 1.0
        sum_forward(x.reshape(outer, reduced, inner), run_scale, out.reshape(outer, inner))
        x = out
    return x


def reduce_to_shape(grad, shape):
    """Sum a broadcast gradient back to an input's ``shape``: the one un-broadcast step."""
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, d in enumerate(shape) if d == 1 and grad.shape[lead + i] != 1
    )
    return sum_axes(grad, axes).reshape(shape)
