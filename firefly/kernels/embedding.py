"""Embedding kernels: a row gather forward, a scatter-add backward."""

from numba import prange

from firefly.kernels._jit import memory_bound

# Columns per task of the parallel scatter-add: tasks own disjoint column ranges, so repeated
# indices never race.
_COLUMNS_PER_TASK = 64


@memory_bound
def embedding_forward(weight, indices, out):
    """out[i] = weight[indices[i]] for flat int64 indices, out (len(indices), D)."""
    for i in prange(indices.size):
        src, dst = weight[indices[i]], out[i]
        for j in range(src.size):
            dst[j] = src[j]


@memory_bound
def embedding_backward(grad, indices, padding_idx, dweight):
    """dweight[indices[i]] += grad[i], repeated indices accumulating; the padding_idx row
    (when non-negative) gets no gradient."""
    dweight[...] = 0.0
    D = dweight.shape[1]
    tasks = max(1, D // _COLUMNS_PER_TASK)
    for t in prange(tasks):
        lo, hi = t * D // tasks, (t + 1) * D // tasks
        for i in range(indices.size):
            k = indices[i]
            if k != padding_idx:
                src, dst = grad[i, lo:hi], dweight[k, lo:hi]
                for j in range(hi - lo):
                    dst[j] += src[j]
