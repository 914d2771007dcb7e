"""Matrix products. Each calls BLAS through ``np.dot`` (which Numba links to SciPy's BLAS):
measured here, a hand-written Numba matmul reaches only 25-35% of BLAS speed."""

import numpy as np

from firefly.kernels._jit import kernel


@kernel
def matmul_forward(a, b, out):
    """out[k] = a[k] @ b[k] over a batch; a or b may have a batch of 1 that broadcasts."""
    a_batched, b_batched = a.shape[0] > 1, b.shape[0] > 1
    for k in range(out.shape[0]):
        np.dot(a[k * a_batched], b[k * b_batched], out[k])


@kernel
def matmul_backward(grad, a, b, da, db):
    """da = grad @ b^T and db = a^T @ grad, summed over the batch where an input broadcast."""
    a_batched, b_batched = a.shape[0] > 1, b.shape[0] > 1
    if not a_batched:
        da[0] = 0.0
    if not b_batched:
        db[0] = 0.0
    for k in range(grad.shape[0]):
        ka, kb = k * a_batched, k * b_batched
        if a_batched:
            np.dot(grad[k], b[kb].T, da[k])
        else:
            da[0] += np.dot(grad[k], b[kb].T)
        if b_batched:
            np.dot(a[ka].T, grad[k], db[k])
        else:
            db[0] += np.dot(a[ka].T, grad[k])


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
