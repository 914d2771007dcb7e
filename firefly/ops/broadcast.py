"""Broadcasting shared by every op: NumPy's rules, the canonical 3-D form the binary kernels
read, and the one un-broadcast step that sums a gradient back to its input's shape."""
import math

import numpy as np

from firefly.kernels.reduce import sum_forward
from firefly.ops.shape import gather_view


def broadcast_shape(op_name, a, b):
    """The broadcast shape of arrays ``a`` and ``b`` under NumPy's rules."""
    sa, sb = a.shape, b.shape
    if sa == sb:
        return sa
    if b.size == 1 and b.ndim <= a.ndim:
        return sa
    if a.size == 1 and a.ndim <= b.ndim:
        return sb
    if len(sa) < len(sb):
        sa = (1,) * (len(sb) - len(sa)) + sa
    elif len(sb) < len(sa):
        sb = (1,) * (len(sa) - len(sb)) + sb
    out = []
    for da, db in zip(sa, sb):
        if da == db or db == 1:
            out.append(da)
        elif da == 1:
            out.append(db)
        else:
            raise ValueError(
                f"{op_name}: shapes {a.shape} and {b.shape} are not broadcastable "
                f"(dtypes {a.dtype} and {b.dtype}); dimension sizes must match or be 1"
            )
    return tuple(out)


def broadcast_3d(a, b, out_shape):
    """Reshape ``a``, ``b`` and an output of ``out_shape`` into the kernels' 3-D form.

    Returns (a3, b3, out3_shape). Adjacent dimensions where both operands behave the same way
    merge, so every broadcast of up to three alternating runs (row, column, scalar, bias...) is
    a reshape, not a copy. Rarer patterns materialize the operands with a strided gather.
    """
    n = 1
    for d in out_shape:
        n *= d
    if a.size == n and b.size == n:
        return a.reshape(1, 1, n), b.reshape(1, 1, n), (1, 1, n)
    if a.size == 1 or b.size == 1:  # a scalar operand: stride 0 over one flat run
        return a.reshape(1, 1, a.size), b.reshape(1, 1, b.size), (1, 1, n)
    pattern = []  # per output dim: (a spans, b spans, size); dims of size 1 drop out
    sa = (1,) * (len(out_shape) - a.ndim) + a.shape
    sb = (1,) * (len(out_shape) - b.ndim) + b.shape
    for da, db, d in zip(sa, sb, out_shape):
        if d == 1:
            continue
        key = (da != 1, db != 1)
        if pattern and pattern[-1][0] == key:
            pattern[-1][1] *= d
        else:
            pattern.append([key, d])
    if len(pattern) > 3:
        a, b = materialize(a, out_shape), materialize(b, out_shape)
        return a.reshape(1, 1, n), b.reshape(1, 1, n), (1, 1, n)
    pattern = [[(False, False), 1]] * (3 - len(pattern)) + pattern
    shape_a = tuple(d if key[0] else 1 for key, d in pattern)
    shape_b = tuple(d if key[1] else 1 for key, d in pattern)
    out3 = tuple(d for _, d in pattern)
    return a.reshape(shape_a), b.reshape(shape_b), out3


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
