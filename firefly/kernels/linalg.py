"""Matrix products. Each calls BLAS through ``np.dot`` (which Numba links to SciPy's BLAS):
measured here, a hand-written Numba matmul reaches only 25-35% of BLAS speed."""

import numpy as np
from numba import prange

from firefly.kernels._jit import kernel, sized_kernel

# A batch of GEMMs runs one per thread (prange over the batch) when each is small enough that
# OpenBLAS runs it on one thread anyway: it threads a GEMM only above M * N * K = 65536 * 4
# (SMP_THRESHOLD_MIN * GEMM_MULTITHREAD_THRESHOLD in its interface/gemm.c), so two threads
# calling such GEMMs at once never start more threads than cores. Larger GEMMs go one after
# another, each threaded by BLAS itself. Attention's (48, 64, 32) @ (48, 32, 64) has 131072.
SINGLE_THREAD_GEMM = 65536 * 4
# Arrays (the first operand or the result) from which the parallel build runs: below, the
# batch is a few microseconds of work, about the cost of waking the thread pool.
PARALLEL_MIN_BATCHED_GEMM = 65536
# The second operand of every GEMM here is made C-contiguous (np.ascontiguousarray: free when
# it already is, a k x n copy when it is a transpose, as b^T in the backward and as the
# transposed operands of create_graph's recorded backward). SciPy's OpenBLAS threads a GEMM
# whose second operand is transposed from a smaller size than the plain one: on the 2-core
# machine under load, (128, 64) @ (64, 64)^T took 17-36 ms through its two threads against
# 20 us once the operand is copied (24 us, copy included), in a Hessian-vector product that
# did little else.


def batched_gemm(fn):
    """A loop of GEMMs over a batch, written with ``prange``: serial and parallel builds, the
    parallel one from PARALLEL_MIN_BATCHED_GEMM elements."""
    return sized_kernel(fn, PARALLEL_MIN_BATCHED_GEMM)


@batched_gemm
def matmul_forward(a, b, out):
    """out[k] = a[k] @ b[k] over a batch; a or b may have a batch of 1 that broadcasts."""
    a_batched, b_batched = a.shape[0] > 1, b.shape[0] > 1
    if a.shape[1] * a.shape[2] * b.shape[2] <= SINGLE_THREAD_GEMM:
        for k in prange(out.shape[0]):
            np.dot(a[k * a_batched], np.ascontiguousarray(b[k * b_batched]), out[k])
    else:
        for k in range(out.shape[0]):
            np.dot(a[k * a_batched], np.ascontiguousarray(b[k * b_batched]), out[k])


@batched_gemm
def matmul_backward(grad, a, b, da, db):
    """da = grad @ b^T and db = a^T @ grad, summed over the batch where an input broadcast."""
    a_batched, b_batched = a.shape[0] > 1, b.shape[0] > 1
    if a_batched and b_batched and a.shape[1] * a.shape[2] * b.shape[2] <= SINGLE_THREAD_GEMM:
        for k in prange(grad.shape[0]):  # no sums over the batch: each k on its own thread
            np.dot(grad[k], np.ascontiguousarray(b[k].T), da[k])
            np.dot(a[k].T, np.ascontiguousarray(grad[k]), db[k])
        return
    if not a_batched:
        da[0] = 0.0
    if not b_batched:
        db[0] = 0.0
    for k in range(grad.shape[0]):
        ka, kb = k * a_batched, k * b_batched
        b_transposed = np.ascontiguousarray(b[kb].T)
        g = np.ascontiguousarray(grad[k])
        if a_batched:
            np.dot(g, b_transposed, da[k])
        else:
            da[0] += np.dot(g, b_transposed)
        if b_batched:
            np.dot(a[ka].T, g, db[k])
        else:
            db[0] += np.dot(a[ka].T, g)


@kernel
def linear_forward(x, weight, bias, out):
    """out = x @ weight.T + bias, with x (N, K), weight (M, K) as torch lays it out and bias
    (M,). BLAS reads the transposed weight in place (a transpose flag, no copy)."""
    np.dot(x, weight.T, out)
    for n in range(out.shape[0]):
        row = out[n]
        for m in range(row.size):
            row[m] += bias[m]


@kernel
def linear_backward(grad, x, weight, need_dx, dx, dweight, dbias):
    """dx = grad @ weight (skipped unless need_dx: the first layer's input needs none),
    dweight = grad^T @ x (M, K), dbias = grad summed over rows."""
    if need_dx:
        np.dot(grad, weight, dx)
    np.dot(grad.T, x, dweight)
    dbias[:] = 0.0
    for n in range(grad.shape[0]):
        row = grad[n]
        for m in range(row.size):
            dbias[m] += row[m]
