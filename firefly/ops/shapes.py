"""Shape helpers that every op module may use: NumPy broadcasting in the binary kernels' 3-D
form, the one un-broadcast step, axis handling for reductions, and strided views.

Helpers that move data take the kernel to run as an argument: an op passes the kernels it
declares (``cls.forward_kernel[1]``...), so what runs is what the op declares.
"""

import math
import operator

import numpy as np


# ----------------------------------------------------------------------------- broadcasting
def flat_shape(a, b):
    """The output's shape when ``a`` and ``b`` broadcast without the 3-D form: equal shapes,
    or one operand a single element with no more dimensions than the other; else None."""
    sa, sb = a.shape, b.shape
    if sa == sb:  # the common case first: it must stay cheap for small tensors
        return sa
    if b.size == 1 and b.ndim <= a.ndim:
        return sa
    if a.size == 1 and a.ndim <= b.ndim:
        return sb
    return None


def broadcast_operands(op_name, a, b, gather):
    """NumPy broadcasting of ``a`` and ``b``, in the binary kernels' 3-D form.

    Returns (a3, b3, out_shape, out3): both operands reshaped to (outer, middle, inner) with
    each dimension either the output's size or 1, and the output's shape before and after the
    same reshape. Adjacent dimensions where both operands behave the same way merge, so every
    broadcast of up to three alternating runs (elementwise, scalar, row bias, column...) is a
    reshape, not a copy; rarer patterns materialize the operands with the strided ``gather``
    kernel (``firefly.kernels.shape.gather_strided``).
    """
    sa, sb = a.shape, b.shape
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
        a, b = materialize(a, out_shape, gather), materialize(b, out_shape, gather)
        return a.reshape(1, 1, n), b.reshape(1, 1, n), out_shape, (1, 1, n)
    pattern = [[(False, False), 1]] * (3 - len(pattern)) + pattern
    shape_a = tuple(d if key[0] else 1 for key, d in pattern)
    shape_b = tuple(d if key[1] else 1 for key, d in pattern)
    return a.reshape(shape_a), b.reshape(shape_b), out_shape, tuple(d for _, d in pattern)


def reduce_to_shape(grad, shape, sum_kernel):
    """Sum a broadcast gradient back to an input's ``shape``: the one un-broadcast step.

    ``sum_kernel`` is ``firefly.kernels.reduce.sum_forward``; it runs only if ``shape`` differs.
    """
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, d in enumerate(shape) if d == 1 and grad.shape[lead + i] != 1
    )
    return sum_axes(grad, axes, sum_kernel).reshape(shape)


# ----------------------------------------------------------------------------- axes
def normalize_axes(op_name, axis, x):
    """Sorted, non-negative, unique axes of ``x`` named by ``axis`` (None, an int or a tuple)."""
    ndim = x.ndim
    if axis is None:
        return tuple(range(ndim))
    items = axis if isinstance(axis, (tuple, list)) else (axis,)
    axes = []
    for ax in items:
        try:
            ax = operator.index(ax)
        except TypeError:
            raise TypeError(
                f"{op_name}: axis must be None, an int or a tuple of ints, got {axis!r}"
            ) from None
        # A 0-d tensor accepts axis 0 and -1, as in PyTorch.
        if not (-ndim <= ax < ndim or (ndim == 0 and ax in (0, -1))):
            raise ValueError(
                f"{op_name}: axis {ax} is out of range for a tensor of shape {x.shape} "
                f"({x.dtype}); valid axes are {-ndim} to {ndim - 1}"
            )
        axes.append(ax % ndim if ndim else 0)
    if len(set(axes)) != len(axes):
        raise ValueError(f"{op_name}: repeated axis in {axis!r} for a tensor of shape {x.shape}")
    return tuple(sorted(a for a in axes if a < ndim))


def reduced_shape(shape, axes, keepdims):
    """``shape`` with ``axes`` reduced: kept as 1 with ``keepdims``, dropped otherwise."""
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def split3(shape, run):
    """(outer, reduced, inner) sizes for a run of adjacent axes of ``shape``."""
    return (
        math.prod(shape[: run[0]]),
        math.prod(shape[run[0] : run[-1] + 1]),
        math.prod(shape[run[-1] + 1 :]),
    )


def axis_runs(axes):
    """Split sorted axes into runs of adjacent axes: (0, 1, 3) -> [(0, 1), (3,)]."""
    runs = []
    for ax in axes:
        if runs and runs[-1][-1] == ax - 1:
            runs[-1].append(ax)
        else:
            runs.append([ax])
    return runs


def sum_axes(x, axes, sum_kernel, scale=1.0):
    """Sum ``x`` over sorted ``axes``, keeping them as size-1 dimensions, times ``scale``.

    Each run of adjacent axes is one pass of ``sum_kernel`` (``firefly.kernels.reduce.
    sum_forward``) over the (outer, reduced, inner) form, last run first, so no pass needs a copy.
    """
    if not axes:  # a 0-d tensor, or an empty tuple of axes: count is 1, so scale is too
        return x.copy()
    runs = axis_runs(axes)
    for i, run in enumerate(reversed(runs)):
        shape = x.shape
        outer, reduced, inner = split3(shape, run)
        out = np.empty(shape[: run[0]] + (1,) * len(run) + shape[run[-1] + 1 :], dtype=x.dtype)
        run_scale = scale if i == len(runs) - 1 else 1.0
        sum_kernel(x.reshape(outer, reduced, inner), run_scale, out.reshape(outer, inner))
        x = out
    return x


def expand_sum_grad(grad_kept, shape, axes, scale, expand_kernel):
    """Broadcast a keepdims-shaped gradient back over ``axes`` of ``shape``, times ``scale``,
    with ``expand_kernel`` (``firefly.kernels.reduce.sum_backward``)."""
    g = grad_kept
    for i, run in enumerate(axis_runs(axes)):
        full = g.shape[: run[0]] + tuple(shape[a] for a in run) + g.shape[run[-1] + 1 :]
        out = np.empty(full, dtype=g.dtype)
        outer, reduced, inner = split3(full, run)
        expand_kernel(
            g.reshape(outer, inner), scale if i == 0 else 1.0, out.reshape(outer, reduced, inner)
        )
        g = out
    return g


# ----------------------------------------------------------------------------- strided views
# The gather and scatter kernels take a geometry's shape and strides as int64 arrays. A step
# meets the same few geometries again and again (a transpose in every matmul's backward, the
# same slice each step), so the arrays are made once per geometry and kept, as the engine keeps
# Python numbers' arrays; the dict is emptied when it fills. Kernels only read them, and they
# stay writeable: Numba compiles a read-only array as another type.
_geometry_arrays: dict[tuple[tuple[int, ...], tuple[int, ...]], tuple[np.ndarray, np.ndarray]] = {}
_MAX_GEOMETRIES = 1024


def strided_geometry(base, offset, shape, strides):
    """(offset, shape, strides) as the gather and scatter kernels take them, for the elements
    ``offset + sum(index * strides)`` (in elements) over the indices of ``shape``, inside the
    contiguous array ``base``.

    Checks that every element the geometry reaches lies inside ``base``: the kernels do no
    bounds checking, so this is what stands between a wrong index and corrupted memory.
    Pure-Python integer arithmetic: NumPy on arrays of a few elements costs more than the rest
    of a small op.
    """
    if 0 not in shape:
        low = high = offset
        for d, s in zip(shape, strides):
            if s > 0:
                high += (d - 1) * s
            else:
                low += (d - 1) * s
        if low < 0 or high >= base.size:
            raise RuntimeError(
                f"firefly: view of shape {shape} falls outside its base {base.shape}"
            )
    key = (shape, strides)
    arrays = _geometry_arrays.get(key)
    if arrays is None:
        if len(_geometry_arrays) >= _MAX_GEOMETRIES:
            _geometry_arrays.clear()
        arrays = _geometry_arrays[key] = (
            np.array(shape, dtype=np.int64),
            np.array(strides, dtype=np.int64),
        )
    return offset, arrays[0], arrays[1]


def view_geometry(base, view):
    """(offset, shape, strides) in elements of ``view`` inside the contiguous array ``base``,
    checked as ``strided_geometry`` checks."""
    itemsize = base.itemsize
    strides = tuple(s // itemsize for s in view.strides)
    offset = 0
    if view.size:
        offset = (view.ctypes.data - base.ctypes.data) // itemsize
    return strided_geometry(base, offset, view.shape, strides)


def gather_geometry(base, geometry, shape, gather):
    """A contiguous array of ``shape`` holding the elements of the contiguous array ``base``
    that ``geometry`` (``strided_geometry``'s) reaches, made by ``gather``
    (``firefly.kernels.shape.gather_strided``)."""
    out = np.empty(shape, dtype=base.dtype)
    if out.size:
        offset, shape_array, strides_array = geometry
        gather(base.reshape(-1), offset, shape_array, strides_array, out.reshape(-1))
    return out


def gather_view(base, view, gather):
    """A contiguous copy of ``view``, a strided view into the contiguous array ``base``, made
    by ``gather`` (``firefly.kernels.shape.gather_strided``)."""
    return gather_geometry(base, view_geometry(base, view), view.shape, gather)


def permute_copy(x, axes, gather):
    """``x.transpose(axes)`` as a contiguous array, ``x`` contiguous. Its geometry is ``x``'s
    shape and strides in the order ``axes``, from offset 0: no view needed."""
    itemsize, strides = x.itemsize, x.strides
    shape = tuple(x.shape[a] for a in axes)
    geometry = strided_geometry(x, 0, shape, tuple(strides[a] // itemsize for a in axes))
    return gather_geometry(x, geometry, shape, gather)


def materialize(a, out_shape, gather):
    """A contiguous copy of ``a`` broadcast to ``out_shape``."""
    return gather_view(a, np.broadcast_to(a, out_shape), gather)
