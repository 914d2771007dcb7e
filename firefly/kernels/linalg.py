"""Matrix products. Each calls NumPy's OpenBLAS through ``dot_into`` (one CBLAS call, without
a compiled function per layout as Numba's ``np.dot`` makes, whose BLAS is SciPy's): measured
here, a hand-written Numba matmul reaches only 25-35% of BLAS speed. The SVD calls LAPACK
through Numba."""

import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from firefly.kernels import microkernel
from firefly.kernels._blas import can_limit_blas_threads
from firefly.kernels._jit import (
    driven_kernel,
    inline_helper,
    kernel,
    kernel_driver,
    run_shares,
    sized_kernel,
    thread_count,
)
from firefly.kernels._shares import each_share, share_range
from firefly.kernels.cblas import GEMM_SYMBOLS, NO_TRANSPOSE, ROW_MAJOR, TRANSPOSE, transpose_into

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
# transposed operands of create_graph's recorded backward). OpenBLAS threads a GEMM
# whose second operand is transposed from a smaller size than the plain one: on the 2-core
# machine under load, (128, 64) @ (64, 64)^T took 17-36 ms through its two threads against
# 20 us once the operand is copied (24 us, copy included), in a Hessian-vector product that
# did little else.


def batched_gemm(fn):
    """A loop of GEMMs over a batch, written with ``prange``: serial and parallel builds, the
    parallel one from PARALLEL_MIN_BATCHED_GEMM elements."""
    return sized_kernel(fn, PARALLEL_MIN_BATCHED_GEMM)


@intrinsic
def dot_into(typingctx, a, b, out):
    """out = a @ b for 2-D float32 or float64 operands whose rows or columns are contiguous
    (Numba's C or F layout: a transpose is read in place, through BLAS's transpose flag) and a
    C-contiguous ``out``, all of one dtype, as one call of the CBLAS gemm that
    ``firefly.kernels.cblas`` binds (NumPy's OpenBLAS).

    Emitted as an LLVM call, not through Numba's ``np.dot``, which compiles a function of its
    own per layout triple and its shape checks as another (messages included): about 0.15 s
    of CPU per triple, three for a linear layer's forward and backward, in every process that
    compiles them. NumPy's OpenBLAS, not the SciPy one ``np.dot`` calls, since it runs the
    weight gradient's transposed product faster (docs/performance.md, "The char_gpt step,
    session 31"); a single row or column goes through gemm too, which OpenBLAS hands to its
    gemv. Shapes that do not fit raise ValueError, as ``np.dot`` does."""
    arrays = (a, b, out)
    if not all(isinstance(t, types.Array) and t.ndim == 2 for t in arrays):
        return None
    if a.layout not in "CF" or b.layout not in "CF" or out.layout != "C":
        return None
    if not a.dtype == b.dtype == out.dtype or a.dtype not in (types.float32, types.float64):
        return None
    dtype = a.dtype

    def codegen(context, builder, signature, args):
        # Imported here, at a compile: importing Numba's array module is tens of milliseconds
        # that neither `import firefly` nor a process loading cached kernels should pay.
        from numba.np.arrayobj import make_array

        x, y, o = (make_array(t)(context, builder, v) for t, v in zip(signature.args, args))
        (m, k), (k_y, n) = (
            cgutils.unpack_tuple(builder, x.shape),
            cgutils.unpack_tuple(builder, y.shape),
        )
        o_shape = cgutils.unpack_tuple(builder, o.shape)
        mismatch = builder.or_(
            builder.icmp_signed("!=", k, k_y),
            builder.or_(
                builder.icmp_signed("!=", o_shape[0], m), builder.icmp_signed("!=", o_shape[1], n)
            ),
        )
        with builder.if_then(mismatch, likely=False):
            context.call_conv.return_user_exc(
                builder, ValueError, ("dot_into: shapes (m, k) @ (k, n) -> (m, n) do not fit",)
            )
        zero = context.get_constant(types.intp, 0)
        empty = builder.or_(
            builder.icmp_signed("==", k, zero),
            builder.or_(builder.icmp_signed("==", m, zero), builder.icmp_signed("==", n, zero)),
        )
        with builder.if_else(empty, likely=False) as (is_empty, not_empty):
            with is_empty:  # zeros, as np.dot gives (BLAS wants leading dimensions >= 1)
                cgutils.memset(builder, o.data, builder.mul(o.itemsize, o.nitems), 0)
            with not_empty:
                # Row-major: a C operand is read as is (leading dimension: its row length), an
                # F one is a C array's transpose (its leading dimension is that array's rows).
                trans_a, lda = (NO_TRANSPOSE, k) if a.layout == "C" else (TRANSPOSE, m)
                trans_b, ldb = (NO_TRANSPOSE, n) if b.layout == "C" else (TRANSPOSE, k)
                order, trans_a, trans_b = (
                    context.get_constant(types.intc, flag) for flag in (ROW_MAJOR, trans_a, trans_b)
                )
                scalar = context.get_value_type(dtype)
                pointer = cgutils.voidptr_t
                size = context.get_value_type(types.intp)
                int_type = context.get_value_type(types.intc)
                gemm_type = ir.FunctionType(
                    ir.VoidType(),
                    [int_type] * 3 + [size] * 3 + [scalar, pointer, size, pointer, size]
                    + [scalar, pointer, size],
                )  # fmt: skip
                gemm = cgutils.get_or_insert_function(
                    builder.module, gemm_type, GEMM_SYMBOLS[np.dtype(dtype.name).type]
                )
                builder.call(
                    gemm,
                    [
                        order, trans_a, trans_b, m, n, k,
                        context.get_constant(dtype, 1.0), builder.bitcast(x.data, pointer), lda,
                        builder.bitcast(y.data, pointer), ldb, context.get_constant(dtype, 0.0),
                        builder.bitcast(o.data, pointer), n,
                    ],
                )  # fmt: skip
        return context.get_dummy_value()

    return types.none(a, b, out), codegen


def _blas_operand(a):
    """``a`` as ``dot_into`` takes it: as is when its rows or columns are contiguous (Numba's
    C or F layout), else a C-contiguous copy."""
    return a


@overload(_blas_operand)
def _blas_operand_impl(a):
    if a.layout in "CF":
        return lambda a: a
    return lambda a: np.ascontiguousarray(a)


@batched_gemm
def matmul_forward(a, b, out):
    """out[k] = a[k] @ b[k] over a batch; a or b may have a batch of 1 that broadcasts."""
    a_batched, b_batched = a.shape[0] > 1, b.shape[0] > 1
    if a.shape[1] * a.shape[2] * b.shape[2] <= SINGLE_THREAD_GEMM:
        for k in prange(out.shape[0]):
            dot_into(
                _blas_operand(a[k * a_batched]), np.ascontiguousarray(b[k * b_batched]), out[k]
            )
    else:
        for k in range(out.shape[0]):
            dot_into(
                _blas_operand(a[k * a_batched]), np.ascontiguousarray(b[k * b_batched]), out[k]
            )


@batched_gemm
def matmul_backward(grad, a, b, da, db):
    """da[k] = grad[k] @ b[k]^T and db[k] = a[k]^T @ grad[k] for operands of one batch size (no
    sums over the batch: each k in one share of the parallel run), GEMMs small enough for
    OpenBLAS to run each on one thread (at most SINGLE_THREAD_GEMM)."""
    for k in prange(grad.shape[0]):
        g = _blas_operand(grad[k])
        dot_into(g, np.ascontiguousarray(b[k].T), da[k])
        dot_into(_blas_operand(a[k]).T, g, db[k])


@kernel
def matmul_backward_in_turn(grad, a, b, da, db):
    """da = grad @ b^T and db = a^T @ grad one GEMM after another, each threaded by OpenBLAS
    as its size allows: where an input broadcast (a batch of 1, whose gradient is the sum over
    the batch: each product into scratch, added in batch order), or where the GEMMs are above
    SINGLE_THREAD_GEMM."""
    a_batched, b_batched = a.shape[0] > 1, b.shape[0] > 1
    da_part = np.empty(da.shape[1:] if not a_batched else (0, 0), da.dtype)
    db_part = np.empty(db.shape[1:] if not b_batched else (0, 0), db.dtype)
    for k in range(grad.shape[0]):
        ka, kb = k * a_batched, k * b_batched
        b_transposed = np.ascontiguousarray(b[kb].T)
        g = np.ascontiguousarray(grad[k])
        a_transposed = _blas_operand(a[ka]).T
        # The first product of a sum goes straight into it.
        if a_batched or k == 0:
            dot_into(g, b_transposed, da[ka])
        else:
            dot_into(g, b_transposed, da_part)
            _add_into(da[0], da_part)
        if b_batched or k == 0:
            dot_into(a_transposed, g, db[kb])
        else:
            dot_into(a_transposed, g, db_part)
            _add_into(db[0], db_part)


@inline_helper
def _add_into(total, part):
    """total += part for 2-D C-contiguous arrays of one shape: a loop, which compiles in a
    fraction of the time of the array expression (its broadcasting and its shape-mismatch
    message)."""
    for i in range(total.shape[0]):
        row, add = total[i], part[i]
        for j in range(row.size):
            row[j] += add[j]


@inline_helper
def _subtract_from(total, part):
    """total -= part, as ``_add_into`` adds."""
    for i in range(total.shape[0]):
        row, sub = total[i], part[i]
        for j in range(row.size):
            row[j] -= sub[j]


# The copies between arrays are loops: Numba compiles a slice assignment from an array
# (`a[i] = b`, `a[:] = b`) with its shape-mismatch error message, string formatting that cost
# several seconds of compile per process and is not cached across processes.
@inline_helper
def copy_row(target, source):
    """target[k] = source[k] over two 1-D arrays of one size."""
    for k in range(target.size):
        target[k] = source[k]


@inline_helper
def copy_rows(target, source):
    """target[n, k] = source[n, k] over two 2-D arrays of one shape."""
    for n in range(target.shape[0]):
        copy_row(target[n], source[n])


# A linear layer's products of at least this many multiply-adds run through the micro-kernel,
# their rows shared out over Numba's threads; smaller ones through BLAS in one call. Sharing out
# costs a fixed time per call (the threads' wake-up, BLAS's thread count set and restored, the
# weight transposed): the seed's (1024, 10) @ (10, 32) layer took 57 us fwd+bwd through BLAS
# and 93 us shared, char_gpt's and the 784 classifier's layers (8-51 million) are faster shared.
SHARED_LINEAR_MIN = 1 << 21


def _check_linear(x, weight, out_rows, out):
    """The shared path's operands fit (the micro-kernel checks nothing): x (N, K), weight
    (M, K), and ``out`` (N, M) for the output or the gradient of it."""
    (N, K), (M, Kw) = x.shape, weight.shape
    if K != Kw or out.shape != (out_rows, M) or N != out_rows:
        raise ValueError(
            f"linear: x {x.shape}, weight {weight.shape} and {out.shape} do not fit "
            f"(expected x (N, K), weight (M, K) and ({out_rows}, M))"
        )


def _shared(dtype, multiply_adds):
    """Whether a linear layer's products take the shared path: float32 (the micro-kernel's
    dtype), at least SHARED_LINEAR_MIN multiply-adds, on a CPU that runs the micro-kernel. It
    loads the micro-kernel (``microkernel.load``) when they do."""
    if multiply_adds < SHARED_LINEAR_MIN or not microkernel.serves(dtype):
        return False
    microkernel.load()
    return True


def _linear_shares():
    """Numba's thread count, or one where BLAS's thread count cannot be limited (BLAS then
    keeps its own threads)."""
    return thread_count() if can_limit_blas_threads() else 1


@kernel_driver
def linear_forward(x, weight, bias, out):
    """out = x @ weight.T + bias, with x (N, K), weight (M, K) as torch lays it out and bias
    (M,). Small products, and float64 ones, run through BLAS, which reads the transposed
    weight in place (a transpose flag, no copy); float32 products from SHARED_LINEAR_MIN
    multiply-adds are shared out over Numba's threads by rows, each through the micro-kernel
    (``microkernel.gemm_bias``: 10% faster than OpenBLAS at these shapes, docs/performance.md,
    the bias added as each tile is stored) on the weight transposed once per call by OpenBLAS's
    omatcopy, on C-contiguous operands so that one compile serves."""
    M, K = weight.shape
    if not _shared(out.dtype, out.shape[0] * M * K):
        _linear_forward_blas(x, weight, bias, out)
    else:
        _check_linear(x, weight, out.shape[0], out)
        if bias.shape != (M,):
            raise ValueError(f"linear: bias {bias.shape} does not fit weight {weight.shape}")
        x, weight, bias = (np.ascontiguousarray(a) for a in (x, weight, bias))  # one compile
        weight_t = np.empty((K, M), weight.dtype)
        transpose_into(weight, weight_t)
        run_shares(_linear_forward_share, _linear_shares(), x, weight_t, bias, out)


@driven_kernel  # called by the driver directly
def _linear_forward_blas(x, weight, bias, out):
    dot_into(x, weight.T, out)
    for n in range(out.shape[0]):
        row = out[n]
        for m in range(row.size):
            row[m] += bias[m]


@driven_kernel
def _linear_forward_share(t, threads, x, weight_t, bias, out):
    """linear_forward's rows n0 .. n1 of share t, on the weight transposed (``weight_t``, K x
    M): the micro-kernel's right operand needs contiguous rows."""
    if t < 0:
        return each_share(threads)
    n0, n1 = share_range(t, threads, out.shape[0])
    if n1 > n0:
        microkernel.gemm_bias(x[n0:n1], weight_t, bias, out[n0:n1])
    return 0


@kernel_driver
def linear_backward(grad, x, weight, need_dx, dx, dweight, dbias):
    """dx = grad @ weight (skipped unless need_dx: the first layer's input needs none),
    dweight = grad^T @ x (M, K), dbias = grad summed over rows. As linear_forward: BLAS for
    small and float64 products, else shares of dx's and dweight's rows through the
    micro-kernel."""
    N, M = grad.shape
    if not _shared(dweight.dtype, N * M * x.shape[1]):
        _linear_backward_blas(grad, x, weight, need_dx, dx, dweight, dbias)
    else:
        _check_linear(x, weight, N, grad)
        if dweight.shape != weight.shape or dbias.shape != (M,):
            raise ValueError(f"linear: gradients {dweight.shape}, {dbias.shape} do not fit")
        if need_dx and dx.shape != x.shape:
            raise ValueError(f"linear: dx {dx.shape} does not fit x {x.shape}")
        grad, x, weight = (np.ascontiguousarray(a) for a in (grad, x, weight))  # one compile
        shares = _linear_shares()
        run_shares(_linear_backward_share, shares, grad, x, weight, need_dx, dx, dweight, dbias)


@driven_kernel  # called by the driver directly
def _linear_backward_blas(grad, x, weight, need_dx, dx, dweight, dbias):
    if need_dx:
        dot_into(grad, weight, dx)
    dot_into(grad.T, x, dweight)
    _sum_rows_into(grad, dbias, 0, dbias.size)


@inline_helper
def _sum_rows_into(grad, dbias, m0, m1):
    """dbias[m] = sum_n grad[n, m] for m0 <= m < m1, rows added in order. Through slices of
    the rows: indexed from m0 itself, the loop did not vectorize (ten times the time)."""
    part = dbias[m0:m1]
    for m in range(part.size):
        part[m] = 0.0
    for n in range(grad.shape[0]):
        row = grad[n][m0:m1]
        for m in range(part.size):
            part[m] += row[m]


@driven_kernel
def _linear_backward_share(t, threads, grad, x, weight, need_dx, dx, dweight, dbias):
    """linear_backward's share t: dx's rows n0 .. n1 and dweight's and dbias's rows m0 .. m1."""
    if t < 0:
        return each_share(threads)
    N, M = grad.shape
    if need_dx:
        n0, n1 = share_range(t, threads, N)
        if n1 > n0:
            microkernel.gemm(grad[n0:n1], weight, dx[n0:n1], 0.0)
    m0, m1 = share_range(t, threads, M)
    if m1 > m0:
        microkernel.gemm(grad.T[m0:m1], x, dweight[m0:m1], 0.0)
        _sum_rows_into(grad, dbias, m0, m1)
    return 0


@kernel
def svd_forward(a, u, s, vt):
    """The thin SVD a[b] = u[b] @ diag(s[b]) @ vt[b] over a batch (LAPACK's gesdd through
    Numba), singular values descending. Each singular pair's sign is fixed so that the
    largest-magnitude entry of its column of u is positive (the first such entry on a tie):
    the factors are then a function of a, which finite differences and references can read."""
    k = s.shape[1]
    if k == 0:
        return
    for b in range(a.shape[0]):
        ub, sb, vtb = np.linalg.svd(a[b], full_matrices=False)
        for j in range(k):
            peak = 0
            for i in range(ub.shape[0]):
                if abs(ub[i, j]) > abs(ub[peak, j]):
                    peak = i
            sign = -1.0 if ub[peak, j] < 0 else 1.0
            for i in range(ub.shape[0]):
                u[b, i, j] = sign * ub[i, j]
            for i in range(vtb.shape[1]):
                vt[b, j, i] = sign * vtb[j, i]
            s[b, j] = sb[j]


@kernel
def svd_backward(u, s, vt, gu, gs, gvt, ga):
    """ga[b]: the gradient of the thin SVD's input from those of its factors, torch's formula
    (svd_backward in FunctionsManual.cpp) for distinct, non-zero singular values:
    ga = U (skew(U^T gU) S + S skew(V^T gV)) / E + diag(gS)) V^T, E[i, j] = s_j^2 - s_i^2, plus
    the part of gU outside U's columns (m > k) or of gV outside V's (n > k).

    The products are Numba's ``np.dot``, SciPy's BLAS as the forward's LAPACK is (through
    ``dot_into``, NumPy's, the op ran slower at two threads: the two libraries' threads, each
    spinning after its calls, took the cores from each other; docs/performance.md), with every
    operand C-contiguous, so that one specialisation serves all; the elementwise steps are
    loops, not array expressions, each of which compiled a function of its own."""
    k = s.shape[1]
    m, n = u.shape[1], vt.shape[2]
    inner = np.empty((k, k), dtype=u.dtype)
    for b in range(u.shape[0]):
        ub, sb, vtb = u[b], s[b], vt[b]
        gub, gvtb = gu[b], gvt[b]
        utgu = np.dot(np.ascontiguousarray(ub.T), gub)
        vtgv = np.dot(vtb, np.ascontiguousarray(gvtb.T))
        for i in range(k):
            for j in range(k):
                if i == j:
                    inner[i, j] = gs[b, i]
                else:
                    skew_u = utgu[i, j] - utgu[j, i]
                    skew_v = vtgv[i, j] - vtgv[j, i]
                    inner[i, j] = (skew_u * sb[j] + sb[i] * skew_v) / (
                        sb[j] * sb[j] - sb[i] * sb[i]
                    )
        if m > k:
            # side = U inner + gU / S - U (U^T (gU / S)); ga = side V^T
            scaled = np.empty((m, k), dtype=u.dtype)
            for i in range(m):
                for j in range(k):
                    scaled[i, j] = gub[i, j] / sb[j]
            side = np.dot(ub, inner)
            _add_into(side, scaled)
            _subtract_from(side, np.dot(ub, np.dot(np.ascontiguousarray(ub.T), scaled)))
            copy_rows(ga[b], np.dot(side, vtb))
        elif n > k:
            # side = inner V^T + gV^T / S - ((gV^T / S) V) V^T; ga = U side
            scaled = np.empty((k, n), dtype=u.dtype)
            for i in range(k):
                for j in range(n):
                    scaled[i, j] = gvtb[i, j] / sb[i]
            side = np.dot(inner, vtb)
            _add_into(side, scaled)
            _subtract_from(side, np.dot(np.dot(scaled, np.ascontiguousarray(vtb.T)), vtb))
            copy_rows(ga[b], np.dot(ub, side))
        else:
            copy_rows(ga[b], np.dot(ub, np.dot(inner, vtb)))
