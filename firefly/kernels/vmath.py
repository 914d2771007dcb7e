"""exp, log, log1p, sigmoid, tanh, sin, cos, tan, asin, acos, atan, atan2, sinh, cosh, erf and
erfc of float32/float64 scalars, in code LLVM vectorizes.

Inside Numba, ``np.exp(v)`` on a scalar is a call to libm's ``expf``/``exp`` per element, and
LLVM cannot vectorize a loop that makes calls: such kernels ran 1.5-4x slower than NumPy's SIMD
loops. Here every function is range reduction plus a polynomial, written as plain arithmetic,
selects and bit casts (building 2**k from an integer k, and splitting x into exponent and
mantissa, reinterpret a float's bits), which LLVM vectorizes with fastmath off. Kernels call
them per element, through the kernel families (``firefly.kernels.families``) or directly.

Accuracy (tests/test_vmath.py measures it), against the correctly rounded result in both
precisions, subnormal inputs and results included: exp and log within 1 ulp, sigmoid and tanh
within 2.3 ulp; sin and cos within 1 ulp and tan within 2.5 ulp in float64, all three within
0.51 ulp in float32 (computed in float64, rounded once), for every finite argument: the range
reduction (Payne-Hanek) keeps that accuracy at any magnitude, 1e300 and the float64 closest
to a multiple of pi/2 included; asin, acos, atan and erf within 1 ulp, atan2, sinh and cosh
within 2 ulp, erfc within 3 ulp (float32; 2.5 in float64). Special values (0, -0, +-inf, NaN,
asin and acos outside [-1, 1], atan2's signed zeros and infinities) follow C99, as NumPy does.

Kernels that inline these functions recompile after this module changes: each kernel's cache
stamp covers the files of the helpers it inlines (firefly/kernels/_cache.py).
"""

import functools
import math

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from firefly.kernels._jit import inline_helper


def _by_float_type(f32_impl, f64_impl, inline="never"):
    """A function that Numba compiles as ``f32_impl`` or ``f64_impl``.

    The choice follows the first argument: a float32/int32 scalar or a float32 array selects
    ``f32_impl``; 64-bit ones select ``f64_impl``. Both implementations take the same arguments.
    Calling the result from Python raises; it exists for kernels only. ``inline="always"``
    inlines the implementation in Numba's IR, for one too large for LLVM's inliner (sin, cos).
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
    overload(dispatch, inline=inline, jit_options={"error_model": "numpy"})(select)
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


# ----------------------------------------------------------------------------- sin, cos, tan
# Range reduction for every finite argument, by Payne and Hanek's method in float64 with
# fused products (as in SLEEF's rempi): x * 2/pi mod 4 comes from the bits of 2/pi that
# matter at x's exponent, read from a table row per exponent, so it costs the same for
# x = 1 and x = 1e300 and has no branch for LLVM's vectorizer to stop at.
def _two_over_pi_bits(count):
    """floor(2/pi * 2**count), from Machin's formula pi = 16 atan(1/5) - 4 atan(1/239) in
    exact integer arithmetic with 64 guard bits."""
    scale = 1 << (count + 64)

    def atan_inverse(k):  # atan(1/k) * scale, by its alternating Taylor series
        total, term, n, k2 = 0, scale // k, 1, k * k
        while term:
            total += term // n if n % 4 == 1 else -(term // n)
            term //= k2
            n += 2
        return total

    pi_scaled = 16 * atan_inverse(5) - 4 * atan_inverse(239)
    return (2 * scale * scale // pi_scaled) >> 64


def _reduction_table(rows, blocks):
    """Row r holds ``blocks`` float64 pieces of 53 bits each of 2/pi, for the arguments whose
    unbiased exponent of the last mantissa bit, L, is r + 1 (row 0: L <= 1).

    x = M * 2**L with M an integer: the bits of 2/pi worth 2**(2 - L) or more add multiples of
    4 to x * 2/pi, which do not change sin, cos or tan, so row r starts at the bit worth 2**-r
    and is scaled by 2**L; the reduction multiplies the pieces by M. Row 0 is 2/pi itself,
    multiplied by x: every piece is an exact float64, none underflows.
    """
    total_bits = rows + 53 * blocks + 2
    bits = _two_over_pi_bits(total_bits)
    table = np.empty((rows, blocks))
    for row in range(rows):
        first = max(row, 1)  # the first bit kept is worth 2**-first
        scale = row + 1 if row else 0
        for block in range(blocks):
            top = first + 53 * block  # the piece holds the bits worth 2**-top .. 2**-(top+52)
            piece = (bits >> (total_bits - (top + 52))) & ((1 << 53) - 1)
            table[row, block] = math.ldexp(piece, scale - (top + 52))
    return table


# float64: L = biased exponent - 1075, up to 971 for the largest finite float; four pieces
# (212 bits) keep the reduced argument's absolute error below 2**-100 of pi/2.
_TRIG_ROWS_F64 = 971
_TRIG_TABLE_F64 = _reduction_table(_TRIG_ROWS_F64, 4)
# float32: L = biased exponent - 150, up to 104; two pieces (106 bits) leave an error below
# 2**-78, far under the 2**-53 relative precision the float64 polynomials then carry.
_TRIG_ROWS_F32 = 104
_TRIG_TABLE_F32 = _reduction_table(_TRIG_ROWS_F32, 2)

_PIO4 = np.float64(math.pi / 4)
# pi/2 as a float64 pair: PIO2_HI is pi/2 rounded, PIO2_LO the rest (fdlibm's pio2_1 + pio2_1t
# carry 33 bits in the first part; the fused products below need no zero bits).
_PIO2_HI, _PIO2_LO = np.float64(1.5707963267948966), np.float64(6.123233995736766e-17)
# Rounding to an integer by adding 1.5 * 2**52, as _ROUND_SHIFTER_F32 does in float32.
_ROUND_SHIFTER_F64 = np.float64(6755399441055744.0)
_ROUND_SHIFTER_BITS_F64 = np.int64(np.array(_ROUND_SHIFTER_F64).view(np.int64))
_F64_ABS_MASK, _F64_MANTISSA_FIELD = np.int64(0x7FFFFFFFFFFFFFFF), np.int64(0x000FFFFFFFFFFFFF)
_F32_ABS_MASK = np.int32(0x7FFFFFFF)
_F64_INTEGER_MANTISSA_BITS = np.int64(1075 << 52)  # exponent field of 2**52: 2**52 <= M < 2**53
_F32_INTEGER_MANTISSA_BITS = np.int32(150 << 23)  # exponent field of 2**23: 2**23 <= M < 2**24

# fdlibm's minimax polynomials (k_sin.c and k_cos.c, as in FreeBSD's msun), for |r| <= pi/4:
# sin(r) = r + r**3 (S1 + r**2 S2 + ...) within 2**-58 relative, and cos(r) = 1 - r**2 / 2 +
# r**4 (C1 + r**2 C2 + ...) within 2**-58.
_SIN_S = tuple(
    np.float64(c)
    for c in (
        -1.66666666666666324348e-01,
        8.33333333332248946124e-03,
        -1.98412698298579493134e-04,
        2.75573137070700676789e-06,
        -2.50507602534068634195e-08,
        1.58969099521155010221e-10,
    )
)
_COS_C = tuple(
    np.float64(c)
    for c in (
        4.16666666666666019037e-02,
        -1.38888888888741095749e-03,
        2.48015872894767294178e-05,
        -2.75573143513906633035e-07,
        2.08757232129817482790e-09,
        -1.13596475577881948265e-11,
    )
)


@intrinsic
def _fma(typingctx, a, b, c):
    """a * b + c rounded once (LLVM's ``fma``): exact products for the range reduction. One
    instruction on CPUs with FMA; elsewhere a correct but slow libm call."""
    if not isinstance(a, types.Float) or not (a == b == c):
        return None

    def codegen(context, builder, signature, args):
        value_type = args[0].type
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(value_type, [value_type] * 3), f"llvm.fma.f{a.bitwidth}"
        )
        return builder.call(fn, args)

    return a(a, b, c), codegen


@inline_helper
def _round_to_integer_f64(v):
    """(round(v) as a float64, its low 64 bits as an integer), for |v| < 2**51."""
    shifted = v + _ROUND_SHIFTER_F64
    return shifted - _ROUND_SHIFTER_F64, _bits_of(shifted) - _ROUND_SHIFTER_BITS_F64


@inline_helper
def _two_sum(a, b):
    """(s, e) with s = fl(a + b) and a + b = s + e exactly (Knuth)."""
    s = a + b
    b_virtual = s - a
    return s, (a - (s - b_virtual)) + (b - b_virtual)


@inline_helper
def _reduce_pio2_f64(x):
    """(n, r_hi, r_lo) with x = n pi/2 + r_hi + r_lo, |r_hi| <= pi/4 (a little more through
    rounding), for finite float64 x; any n mod 4 is right. Infinities and NaN give garbage that
    callers replace.

    The pieces' products with M are split into exact pairs by fused multiply-adds, multiples
    of 4 dropped where that is exact, and the rest summed in float64 pairs (Knuth's two-sum),
    whose rounding is below 2**-150 for a reduced argument near 0, and a half ulp of it
    otherwise.
    """
    magnitude_bits = _bits_of(x) & _F64_ABS_MASK
    row = (magnitude_bits >> _F64_MANTISSA_BITS) - np.int64(1076)  # L - 1
    row = min(max(row, np.int64(0)), np.int64(_TRIG_ROWS_F64 - 1))
    m = _float_from_bits((magnitude_bits & _F64_MANTISSA_FIELD) | _F64_INTEGER_MANTISSA_BITS, x)
    a = abs(x) if row == np.int64(0) else m
    t0 = _TRIG_TABLE_F64[row, 0]
    t1 = _TRIG_TABLE_F64[row, 1]
    t2 = _TRIG_TABLE_F64[row, 2]
    t3 = _TRIG_TABLE_F64[row, 3]
    p0 = a * t0  # below 2**55
    e0 = _fma(a, t0, -p0)
    p1 = a * t1  # below 4
    e1 = _fma(a, t1, -p1)
    p2 = a * t2  # below 2**-51
    e2 = _fma(a, t2, -p2)
    p0 = p0 - np.float64(4.0) * np.floor(p0 * np.float64(0.25))  # exact: a multiple of ulp(p0)
    n_float, n = _round_to_integer_f64(p0 + (e0 + p1))
    # x * 2/pi can lie within 2**-61 of an integer, and then the sum cancels to that size, so
    # every term joins through a two-sum (p0 - n_float is exact): the rounding errors collected
    # in `low` are below 2**-150.
    h, low = _two_sum(p0 - n_float, e0)
    h, error = _two_sum(h, p1)
    low = low + error
    h, error = _two_sum(h, e1)
    low = low + error
    h, error = _two_sum(h, p2)
    low = low + error + (e2 + a * t3)
    h, low = _two_sum(h, low)
    r_hi = h * _PIO2_HI
    r_lo = _fma(h, _PIO2_HI, -r_hi) + (h * _PIO2_LO + low * _PIO2_HI)
    r = r_hi + r_lo
    r_lo = r_lo - (r - r_hi)
    small = abs(x) < _PIO4
    sign = np.float64(-1.0) if x < np.float64(0.0) else np.float64(1.0)
    n = np.int64(0) if small else (-n if x < np.float64(0.0) else n)
    return n, x if small else sign * r, np.float64(0.0) if small else sign * r_lo


@inline_helper
def _reduce_pio2_f32(x):
    """(n, r) with x = n pi/2 + r, |r| <= pi/4 + tiny, r a float64 accurate to 2**-78
    absolute, for finite float32 x: _reduce_pio2_f64's method with two pieces of 2/pi."""
    magnitude_bits = _bits_of(x) & _F32_ABS_MASK
    row = (magnitude_bits >> _F32_MANTISSA_BITS) - np.int32(151)  # L - 1
    row = min(max(row, np.int32(0)), np.int32(_TRIG_ROWS_F32 - 1))
    m = _float_from_bits((magnitude_bits & _F32_MANTISSA_MASK) | _F32_INTEGER_MANTISSA_BITS, x)
    a = np.float64(abs(x) if row == np.int32(0) else m)
    t0 = _TRIG_TABLE_F32[row, 0]
    t1 = _TRIG_TABLE_F32[row, 1]
    p0 = a * t0  # below 2**26
    e0 = _fma(a, t0, -p0)
    n_float, n = _round_to_integer_f64(p0)
    r = ((p0 - n_float) + (e0 + a * t1)) * _PIO2_HI  # p0 - n_float is exact
    small = abs(x) < np.float32(_PIO4)
    wide = np.float64(x)
    n = np.int64(0) if small else (-n if x < np.float32(0.0) else n)
    return n, wide if small else (-r if x < np.float32(0.0) else r)


@inline_helper
def _sin_kernel(r, r_lo):
    """sin(r + r_lo) for |r| <= pi/4, |r_lo| <= ulp(r) / 2 (fdlibm k_sin.c)."""
    s1, s2, s3, s4, s5, s6 = _SIN_S
    z = r * r
    w = z * z
    poly = s2 + z * (s3 + z * s4) + z * w * (s5 + z * s6)
    v = z * r
    return r - ((z * (np.float64(0.5) * r_lo - v * poly) - r_lo) - v * s1)


@inline_helper
def _cos_kernel(r, r_lo):
    """cos(r + r_lo) for |r| <= pi/4, |r_lo| <= ulp(r) / 2 (fdlibm k_cos.c, FreeBSD's form:
    1 - r**2 / 2 as a rounded w plus its exact rounding error)."""
    c1, c2, c3, c4, c5, c6 = _COS_C
    z = r * r
    w = z * z
    poly = z * (c1 + z * (c2 + z * c3)) + w * w * (c4 + z * (c5 + z * c6))
    half_z = np.float64(0.5) * z
    w = np.float64(1.0) - half_z
    return w + (((np.float64(1.0) - w) - half_z) + (z * poly - r * r_lo))


@inline_helper
def _sin_quadrant(n, r, r_lo):
    """sin(n pi/2 + r): sin or cos of r by n mod 4, both computed (a select, not a branch)."""
    s = _sin_kernel(r, r_lo)
    c = _cos_kernel(r, r_lo)
    y = c if n & np.int64(1) else s
    return -y if n & np.int64(2) else y


@inline_helper
def _tan_quadrant(n, r, r_lo):
    """tan(n pi/2 + r): sin(r) / cos(r), or -cos(r) / sin(r) for odd n."""
    s = _sin_kernel(r, r_lo)
    c = _cos_kernel(r, r_lo)
    odd = n & np.int64(1)
    return (-c if odd else s) / (s if odd else c)


def _sin_f64(v):
    n, r, r_lo = _reduce_pio2_f64(v)
    y = _sin_quadrant(n, r, r_lo)
    return y if abs(v) < np.inf else v - v  # +-inf and NaN give NaN


def _cos_f64(v):
    n, r, r_lo = _reduce_pio2_f64(v)
    y = _sin_quadrant(n + np.int64(1), r, r_lo)
    return y if abs(v) < np.inf else v - v


def _tan_f64(v):
    n, r, r_lo = _reduce_pio2_f64(v)
    y = _tan_quadrant(n, r, r_lo)
    return y if abs(v) < np.inf else v - v


# float32: the reduction and the float64 polynomials, rounded once to float32 at the end.
def _sin_f32(v):
    n, r = _reduce_pio2_f32(v)
    y = np.float32(_sin_quadrant(n, r, np.float64(0.0)))
    return y if abs(v) < _F32_INF else v - v


def _cos_f32(v):
    n, r = _reduce_pio2_f32(v)
    y = np.float32(_sin_quadrant(n + np.int64(1), r, np.float64(0.0)))
    return y if abs(v) < _F32_INF else v - v


def _tan_f32(v):
    n, r = _reduce_pio2_f32(v)
    y = np.float32(_tan_quadrant(n, r, np.float64(0.0)))
    return y if abs(v) < _F32_INF else v - v


_sin = _by_float_type(_sin_f32, _sin_f64, inline="always")
_cos = _by_float_type(_cos_f32, _cos_f64, inline="always")
_tan = _by_float_type(_tan_f32, _tan_f64, inline="always")


@inline_helper
def sin(v):
    """sin(v), for every finite v (the reduction is exact to 2**-100 at any magnitude)."""
    return _sin(v)


@inline_helper
def cos(v):
    """cos(v), for every finite v."""
    return _cos(v)


@inline_helper
def tan(v):
    """tan(v) = sin(v) / cos(v), for every finite v."""
    return _tan(v)


# ----------------------------------------------------------------------------- inverse trig,
# hyperbolic and error functions. Each public function below is generic: its constants come
# in its argument's precision from a _by_float_type selector, or through like().

# pi / 2 and pi as hi + lo pairs: hi is the value rounded to the precision, lo the rest, so
# that hi - (a - lo) keeps the bits that subtracting a from a rounded pi / 2 would lose.
# fdlibm e_asin.c's double values; the float32 pair is derived the same way.
_PIO2_HI_F64, _PIO2_LO_F64 = (
    np.float64(1.57079632679489655800e00),
    np.float64(6.12323399573676603587e-17),
)
_PIO2_HI_F32 = np.float32(math.pi / 2)
_PIO2_LO_F32 = np.float32(math.pi / 2 - float(_PIO2_HI_F32))
# Clearing these low bits of a float leaves a head whose square is exact: 11 of float32's 24
# significant bits (FreeBSD s_erff.c's 0xffffe000: 12 would make erf's h**2 + 0.5625 round),
# 21 of float64's 53 (fdlibm's SET_LOW_WORD(x, 0)).
_HEAD_MASK_F32, _HEAD_MASK_F64 = np.int32(-(1 << 13)), np.int64(-(1 << 32))
_ARC_CONSTANTS_F32 = (_PIO2_HI_F32, _PIO2_LO_F32, _HEAD_MASK_F32)
_ARC_CONSTANTS_F64 = (_PIO2_HI_F64, _PIO2_LO_F64, _HEAD_MASK_F64)


def _arc_constants_f32(x):
    return _ARC_CONSTANTS_F32


def _arc_constants_f64(x):
    return _ARC_CONSTANTS_F64


_arc_constants = _by_float_type(_arc_constants_f32, _arc_constants_f64)


@inline_helper
def _head(v):
    """v with its low mantissa bits cleared (see _HEAD_MASK_F32): head * head is exact."""
    mask = _arc_constants(v)[2]
    return _float_from_bits(_bits_of(v) & mask, v)


# asin(s) = s + s R(s**2) for |s| <= 0.5, R a rational minimax approximation:
# fdlibm e_asin.c (float64) and FreeBSD e_asinf.c (float32, a shorter one for its precision).
_ASIN_P_F64 = tuple(
    np.float64(c)
    for c in (
        1.66666666666666657415e-01,
        -3.25565818622400915405e-01,
        2.01212532134862925881e-01,
        -4.00555345006794114027e-02,
        7.91534994289814532176e-04,
        3.47933107596021167570e-05,
    )
)
_ASIN_Q_F64 = tuple(
    np.float64(c)
    for c in (
        -2.40339491173441421878e00,
        2.02094576023350569471e00,
        -6.88283971605453293030e-01,
        7.70381505559019352791e-02,
    )
)
_ASIN_P_F32 = tuple(np.float32(c) for c in (1.6666586697e-01, -4.2743422091e-02, -8.6563630030e-03))
_ASIN_Q1_F32 = np.float32(-7.0662963390e-01)


def _asin_rational_f32(t):
    p0, p1, p2 = _ASIN_P_F32
    return t * (p0 + t * (p1 + t * p2)) / (_F32_ONE + t * _ASIN_Q1_F32)


def _asin_rational_f64(t):
    p0, p1, p2, p3, p4, p5 = _ASIN_P_F64
    q1, q2, q3, q4 = _ASIN_Q_F64
    p = t * (p0 + t * (p1 + t * (p2 + t * (p3 + t * (p4 + t * p5)))))
    return p / (_F64_ONE + t * (q1 + t * (q2 + t * (q3 + t * q4))))


_asin_rational = _by_float_type(_asin_rational_f32, _asin_rational_f64)


@inline_helper
def asin(v):
    """asin(v), NaN outside [-1, 1] (fdlibm e_asin.c, without branches).

    |v| < 0.5: v + v R(v**2). Above, asin(v) = pi/2 - 2 asin(s) with s = sqrt((1 - |v|) / 2);
    below |v| = 0.975 the 2 s term is split into an exact head and a tail so that the
    subtraction from pi/2 loses nothing.
    """
    one, half, two = like(1.0, v), like(0.5, v), like(2.0, v)
    pio2_hi, pio2_lo, _ = _arc_constants(v)
    a = abs(v)
    near_zero = a < half
    squared, reduced = v * v, (one - a) * half  # reduced < 0 for |v| > 1: NaN through sqrt
    t = squared if near_zero else reduced
    r = _asin_rational(t)
    s = np.sqrt(t)
    near_one = pio2_hi - (two * (s + s * r) - pio2_lo)
    head = _head(s)
    c = (t - head * head) / (s + head)  # s = head + c, to twice the precision
    pio4_hi = half * pio2_hi
    between = pio4_hi - ((two * s * r - (pio2_lo - two * c)) - (pio4_hi - two * head))
    small = v + v * r
    large = np.copysign(near_one if a >= like(0.975, v) else between, v)
    return small if near_zero else large


@inline_helper
def acos(v):
    """acos(v), NaN outside [-1, 1] (fdlibm e_acos.c, without branches): pi/2 - asin(v) near
    0, and from s = sqrt((1 -+ v) / 2) beyond |v| = 0.5, split as in asin for v > 0."""
    zero, one, half, two = like(0.0, v), like(1.0, v), like(0.5, v), like(2.0, v)
    pio2_hi, pio2_lo, _ = _arc_constants(v)
    a = abs(v)
    near_zero = a < half
    squared, reduced = v * v, (one - a) * half
    z = squared if near_zero else reduced
    r = _asin_rational(z)
    s = np.sqrt(z)
    middle = pio2_hi - (v - (pio2_lo - v * r))
    negative = two * pio2_hi - two * (s + (r * s - pio2_lo))
    head = _head(s)
    c = (z - head * head) / (s + head)  # 0 / 0 at v = 1, handled below
    positive = two * (head + (r * s + c))
    y = middle if near_zero else (negative if v < zero else positive)
    return zero if v == one else y


# atan on [0, 7/16) by its odd series x - x**3 P(x**2), and beyond through
# atan(x) = atan(c) + atan((x - c) / (1 + c x)) at c = 1/2, 1, 3/2 and inf, with atan(c) as
# hi + lo: fdlibm s_atan.c (float64) and FreeBSD s_atanf.c (float32, a shorter series).
_ATAN_SERIES_F64 = tuple(
    np.float64(c)
    for c in (
        3.33333333333329318027e-01,
        -1.99999999998764832476e-01,
        1.42857142725034663711e-01,
        -1.11111104054623557880e-01,
        9.09088713343650656196e-02,
        -7.69187620504482999495e-02,
        6.66107313738753120669e-02,
        -5.83357013379057348645e-02,
        4.97687799461593236017e-02,
        -3.65315727442169155270e-02,
        1.62858201153657823623e-02,
    )
)
_ATAN_HI_F64 = tuple(
    np.float64(c)
    for c in (
        4.63647609000806093515e-01,
        7.85398163397448278999e-01,
        9.82793723247329054082e-01,
        1.57079632679489655800e00,
    )
)
_ATAN_LO_F64 = tuple(
    np.float64(c)
    for c in (
        2.26987774529616870924e-17,
        3.06161699786838301793e-17,
        1.39033110312309984516e-17,
        6.12323399573676603587e-17,
    )
)
_ATAN_SERIES_F32 = tuple(
    np.float32(c)
    for c in (
        3.3333328366e-01,
        -1.9999158382e-01,
        1.4253635705e-01,
        -1.0648017377e-01,
        6.1687607318e-02,
    )
)
_ATAN_HI_F32 = tuple(
    np.float32(c) for c in (4.6364760399e-01, 7.8539812565e-01, 9.8279368877e-01, 1.5707962513e00)
)
_ATAN_LO_F32 = tuple(
    np.float32(c) for c in (5.0121582440e-09, 3.7748947079e-08, 3.4473217170e-08, 7.5497894159e-08)
)


def _atan_series_f32(t):
    """t**3 P(t**2), so that atan(t) = t - t**3 P(t**2) for |t| < 7/16."""
    a0, a1, a2, a3, a4 = _ATAN_SERIES_F32
    z = t * t
    w = z * z
    return t * (z * (a0 + w * (a2 + w * a4)) + w * (a1 + w * a3))


def _atan_series_f64(t):
    """t**3 P(t**2), so that atan(t) = t - t**3 P(t**2) for |t| < 7/16."""
    a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10 = _ATAN_SERIES_F64
    z = t * t
    w = z * z
    odd = z * (a0 + w * (a2 + w * (a4 + w * (a6 + w * (a8 + w * a10)))))
    even = w * (a1 + w * (a3 + w * (a5 + w * (a7 + w * a9))))
    return t * (odd + even)


def _atan_table_f32(t):
    return _ATAN_HI_F32, _ATAN_LO_F32


def _atan_table_f64(t):
    return _ATAN_HI_F64, _ATAN_LO_F64


_atan_series = _by_float_type(_atan_series_f32, _atan_series_f64)
_atan_table = _by_float_type(_atan_table_f32, _atan_table_f64)


@inline_helper
def _atan_nonnegative(a):
    """atan(a) for a >= 0 (+inf and NaN included), as fdlibm s_atan.c with its interval
    chosen by selects: one division, one series."""
    one, two, three_halves = like(1.0, a), like(2.0, a), like(1.5, a)
    (hi0, hi1, hi2, hi3), (lo0, lo1, lo2, lo3) = _atan_table(a)
    small = a < like(0.4375, a)
    first = a < like(0.6875, a)
    second = a < like(1.1875, a)
    third = a < like(2.4375, a)
    # t = (a - c) / (1 + c a), as fdlibm writes it for each c; -1 / a for c = inf.
    # Every candidate is computed before the selects: a computation inside a conditional
    # expression is a branch to Numba, which the vectorizer then has to predicate.
    num0, num1, num2 = two * a - one, a - one, a - three_halves
    den0, den1, den2 = two + a, a + one, one + three_halves * a
    num = num0 if first else (num1 if second else (num2 if third else -one))
    den = den0 if first else (den1 if second else (den2 if third else a))
    quotient = num / den
    t = a if small else quotient
    hi = hi0 if first else (hi1 if second else (hi2 if third else hi3))
    lo = lo0 if first else (lo1 if second else (lo2 if third else lo3))
    series = _atan_series(t)
    near_zero = t - series
    shifted = hi - ((series - lo) - t)
    return near_zero if small else shifted


@inline_helper
def atan(v):
    """atan(v), odd: -0 gives -0, +-inf gives +-pi/2."""
    return np.copysign(_atan_nonnegative(abs(v)), v)


@inline_helper
def atan2(y, x):
    """The angle of the point (x, y) in [-pi, pi], with C99's rules for zeros, infinities and
    their signs (atan2(+-0, -0) = +-pi, atan2(+-inf, -inf) = +-3 pi/4, ...).

    atan of the ratio of the smaller to the larger of |x| and |y| (in [0, 1]), placed in its
    octant as c +- that angle for c in {0, pi/2, pi}, with c as hi + lo.
    """
    zero, one = like(0.0, y), like(1.0, y)
    pio2_hi, pio2_lo, _ = _arc_constants(y)
    ax, ay = abs(x), abs(y)
    steep = ay > ax  # the angle from the y axis is the smaller one
    small = ax if steep else ay
    large = ay if steep else ax
    # 0 / 0 (both zero) and inf / inf (both infinite) have the limits C99 asks for.
    quotient = small / large
    ratio = zero if small == zero else (one if small == like(np.inf, y) else quotient)
    angle = _atan_nonnegative(ratio)
    left = _bits_of(x) < like(0, _bits_of(x))  # x's sign bit: -0 counts as left
    # steep: pi/2 - angle (x >= 0) or pi/2 + angle (x < 0); else angle or pi - angle.
    negated = -angle
    signed = negated if steep != left else angle
    pi_hi, pi_lo = pio2_hi + pio2_hi, pio2_lo + pio2_lo
    base_hi = pio2_hi if steep else (pi_hi if left else zero)
    base_lo = pio2_lo if steep else (pi_lo if left else zero)
    result = np.copysign(base_hi + (signed + base_lo), y)
    nan = x + y
    return result if (x == x) & (y == y) else nan  # &: `and` would branch


# Clamping |v| here keeps 2**k in range while exp(|v|) / 2 overflows as it must.
_HALVED_EXP_MAX_F32, _HALVED_EXP_MAX_F64 = np.float32(90.0), np.float64(712.0)


def _halved_exp_max_f32(v):
    return _HALVED_EXP_MAX_F32


def _halved_exp_max_f64(v):
    return _HALVED_EXP_MAX_F64


_halved_exp_max = _by_float_type(_halved_exp_max_f32, _halved_exp_max_f64)


@inline_helper
def _halved_exp(a):
    """exp(a) / 2 for a >= 0 (NaN becomes the clamp: callers restore it), finite up to
    ln(2 max) where exp(a) alone would overflow: exp's reduction (Cephes exp.c) with 2**(k-1)
    applied as two normal factors."""
    one, half, _, _, log2e, ln2_hi, ln2_lo, exponent_bias, mantissa_bits = _constants(a)[:9]
    limit = _halved_exp_max(a)
    c = a if a < limit else limit
    kf = np.floor(c * log2e + half)
    r = (c - kf * ln2_hi) - kf * ln2_lo
    k = np.int32(kf) - np.int32(1)
    k_half = k >> 1
    low_scale = _float_from_bits((np.int64(k_half) + exponent_bias) << mantissa_bits, a)
    high_scale = _float_from_bits((np.int64(k - k_half) + exponent_bias) << mantissa_bits, a)
    return ((one + _expm1_reduced(r)) * low_scale) * high_scale


# sinh(x) = x + x z P(z), z = x**2, for |x| < 1: the Taylor coefficients 1/(2n+1)!, through
# the first term below the precision's rounding error on [0, 1] (x**13 / 13! for float32,
# x**23 / 23! for float64).
_SINH_TAYLOR_F32 = tuple(np.float32(1.0 / math.factorial(n)) for n in range(3, 13, 2))
_SINH_TAYLOR_F64 = tuple(np.float64(1.0 / math.factorial(n)) for n in range(3, 23, 2))


def _sinh_series_f32(x):
    c3, c5, c7, c9, c11 = _SINH_TAYLOR_F32
    z = x * x
    return x + x * z * (c3 + z * (c5 + z * (c7 + z * (c9 + z * c11))))


def _sinh_series_f64(x):
    """The degree-21 series by Estrin's scheme (see _expm1_reduced_f64)."""
    c3, c5, c7, c9, c11, c13, c15, c17, c19, c21 = _SINH_TAYLOR_F64
    z = x * x
    z2 = z * z
    z4 = z2 * z2
    p = (
        ((c3 + c5 * z) + (c7 + c9 * z) * z2)
        + ((c11 + c13 * z) + (c15 + c17 * z) * z2) * z4
        + (c19 + c21 * z) * (z4 * z4)
    )
    return x + x * z * p


_sinh_series = _by_float_type(_sinh_series_f32, _sinh_series_f64)


@inline_helper
def sinh(v):
    """sinh(v): its Taylor series below |v| = 1, and e - 1 / (4 e) with e = exp(|v|) / 2
    above, where the subtraction loses at most a factor 1.16 of e's relative error."""
    a = abs(v)
    e = _halved_exp(a)
    series = _sinh_series(v)
    large = np.copysign(e - like(0.25, v) / e, v)
    y = series if a < like(1.0, v) else large
    return y if v == v else v


@inline_helper
def cosh(v):
    """cosh(v) = e + 1 / (4 e) with e = exp(|v|) / 2: a sum of positive terms, accurate
    everywhere."""
    e = _halved_exp(abs(v))
    y = e + like(0.25, v) / e
    return y if v == v else v


# erf and erfc: fdlibm s_erf.c's rational approximations on [0, 0.84375) (in x**2),
# [0.84375, 1.25) (in |x| - 1) and, for erfc(|x|) = exp(-x**2 - 0.5625 + R/S) / |x|,
# [1.25, 1/0.35) and [1/0.35, 28) (in 1/x**2). The float32 path uses the same coefficients
# rounded to float32, as fdlibm's s_erff.c did.
_ERF_ERX = 8.45062911510467529297e-01  # erf(1) rounded to float32: exact in both
_ERF_PP = (
    1.28379167095512558561e-01,
    -3.25042107247001499370e-01,
    -2.84817495755985104766e-02,
    -5.77027029648944159157e-03,
    -2.37630166566501626084e-05,
)
_ERF_QQ = (
    3.97917223959155352819e-01,
    6.50222499887672944485e-02,
    5.08130628187576562776e-03,
    1.32494738004321644526e-04,
    -3.96022827877536812320e-06,
)
_ERF_PA = (
    -2.36211856075265944077e-03,
    4.14856118683748331666e-01,
    -3.72207876035701323847e-01,
    3.18346619901161753674e-01,
    -1.10894694282396677476e-01,
    3.54783043256182359371e-02,
    -2.16637559486879084300e-03,
)
_ERF_QA = (
    1.06420880400844228286e-01,
    5.40397917702171048937e-01,
    7.18286544141962662868e-02,
    1.26171219808761642112e-01,
    1.36370839120290507362e-02,
    1.19844998467991074170e-02,
)
_ERF_RA = (
    -9.86494403484714822705e-03,
    -6.93858572707181764372e-01,
    -1.05586262253232909814e01,
    -6.23753324503260060396e01,
    -1.62396669462573470355e02,
    -1.84605092906711035994e02,
    -8.12874355063065934246e01,
    -9.81432934416914548592e00,
)
_ERF_SA = (
    1.96512716674392571292e01,
    1.37657754143519042600e02,
    4.34565877475229228821e02,
    6.45387271733267880336e02,
    4.29008140027567833386e02,
    1.08635005541779435134e02,
    6.57024977031928170135e00,
    -6.04244152148580987438e-02,
)
_ERF_RB = (
    -9.86494292470009928597e-03,
    -7.99283237680523006574e-01,
    -1.77579549177547519889e01,
    -1.60636384855821916062e02,
    -6.37566443368389627722e02,
    -1.02509513161107724954e03,
    -4.83519191608651397019e02,
)
_ERF_SB = (
    3.03380607434824582924e01,
    3.25792512996573918826e02,
    1.53672958608443695994e03,
    3.19985821950859553908e03,
    2.55305040643316442583e03,
    4.74528541206955367215e02,
    -2.24409524465858183362e01,
)


def _erf_tables(dtype):
    """(numerators, denominators): each interval's coefficients, zero-padded to 8 so that
    one rational function evaluates whichever interval an element lies in. A denominator
    is 1 + u (d1 + u (d2 + ...))."""

    def padded(table):
        return tuple(dtype(c) for c in table + (0.0,) * (8 - len(table)))

    return (
        tuple(padded(t) for t in (_ERF_PP, _ERF_PA, _ERF_RA, _ERF_RB)),
        tuple(padded(t) for t in (_ERF_QQ, _ERF_QA, _ERF_SA, _ERF_SB)),
    )


_ERF_TABLES_F32 = _erf_tables(np.float32)
_ERF_TABLES_F64 = _erf_tables(np.float64)


def _erf_tables_f32(x):
    return _ERF_TABLES_F32


def _erf_tables_f64(x):
    return _ERF_TABLES_F64


_erf_coefficients = _by_float_type(_erf_tables_f32, _erf_tables_f64)


@inline_helper
def _exp_of_sum(hi, lo):
    """exp(hi + lo) for an exact hi <= 0 and a small lo, without rounding hi + lo: the
    reduction (Cody-Waite, as in exp) subtracts k ln 2 from hi alone, which is exact, and adds
    lo to the small remainder. exp(hi + lo) rounded as one sum would carry an error of
    |hi| ulps (fdlibm s_erf.c takes two exps instead)."""
    _, half, exp_min, exp_max, log2e, ln2_hi, ln2_lo, exponent_bias, mantissa_bits = _constants(hi)[
        :9
    ]
    total = hi + lo
    c = total if total > exp_min else exp_min
    c = c if c < exp_max else exp_max
    kf = np.floor(c * log2e + half)
    r = ((hi - kf * ln2_hi) - kf * ln2_lo) + lo
    k = np.int32(kf)
    k_half = k >> 1
    # 2**k as two normal factors, so that only the last product rounds (see exp_from_half_scale).
    low_scale = _float_from_bits((np.int64(k_half) + exponent_bias) << mantissa_bits, hi)
    high_scale = _float_from_bits((np.int64(k - k_half) + exponent_bias) << mantissa_bits, hi)
    y = ((like(1.0, hi) + _expm1_reduced(r)) * low_scale) * high_scale
    zero = like(0.0, hi)
    return y if total > exp_min else zero


@inline_helper
def _erf_pieces(v):
    """(r, tail) for erf and erfc at v: r is fdlibm's rational function of the interval |v| lies
    in: erf(v) = v + v r below |v| = 0.84375, erf(|v|) = erx + r below 1.25, and
    erfc(|v|) = tail = exp(-v**2 - 0.5625 + r) / |v| from there to 28.

    The four rational functions are one, its coefficients selected per element: one division
    and one polynomial pair instead of four.
    """
    one = like(1.0, v)
    numerators, denominators = _erf_coefficients(v)
    a = abs(v)
    near_zero = a < like(0.84375, v)
    near_one = a < like(1.25, v)
    near_tail = a < like(1.0 / 0.35, v)
    squared, shifted, inverse_squared = v * v, a - one, one / (a * a)
    u = squared if near_zero else (shifted if near_one else inverse_squared)
    n0, n1, n2, n3, n4, n5, n6, n7 = (
        numerators[0]
        if near_zero
        else (numerators[1] if near_one else (numerators[2] if near_tail else numerators[3]))
    )
    d1, d2, d3, d4, d5, d6, d7, d8 = (
        denominators[0]
        if near_zero
        else (denominators[1] if near_one else (denominators[2] if near_tail else denominators[3]))
    )
    # Estrin's scheme (see _expm1_reduced_f64): the exp below waits on this division, and
    # Horner's two 8-step chains before it made the loop latency-bound.
    u2 = u * u
    u4 = u2 * u2
    num = ((n0 + n1 * u) + (n2 + n3 * u) * u2) + ((n4 + n5 * u) + (n6 + n7 * u) * u2) * u4
    den = ((one + d1 * u) + (d2 + d3 * u) * u2) + ((d4 + d5 * u) + (d6 + d7 * u) * u2) * u4
    den = den + d8 * (u4 * u4)
    r = num / den
    # exp(-a**2 - 0.5625 + r) with -a**2 = -h**2 + (h - a)(h + a), h = _head(a): -h**2 - 0.5625
    # is exact, and _exp_of_sum never rounds it to the sum's precision.
    h = _head(a)
    tail = _exp_of_sum(-h * h - like(0.5625, v), (h - a) * (h + a) + r) / a
    return r, tail


@inline_helper
def erf(v):
    """erf(v), odd, +-1 beyond |v| = 6 (fdlibm s_erf.c, its intervals chosen by selects)."""
    one = like(1.0, v)
    r, tail = _erf_pieces(v)
    a = abs(v)
    between, far = like(_ERF_ERX, v) + r, one - tail
    beyond = np.copysign(between if a < like(1.25, v) else far, v)
    small, saturated = v + v * r, np.copysign(one, v)
    y = small if a < like(0.84375, v) else (beyond if a < like(6.0, v) else saturated)
    return y if v == v else v


@inline_helper
def erfc(v):
    """1 - erf(v), without the cancellation: erfc(|v|) itself in the tail, accurate down to
    the smallest subnormal (fdlibm s_erf.c, its intervals chosen by selects)."""
    zero, one, two, half = like(0.0, v), like(1.0, v), like(2.0, v), like(0.5, v)
    erx = like(_ERF_ERX, v)
    r, tail = _erf_pieces(v)
    a = abs(v)
    positive = v >= zero
    # Below 1/4 erf(v) < 0.28 leaves all digits in 1 - erf(v); above, 1/2 - (erf(v) - 1/2)
    # keeps them.
    small_direct, small_split = one - (v + v * r), half - (v * r + (v - half))
    small = small_direct if a < like(0.25, v) else small_split
    between_positive, between_negative = (one - erx) - r, one + (erx + r)
    between = between_positive if positive else between_negative
    reflected = two - tail
    limit = zero if positive else two
    far = (tail if positive else reflected) if a < like(28.0, v) else limit
    y = small if a < like(0.84375, v) else (between if a < like(1.25, v) else far)
    return y if v == v else v
