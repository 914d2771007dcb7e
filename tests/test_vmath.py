"""Accuracy of the vectorized functions of firefly/kernels/vmath.py (exp, log, sigmoid, tanh,
sin, cos, tan, asin, acos, atan, atan2, sinh, cosh, erf, erfc), through the op kernels that use
them, and softmax's exp_flush_subnormal against exp.

Errors are measured in ulps of the correctly rounded result: float32 against float64 NumPy
(scipy.special for erf and erfc) rounded to float32, float64 against np.longdouble (x87
extended precision, 11 more bits; mpmath at 80 bits for erf and erfc, which NumPy lacks).
NumPy's own float32/float64 functions, for scale, are within 1-4 ulp of the same references.
"""

import functools
import math

import mpmath
import numba
import numpy as np
import pytest
from scipy import special

from firefly.kernels import vmath
from firefly.ops import get

F32, F64 = np.float32, np.float64
pytestmark = pytest.mark.skipif(
    np.finfo(np.longdouble).nmant < 63,
    reason="the float64 reference needs an extended-precision longdouble",
)


NUMPY_NAMES = {"asin": "arcsin", "acos": "arccos", "atan": "arctan", "atan2": "arctan2"}
# Beyond this |x|, erf is +-1 and erfc 0 or 2 in both precisions (erfc(27) < 1e-318).
ERF_SATURATION = 30.0


def mpmath_reference(name, wide):
    """erf or erfc of longdouble values at 80 bits, element by element."""
    function = getattr(mpmath, name)
    out = np.empty_like(wide)
    with mpmath.workprec(80):
        for i, v in enumerate(wide.astype(F64).tolist()):  # float64 inputs: exact
            if 0 < abs(v) < ERF_SATURATION:  # mpmath has no -0: zeros go to scipy
                out[i] = np.longdouble(mpmath.nstr(function(mpmath.mpf(v)), 30))
            else:  # +-0, and beyond: erf = +-1, erfc = 0 or 2; NaN stays NaN
                out[i] = getattr(special, name)(v)
    return out


def reference(name, *xs):
    """name(*xs) in more precision than their dtype (float64 for float32, longdouble for
    float64)."""
    if xs[0].dtype == F64 and name in TRIG:
        return trig_reference(name, xs[0])
    wide = [x.astype(F64 if x.dtype == F32 else np.longdouble) for x in xs]
    with np.errstate(all="ignore"):
        if name == "sigmoid":
            return 1 / (1 + np.exp(-wide[0]))
        if name in ("erf", "erfc"):
            if wide[0].dtype == F64:
                return getattr(special, name)(wide[0])
            return mpmath_reference(name, wide[0])
        return getattr(np, NUMPY_NAMES.get(name, name))(*wide)


TRIG = ("sin", "cos", "tan")
# floor(2/pi * 2**TWO_OVER_PI_BITS): enough bits to reduce the largest float64 (2**1024) with
# 200 to spare. NumPy's float64 sin, cos and tan reduce correctly, which makes them a
# reference for float32 arguments; glibc's longdouble ones on x86 use the x87 fsin, whose
# 66-bit pi is tens of ulps off near multiples of pi/2, so float64 arguments are reduced
# here, exactly, and only the reduced argument goes to the longdouble functions.
TWO_OVER_PI_BITS = 1300
TWO_OVER_PI = vmath._two_over_pi_bits(TWO_OVER_PI_BITS)
PI_OVER_2_LONGDOUBLE = np.longdouble(1.5707963267948966) + np.longdouble(6.123233995736766e-17)


def trig_reference(name, x):
    """sin, cos or tan of float64 x in longdouble, after an exact reduction by pi/2 in
    integer arithmetic."""
    quadrant = np.zeros(x.size, np.int64)
    reduced = np.zeros(x.size, np.longdouble)
    finite = np.isfinite(x)
    for i in np.flatnonzero(finite):
        numerator, denominator = float(x[i]).as_integer_ratio()  # denominator: a power of 2
        shift = TWO_OVER_PI_BITS + denominator.bit_length() - 1
        product = numerator * TWO_OVER_PI  # x * 2/pi * 2**shift
        n = (product + (1 << (shift - 1))) >> shift
        rest = product - (n << shift)  # |rest| <= 2**(shift - 1): the fraction, scaled
        drop = max(abs(rest).bit_length() - 64, 0)
        top = rest >> drop  # 64 bits, exact in longdouble as two 32-bit halves
        value = np.longdouble(top >> 32) * 2**32 + np.longdouble(top & 0xFFFFFFFF)
        reduced[i] = np.ldexp(value, drop - shift) * PI_OVER_2_LONGDOUBLE
        quadrant[i] = n % 4
    if name == "cos":
        quadrant += 1
    with np.errstate(all="ignore"):
        if name == "tan":
            t = np.tan(reduced)
            result = np.where(quadrant % 2 == 1, -1 / t, t)
        else:
            result = np.where(quadrant % 2 == 1, np.cos(reduced), np.sin(reduced))
            result = np.where(quadrant % 4 >= 2, -result, result)
    result[~finite] = np.nan
    return np.where(x == 0, x.astype(np.longdouble) if name != "cos" else 1, result)


def ulp_errors(got, exact):
    """|got - exact| in units of the spacing of got's dtype at exact (subnormal spacing
    included)."""
    with np.errstate(over="ignore"):  # exact beyond got's range rounds to +-inf
        rounded = exact.astype(got.dtype)
    spacing = np.spacing(np.abs(rounded)).astype(exact.dtype)
    finite = np.isfinite(rounded)
    err = np.zeros(got.shape)
    err[finite] = np.abs(got[finite].astype(exact.dtype) - exact[finite]) / spacing[finite]
    # Where the rounded result is +-inf or NaN, the kernel must match it exactly.
    mismatch = ~finite & ~((got == rounded) | (np.isnan(got) & np.isnan(rounded)))
    err[mismatch] = np.inf
    return err


def run(name, *xs, build="serial"):
    """name(*xs) through the op's forward kernel (a binary op's first one: the flat zip)."""
    kernel = get(name).forward_kernel
    kernel = kernel[0] if isinstance(kernel, tuple) else kernel
    out = np.empty_like(xs[0])
    getattr(kernel, build)(*xs, out)
    return out


def finite_bit_patterns(dtype, count, rng):
    """``count`` finite floats of both signs spread over every exponent, subnormals included."""
    int_type, top = (np.int32, 0x7F800000) if dtype == F32 else (np.int64, 0x7FF0000000000000)
    bits = rng.integers(0, top, size=count, dtype=int_type)
    values = bits.view(dtype)
    return np.where(rng.random(count) < 0.5, values, -values)


RNG_SEED = 1234
# (name, dtype) -> dense inputs covering the function's interesting range in that precision.
DENSE = {
    ("exp", F32): lambda rng: np.concatenate(
        [
            np.linspace(-104, 89, 1_000_003, dtype=F32),
            rng.uniform(-1, 1, 100_000).astype(F32),
            finite_bit_patterns(F32, 100_000, rng),
        ]
    ),
    ("exp", F64): lambda rng: np.concatenate(
        [
            np.linspace(-746, 710, 1_000_003),
            rng.uniform(-1, 1, 100_000),
            finite_bit_patterns(F64, 100_000, rng),
        ]
    ),
    ("log", F32): lambda rng: np.concatenate(
        [np.abs(finite_bit_patterns(F32, 1_000_000, rng)), np.linspace(0.5, 2, 100_001, dtype=F32)]
    ),
    ("log", F64): lambda rng: np.concatenate(
        [np.abs(finite_bit_patterns(F64, 1_000_000, rng)), np.linspace(0.5, 2, 100_001)]
    ),
    ("sigmoid", F32): lambda rng: np.concatenate(
        [np.linspace(-110, 110, 1_000_003, dtype=F32), finite_bit_patterns(F32, 100_000, rng)]
    ),
    ("sigmoid", F64): lambda rng: np.concatenate(
        [np.linspace(-750, 750, 1_000_003), finite_bit_patterns(F64, 100_000, rng)]
    ),
    ("tanh", F32): lambda rng: np.concatenate(
        [
            np.linspace(-12, 12, 1_000_003, dtype=F32),
            np.geomspace(1e-45, 12, 100_000, dtype=F32),
            finite_bit_patterns(F32, 100_000, rng),
        ]
    ),
    ("tanh", F64): lambda rng: np.concatenate(
        [
            np.linspace(-25, 25, 1_000_003),
            np.geomspace(1e-320, 25, 100_000),
            finite_bit_patterns(F64, 100_000, rng),
        ]
    ),
}


def near_one_and_zero(dtype, count):
    """|x| <= 1 dense near 0 and near +-1, where asin and acos change approximation."""
    tiny = np.finfo(dtype).smallest_subnormal
    gaps = np.geomspace(tiny, 0.5, count)
    return np.concatenate([gaps, -gaps, 1 - gaps, gaps - 1]).astype(dtype)


for _name in ("asin", "acos"):
    for _dtype in (F32, F64):
        DENSE[_name, _dtype] = lambda rng, dtype=_dtype: np.concatenate(
            [
                np.linspace(-1, 1, 1_000_003, dtype=dtype),
                near_one_and_zero(dtype, 50_000),
                finite_bit_patterns(dtype, 100_000, rng),  # mostly |x| > 1: NaN
            ]
        )
for _dtype in (F32, F64):
    DENSE["atan", _dtype] = lambda rng, dtype=_dtype: np.concatenate(
        [
            np.linspace(-4, 4, 1_000_003, dtype=dtype),
            # Every magnitude from the smallest subnormal to near the largest float.
            np.geomspace(*((1e-45, 1e38) if dtype == F32 else (5e-324, 1e308)), 100_000),
            finite_bit_patterns(dtype, 100_000, rng),
        ]
    ).astype(dtype)
# Up to just past where sinh and cosh overflow (89.4 in float32, 710.5 in float64).
for _name in ("sinh", "cosh"):
    for _dtype, _limit in ((F32, 90), (F64, 711)):
        DENSE[_name, _dtype] = lambda rng, dtype=_dtype, limit=_limit: np.concatenate(
            [
                np.linspace(-limit, limit, 1_000_003, dtype=dtype),
                np.linspace(-2, 2, 100_003, dtype=dtype),
                np.geomspace(np.finfo(dtype).smallest_subnormal, 2, 100_000).astype(dtype),
                finite_bit_patterns(dtype, 100_000, rng),
            ]
        )
# erf and erfc over every interval of their approximation, and erfc into its subnormal tail
# (underflow at 10.05 in float32, 27.2 in float64). The float64 reference is mpmath, one
# element at a time: fewer points.
for _name, _low, _high in (("erf", -7, 7), ("erfc", -7, 28)):
    DENSE[_name, F32] = lambda rng, low=_low, high=_high: np.concatenate(
        [
            np.linspace(low, min(high, 11), 1_000_003, dtype=F32),
            np.geomspace(1e-45, 1, 50_000).astype(F32),
            finite_bit_patterns(F32, 100_000, rng),
        ]
    )
    DENSE[_name, F64] = lambda rng, low=_low, high=_high: np.concatenate(
        [
            rng.uniform(low, high, 20_000),
            rng.uniform(-1.5, 1.5, 10_000),
            np.geomspace(1e-320, 1, 2_000),
            finite_bit_patterns(F64, 2_000, rng),
        ]
    )


def _trig_inputs(dtype, rng):
    """Small and large arguments, the floats nearest to multiples of pi/2 (where the reduced
    argument cancels to almost nothing) and random bit patterns up to the largest float.
    Fewer in float64, whose reference reduces each argument in Python integers (~15 us)."""
    count = 100_000 if dtype == F32 else 30_000
    pio2 = dtype(np.pi / 2)
    return np.concatenate(
        [
            np.linspace(-100, 100, 10 * count + 3, dtype=dtype),
            rng.uniform(-1e6, 1e6, count).astype(dtype),
            np.geomspace(1e-30, 1e30, count, dtype=dtype),
            pio2 * np.arange(1, count + 1, dtype=dtype),
            finite_bit_patterns(dtype, 2 * count, rng),
        ]
    )


for _name in ("sin", "cos", "tan"):
    for _dtype in (F32, F64):
        DENSE[_name, _dtype] = functools.partial(_trig_inputs, _dtype)

# Largest ulp error allowed, with some room over the maximum measured on the DENSE inputs:
# exp 1.00 (float32) / 0.94 (float64), log 0.76 / 0.78, sigmoid 2.06 / 1.95, tanh 2.12 / 2.22,
# asin 0.92 / 0.88, acos 0.90 / 0.89, atan 0.83 / 0.75, sinh 1.54 / 1.56, cosh 1.35 / 1.41,
# erf 0.88 / 0.87, erfc 2.66 / 2.11, atan2 1.36 / 1.51 (on atan2_operands), sin 0.50 / 0.76,
# cos 0.50 / 0.76, tan 0.50 / 2.07.
# NumPy on the same inputs: exp 2.41 / 0.51, log 3.11 / 0.52, tanh 1.36 / 1.15, asin 3.07 / 0.81,
# acos 2.05 / 0.81, atan 2.08 / 0.55, sinh 1.37 / 0.75, cosh 2.37 / 0.75, atan2 3.13 / 0.77.
MAX_ULP = {
    ("exp", F32): 1.5,
    ("exp", F64): 1.5,
    ("log", F32): 1.5,
    ("log", F64): 1.5,
    ("sigmoid", F32): 2.5,
    ("sigmoid", F64): 2.5,
    ("tanh", F32): 2.5,
    ("tanh", F64): 2.5,
    ("asin", F32): 1.5,
    ("asin", F64): 1.5,
    ("acos", F32): 1.5,
    ("acos", F64): 1.5,
    ("atan", F32): 1.5,
    ("atan", F64): 1.5,
    ("sinh", F32): 2.0,
    ("sinh", F64): 2.0,
    ("cosh", F32): 2.0,
    ("cosh", F64): 2.0,
    ("erf", F32): 1.5,
    ("erf", F64): 1.5,
    ("erfc", F32): 3.0,
    ("erfc", F64): 2.5,
    ("atan2", F32): 2.0,
    ("atan2", F64): 2.0,
    ("sin", F32): 0.51,
    ("sin", F64): 1.0,
    ("cos", F32): 0.51,
    ("cos", F64): 1.0,
    ("tan", F32): 0.51,
    ("tan", F64): 2.5,
}
UNARY = [
    "exp",
    "log",
    "sigmoid",
    "tanh",
    "sin",
    "cos",
    "tan",
    "asin",
    "acos",
    "atan",
    "sinh",
    "cosh",
    "erf",
    "erfc",
]


@pytest.mark.parametrize("name, dtype", list(DENSE), ids=lambda v: getattr(v, "__name__", v))
def test_ulp_error_over_dense_inputs_is_bounded(name, dtype):
    x = DENSE[name, dtype](np.random.default_rng(RNG_SEED))
    errors = ulp_errors(run(name, x), reference(name, x))
    worst = int(np.argmax(errors))
    assert errors[worst] <= MAX_ULP[name, dtype], (
        f"{name} {dtype.__name__}: {errors[worst]:.3f} ulp at x = {x[worst]!r}"
    )


SPECIAL_INPUTS = {
    F32: [
        0.0,
        -0.0,
        np.inf,
        -np.inf,
        np.nan,
        1.0,
        -1.0,
        1e-45,
        -1e-45,
        1.1754942e-38,
        1.1754944e-38,
        3.4028235e38,
        -3.4028235e38,
        88.72283,
        88.72284,
        -87.33655,
        -103.27893,
        -103.97208,
        -103.98,
        1e-30,
    ],
    F64: [
        0.0,
        -0.0,
        np.inf,
        -np.inf,
        np.nan,
        1.0,
        -1.0,
        5e-324,
        -5e-324,
        2.2250738585072009e-308,
        2.2250738585072014e-308,
        1.7976931348623157e308,
        -1.7976931348623157e308,
        709.782712893384,
        709.7827128933841,
        -708.3964185322641,
        -744.4400719213812,
        -745.1332191019411,
        -745.14,
        1e-300,
    ],
}


@pytest.mark.parametrize("name", UNARY)
@pytest.mark.parametrize("dtype", [F32, F64], ids=["float32", "float64"])
def test_special_values_match_the_correctly_rounded_result(name, dtype):
    x = np.array(SPECIAL_INPUTS[dtype], dtype=dtype)
    got = run(name, x)
    errors = ulp_errors(got, reference(name, x))
    assert errors.max() <= MAX_ULP[name, dtype], dict(
        zip(x.tolist(), zip(got.tolist(), errors.tolist()))
    )
    # ulp_errors compares magnitudes; zeros must also carry C99's sign.
    with np.errstate(over="ignore"):
        exact = reference(name, x).astype(dtype)
    zeros = exact == 0
    np.testing.assert_array_equal(np.signbit(got[zeros]), np.signbit(exact[zeros]))


def test_special_values_follow_c99():
    for dtype in (F32, F64):
        inf, nan = dtype(np.inf), dtype(np.nan)
        np.testing.assert_array_equal(
            run("exp", np.array([0, -0.0, inf, -inf, nan, 1e4, -1e4], dtype)),
            np.array([1, 1, inf, 0, nan, inf, 0], dtype),
        )
        np.testing.assert_array_equal(
            run("log", np.array([0, -0.0, -1, -inf, inf, nan, 1], dtype)),
            np.array([-inf, -inf, nan, nan, inf, nan, 0], dtype),
        )
        np.testing.assert_array_equal(
            run("sigmoid", np.array([0, inf, -inf, nan], dtype)), np.array([0.5, 1, 0, nan], dtype)
        )
        tanh = run("tanh", np.array([0, -0.0, inf, -inf, nan, 1e30, -1e30], dtype))
        np.testing.assert_array_equal(tanh, np.array([0, -0.0, 1, -1, nan, 1, -1], dtype))
        assert np.signbit(tanh[1]) and not np.signbit(tanh[0])


def test_ulp_errors_detects_a_one_ulp_mistake():
    x = np.linspace(-5, 5, 1001, dtype=F32)
    exact = reference("exp", x)
    off_by_one = np.nextafter(exact.astype(F32), F32(np.inf))
    assert ulp_errors(off_by_one, exact).max() > 0.5
    assert ulp_errors(exact.astype(F32), exact).max() <= 0.5


@pytest.mark.parametrize("name", [*UNARY, "atan2"])
@pytest.mark.parametrize("dtype", [F32, F64], ids=["float32", "float64"])
def test_parallel_build_matches_serial_bit_for_bit(name, dtype):
    # An odd size, so that the threads' ranges and vector loops end mid-way.
    rng = np.random.default_rng(RNG_SEED)
    x = rng.uniform(-20, 20, 50_001).astype(dtype)
    x = np.abs(x) if name == "log" else (x / 20 if name in ("asin", "acos") else x)
    xs = (x, rng.uniform(-20, 20, x.size).astype(dtype)) if name == "atan2" else (x,)
    np.testing.assert_array_equal(run(name, *xs, build="parallel"), run(name, *xs))


@pytest.mark.parametrize("dtype", [F32, F64], ids=["float32", "float64"])
def test_inverse_trig_hyperbolic_and_erf_special_values_follow_c99(dtype):
    inf, nan, half_pi = dtype(np.inf), dtype(np.nan), dtype(np.pi / 2)
    cases = {
        "asin": ([0, -0.0, 1, -1, 1.5, -1.5, inf, -inf, nan], [0, -0.0, half_pi, -half_pi])
        + ([nan] * 5,),
        "acos": ([1, -1, 0, -0.0, 1.5, -1.5, inf, nan], [0, dtype(np.pi), half_pi, half_pi])
        + ([nan] * 4,),
        "atan": ([0, -0.0, inf, -inf, nan], [0, -0.0, half_pi, -half_pi, nan], []),
        "sinh": ([0, -0.0, inf, -inf, nan, 1e4, -1e4], [0, -0.0, inf, -inf, nan, inf, -inf], []),
        "cosh": ([0, -0.0, inf, -inf, nan, 1e4, -1e4], [1, 1, inf, inf, nan, inf, inf], []),
        "erf": ([0, -0.0, inf, -inf, nan, 1e30, -1e30], [0, -0.0, 1, -1, nan, 1, -1], []),
        "erfc": ([0, -0.0, inf, -inf, nan, 1e30, -1e30], [1, 1, 0, 2, nan, 0, 2], []),
    }
    for name, (inputs, expected, more_expected) in cases.items():
        got = run(name, np.array(inputs, dtype))
        want = np.array(expected + more_expected, dtype)
        np.testing.assert_array_equal(got, want, err_msg=f"{name} {dtype.__name__}")
        # Zeros (and every non-NaN result) carry C99's sign; a NaN's sign is unspecified.
        signed = ~np.isnan(want)
        np.testing.assert_array_equal(np.signbit(got[signed]), np.signbit(want[signed]))


def test_atan2_follows_c99_on_every_pair_of_special_values():
    """Zeros of both signs, infinities, NaN and ordinary values in every combination: the
    quadrant, the sign of a zero result and the exact multiples of pi/4 as C99 (NumPy's
    float64 arctan2, rounded to float32 for the float32 path)."""
    specials = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 2.5, -2.5, 1e-300, -1e300]
    y, x = (a.ravel() for a in np.meshgrid(specials, specials))
    for dtype in (F32, F64):
        with np.errstate(over="ignore", under="ignore"):
            ys, xs = y.astype(dtype), x.astype(dtype)
            want = np.arctan2(ys.astype(F64), xs.astype(F64)).astype(dtype)
        got = run("atan2", ys, xs)
        errors = ulp_errors(got, reference("atan2", ys, xs))
        assert errors.max() <= MAX_ULP["atan2", dtype], list(zip(ys, xs, got, want))
        # A zero or infinite operand gives an exact multiple of pi/4, or 0.
        exact = (ys == 0) | (xs == 0) | np.isinf(ys) | np.isinf(xs)
        np.testing.assert_array_equal(got[exact], want[exact])
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        signed = ~np.isnan(want)
        np.testing.assert_array_equal(np.signbit(got[signed]), np.signbit(want[signed]))


def atan2_operands(dtype, count, rng):
    """(y, x) pairs in every quadrant: ordinary values, magnitudes far apart (ratios that
    underflow or overflow), nearly equal ones, and arbitrary bit patterns."""
    ordinary = rng.uniform(-3, 3, (2, count))
    scale = np.exp(rng.uniform(-80, 80, (2, count)))
    spread = rng.standard_normal((2, count)) * scale
    equal = rng.uniform(0.5, 2, count) * rng.choice([-1, 1], (2, count))
    bits = np.stack([finite_bit_patterns(dtype, count // 10, rng) for _ in range(2)])
    with np.errstate(over="ignore"):
        pairs = np.concatenate([ordinary, spread, equal, bits], axis=1).astype(dtype)
    return pairs[0], pairs[1]


@pytest.mark.parametrize("dtype", [F32, F64], ids=["float32", "float64"])
def test_atan2_ulp_error_over_dense_operands_is_bounded(dtype):
    y, x = atan2_operands(dtype, 300_000, np.random.default_rng(RNG_SEED))
    errors = ulp_errors(run("atan2", y, x), reference("atan2", y, x))
    worst = int(np.argmax(errors))
    assert errors[worst] <= MAX_ULP["atan2", dtype], (
        f"atan2 {dtype.__name__}: {errors[worst]:.3f} ulp at y = {y[worst]!r}, x = {x[worst]!r}"
    )


# The float64 nearest a multiple of pi/2 (Muller, "Elementary Functions", table 11.1): x * 2/pi
# is within 2**-61 of an integer, so cos(x) is 4.7e-19, and a reduction that keeps 100 bits
# instead of about 120 is hundreds of ulps off. Its float32 counterpart is 16367173 * 2**72.
HARDEST_TO_REDUCE = {F64: math.ldexp(6381956970095103, 797), F32: math.ldexp(16367173, 72)}


@pytest.mark.parametrize("name", ["sin", "cos", "tan"])
@pytest.mark.parametrize("dtype", [F32, F64], ids=["float32", "float64"])
def test_trig_special_values_and_hardest_reduction(name, dtype):
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, HARDEST_TO_REDUCE[dtype]], dtype)
    got = run(name, x)
    assert np.all(np.isnan(got[2:5])), got
    np.testing.assert_array_equal(got[:2], np.array([1.0, 1.0] if name == "cos" else [0, -0.0]))
    if name != "cos":
        assert np.signbit(got[1]) and not np.signbit(got[0])
    assert ulp_errors(got[5:], reference(name, x[5:])).max() <= MAX_ULP[name, dtype]


@numba.njit(error_model="numpy")
def _exp_flush_subnormal_kernel(x, out):
    for i in range(x.size):
        out[i] = vmath.exp_flush_subnormal(x[i])


def test_exp_flush_subnormal_is_exp_for_normal_results_and_zero_below():
    # softmax's exp(x - max): bit for bit the float32 exp wherever the result is normal, 0 where
    # it would be subnormal, NaN kept (a NaN must reach the row's sum).
    rng = np.random.default_rng(RNG_SEED)
    patterns = finite_bit_patterns(F32, 200_000, rng)
    special_values = np.array([0.0, -0.0, -np.inf, np.nan, 88.0, -87.33654, -87.336548], F32)
    x = np.concatenate(
        [np.linspace(-110, 88, 1_000_003, dtype=F32), patterns[patterns <= 88], special_values]
    )
    got = np.empty_like(x)
    _exp_flush_subnormal_kernel(x, got)
    exact = reference("exp", x)
    kept = x >= np.float32(-87.33654)
    tiny = np.finfo(F32).tiny
    # The cut is ln(2**-126) rounded up to float32: every kept result is normal and every
    # flushed one would have been subnormal.
    assert np.all(exact[kept] >= tiny) and np.all(exact[x < np.float32(-87.33654)] < tiny)
    np.testing.assert_array_equal(got[kept], run("exp", x)[kept])
    assert np.all(got[~kept & ~np.isnan(x)] == 0)
    assert np.isnan(got[np.isnan(x)]).all()
    x64 = np.linspace(-746, 700, 100_003)
    got64 = np.empty_like(x64)
    _exp_flush_subnormal_kernel(x64, got64)
    np.testing.assert_array_equal(got64, run("exp", x64))  # float64 keeps exp, subnormals too
