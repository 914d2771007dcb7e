"""exp, log, log1p, sigmoid and tanh of one float32/float64 scalar, in code LLVM vectorizes.

Inside Numba, ``np.exp(v)`` on a scalar is a call to libm's ``expf``/``exp`` per element, and
LLVM cannot vectorize a loop that makes calls: such kernels ran 1.5-4x slower than NumPy's SIMD
loops. Here every function is range reduction plus a polynomial, written as plain arithmetic,
selects and bit casts (building 2**k from an integer k, and splitting x into exponent and
mantissa, reinterpret a float's bits), which LLVM vectorizes with fastmath off. Kernels call
them per element, through the kernel families (``firefly.kernels.families``) or directly.

Accuracy (tests/test_vmath.py measures it), against the correctly rounded result in both
precisions, subnormal inputs and results included: exp and log within 1 ulp, sigmoid and tanh
within 2.3 ulp. Special values (0, -0, +-inf, NaN) follow C99, as NumPy does.

Numba caches a kernel by its own source file only: after editing this module, delete
firefly/kernels/__pycache__ (and NUMBA_CACHE_DIR) so that the kernels which inline these
functions recompile.
"""

import functools
import math

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from firefly.kernels._jit import inline_helper


def _by_float_type(f32_impl, f64_impl):
    """A function that Numba compiles as ``f32_impl`` or ``f64_impl``.

    The choice follows the first argument: a float32/int32 scalar or a float32 array selects
    ``f32_impl``; 64-bit ones select ``f64_impl``. Both implementations take the same arguments.
    Calling the result from Python raises; it exists for kernels only.
    """

    def dispatch(*args):
        raise TypeError(f"{f32_impl.__name__.removesuffix('_f32')} runs inside Numba kernels only")

    # Numba checks that the selector's signature matches the implementation's; wraps gives it
    # f32_impl's signature (inspect.signature follows __wrapped__).
    @functools.wraps(f32_impl)
    def select(*args):
        first = getattr(args[0], "dtype", args[0])
        if getattr(first, "bitwidth", None) == 32:
            return f32_impl
        if getattr(first, "bitwidth", None) == 64:
            return f64_impl
        return None

    # error_model="numpy": no zero-division check in divides, which would stop vectorization.
    # inline="never": the implementation is compiled as a function of its own, which LLVM then
    # inlines. Inlined by Numba instead, the float64 path's nested inline helpers broke Numba's
    # IR scope check (NumbaIRAssumptionWarning) inside the LSTM's and attention's kernels.
    overload(dispatch, inline="never", jit_options={"error_model": "numpy"})(select)
    dispatch.__name__ = dispatch.__qualname__ = f32_impl.__name__.removesuffix("_f32")
    return dispatch


# ----------------------------------------------------------------------------- float32
# Constants are float32/int32 scalars: a Python float or int literal would promote the
# arithmetic to 64 bits and halve the vector width.
_F32_ONE, _F32_HALF = np.float32(1.0), np.float32(0.5)
_F32_INF, _F32_NAN = np.float32(np.inf), np.float32(np.nan)
_I32_0xFF = np.int32(0xFF)
_F32_EXPONENT_BIAS, _F32_MANTISSA_BITS = np.int32(127), np.int32(23)
_F32_MANTISSA_MASK, _F32_ONE_BITS = np.int32(0x007FFFFF), np.int32(0x3F800000)

# Outside [-104, 89] expf is 0 or inf; clamping there keeps k (and the exponent bits) in range.
_EXP_MIN_F32, _EXP_MAX_F32 = np.float32(-104.0), np.float32(89.0)
_LOG2E_F32 = np.float32(1.4426950408889634)
# Cody-Waite split of ln 2 (Cephes expf.c): LN2_HI has few mantissa bits, so k * LN2_HI is exact.
_LN2_HI_F32, _LN2_LO_F32 = np.float32(0.693359375), np.float32(-2.12194440e-4)
# Cephes expf.c minimax polynomial: exp(r) = 1 + r + r**2 * P(r) for |r| <= ln2 / 2.
_EXP_P_F32 = tuple(
    np.float32(c)
    for c in (
        1.9875691500e-4,
        1.3981999507e-3,
        8.3334519073e-3,
        4.1665795894e-2,
        1.6666665459e-1,
        5.0000001201e-1,
    )
)

_MIN_NORMAL_F32 = np.float32(np.finfo(np.float32).tiny)
_SUBNORMAL_SCALE_LOG2_F32 = np.float32(
    25.0
)  # 2**25 lifts every float32 subnormal to a normal number
_SUBNORMAL_SCALE_F32 = np.float32(2.0**25)
_SQRT2_F32 = np.float32(math.sqrt(2.0))
# Cephes logf.c minimax polynomial: log(1 + f) = f - f**2 / 2 + f**3 * P(f),
# sqrt(1/2) <= 1 + f < sqrt(2).
_LOG_P_F32 = tuple(
    np.float32(c)
    for c in (
        7.0376836292e-2,
        -1.1514610310e-1,
        1.1676998740e-1,
        -1.2420140846e-1,
        1.4249322787e-1,
        -1.6668057665e-1,
        2.0000714765e-1,
        -2.4999993993e-1,
        3.3333331174e-1,
    )
)


def _expm1_reduced_f32(r):
    """exp(r) - 1 for |r| <= ln2 / 2 (Cephes expf.c)."""
    p0, p1, p2, p3, p4, p5 = _EXP_P_F32
    p = ((((p0 * r + p1) * r + p2) * r + p3) * r + p4) * r + p5
    return p * (r * r) + r


def log_from_parts_f32(v, m, e):
    """log(v) from the m and e that log_split_bits gave for log_prescale(v) (Cephes logf.c)."""
    ef = np.float32(e) - (_SUBNORMAL_SCALE_LOG2_F32 if v < _MIN_NORMAL_F32 else np.float32(0.0))
    wide = m > _SQRT2_F32  # reduce to sqrt(1/2) <= m < sqrt(2), so that |f| <= 0.414
    f = (m * _F32_HALF if wide else m) - _F32_ONE
    ef = ef + _F32_ONE if wide else ef
    z = f * f
    p0, p1, p2, p3, p4, p5, p6, p7, p8 = _LOG_P_F32
    p = (((((((p0 * f + p1) * f + p2) * f + p3) * f + p4) * f + p5) * f + p6) * f + p7) * f + p8
    y = p * f * z + ef * _LN2_LO_F32 - _F32_HALF * z
    y = (f + y) + ef * _LN2_HI_F32
    y = y if v < _F32_INF else v  # +inf and NaN pass through
    return y if v > np.float32(0.0) else (-_F32_INF if v == np.float32(0.0) else _F32_NAN)


# ----------------------------------------------------------------------------- float64
_F64_ONE, _F64_HALF = np.float64(1.0), np.float64(0.5)
_F64_EXPONENT_BIAS, _F64_MANTISSA_BITS = np.int64(1023), np.int64(52)
_I64_0x7FF = np.int64(0x7FF)
_F64_MANTISSA_MASK, _F64_ONE_BITS = np.int64(0x000FFFFFFFFFFFFF), np.int64(0x3FF0000000000000)

# Outside [-746, 710] exp is 0 or inf; clamping there keeps k (and the exponent bits) in range.
_EXP_MIN_F64, _EXP_MAX_F64 = np.float64(-746.0), np.float64(710.0)
_LOG2E_F64 = np.float64(1.4426950408889634)
# Cody-Waite split of ln 2 (Cephes exp.c): LN2_HI has 17 significant bits, so k * LN2_HI is exact.
_LN2_HI_F64, _LN2_LO_F64 = np.float64(6.93145751953125e-1), np.float64(1.42860682030941723212e-6)
# Taylor coefficients 1/n! for n = 2..13: on |r| <= ln2 / 2 the first omitted term,
# r**14 / 14!, is below 2**-57 relative to exp(r).
_EXP_TAYLOR_F64 = tuple(np.float64(1.0 / math.factorial(n)) for n in range(2, 14))

_MIN_NORMAL_F64 = np.float64(np.finfo(np.float64).tiny)
_SUBNORMAL_SCALE_LOG2_F64 = np.float64(
    54.0
)  # 2**54 lifts every float64 subnormal to a normal number
_SUBNORMAL_SCALE_F64 = np.float64(2.0**54)
_SQRT2_F64 = np.float64(math.sqrt(2.0))
# fdlibm e_log.c: log(1 + f) = 2s + s * R(s**2) with s = f / (2 + f), R a minimax polynomial,
# and ln 2 split so that e * LN2_HI is exact for every exponent e.
_LOG_LG_F64 = tuple(
    np.float64(c)
    for c in (
        6.666666666666735130e-01,
        3.999999999940941908e-01,
        2.857142874366239149e-01,
        2.222219843214978396e-01,
        1.818357216161805012e-01,
        1.531383769920937332e-01,
        1.479819860511658591e-01,
    )
)
_FDLIBM_LN2_HI_F64, _FDLIBM_LN2_LO_F64 = (
    np.float64(6.93147180369123816490e-01),
    np.float64(1.90821492927058770002e-10),
)


def _expm1_reduced_f64(r):
    """exp(r) - 1 for |r| <= ln2 / 2, by its Taylor series to degree 13.

    Evaluated by Estrin's scheme: Horner's 22-step chain of dependent operations made this
    loop latency-bound; Estrin's tree has 8 steps at the cost of three extra products.
    """
    c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13 = _EXP_TAYLOR_F64
    r2 = r * r
    r4 = r2 * r2
    p = (
        ((c2 + c3 * r) + (c4 + c5 * r) * r2)
        + ((c6 + c7 * r) + (c8 + c9 * r) * r2) * r4
        + ((c10 + c11 * r) + (c12 + c13 * r) * r2) * (r4 * r4)
    )
    return p * r2 + r


def log_from_parts_f64(v, m, e):
    """log(v) from the m and e that log_split_bits gave for log_prescale(v) (fdlibm e_log.c)."""
    ef = np.float64(e) - (_SUBNORMAL_SCALE_LOG2_F64 if v < _MIN_NORMAL_F64 else np.float64(0.0))
    wide = m > _SQRT2_F64  # reduce to sqrt(1/2) <= m < sqrt(2), so that |f| <= 0.414
    f = (m * _F64_HALF if wide else m) - _F64_ONE
    ef = ef + _F64_ONE if wide else ef
    s = f / (np.float64(2.0) + f)
    z = s * s
    w = z * z
    lg1, lg2, lg3, lg4, lg5, lg6, lg7 = _LOG_LG_F64
    r = z * (lg1 + w * (lg3 + w * (lg5 + w * lg7))) + w * (lg2 + w * (lg4 + w * lg6))
    half_f2 = _F64_HALF * f * f
    y = ef * _FDLIBM_LN2_HI_F64 - ((half_f2 - (s * (half_f2 + r) + ef * _FDLIBM_LN2_LO_F64)) - f)
    y = y if v < np.inf else v  # +inf and NaN pass through
    return y if v > np.float64(0.0) else (-np.inf if v == np.float64(0.0) else np.nan)


# ----------------------------------------------------------------------------- both
# The constants each precision's range reduction and bit handling use, in the order the
# generic functions below unpack them; _constants(x) picks by x's width (a float, or the
# integer holding a float's bits).
_F32_CONSTANTS = (
    _F32_ONE,
    _F32_HALF,
    _EXP_MIN_F32,
    _EXP_MAX_F32,
    _LOG2E_F32,
    _LN2_HI_F32,
    _LN2_LO_F32,
    _F32_EXPONENT_BIAS,
    _F32_MANTISSA_BITS,
    _I32_0xFF,
    _F32_MANTISSA_MASK,
    _F32_ONE_BITS,
    _MIN_NORMAL_F32,
    _SUBNORMAL_SCALE_F32,
)
_F64_CONSTANTS = (
    _F64_ONE,
    _F64_HALF,
    _EXP_MIN_F64,
    _EXP_MAX_F64,
    _LOG2E_F64,
    _LN2_HI_F64,
    _LN2_LO_F64,
    _F64_EXPONENT_BIAS,
    _F64_MANTISSA_BITS,
    _I64_0x7FF,
    _F64_MANTISSA_MASK,
    _F64_ONE_BITS,
    _MIN_NORMAL_F64,
    _SUBNORMAL_SCALE_F64,
)


def _constants_f32(x):
    return _F32_CONSTANTS


def _constants_f64(x):
    return _F64_CONSTANTS


_constants = _by_float_type(_constants_f32, _constants_f64)
_expm1_reduced = _by_float_type(_expm1_reduced_f32, _expm1_reduced_f64)
log_from_parts = _by_float_type(log_from_parts_f32, log_from_parts_f64)


@intrinsic
def _float_from_bits(typingctx, bits, like):
    """The float of ``like``'s type whose bits are the low bits of the integer ``bits``.

    Numba has no scalar bit reinterpretation; as an LLVM ``bitcast`` this costs nothing and
    keeps the loop around it vectorizable.
    """
    if not isinstance(bits, types.Integer) or not isinstance(like, types.Float):
        return None

    def codegen(context, builder, signature, args):
        width = ir.IntType(like.bitwidth)
        value = args[0]
        if bits.bitwidth > like.bitwidth:
            value = builder.trunc(value, width)
        elif bits.bitwidth < like.bitwidth:
            value = builder.sext(value, width)
        return builder.bitcast(value, context.get_value_type(like))

    return like(bits, like), codegen


@intrinsic
def _bits_of(typingctx, value):
    """The bits of a float as a signed integer of the same width."""
    if not isinstance(value, types.Float):
        return None
    int_type = types.int32 if value.bitwidth == 32 else types.int64

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(int_type))

    return int_type(value), codegen


@intrinsic
def like(typingctx, value, reference):
    """``value`` converted to ``reference``'s type: ``like(0.5, x)`` is 0.5 in x's precision.

    A Python float literal is a float64 in Numba, so ``0.5 * x`` computes a float32 x in float64
    at half the vector width; ``like(0.5, x) * x`` stays in float32.
    """
    if not isinstance(value, (types.Number, types.Boolean)) or not isinstance(
        reference, types.Number
    ):
        return None

    def codegen(context, builder, signature, args):
        return context.cast(builder, args[0], signature.args[0], reference)

    return reference(value, reference), codegen


@intrinsic
def _mul_add(typingctx, a, b, c):
    """a * b + c as LLVM's ``fmuladd``: one fused multiply-add where the CPU has FMA (every
    x86-64 CPU since 2013, every ARM64 one), rounding once; a multiply and an add elsewhere.

    Not fastmath: the result is either correctly rounded a * b + c or the two-rounding one,
    and the functions below are accurate with either. It vectorizes.
    """
    if not isinstance(a, types.Float) or not (a == b == c):
        return None

    def codegen(context, builder, signature, args):
        value_type = args[0].type
        fn = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(value_type, [value_type] * 3),
            f"llvm.fmuladd.f{a.bitwidth}",
        )
        return builder.call(fn, args)

    return a(a, b, c), codegen


@inline_helper
def _exp_reduce(v):
    """k = round(v / ln 2) and r = v - k ln 2, for v clamped to [exp_min, exp_max].

    k is an int32: AVX2 converts doubles to int32 in vectors but not to int64.
    """
    _, half, exp_min, exp_max, log2e, ln2_hi, ln2_lo = _constants(v)[:7]
    c = v if v > exp_min else exp_min  # NaN becomes the bound; callers restore it
    c = c if c < exp_max else exp_max
    kf = np.floor(c * log2e + half)
    r = (c - kf * ln2_hi) - kf * ln2_lo
    return np.int32(kf), r


@inline_helper
def exp_half_scale_bits(v):
    """The bits of 2**(k >> 1), half of the scale 2**k that exp(v) needs (see
    exp_from_half_scale)."""
    exponent_bias, mantissa_bits = _constants(v)[7:9]
    k, _ = _exp_reduce(v)
    return (np.int64(k >> 1) + exponent_bias) << mantissa_bits


@inline_helper
def exp_from_half_scale(v, half_scale):
    """exp(v), given half_scale = 2**(k >> 1) as a float.

    2**k is applied as two factors, 2**(k >> 1) and 2**(k - (k >> 1)), because k ranges over
    [-150, 128] in float32 ([-1076, 1024] in float64) and neither end is a normal number; each
    factor is, and only the last product rounds, so subnormal results are correctly rounded
    from the polynomial's value.
    """
    one = _constants(v)[0]
    k, r = _exp_reduce(v)
    other_half = half_scale * (like(k & 1, v) + one)
    y = ((one + _expm1_reduced(r)) * half_scale) * other_half
    return y if v == v else v


@inline_helper
def expm1_from_half_scale(v, half_scale):
    """exp(v) - 1 without cancellation near 0, given half_scale as in exp_from_half_scale.

    For 0 <= v <= 64 (2**k must be exact): 2**k * expm1(r) + (2**k - 1), where both terms are
    exact or small relative to the sum.
    """
    one = _constants(v)[0]
    k, r = _exp_reduce(v)
    scale = half_scale * (half_scale * (like(k & 1, v) + one))
    return scale * _expm1_reduced(r) + (scale - one)


@inline_helper
def log_prescale(v):
    """v, multiplied by 2**25 (2**54 in float64) if it is subnormal, so that its bits hold a
    normalized mantissa."""
    min_normal, subnormal_scale = _constants(v)[12:14]
    return v * subnormal_scale if v < min_normal else v


@inline_helper
def log_split_bits(bits):
    """(e, mantissa bits) of a positive normal float's bits: value = m * 2**e with 1 <= m < 2."""
    exponent_bias, mantissa_bits, exponent_mask, mantissa_mask, one_bits = _constants(bits)[7:12]
    e = ((bits >> mantissa_bits) & exponent_mask) - exponent_bias
    return e, (bits & mantissa_mask) | one_bits


# Above |x| = 20, tanh(x) rounds to +-1 in float64 (and float32), and exp(2|x|) stays finite.
TANH_SATURATION = 20.0


# Rounding to an integer by adding 1.5 * 2**23: below 2**22 in magnitude, the sum's last
# mantissa bit is the units digit, so the sum minus this constant is the rounded value and the
# sum's bits minus the constant's bits are that integer, with no float-to-integer conversion.
_ROUND_SHIFTER_F32 = np.float32(12582912.0)
_ROUND_SHIFTER_BITS_F32 = np.int32(np.array(_ROUND_SHIFTER_F32).view(np.int32))


@inline_helper
def _exp_reduced_f32(c):
    """(k, expm1(r)) with c = k ln 2 + r, |r| <= ln2 / 2, for a float32 c in [-104, 89]: k =
    round(c / ln 2) from the rounding shifter, r from two fused multiply-adds (Cody-Waite), and
    the Cephes polynomial."""
    shifted = _mul_add(c, _LOG2E_F32, _ROUND_SHIFTER_F32)
    kf = shifted - _ROUND_SHIFTER_F32
    k = _bits_of(shifted) - _ROUND_SHIFTER_BITS_F32
    r = _mul_add(kf, -_LN2_HI_F32, c)
    r = _mul_add(kf, -_LN2_LO_F32, r)
    p0, p1, p2, p3, p4, p5 = _EXP_P_F32
    p = _mul_add(_mul_add(_mul_add(_mul_add(_mul_add(p0, r, p1), r, p2), r, p3), r, p4), r, p5)
    return k, _mul_add(p, r * r, r)


def _exp_f32(v):
    """exp(v) in float32 with fused multiply-adds: the same reduction and polynomial as the
    float64 path's float32 constants, in 27 vector operations instead of 38 (1.4x faster).

    k = round(v / ln 2) comes from the rounding shifter, r = v - k ln 2 from two fused
    multiply-adds (Cody-Waite), and 2**k, which ranges over [-150, 128], is applied as two
    normal factors 2**(k >> 1) and 2**(k - (k >> 1)) built from their exponent bits, so that
    only the last product rounds and subnormal results are correctly rounded from the
    polynomial's value.
    """
    c = v if v > _EXP_MIN_F32 else _EXP_MIN_F32  # NaN becomes the bound; restored below
    c = c if c < _EXP_MAX_F32 else _EXP_MAX_F32
    k, expm1_r = _exp_reduced_f32(c)
    k_half = k >> 1
    half_scale = _float_from_bits((k_half + _F32_EXPONENT_BIAS) << _F32_MANTISSA_BITS, v)
    other_half = _float_from_bits((k - k_half + _F32_EXPONENT_BIAS) << _F32_MANTISSA_BITS, v)
    y = ((_F32_ONE + expm1_r) * half_scale) * other_half
    return y if v == v else v


# ln(2**-126) rounded up to float32: exp of every float32 below it is subnormal, of every one
# from it up normal (tests/test_vmath.py checks both sides).
_EXP_MIN_NORMAL_F32 = np.float32(-87.33654)
_F32_ZERO = np.float32(0.0)


def _exp_flush_subnormal_f32(v):
    """exp(v) for v <= 88 as exp computes it where the result is a normal float32, 0 where it
    would be subnormal (v < -87.34); NaN stays NaN. One scale factor instead of two, one clamp
    instead of two, and the NaN check folded into the flush: softmax's forward at 1000x1000,
    float32, one thread, took 654 us against 820 with exp. For softmax's exp(x - max), whose
    arguments are <= 0, a flushed term is below 2**-126 of the row's largest one."""
    below = v < _EXP_MIN_NORMAL_F32  # false for NaN, which then runs through to the result
    c = _EXP_MIN_NORMAL_F32 if below else v
    k, expm1_r = _exp_reduced_f32(c)
    scale = _float_from_bits((k + _F32_EXPONENT_BIAS) << _F32_MANTISSA_BITS, v)
    y = (_F32_ONE + expm1_r) * scale
    return _F32_ZERO if below else y


def _exp_f64(v):
    return exp_from_half_scale(v, _float_from_bits(exp_half_scale_bits(v), v))


_exp = _by_float_type(_exp_f32, _exp_f64)
_exp_flush_subnormal = _by_float_type(_exp_flush_subnormal_f32, _exp_f64)


# The scalar functions below compile to plain arithmetic, selects and bit casts, with no
# calls: a loop that applies one to every element vectorizes. Each computes in its argument's
# precision (float32 or float64).
@inline_helper
def exp(v):
    """exp(v)."""
    return _exp(v)


@inline_helper
def exp_flush_subnormal(v):
    """exp(v) for v <= 88, with float32 results below 2**-126 flushed to 0 (float64: exp)."""
    return _exp_flush_subnormal(v)


@inline_helper
def sigmoid(v):
    """1 / (1 + exp(-v)), as exp(v) / (1 + exp(v)) for v < 0 so that tiny results keep their
    precision instead of rounding 1 / (1 + inf) to 0."""
    one = like(1.0, v)
    e = exp(-abs(v))  # exp(-|v|) <= 1 never overflows
    return (one if v >= like(0.0, v) else e) / (one + e)


@inline_helper
def _tanh_exp_argument(v, two, saturation):
    """2 min(|v|, saturation): the argument of the expm1 that tanh is computed from."""
    a = abs(v)
    return two * (a if a < saturation else saturation)


@inline_helper
def tanh(v):
    """tanh(v) = sign(v) t / (t + 2) with t = expm1(2|v|).

    The expm1 form (as in fdlibm s_tanh.c) has no cancellation for small |v|, where
    1 - 2 / (exp(2v) + 1) would lose all digits, and relative errors in t shrink in the quotient.
    """
    two = like(2.0, v)
    a = _tanh_exp_argument(v, two, like(TANH_SATURATION, v))
    t = expm1_from_half_scale(a, _float_from_bits(exp_half_scale_bits(a), a))
    y = np.copysign(t / (t + two), v)
    return y if v == v else v


@inline_helper
def log(v):
    """log(v): -inf at +-0, NaN below 0, subnormal inputs exact to the same accuracy."""
    scaled = log_prescale(v)
    e, mantissa_bits = log_split_bits(_bits_of(scaled))
    return log_from_parts(v, _float_from_bits(mantissa_bits, scaled), e)


@inline_helper
def log1p(v):
    """log(1 + v), accurate for small |v| as well (Goldberg's correction of log(u), u = 1 + v)."""
    one = like(1.0, v)
    u = one + v
    corrected = log(u) * (v / (u - one))
    return v if u == one else (u if u == np.inf else corrected)
