"""Data movement for shape ops: flat copies, and strided gathers and scatters that serve
transpose, slicing and broadcasting alike. Strides and offsets count elements, not bytes."""

from numba import prange

from firefly.kernels._jit import inline_helper, kernel, memory_bound


@inline_helper
def _start(index, offset, shape, strides, dims):
    """Where sub-array ``index`` (C order over the first ``dims`` dimensions of ``shape``)
    starts: a row's with ``dims = shape.size - 1``, a plane's with ``shape.size - 2``."""
    # Numba's parfor pass rejects any variable copied from the prange index and then updated
    # in place, so the index is decoded with a running divisor instead.
    base, divisor = offset, 1
    for d in range(dims - 1, -1, -1):
        base += ((index // divisor) % shape[d]) * strides[d]
        divisor *= shape[d]
    return base


@memory_bound
def copy_flat(src, dst):
    for i in prange(src.size):
        dst[i] = src[i]


# Rows one work item of a gather copies. Its plane's start costs an integer division per
# dimension, decoded once for these rows rather than once per row.
GATHER_ROWS_PER_ITEM = 16


@memory_bound
def gather_strided(src, offset, shape, strides, out):
    """out (flat, C order over ``shape``) = src[offset + sum(index * strides)]."""
    nd = shape.size
    if out.size == 0:
        return
    if nd == 0:
        out[0] = src[offset]
        return
    inner, inner_stride = shape[nd - 1], strides[nd - 1]
    rows, row_stride = (shape[nd - 2], strides[nd - 2]) if nd >= 2 else (1, 0)
    blocks = (rows + GATHER_ROWS_PER_ITEM - 1) // GATHER_ROWS_PER_ITEM
    planes = out.size // (rows * inner)
    for item in prange(planes * blocks):
        plane = item // blocks
        first_row = (item - plane * blocks) * GATHER_ROWS_PER_ITEM
        plane_start = _start(plane, offset, shape, strides, nd - 2)
        for row in range(first_row, min(first_row + GATHER_ROWS_PER_ITEM, rows)):
            start = plane_start + row * row_stride
            first = (plane * rows + row) * inner
            if inner_stride == 1:
                # Slices, not indices into the whole arrays: LLVM then vectorizes the copy.
                out_row, src_row = out[first : first + inner], src[start : start + inner]
                for i in range(inner):
                    out_row[i] = src_row[i]
            else:
                for i in range(inner):
                    out[first + i] = src[start + i * inner_stride]


@kernel  # serial: rows may write the same elements (see below), so no parallel twin
def scatter_add_strided(values, offset, shape, strides, dst):
    """dst[offset + sum(index * strides)] += values (flat, C order over ``shape``)."""
    nd = shape.size
    if values.size == 0:
        return
    if nd == 0:
        dst[offset] += values[0]
        return
    inner, inner_stride = shape[nd - 1], strides[nd - 1]
    # Rows may write the same elements when a stride is 0, so this loop stays serial.
    for row in range(values.size // inner):
        base = _start(row, offset, shape, strides, nd - 1)
        first = row * inner
        for i in range(inner):
            dst[base + i * inner_stride] += values[first + i]
