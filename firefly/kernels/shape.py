"""Data movement for shape ops: flat copies, and strided gathers and scatters that serve
transpose, slicing and broadcasting alike. Strides and offsets count elements, not bytes."""

from numba import prange

from firefly.kernels._jit import inline_helper, kernel, memory_bound


@inline_helper
def _start(index, offset, shape, strides, dims):
    """Where sub-array ``index`` (C order over the first ``dims`` dimensions of ``shape``)
    starts: the gather and the scatter decode a plane's (``dims = shape.size - 2``)."""
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


# Output rows one work item of a transposing gather copies: the source columns they read are
# contiguous runs of this many elements (see _transpose_rows).
TRANSPOSE_ROWS_PER_ITEM = 128
# Output columns (source rows) a transposing gather copies in one pass: 8 float32 are half a
# cache line, 8 float64 a whole one, written together.
TRANSPOSE_COLUMNS_PER_PASS = 8


@inline_helper
def _transpose_rows(src, start, inner_stride, out, first, rows, inner):
    """out[first + row * inner + i] = src[start + row + i * inner_stride] for ``rows`` output
    rows: the source's rows are read as contiguous slices, eight at a time, and each output
    row gets eight neighbouring elements from them, which LLVM vectorizes as loads and
    shuffles, where a column-by-column copy reads one element per cache line."""
    i = 0
    while i + TRANSPOSE_COLUMNS_PER_PASS <= inner:
        s0 = src[start + i * inner_stride : start + i * inner_stride + rows]
        s1 = src[start + (i + 1) * inner_stride : start + (i + 1) * inner_stride + rows]
        s2 = src[start + (i + 2) * inner_stride : start + (i + 2) * inner_stride + rows]
        s3 = src[start + (i + 3) * inner_stride : start + (i + 3) * inner_stride + rows]
        s4 = src[start + (i + 4) * inner_stride : start + (i + 4) * inner_stride + rows]
        s5 = src[start + (i + 5) * inner_stride : start + (i + 5) * inner_stride + rows]
        s6 = src[start + (i + 6) * inner_stride : start + (i + 6) * inner_stride + rows]
        s7 = src[start + (i + 7) * inner_stride : start + (i + 7) * inner_stride + rows]
        block = out[first + i : first + (rows - 1) * inner + i + TRANSPOSE_COLUMNS_PER_PASS]
        for row in range(rows):
            at = row * inner
            block[at] = s0[row]
            block[at + 1] = s1[row]
            block[at + 2] = s2[row]
            block[at + 3] = s3[row]
            block[at + 4] = s4[row]
            block[at + 5] = s5[row]
            block[at + 6] = s6[row]
            block[at + 7] = s7[row]
        i += TRANSPOSE_COLUMNS_PER_PASS
    for column in range(i, inner):
        for row in range(rows):
            out[first + row * inner + column] = src[start + row + column * inner_stride]


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
    planes = out.size // (rows * inner)
    # The last two axes swapped (a transpose): the source's rows are the output's columns.
    # Either way one prange loop over (plane, block of rows) items, so that the loop compiles
    # once for the serial and the parallel run (sized_kernel cuts it into shares).
    transpose = row_stride == 1 and inner_stride != 1 and inner >= TRANSPOSE_COLUMNS_PER_PASS
    per_item = TRANSPOSE_ROWS_PER_ITEM if transpose else GATHER_ROWS_PER_ITEM
    blocks = (rows + per_item - 1) // per_item
    for item in prange(planes * blocks):
        plane = item // blocks
        first_row = (item - plane * blocks) * per_item
        plane_start = _start(plane, offset, shape, strides, nd - 2)
        if transpose:
            first = (plane * rows + first_row) * inner
            count = min(per_item, rows - first_row)
            _transpose_rows(src, plane_start + first_row, inner_stride, out, first, count, inner)
            continue
        for row in range(first_row, min(first_row + per_item, rows)):
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
    rows, row_stride = (shape[nd - 2], strides[nd - 2]) if nd >= 2 else (1, 0)
    # Rows may write the same elements when a stride is 0, so this loop stays serial. As in
    # the gather, a plane's start is decoded once and its rows step from it.
    for plane in range(values.size // (rows * inner)):
        plane_start = _start(plane, offset, shape, strides, nd - 2)
        for row in range(rows):
            start = plane_start + row * row_stride
            first = (plane * rows + row) * inner
            if inner_stride == 1:
                # Slices, not indices into the whole arrays: LLVM then vectorizes the sum.
                dst_row, values_row = dst[start : start + inner], values[first : first + inner]
                for i in range(inner):
                    dst_row[i] += values_row[i]
            else:
                for i in range(inner):
                    dst[start + i * inner_stride] += values[first + i]
