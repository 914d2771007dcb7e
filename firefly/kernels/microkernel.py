"""float32 matrix products through a register-tile micro-kernel, ``gemm(a, b, out, beta)``,
for the convolutions' products, whose shapes (a short inner or outer dimension: 16 to 144
channels times taps) OpenBLAS runs below its large-GEMM rate, and the linear layers' large
float32 products, where it runs 10% faster than OpenBLAS.

The micro-kernel computes an ``MR`` x 32 (or x 16) tile of ``out`` with its accumulators as
LLVM SSA values of type ``<16 x float>`` (``llvm.fma.v16f32``), which stay in registers: each
step over the inner dimension loads one row of the tile's columns of ``b`` and broadcasts one
element of each of the tile's rows of ``a``. It is LLVM IR emitted by an ``@intrinsic``,
because Numba's loops keep such accumulators in memory (a register-blocked kernel in plain
Numba ran at a sixth of this rate). ``a`` may have any strides (a transposed view costs
nothing), ``b`` and ``out`` need contiguous rows. It is taken on CPUs with AVX-512, whose 32
vector registers hold a tile's accumulators; elsewhere, in float64, and for products that do
not fit (``b``'s columns not contiguous, or not a multiple of 16), ``gemm`` calls NumPy's
CBLAS (``cblas``'s symbols) as ``cblas.gemm_views`` does. docs/performance.md ("Convolution,
session 34") has the measurements.

The kernels that multiply through ``gemm`` do not contain the micro-kernel: they call one
compiled copy of it, ``_product``, at the address in a cell that ``load(dtype)`` fills once
per process, and which the ops call before their kernels run. Compiled into each kernel, it
cost each one its compile again; while the cell is empty, ``gemm`` multiplies through CBLAS.
"""

import ctypes
import threading

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from firefly.kernels._jit import called_helper, inline_helper
from firefly.kernels.cblas import ROW_MAJOR, _dgemm, _keep_alive, _sgemm, layout_of_steps

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
    i64 accumulate, i64 vector_step, float *addend, i64 addend_ld)``: c = a b (+ addend when
    ``accumulate``), a's element (i, p) at a + i * row_step + p * k_step, b's (p, 16 v + j) at
    b + p * ldb + v * vector_step + j, c's (i, 16 v + j) at c + i * ldc + v * vector_step + j,
    and the addend's at addend + i * addend_ld + v * vector_step + j (c itself for beta 1; a
    bias row, with addend_ld 0); k >= 1."""
    name = f"firefly_sgemm_tile_{rows}x{16 * vectors}"
    pointer = _F32.as_pointer()
    signature = ir.FunctionType(ir.VoidType(), [pointer, _I64, _I64, pointer, _I64] + [
        pointer, _I64, _I64, _I64, _I64, pointer, _I64
    ])  # fmt: skip
    function = cgutils.get_or_insert_function(module, signature, name)
    if not function.is_declaration:
        return function
    function.linkage = "internal"
    a, row_step, k_step, b, ldb, c, ldc, k_count, accumulate, vector_step = function.args[:10]
    addend, addend_ld = function.args[10:]
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
    offsets = [builder.mul(_I64(v), vector_step) for v in range(vectors)]
    builder.branch(loop)

    builder.position_at_end(loop)
    p = builder.phi(_I64)
    p.add_incoming(_I64(0), entry)
    sums = [[builder.phi(_VECTOR) for _ in range(vectors)] for _ in range(rows)]
    b_row = builder.gep(b, [builder.mul(p, ldb)])
    b_vectors = [
        builder.load(builder.bitcast(builder.gep(b_row, [offset]), vector_pointer), align=4)
        for offset in offsets
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
            addend_row = builder.gep(addend, [builder.mul(_I64(i), addend_ld)])
            for v in range(vectors):
                target = builder.bitcast(builder.gep(c_row, [offsets[v]]), vector_pointer)
                value = updated[i][v]
                if accumulating:
                    source = builder.bitcast(builder.gep(addend_row, [offsets[v]]), vector_pointer)
                    value = builder.fadd(builder.load(source, align=4), value)
                builder.store(value, target, align=4)
        builder.ret_void()
    return function


def _tile(rows, vectors):
    """An intrinsic ``tile(a, row_step, k_step, b, ldb, c, ldc, k, accumulate, vector_step,
    addend, addend_ld)`` (addresses and element counts as ints) that calls
    ``_tile_function(rows, vectors)``."""

    @intrinsic
    def tile(typingctx, a, row_step, k_step, b, ldb, c, ldc, k, accumulate, vector_step, d, ldd):
        def codegen(context, builder, signature, args):
            function = _tile_function(builder.module, rows, vectors)
            pointer = _F32.as_pointer()
            pa, rs, ks, pb, lb, pc, lc, kk, acc, step, pd, ld = args
            builder.call(
                function,
                [
                    builder.inttoptr(pa, pointer), rs, ks, builder.inttoptr(pb, pointer), lb,
                    builder.inttoptr(pc, pointer), lc, kk, acc, step,
                    builder.inttoptr(pd, pointer), ld,
                ],
            )  # fmt: skip
            return context.get_dummy_value()

        return types.void(*([types.int64] * 12)), codegen

    return tile


_tile_wide, _tile_wide_row = _tile(MR, 2), _tile(1, 2)
_tile_narrow, _tile_narrow_row = _tile(MR, 1), _tile(1, 1)


@inline_helper
def _tiles(pa, row_step, k_step, m, k, pb, ldb, pc, ldc, n, accumulate, width, row_length, pd, ldd):
    """The tiles of an m x n product (k >= 1) at the addresses and element steps ``_product``
    passes, its n columns in rows of ``width`` (a multiple of 16) out of every ``row_length``
    of b's and out's rows; the addend (``accumulate``) at ``pd``, its rows ``ldd`` apart."""
    for j in range(0, n, 32):
        wide = j + 32 <= n
        offset = j // width * row_length + j % width
        step = (j + 16) // width * row_length + (j + 16) % width - offset if wide else 16
        b_j, i = pb + 4 * offset, 0
        while i < m:
            a_i, c_ij = pa + 4 * i * row_step, pc + 4 * (i * ldc + offset)
            d_ij = pd + 4 * (i * ldd + offset)
            if i + MR <= m and wide:
                _tile_wide(
                    a_i, row_step, k_step, b_j, ldb, c_ij, ldc, k, accumulate, step, d_ij, ldd
                )
            elif i + MR <= m:
                _tile_narrow(
                    a_i, row_step, k_step, b_j, ldb, c_ij, ldc, k, accumulate, step, d_ij, ldd
                )
            elif wide:  # the last m % MR rows one at a time
                _tile_wide_row(
                    a_i, row_step, k_step, b_j, ldb, c_ij, ldc, k, accumulate, step, d_ij, ldd
                )
            else:
                _tile_narrow_row(
                    a_i, row_step, k_step, b_j, ldb, c_ij, ldc, k, accumulate, step, d_ij, ldd
                )
            i += MR if i + MR <= m else 1


def _host_has_avx512() -> bool:
    """Whether this CPU has AVX-512 (a CPU feature query, nothing compiled; Numba's cache keeps
    machine code per CPU, so a kernel compiled here runs here)."""
    return bool(llvm.get_host_cpu_features().get("avx512f", False))


AVX512 = _host_has_avx512()


@called_helper
def _blas_product(double, pa, m, k, a_row, a_col, pb, n, b_row, b_col, pc, ldc, beta):
    """``_product`` through NumPy's CBLAS (its operands as ``_product`` takes them): called,
    compiled once per process for its scalar arguments."""
    trans_a, lda = layout_of_steps(a_row, a_col, m, k)
    trans_b, ldb = layout_of_steps(b_row, b_col, k, n)
    if double:
        _dgemm(ROW_MAJOR, trans_a, trans_b, m, n, k, 1.0, pa, lda, pb, ldb, beta, pc, ldc)
    else:
        _sgemm(ROW_MAJOR, trans_a, trans_b, m, n, k, 1.0, pa, lda, pb, ldb, beta, pc, ldc)


@inline_helper
def _fits(double, b_col, n, width, step):
    """Whether the micro-kernel takes a product (``_product``'s arguments)."""
    return double == 0 and AVX512 and b_col == 1 and width % 16 == 0 and n % step == 0


@called_helper
def _product(double, pa, m, k, a_row, a_col, pb, n, b_row, b_col, pc, ldc, beta, width, step, pd):
    """out = a @ b + beta * out at the addresses and element steps that ``gemm_rows`` passes
    (m, k, n >= 1; a's, b's and out's rows or columns contiguous, out's rows; ``double`` 1 for
    float64, 0 for float32), through the micro-kernel in float32 when it fits (``_fits``), else
    through NumPy's CBLAS. Where ``pd`` is not 0 (only for products that fit: ``gemm_bias``),
    out = a @ b + the row of n floats at ``pd`` in every row. Compiled once per process, for
    ``_SIGNATURE``, by ``load``; kernels call it at its address (``_call_product``)."""
    if _fits(double, b_col, n, width, step):
        columns = n // step * width
        if pd != 0:
            _tiles(pa, a_row, a_col, m, k, pb, b_row, pc, ldc, columns, 1, width, step, pd, 0)
        else:
            accumulate = 1 if beta != 0.0 else 0
            _tiles(
                pa,
                a_row,
                a_col,
                m,
                k,
                pb,
                b_row,
                pc,
                ldc,
                columns,
                accumulate,
                width,
                step,
                pc,
                ldc,
            )
        return
    _blas_product(double, pa, m, k, a_row, a_col, pb, n, b_row, b_col, pc, ldc, beta)


# ``_product``'s one compiled signature: the flag, the addresses and the counts as int64s, beta.
_SIGNATURE = (types.int64,) * 12 + (types.float64, types.int64, types.int64, types.int64)
# Kernels call ``_product`` through this cell, which holds its address once ``load`` has run:
# as a call of their own, Numba linked the micro-kernel's code into every kernel that calls it
# and compiled it again there (a kernel's ``gemm`` took 0.41 s of CPU to compile that way, 0.27
# through the cell). The cell is a symbol that the kernels' code names, cached or not, bound
# here at import (a symbol: nothing is compiled).
_CELL_SYMBOL = "firefly_microkernel_product"
_cell = ctypes.c_int64(0)
llvm.add_symbol(_CELL_SYMBOL, ctypes.addressof(_cell))
_loading = threading.Lock()


def load(dtype: object) -> bool:
    """Whether the micro-kernel serves products in ``dtype`` on this CPU (float32, AVX-512);
    when it does, compile ``_product`` (or load it from the cache) and put its address in the
    cell, once per process. The ops whose kernels multiply through ``gemm`` call this before
    they run them; a kernel that runs before it multiplies through CBLAS
    (``_call_product``)."""
    if dtype != np.float32 or not AVX512:
        return False
    if not _cell.value:
        with _loading:
            if not _cell.value:
                _product.compile(_SIGNATURE)
                compiled = _product.overloads[_SIGNATURE]
                library, name = compiled.library, compiled.fndesc.llvm_func_name
                _cell.value = library.get_pointer_to_function(name)
    return True


def loaded() -> bool:
    """Whether ``load`` has run in this process."""
    return bool(_cell.value)


@intrinsic
def _call_product(
    typingctx, double, pa, m, k, a_row, a_col, pb, n, b_row, b_col, pc, ldc, beta, width, step, pd
):
    """Calls ``_product`` at the address in the cell with these arguments (cast to
    ``_SIGNATURE``) and returns True; returns False, calling nothing, while the cell is empty."""
    arguments = (
        double,
        pa,
        m,
        k,
        a_row,
        a_col,
        pb,
        n,
        b_row,
        b_col,
        pc,
        ldc,
        beta,
        width,
        step,
        pd,
    )

    def codegen(context, builder, signature, args):
        from numba.core.callconv import excinfo_t

        values = [
            context.cast(builder, value, given, wanted)
            for value, given, wanted in zip(args, signature.args, _SIGNATURE)
        ]
        cell = builder.module.globals.get(_CELL_SYMBOL)
        if cell is None:
            cell = cgutils.add_global_variable(builder.module, _I64, _CELL_SYMBOL)
            cell.linkage = "external"
        address = builder.load(cell)
        filled = builder.icmp_unsigned("!=", address, _I64(0))
        with builder.if_then(filled, likely=True):
            # Numba's calling convention: the return slot, the exception slot, the arguments.
            call_conv = context.call_conv
            function = builder.inttoptr(
                address, call_conv.get_function_type(types.none, _SIGNATURE).as_pointer()
            )
            returned_type = call_conv.get_return_type(types.none).pointee
            returned = cgutils.alloca_once(builder, returned_type)
            builder.store(cgutils.get_null_value(returned_type), returned)
            exception = cgutils.alloca_once(builder, ir.PointerType(excinfo_t))
            builder.call(function, [returned, exception, *values])
        return filled

    return types.boolean(*arguments), codegen


@inline_helper
def gemm_rows(a, b, out, beta, width, row_length):
    """out = a @ b + beta * out, beta 0 or 1, float32 or float64, on the columns j of ``b``
    and ``out`` with j % row_length < width: rows of ``width`` output columns that a wide
    layout pads to ``row_length`` (``width == row_length``: all of them). ``a``, ``b`` and
    ``out`` have their rows or columns contiguous, ``out`` its rows (as ``cblas.gemm_views``'
    operands). Through the micro-kernel in float32 when ``b``'s rows are contiguous and
    ``width`` a multiple of 16 (every product of the convolutions' usual shapes); the padding
    columns are then skipped, and BLAS computes them, so their values in ``out`` are
    undefined."""
    m, k, n = a.shape[0], a.shape[1], b.shape[1]
    size = out.itemsize
    if k == 0:  # BLAS's operands need k >= 1
        for i in range(m):
            for j in range(n):
                out[i, j] = out[i, j] * beta
    elif m > 0 and n > 0:
        if width == row_length:  # no padding: the columns are one row
            width = row_length = n
        double, pa, pb, pc = 1 if size == 8 else 0, a.ctypes.data, b.ctypes.data, out.ctypes.data
        a_row, a_col, b_row, b_col = (
            a.strides[0] // size,
            a.strides[1] // size,
            b.strides[0] // size,
            b.strides[1] // size,
        )
        ldc = out.strides[0] // size
        if not _call_product(
            double, pa, m, k, a_row, a_col, pb, n, b_row, b_col, pc, ldc, beta, width, row_length, 0
        ):
            _blas_product(double, pa, m, k, a_row, a_col, pb, n, b_row, b_col, pc, ldc, beta)
        _keep_alive(a, b, out)  # after the product: see cblas.gemm_views


@inline_helper
def gemm(a, b, out, beta):
    """``gemm_rows`` on all the columns."""
    gemm_rows(a, b, out, beta, b.shape[1], b.shape[1])


@inline_helper
def gemm_bias(a, b, bias, out):
    """out = a @ b + bias, ``bias`` (n,) added to every row, float32 or float64, operands as
    ``gemm``'s. Where the micro-kernel takes the product, it adds the bias as it stores each
    tile (no pass over ``out`` before or after); elsewhere the bias is written into ``out``
    first and the product added to it."""
    m, k, n = a.shape[0], a.shape[1], b.shape[1]
    size = out.itemsize
    double, b_col = 1 if size == 8 else 0, b.strides[1] // size
    taken = False
    if k > 0 and m > 0 and n > 0 and bias.strides[0] == size and _fits(double, b_col, n, n, n):
        taken = _call_product(
            double, a.ctypes.data, m, k, a.strides[0] // size, a.strides[1] // size,
            b.ctypes.data, n, b.strides[0] // size, b_col, out.ctypes.data,
            out.strides[0] // size, 1.0, n, n, bias.ctypes.data,
        )  # fmt: skip
        _keep_alive(a, b, out)
        _keep_alive(bias, bias, bias)
    if not taken:
        for i in range(m):
            row = out[i]
            for j in range(n):
                row[j] = bias[j]
        gemm(a, b, out, 1.0)
