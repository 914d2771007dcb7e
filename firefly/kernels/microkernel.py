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

The kernels that multiply through ``gemm`` do not contain the micro-kernel: ``gemm``,
``gemm_rows`` and ``gemm_bias`` are one call of ``_product``, compiled once per process, at the
address in a cell that ``load()`` fills and that the ops call before their kernels run.
Compiled into each kernel, it cost each one its compile again. Before ``load``, the cell holds
a Python fallback that multiplies with NumPy (``fallback_calls`` counts its products).
"""

import ctypes
import threading

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import carray, types
from numba.core import cgutils
from numba.extending import intrinsic

from firefly.kernels._jit import called_helper, inline_helper
from firefly.kernels.cblas import ROW_MAJOR, _dgemm, _sgemm, layout_of_steps

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
    """``_product`` through NumPy's CBLAS (m, k, n >= 1)."""
    trans_a, lda = layout_of_steps(a_row, a_col, m, k)
    trans_b, ldb = layout_of_steps(b_row, b_col, k, n)
    if double:
        _dgemm(ROW_MAJOR, trans_a, trans_b, m, n, k, 1.0, pa, lda, pb, ldb, beta, pc, ldc)
    else:
        _sgemm(ROW_MAJOR, trans_a, trans_b, m, n, k, 1.0, pa, lda, pb, ldb, beta, pc, ldc)


@intrinsic
def _voidptr(typingctx, address):
    """The int ``address`` as a void pointer (for ``numba.carray``)."""

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return types.voidptr(types.int64), codegen


@inline_helper
def _start_rows(out, bias, n, beta, has_bias):
    """out[i, :n] = bias for each row i (``has_bias``), else out[i, :n] * beta (zeros for
    beta 0, whatever ``out`` held, as BLAS gives)."""
    for i in range(out.shape[0]):
        row = out[i]
        for j in range(n):
            row[j] = bias[j] if has_bias else (row[j] * beta if beta != 0.0 else 0.0)


@called_helper
def _product(double, pa, m, k, a_row, a_col, pb, n, b_row, b_col, pc, ldc, beta, width, step, pd):
    """out = a @ b + beta * out, or a @ b + bias in every row where ``pd`` (the address of n
    contiguous elements) is not 0, at the addresses and element steps that the kernels pass
    (``_emit_product``): a's, b's and out's rows or columns contiguous, out's rows; ``double`` 1 for
    float64, 0 for float32; the columns j with j % step < width (``gemm_rows``). Through the
    micro-kernel in float32 on AVX-512 when b's rows are contiguous and ``width`` a multiple of
    16, else through NumPy's CBLAS. Compiled once per process, for ``_SIGNATURE``, by ``load``;
    kernels call it at the address in the cell."""
    if m == 0 or n == 0:
        return
    if k > 0 and double == 0 and AVX512 and b_col == 1 and width % 16 == 0 and n % step == 0:
        columns = n // step * width
        # the tiles' addend: the bias row (read with step 0), or out itself for beta 1
        accumulate = 1 if pd != 0 or beta != 0.0 else 0
        addend, addend_ld = (pd, 0) if pd != 0 else (pc, ldc)
        _tiles(pa, a_row, a_col, m, k, pb, b_row, pc, ldc, columns, accumulate, width, step,
               addend, addend_ld)  # fmt: skip
        return
    if pd != 0 or k == 0:  # the bias, or beta * out, first; BLAS needs k >= 1
        out_at, bias_at = _voidptr(pc), _voidptr(pd if pd != 0 else pc)
        if double:  # carray's dtype is a compile-time constant
            _start_rows(
                carray(out_at, (m, ldc), np.float64),
                carray(bias_at, n, np.float64),
                n,
                beta,
                pd != 0,
            )
        else:
            _start_rows(
                carray(out_at, (m, ldc), np.float32),
                carray(bias_at, n, np.float32),
                n,
                beta,
                pd != 0,
            )
        beta = 1.0
    if k > 0:
        _blas_product(double, pa, m, k, a_row, a_col, pb, n, b_row, b_col, pc, ldc, beta)


# ``_product``'s one compiled signature: the flag, the addresses and the counts as int64s, beta.
_SIGNATURE = (types.int64,) * 12 + (types.float64, types.int64, types.int64, types.int64)
_SCALAR = {True: ctypes.c_double, False: ctypes.c_float}
fallback_calls = [0]  # products the NumPy fallback has done (tests check that none did)


def _numpy_product(returned, exception, double, pa, m, k, a_row, a_col, pb, n, b_row, b_col, *rest):
    """``_product`` done by NumPy, in Python, under the GIL: what the cell holds until ``load``
    has run, so that a kernel run before it still multiplies (slowly; the ops call ``load``
    first, and the tests check that this never ran)."""
    pc, ldc, beta, _, _, pd = rest
    if m == 0 or n == 0:
        return 0
    element = _SCALAR[bool(double)]
    size = ctypes.sizeof(element)

    def view(address, shape, steps):
        span = 1 + sum((extent - 1) * step for extent, step in zip(shape, steps))
        whole = np.ctypeslib.as_array(ctypes.cast(address, ctypes.POINTER(element)), (span,))
        strides = tuple(step * size for step in steps)
        return np.lib.stride_tricks.as_strided(whole, shape, strides)

    out = view(pc, (m, n), (ldc, 1))
    product = view(pa, (m, k), (a_row, a_col)) @ view(pb, (k, n), (b_row, b_col)) if k else 0.0
    start = view(pd, (n,), (1,)) if pd else (beta * out if beta else 0.0)
    out[...] = start + product
    fallback_calls[0] += 1
    return 0


_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, *([ctypes.c_int64] * 12), ctypes.c_double,
    *([ctypes.c_int64] * 3),
)(_numpy_product)  # fmt: skip
# Held in a ctypes value, not as an int: the kernel cache's stamp freezes a module's int
# constants that its kernels' code reaches by name, and this address differs in every process.
_FALLBACK = ctypes.c_int64(ctypes.cast(_CALLBACK, ctypes.c_void_p).value or 0)
# Kernels call ``_product`` at the address in this cell. As a helper they called directly, Numba
# linked the micro-kernel's code into every kernel that called it and compiled it again there
# (a kernel's ``gemm`` took 0.41 s of CPU to compile that way). The cell is a symbol that the
# kernels' code names, cached or not, bound here at import to the NumPy fallback; ``load`` puts
# the compiled ``_product`` in it (nothing is compiled at import).
_CELL_SYMBOL = "firefly_microkernel_product"
_cell = ctypes.c_int64(_FALLBACK.value)
llvm.add_symbol(_CELL_SYMBOL, ctypes.addressof(_cell))
_loading = threading.Lock()


def serves(dtype: object) -> bool:
    """Whether the micro-kernel takes products in ``dtype`` on this CPU (float32, AVX-512)."""
    return dtype == np.float32 and AVX512


def load() -> None:
    """Compile ``_product`` (or load it from the cache) and put its address in the cell, once
    per process. The ops whose kernels multiply through ``gemm`` call this before they run
    them, in every dtype (float64 products go through ``_product`` to BLAS)."""
    if _cell.value != _FALLBACK.value:
        return
    with _loading:
        if _cell.value == _FALLBACK.value:
            _product.compile(_SIGNATURE)
            compiled = _product.overloads[_SIGNATURE]
            library, name = compiled.library, compiled.fndesc.llvm_func_name
            _cell.value = library.get_pointer_to_function(name)


def loaded() -> bool:
    """Whether ``load`` has run in this process."""
    return _cell.value != _FALLBACK.value


def _operand(context, builder, array_type, value):
    """An array's data address, its shape and its element steps, as i64s."""
    # Imported here, at a compile: see linalg.dot_into.
    from numba.np.arrayobj import make_array

    array = make_array(array_type)(context, builder, value)
    size = _I64(context.get_abi_sizeof(context.get_data_type(array_type.dtype)))
    steps = [builder.sdiv(s, size) for s in cgutils.unpack_tuple(builder, array.strides)]
    address = builder.ptrtoint(array.data, _I64)
    return address, cgutils.unpack_tuple(builder, array.shape), steps


def _emit_product(context, builder, array_types, arrays, beta, width, row_length, bias):
    """Calls ``_product`` at the address in the cell on the arrays a, b and out (``arrays``, of
    ``array_types``), beta (a double), width and row length (i64s), and the bias (a 1-D array
    of the fourth type, or None)."""
    (pa, (m, k), (a_row, a_col)), (pb, (_, n), (b_row, b_col)), (pc, _, (ldc, _)) = (
        _operand(context, builder, t, v) for t, v in zip(array_types, arrays)
    )
    same = builder.icmp_signed("==", width, row_length)
    width = builder.select(same, n, width)  # no padding: the columns are one row
    row_length = builder.select(same, n, row_length)
    double = _I64(1 if array_types[0].dtype == types.float64 else 0)
    pd = _I64(0) if bias is None else _operand(context, builder, array_types[3], bias)[0]
    values = [
        double, pa, m, k, a_row, a_col, pb, n, b_row, b_col, pc, ldc, beta, width, row_length, pd,
    ]  # fmt: skip
    call_conv = context.call_conv
    address = builder.load(_cell_global(builder.module))
    function = builder.inttoptr(
        address, call_conv.get_function_type(types.none, _SIGNATURE).as_pointer()
    )
    # Numba's calling convention: the return slot, the exception slot, the arguments.
    returned_type = call_conv.get_return_type(types.none).pointee
    returned = cgutils.alloca_once(builder, returned_type)
    builder.store(cgutils.get_null_value(returned_type), returned)
    from numba.core.callconv import excinfo_t

    exception = cgutils.alloca_once(builder, ir.PointerType(excinfo_t))
    builder.call(function, [returned, exception, *values])
    return context.get_dummy_value()


def _cell_global(module):
    cell = module.globals.get(_CELL_SYMBOL)
    if cell is None:
        cell = cgutils.add_global_variable(module, _I64, _CELL_SYMBOL)
        cell.linkage = "external"
    return cell


def _fit(a, b, out):
    """Whether a, b and out are 2-D arrays of one float dtype (float32 or float64)."""
    arrays = (a, b, out)
    if not all(isinstance(t, types.Array) and t.ndim == 2 for t in arrays):
        return False
    return a.dtype == b.dtype == out.dtype and a.dtype in (types.float32, types.float64)


@intrinsic
def gemm_rows(typingctx, a, b, out, beta, width, row_length):
    """out = a @ b + beta * out, beta 0 or 1, float32 or float64, on the columns j of ``b``
    and ``out`` with j % row_length < width: rows of ``width`` output columns that a wide
    layout pads to ``row_length`` (``width == row_length``: all of them). ``a``, ``b`` and
    ``out`` have their rows or columns contiguous, ``out`` its rows (as ``cblas.gemm_views``'
    operands), and fit: (m, k) @ (k, n) -> (m, n) (unchecked: the kernels' callers check).
    Through the micro-kernel in float32 when ``b``'s rows are contiguous and ``width`` a
    multiple of 16 (every product of the convolutions' usual shapes); the padding columns are
    then skipped, and BLAS computes them, so their values in ``out`` are undefined. Emitted
    as one call through the cell (``_product``)."""
    if not _fit(a, b, out):
        return None

    def codegen(context, builder, signature, args):
        beta, width, row_length = (
            context.cast(builder, value, given, wanted)
            for value, given, wanted in zip(
                args[3:], signature.args[3:], (types.float64, types.int64, types.int64)
            )
        )
        arrays, array_types = args[:3], signature.args[:3]
        return _emit_product(context, builder, array_types, arrays, beta, width, row_length, None)

    return types.none(a, b, out, beta, width, row_length), codegen


@inline_helper
def gemm(a, b, out, beta):
    """``gemm_rows`` on all the columns."""
    gemm_rows(a, b, out, beta, 0, 0)


@intrinsic
def gemm_bias(typingctx, a, b, bias, out):
    """out = a @ b + bias, ``bias`` (n,) contiguous and added to every row, operands as
    ``gemm``'s. Where the micro-kernel takes the product, it adds the bias as it stores each
    tile (no pass over ``out`` before or after); elsewhere the bias is written into ``out``
    first and the product added to it."""
    if not _fit(a, b, out) or not isinstance(bias, types.Array):
        return None
    if bias.ndim != 1 or bias.layout != "C" or bias.dtype != a.dtype:
        return None

    def codegen(context, builder, signature, args):
        (a, b, bias, out), (a_type, b_type, bias_type, out_type) = args, signature.args
        beta = context.get_constant(types.float64, 1.0)
        array_types = (a_type, b_type, out_type, bias_type)
        return _emit_product(
            context, builder, array_types, (a, b, out), beta, _I64(0), _I64(0), bias
        )

    return types.none(a, b, bias, out), codegen
