"""Matrix products inside kernels through the BLAS that NumPy ships, ``gemm(a, b, out, beta)``.

Numba's ``np.dot`` calls SciPy's BLAS (``scipy.linalg.cython_blas``). NumPy's wheels ship a
newer OpenBLAS of their own (0.3.31 beside SciPy's 0.3.30 with numpy 2.4), which multiplies the
small products of a recurrent layer's steps about 1.35x faster: 20 x 200 @ 200 x 800 in float32
takes 0.080 ms against 0.108 on one thread (0.108 is Numba's ``np.dot``, as SciPy's ``sgemm``
called directly). ``gemm`` also accumulates (``beta``), which ``np.dot`` cannot.

Kernels call the external symbols ``firefly_cblas_sgemm`` and ``firefly_cblas_dgemm`` by name;
this module binds them when it is imported, before any kernel that calls them is compiled or
loaded from the cache (the cached machine code names the symbol, and is linked to whatever it
is bound to in the process). They are bound to NumPy's ILP64 CBLAS (``scipy_cblas_sgemm64_``,
found through NumPy's own extension module, whose dependencies hold it) when NumPy has one, and
else to a Python function that does the product with NumPy (slower, for NumPy builds on other
BLAS libraries). Binding is a symbol lookup: nothing is compiled at import.
"""

import ctypes

import llvmlite.binding as llvm
import numpy as np
from numba import types
from numba.extending import intrinsic

from firefly.kernels._jit import inline_helper

# CBLAS's enums: CblasRowMajor, CblasNoTrans, CblasTrans.
ROW_MAJOR, NO_TRANSPOSE, TRANSPOSE = 101, 111, 112
# The symbols kernels call; dot_into (kernels/linalg.py) emits calls to them by name too.
GEMM_SYMBOLS = {np.float32: "firefly_cblas_sgemm", np.float64: "firefly_cblas_dgemm"}
_NUMPY_SYMBOLS = {np.float32: "scipy_cblas_sgemm64_", np.float64: "scipy_cblas_dgemm64_"}
_SCALARS = {np.float32: ctypes.c_float, np.float64: ctypes.c_double}


def _signature(scalar):
    """cblas_?gemm(order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)."""
    enum, size, pointer = types.intc, types.int64, types.voidptr
    return types.void(
        enum, enum, enum, size, size, size, scalar, pointer, size, pointer, size, scalar, pointer,
        size,
    )  # fmt: skip


def _ctypes_signature(dtype):
    enum, size, pointer, scalar = ctypes.c_int, ctypes.c_int64, ctypes.c_void_p, _SCALARS[dtype]
    return ctypes.CFUNCTYPE(
        None, enum, enum, enum, size, size, size, scalar, pointer, size, pointer, size, scalar,
        pointer, size,
    )  # fmt: skip


def _numpy_function(name):
    """The ctypes function ``name`` of NumPy's BLAS (found through NumPy's own extension
    module, whose dependencies hold it), or None when it has none."""
    try:
        return getattr(ctypes.CDLL(np._core._multiarray_umath.__file__), name)
    except (OSError, AttributeError):
        return None


def _numpy_cblas(dtype):
    """The address of NumPy's ILP64 ``cblas_?gemm``, or None when NumPy's BLAS has none."""
    function = _numpy_function(_NUMPY_SYMBOLS[dtype])
    return None if function is None else ctypes.cast(function, ctypes.c_void_p).value


def _numpy_gemm(dtype):
    """A C-callable cblas_?gemm for row-major operands, done by NumPy (the fallback)."""
    element = _SCALARS[dtype]

    def view(address, rows, cols, leading):
        span = max(rows - 1, 0) * leading + cols  # the elements from the first to the last
        whole = np.ctypeslib.as_array(ctypes.cast(address, ctypes.POINTER(element)), (span,))
        return np.lib.stride_tricks.as_strided(
            whole, (rows, cols), (leading * whole.itemsize, whole.itemsize)
        )

    def gemm(order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
        left = view(a, k, m, lda).T if trans_a == TRANSPOSE else view(a, m, k, lda)
        right = view(b, n, k, ldb).T if trans_b == TRANSPOSE else view(b, k, n, ldb)
        out = view(c, m, n, ldc)
        product = alpha * (left @ right)
        out[...] = product if beta == 0.0 else product + beta * out
        fallback_calls[0] += 1

    return _ctypes_signature(dtype)(gemm)


_OMATCOPY_SYMBOLS = {np.float32: "scipy_cblas_somatcopy64_", np.float64: "scipy_cblas_domatcopy64_"}


def _numpy_omatcopy(dtype):
    """NumPy's ILP64 ``cblas_?omatcopy`` (OpenBLAS's scaled, transposing matrix copy) as a
    ctypes function, or None when NumPy's BLAS has none."""
    function = _numpy_function(_OMATCOPY_SYMBOLS[dtype])
    if function is None:
        return None
    enum, size, pointer = ctypes.c_int, ctypes.c_int64, ctypes.c_void_p
    # (order, trans, rows, cols, alpha, a, lda, b, ldb)
    function.argtypes = [enum, enum, size, size, _SCALARS[dtype], pointer, size, pointer, size]
    function.restype = None
    return function


_omatcopy = {dtype: _numpy_omatcopy(dtype) for dtype in _OMATCOPY_SYMBOLS}  # symbol lookups


def transpose_into(source: np.ndarray, target: np.ndarray) -> None:
    """target = source.T, both C-contiguous, 2-D and of one dtype (float32 or float64), through
    OpenBLAS's omatcopy when NumPy's BLAS has it (a third of NumPy's copy's time at the linear
    layers' weights: 12 against 35 us at (384, 128) in float32), else NumPy's copy."""
    rows, cols = source.shape
    if target.shape != (cols, rows) or target.dtype != source.dtype:
        raise ValueError(
            f"transpose_into: target {target.shape} {target.dtype} does not fit source "
            f"{source.shape} {source.dtype} transposed"
        )
    function = _omatcopy.get(source.dtype.type)
    contiguous = source.flags.c_contiguous and target.flags.c_contiguous
    if function is None or not contiguous or source.size == 0:
        np.copyto(target, source.T)
        return
    function(ROW_MAJOR, TRANSPOSE, rows, cols, 1.0, source.ctypes.data, cols,
             target.ctypes.data, rows)  # fmt: skip


_fallbacks: list[object] = []  # the fallback callbacks, kept alive while the symbols point at them
fallback_calls = [0]  # products the fallback has done (tests check that it ran)


def bind(use_numpy_blas: bool = True) -> bool:
    """Binds the kernels' gemm symbols: to NumPy's CBLAS when ``use_numpy_blas`` and NumPy has
    one, else to the NumPy fallback. Returns whether NumPy's CBLAS is bound. A kernel keeps the
    binding it was linked with, so this runs once, at import (tests rebind in a new process)."""
    addresses = {dtype: _numpy_cblas(dtype) if use_numpy_blas else None for dtype in GEMM_SYMBOLS}
    native = all(address is not None for address in addresses.values())
    for dtype, symbol in GEMM_SYMBOLS.items():
        if native:
            llvm.add_symbol(symbol, addresses[dtype])
        else:
            callback = _numpy_gemm(dtype)
            _fallbacks.append(callback)
            llvm.add_symbol(symbol, ctypes.cast(callback, ctypes.c_void_p).value)
    return native


numpy_blas_bound = bind()
_sgemm = types.ExternalFunction(GEMM_SYMBOLS[np.float32], _signature(types.float32))
_dgemm = types.ExternalFunction(GEMM_SYMBOLS[np.float64], _signature(types.float64))


@intrinsic
def _keep_alive(typingctx, a, b, out):
    """Does nothing with the arrays, but is a use of them that Numba cannot drop."""

    def codegen(context, builder, signature, args):
        return context.get_dummy_value()

    return types.none(a, b, out), codegen


@inline_helper
def layout_of_steps(row_step, col_step, rows, cols):
    """(transpose flag, leading dimension) of a rows x cols operand whose elements are
    ``row_step`` and ``col_step`` elements apart, with its rows or columns contiguous; -1 as
    the flag when neither is."""
    if cols == 1 or col_step == 1:
        return NO_TRANSPOSE, max(row_step, cols, 1)
    if rows == 1 or row_step == 1:
        return TRANSPOSE, max(col_step, rows, 1)
    return -1, 0


@inline_helper
def _layout(a):
    """``layout_of_steps`` of a 2-D array."""
    rows, cols = a.shape
    return layout_of_steps(a.strides[0] // a.itemsize, a.strides[1] // a.itemsize, rows, cols)


@inline_helper
def gemm(a, b, out, beta):
    """out = a @ b + beta * out, float32 or float64 (one dtype throughout), with ``out``'s rows
    contiguous. ``a`` and ``b`` may be transposed views (a transpose flag, no copy); operands
    with neither rows nor columns contiguous are copied first."""
    if _layout(a)[0] < 0:
        a = np.ascontiguousarray(a)
    if _layout(b)[0] < 0:
        b = np.ascontiguousarray(b)
    gemm_views(a, b, out, beta)


@inline_helper
def gemm_views(a, b, out, beta):
    """``gemm`` for operands whose rows or columns are contiguous, which it does not check:
    without gemm's copies, whose code every call site inlines (the convolution kernels, all of
    whose operands are such views, compiled their taps-major pair in a fifth less time)."""
    m, k, n = a.shape[0], a.shape[1], b.shape[1]
    if m == 0 or n == 0:
        return
    if k == 0:
        # A loop, not ``out[:] = out * beta``: Numba compiles a slice assignment from an array
        # with its shape-mismatch message, seconds of string formatting in every process.
        for i in range(m):
            for j in range(n):
                out[i, j] = out[i, j] * beta
        return
    trans_a, lda = _layout(a)
    trans_b, ldb = _layout(b)
    ldc = _layout(out)[1]
    pa, pb, pc = a.ctypes.data, b.ctypes.data, out.ctypes.data
    if out.itemsize == 4:
        _sgemm(ROW_MAJOR, trans_a, trans_b, m, n, k, 1.0, pa, lda, pb, ldb, beta, pc, ldc)
    else:
        _dgemm(ROW_MAJOR, trans_a, trans_b, m, n, k, 1.0, pa, lda, pb, ldb, beta, pc, ldc)
    # The raw pointers do not hold the arrays: Numba frees an array after its last use, which
    # without this line is taking its pointer, so a temporary (gemm's copies, or one the
    # caller passed) was freed and reused while BLAS still read it (wrong GRU outputs with two
    # BLAS threads). Using the arrays after the call keeps them alive until BLAS is done.
    _keep_alive(a, b, out)
