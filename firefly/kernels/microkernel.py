"""float32 matrix products through a register-tile micro-kernel, ``gemm(a, b, out, beta)``,
for the skinny products of the position-major convolution, where OpenBLAS runs well below its
large-GEMM rate.

The micro-kernel computes an ``MR`` x 32 (or x 16) tile of ``out`` with its accumulators as
LLVM SSA values of type ``<16 x float>`` (``llvm.fma.v16f32``), which stay in registers: each
step over the inner dimension loads one row of the tile's columns of ``b`` and broadcasts one
element of each of the tile's rows of ``a``. It is LLVM IR emitted by an ``@intrinsic``, as a
function of its own in each kernel's module, because Numba's loops keep such accumulators in
memory (a register-blocked kernel in plain Numba ran at a fifth of this rate). ``a`` may have
any strides (a transposed view costs nothing), ``b`` and ``out`` need contiguous rows; the
products that do not fit (float64, columns of ``b`` not contiguous) go to
``cblas.gemm_views``, whose operands must have contiguous rows or columns, as everywhere in the
conv kernels. docs/performance.md ("Convolution, session 34") has the measurements.
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from firefly.kernels._jit import called_helper
from firefly.kernels.cblas import _keep_alive, gemm_views

# Rows of a tile: 8 rows of two 16-float vectors are 16 accumulators, beside the two vectors of
# b and a broadcast of a (the 32 vector registers of AVX-512 hold them; at 6 and 14 rows the
# rate was the same, at 12 rows lower).
MR = 8
_F32 = ir.FloatType()
_I64 = ir.IntType(64)
_VECTOR = ir.VectorType(_F32, 16)


def _tile_function(module, rows, vectors):
    """The micro-kernel for a ``rows`` x 16 * ``vectors`` tile, defined in ``module`` once:
    ``void (float *a, i64 row_step, i64 k_step, float *b, i64 ldb, float *c, i64 ldc, i64 k,
    i64 accumulate)``: c = a b (+ c when ``accumulate``), a's element (i, p) at a + i *
    row_step + p * k_step, b's (p, j) at b + p * ldb + j, c's (i, j) at c + i * ldc + j; k >=
    1."""
    name = f"firefly_sgemm_tile_{rows}x{16 * vectors}"
    pointer = _F32.as_pointer()
    signature = ir.FunctionType(ir.VoidType(), [pointer, _I64, _I64, pointer, _I64] + [
        pointer, _I64, _I64, _I64
    ])  # fmt: skip
    function = cgutils.get_or_insert_function(module, signature, name)
    if not function.is_declaration:
        return function
    function.linkage = "internal"
    a, row_step, k_step, b, ldb, c, ldc, k_count, accumulate = function.args
    entry, loop, done = (function.append_basic_block(n) for n in ("entry", "loop", "done"))
    add, store = function.append_basic_block("add"), function.append_basic_block("store")
    fma = cgutils.get_or_insert_function(
        module, ir.FunctionType(_VECTOR, [_VECTOR] * 3), "llvm.fma.v16f32"
    )
    vector_pointer = _VECTOR.as_pointer()
    zero = ir.Constant(_VECTOR, [0.0] * 16)
    undefined = ir.Constant(_VECTOR, ir.Undefined)
    splat = ir.Constant(ir.VectorType(ir.IntType(32), 16), [0] * 16)
    builder = ir.IRBuilder(entry)
    builder.branch(loop)

    builder.position_at_end(loop)
    p = builder.phi(_I64)
    p.add_incoming(_I64(0), entry)
    sums = [[builder.phi(_VECTOR) for _ in range(vectors)] for _ in range(rows)]
    b_row = builder.gep(b, [builder.mul(p, ldb)])
    b_vectors = [
        builder.load(builder.bitcast(builder.gep(b_row, [_I64(16 * v)]), vector_pointer), align=4)
        for v in range(vectors)
    ]
    a_column = builder.gep(a, [builder.mul(p, k_step)])
    updated = []
    for i in range(rows):
        element = builder.load(builder.gep(a_column, [builder.mul(_I64(i), row_step)]), align=4)
        broadcast = builder.shuffle_vector(
            builder.insert_element(undefined, element, ir.IntType(32)(0)), undefined, splat
        )
        updated.append(
            [builder.call(fma, [broadcast, b_vectors[v], sums[i][v]]) for v in range(vectors)]
        )
        for v in range(vectors):
            sums[i][v].add_incoming(zero, entry)
            sums[i][v].add_incoming(updated[i][v], loop)
    following = builder.add(p, _I64(1))
    p.add_incoming(following, loop)
    builder.cbranch(builder.icmp_signed("<", following, k_count), loop, done)

    builder.position_at_end(done)
    builder.cbranch(builder.icmp_signed("!=", accumulate, _I64(0)), add, store)
    for block, accumulating in ((add, True), (store, False)):
        builder.position_at_end(block)
        for i in range(rows):
            c_row = builder.gep(c, [builder.mul(_I64(i), ldc)])
            for v in range(vectors):
                target = builder.bitcast(builder.gep(c_row, [_I64(16 * v)]), vector_pointer)
                value = updated[i][v]
                if accumulating:
                    value = builder.fadd(builder.load(target, align=4), value)
                builder.store(value, target, align=4)
        builder.ret_void()
    return function


def _tile(rows, vectors):
    """An intrinsic ``tile(a, row_step, k_step, b, ldb, c, ldc, k, accumulate)`` (addresses
    and element counts as ints) that calls ``_tile_function(rows, vectors)``."""

    @intrinsic
    def tile(typingctx, a, row_step, k_step, b, ldb, c, ldc, k, accumulate):
        def codegen(context, builder, signature, args):
            function = _tile_function(builder.module, rows, vectors)
            pointer = _F32.as_pointer()
            pa, rs, ks, pb, lb, pc, lc, kk, acc = args
            builder.call(
                function,
                [
                    builder.inttoptr(pa, pointer), rs, ks, builder.inttoptr(pb, pointer), lb,
                    builder.inttoptr(pc, pointer), lc, kk, acc,
                ],
            )  # fmt: skip
            return context.get_dummy_value()

        return types.void(*([types.int64] * 9)), codegen

    return tile


_tile_wide, _tile_wide_row = _tile(MR, 2), _tile(1, 2)
_tile_narrow, _tile_narrow_row = _tile(MR, 1), _tile(1, 1)


@called_helper
def gemm(a, b, out, beta):
    """out = a @ b + beta * out, beta 0 or 1, with ``out``'s rows contiguous: float32 through
    the micro-kernel when ``b``'s rows are contiguous, else (and float64) through
    ``cblas.gemm_views``."""
    m, k, n = a.shape[0], a.shape[1], b.shape[1]
    if out.itemsize != 4 or k == 0 or (n > 1 and b.strides[1] != 4):
        gemm_views(a, b, out, beta)
        return
    row_step, k_step = a.strides[0] // 4, a.strides[1] // 4
    ldb, ldc = b.strides[0] // 4, out.strides[0] // 4
    pa, pb, pc = a.ctypes.data, b.ctypes.data, out.ctypes.data
    accumulate = int(beta != 0.0)
    whole = m - m % MR
    for j in range(0, n - n % 16, 32):
        wide = j + 32 <= n
        for i in range(0, m, MR):
            pai, pci = pa + 4 * i * row_step, pc + 4 * (i * ldc + j)
            if i < whole and wide:
                _tile_wide(pai, row_step, k_step, pb + 4 * j, ldb, pci, ldc, k, accumulate)
            elif i < whole:
                _tile_narrow(pai, row_step, k_step, pb + 4 * j, ldb, pci, ldc, k, accumulate)
            else:
                for r in range(i, m):
                    pa_r, pc_r = pa + 4 * r * row_step, pc + 4 * (r * ldc + j)
                    if wide:
                        _tile_wide_row(
                            pa_r, row_step, k_step, pb + 4 * j, ldb, pc_r, ldc, k, accumulate
                        )
                    else:
                        _tile_narrow_row(
                            pa_r, row_step, k_step, pb + 4 * j, ldb, pc_r, ldc, k, accumulate
                        )
    for i in range(m):  # the last n % 16 columns
        for j in range(n - n % 16, n):
            total = 0.0
            for p in range(k):
                total += a[i, p] * b[p, j]
            out[i, j] = total + beta * out[i, j] if accumulate else total
    _keep_alive(a, b, out)  # after the tiles: see cblas.gemm_views
