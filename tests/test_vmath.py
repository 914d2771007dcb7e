"""Accuracy of the vectorized exp, log, sigmoid and tanh (firefly/kernels/vmath.py), through the
kernels that use them, and softmax's exp_flush_subnormal against exp.

Errors are measured in ulps of the correctly rounded result: float32 against float64 NumPy
rounded to float32, float64 against np.longdouble (x87 extended precision, 11 more bits).
NumPy's own float32/float64 functions, for scale, are within 1-4 ulp of the same references.
"""

import numba
import numpy as np
import pytest

from firefly.kernels import vmath
from firefly.ops import get

F32, F64 = np.float32, np.float64
pytestmark = pytest.mark.skipif(
    np.finfo(np.longdouble).nmant < 63,
    reason="the float64 reference needs an extended-precision longdouble",
)


def reference(name, x):
    """name(x) in more precision than x.dtype (float64 for float32, longdouble for float64)."""
    wide = x.astype(F64 if x.dtype == F32 else np.longdouble)
    with np.errstate(all="ignore"):
        if name == "sigmoid":
            return 1 / (1 + np.exp(-wide))
        return getattr(np, name)(wide)


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


def run(name, x, build="serial"):
    out = np.empty_like(x)
    getattr(get(name).forward_kernel, build)(x, out)
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
# Largest ulp error allowed, with some room over the maximum measured on the DENSE inputs:
# exp 1.00 (float32) / 0.94 (float64), log 0.76 / 0.78, sigmoid 2.06 / 1.95, tanh 2.12 / 2.22.
# NumPy on the same inputs: exp 2.41 / 0.51, log 3.11 / 0.52, tanh 1.36 / 1.15.
MAX_ULP = {
    ("exp", F32): 1.5,
    ("exp", F64): 1.5,
    ("log", F32): 1.5,
    ("log", F64): 1.5,
    ("sigmoid", F32): 2.5,
    ("sigmoid", F64): 2.5,
    ("tanh", F32): 2.5,
    ("tanh", F64): 2.5,
}


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


@pytest.mark.parametrize("name", ["exp", "log", "sigmoid", "tanh"])
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


@pytest.mark.parametrize("name", ["exp", "log", "sigmoid", "tanh"])
@pytest.mark.parametrize("dtype", [F32, F64], ids=["float32", "float64"])
def test_parallel_build_matches_serial_bit_for_bit(name, dtype):
    # An odd size, so that the threads' ranges and vector loops end mid-way.
    x = np.random.default_rng(RNG_SEED).uniform(-20, 20, 50_001).astype(dtype)
    x = np.abs(x) if name == "log" else x
    np.testing.assert_array_equal(run(name, x, "parallel"), run(name, x, "serial"))


@numba.njit(error_model="numpy")
def _exp_flush_subnormal_kernel(x, out):
    for i in range(x.size):
        out[i] = vmath.exp_flush_subnormal(x[i])


def test_exp_flush_subnormal_is_exp_for_normal_results_and_zero_below():
    # softmax's exp(x - max): bit for bit the float32 exp wherever the result is normal, 0 where
    # it would be subnormal, NaN kept (a NaN must reach the row's sum).
    rng = np.random.default_rng(RNG_SEED)
    patterns = finite_bit_patterns(F32, 200_000, rng)
    special = np.array([0.0, -0.0, -np.inf, np.nan, 88.0, -87.33654, -87.336548], F32)
    x = np.concatenate(
        [np.linspace(-110, 88, 1_000_003, dtype=F32), patterns[patterns <= 88], special]
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
