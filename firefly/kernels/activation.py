"""Kernels of the activations with attributes, over flat arrays: GELU (exact and tanh), leaky
ReLU, ELU, softplus and hardtanh. Each backward reads the forward's input. Transcendental functions
run in float64 and round once into the output's dtype."""

import math

import numpy as np
from numba import prange

from firefly.kernels import vmath
from firefly.kernels._jit import called_helper, inline_helper, memory_bound, transcendental
from firefly.kernels.vmath import _mul_add

_SQRT_HALF = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327
_SQRT_2_OVER_PI = 0.7978845608028654
_GELU_CUBIC = 0.044715


@inline_helper
def _sigmoid(x):
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


# The normal CDF Phi(x) = (1 + erf(x / sqrt 2)) / 2 of exact GELU, as polynomials LLVM
# vectorizes: math.erf is a libm call per element, which kept the loops scalar (35x torch's
# time for a (768, 512) float32 GELU). With a = |x| / sqrt 2: below 2, erf(a) = a P(a**2); from
# 2 on, erfc(a) = exp(Q(1 / a) - a**2) / a, Q fitting log(a erfc(a)) + a**2. Both are Chebyshev
# fits of degree 16 (to mpmath) written in monomials of the variable scaled to [-1, 1], relative
# error 1e-15 and 2e-14; Phi is within 3e-13 relative of the exact value down to x = -40 (the
# erfc form keeps the left tail's precision, which 1 + erf(x) cancels away). The kernels run
# the central form over every element in vectorized loops, then redo the few elements beyond
# |x| = 2 sqrt 2 with the tail form: computing both forms everywhere and selecting cost 2.7x
# the central loop alone (the tail's exp and division).
_CENTRAL_LIMIT = 2.0 * math.sqrt(2.0)  # |x| below which the central form holds (a < 2)
# The tails are found group by group: the central loop over a group also counts the group's
# elements beyond the limit, and only a group with some is scanned, serially, for their
# positions; the tail form then runs at those only. A loop testing each element and computing
# the tail where the test holds was vectorized by LLVM whenever the tail's helper got inlined,
# computing the tail for every element (10-40x the central loop's time). The group's loops run
# over views indexed from 0: written as range(start, stop) over the whole arrays, the central
# loop did not vectorize (6x slower).
_TAIL_BLOCK = 4096  # elements per prange task, a multiple of _TAIL_GROUP
_TAIL_GROUP = 64
_ERF_SMALL = (
    1.559987545439955e-11,
    -1.4910262076709775e-10,
    1.1396300499823103e-09,
    -8.600422866881884e-09,
    6.118672544709473e-08,
    -4.0452688768685226e-07,
    2.4758103060231867e-06,
    -1.3946263890294245e-05,
    7.180100424639935e-05,
    -0.00033514353662312233,
    0.0014050914248131194,
    -0.005234875835659439,
    0.01712834457165839,
    -0.048662777449186734,
    0.11947913860985998,
    -0.2611118609312455,
    0.6749332360396546,
)  # erf(a) / a in u = a**2 / 2 - 1, highest power first, a < 2
_ERFC_T_LOW, _ERFC_T_HIGH = 1.0 / 27.0, 0.5  # 1 / a over a in [2, 27]; erfc(27) underflows
_ERFC_LARGE = (
    -4.481899757023544e-09,
    1.0670725316545647e-08,
    1.1248778498483708e-08,
    -8.250960499849506e-08,
    1.6482634150503642e-07,
    -5.4243807831105215e-08,
    -8.898508144496886e-07,
    3.4710415633911645e-06,
    -5.278724223590223e-06,
    -1.0122513271153822e-05,
    8.52813032757431e-05,
    -0.0002177065907995555,
    -0.00016986801648222525,
    0.004058406989141757,
    -0.016699799626542836,
    -0.053206143925757794,
    -0.6056314796533244,
)  # log(a erfc(a)) + a**2 in u = 1/a scaled to [-1, 1], highest power first


# The density exp(-x**2 / 2) / sqrt(2 pi) in the central range, as a polynomial in the same u
# as _ERF_SMALL's: vmath.exp (its range reduction, scaling and special cases) cost more than
# the CDF's polynomial; this one runs beside it. Chebyshev interpolation of degree 17 at its
# nodes (tools/fit_gelu_polynomials.py), relative error 5e-15 in float64.
_EXP_CENTRAL = (
    -5.2562991715194955e-11,
    4.4954465890776245e-10,
    -3.386174121637167e-09,
    2.538596043727016e-08,
    -1.7804642687078197e-07,
    1.1573174624640294e-06,
    -6.943606158141582e-06,
    3.8189821546214694e-05,
    -0.00019094925430143494,
    0.0008592716496874729,
    -0.0034370865581843427,
    0.012029802952401653,
    -0.036089408863116776,
    0.09022352215793321,
    -0.18044704431548284,
    0.2706705664732182,
    -0.2706705664732254,
    0.13533528323661273,
)  # exp(-a**2) = exp(-2 (u + 1)) in u = a**2 / 2 - 1, highest power first, a < 2


@inline_helper
def _degree16(c, u):
    """The polynomial with coefficients ``c`` (17, highest power first) at u, by Horner's
    rule written out (a loop over the tuple would compile to an iterator, not to arithmetic),
    each step one fused multiply-add: with a multiply and an add apart, the chain of 32
    dependent operations left the vectorized loop latency-bound (a (768, 512) float32 GELU
    0.90 ms -> 0.40 ms)."""
    r = _mul_add(c[0], u, c[1])
    r = _mul_add(r, u, c[2])
    r = _mul_add(r, u, c[3])
    r = _mul_add(r, u, c[4])
    r = _mul_add(r, u, c[5])
    r = _mul_add(r, u, c[6])
    r = _mul_add(r, u, c[7])
    r = _mul_add(r, u, c[8])
    r = _mul_add(r, u, c[9])
    r = _mul_add(r, u, c[10])
    r = _mul_add(r, u, c[11])
    r = _mul_add(r, u, c[12])
    r = _mul_add(r, u, c[13])
    r = _mul_add(r, u, c[14])
    r = _mul_add(r, u, c[15])
    return _mul_add(r, u, c[16])


@inline_helper
def _degree17(c, u):
    """As _degree16, for 18 coefficients."""
    return _mul_add(_degree16(c[:17], u), u, c[17])


@inline_helper
def _normal_cdf_central(v):
    """Phi(v) for |v| < _CENTRAL_LIMIT (meaningless beyond)."""
    a = abs(v) * _SQRT_HALF
    erf_a = a * _degree16(_ERF_SMALL, a * a * 0.5 - 1.0)
    return 0.5 + 0.5 * erf_a if v >= 0.0 else 0.5 - 0.5 * erf_a


@inline_helper
def _normal_density_central(v):
    """phi(v) = exp(-v**2 / 2) / sqrt(2 pi) for |v| < _CENTRAL_LIMIT (meaningless beyond)."""
    a = abs(v) * _SQRT_HALF
    return _INV_SQRT_2PI * _degree17(_EXP_CENTRAL, a * a * 0.5 - 1.0)


@inline_helper
def _tail_positions(x, positions):
    """Writes to positions[:count] the i with |x[i]| >= _CENTRAL_LIMIT or x[i] NaN, in order;
    returns count. The store at a data-dependent place keeps this loop scalar."""
    count = 0
    for i in range(x.size):
        if not abs(float(x[i])) < _CENTRAL_LIMIT:
            positions[count] = i
            count += 1
    return count


@called_helper
def _normal_cdf_tail(v):
    """Phi(v) for |v| >= _CENTRAL_LIMIT, and NaN for NaN. A function of its own, not inlined:
    the kernels' parallel builds stay small and compile faster."""
    a = abs(v) * _SQRT_HALF
    t = 1.0 / a
    u = (t - 0.5 * (_ERFC_T_LOW + _ERFC_T_HIGH)) * (2.0 / (_ERFC_T_HIGH - _ERFC_T_LOW))
    half_erfc = 0.5 * t * vmath.exp(_degree16(_ERFC_LARGE, u) - a * a)
    return 1.0 - half_erfc if v >= 0.0 else half_erfc


@transcendental
def gelu_forward(x, tanh_approximation, out):
    """x * Phi(x), or torch's tanh approximation 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    if tanh_approximation:
        for i in prange(x.size):
            v = float(x[i])
            out[i] = 0.5 * v * (1.0 + vmath.tanh(_SQRT_2_OVER_PI * (v + _GELU_CUBIC * v * v * v)))
        return
    n = x.size
    for block in prange((n + _TAIL_BLOCK - 1) // _TAIL_BLOCK):
        positions = np.empty(_TAIL_GROUP, np.int64)
        stop = min(n, (block + 1) * _TAIL_BLOCK)
        for start in range(block * _TAIL_BLOCK, stop, _TAIL_GROUP):
            xs, outs = x[start : start + _TAIL_GROUP], out[start : start + _TAIL_GROUP]
            tails = 0
            for i in range(xs.size):
                v = float(xs[i])
                outs[i] = v * _normal_cdf_central(v)
                tails += 0 if abs(v) < _CENTRAL_LIMIT else 1
            for j in range(_tail_positions(xs, positions) if tails else 0):  # rare
                v = float(xs[positions[j]])
                outs[positions[j]] = v * _normal_cdf_tail(v)


@transcendental
def gelu_backward(grad, x, tanh_approximation, dx):
    """dx = grad * (Phi(x) + x phi(x)), or the tanh approximation's derivative."""
    if tanh_approximation:
        for i in prange(x.size):
            v = float(x[i])
            inner = _SQRT_2_OVER_PI * (v + _GELU_CUBIC * v * v * v)
            t = vmath.tanh(inner)
            d = 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * _SQRT_2_OVER_PI * (
                1.0 + 3.0 * _GELU_CUBIC * v * v
            )
            dx[i] = grad[i] * d
        return
    n = x.size
    for block in prange((n + _TAIL_BLOCK - 1) // _TAIL_BLOCK):
        positions = np.empty(_TAIL_GROUP, np.int64)
        stop = min(n, (block + 1) * _TAIL_BLOCK)
        for start in range(block * _TAIL_BLOCK, stop, _TAIL_GROUP):
            end = start + _TAIL_GROUP
            xs, grads, dxs = x[start:end], grad[start:end], dx[start:end]
            tails = 0
            for i in range(xs.size):
                v = float(xs[i])
                density = _normal_density_central(v)
                dxs[i] = grads[i] * (_normal_cdf_central(v) + v * density)
                tails += 0 if abs(v) < _CENTRAL_LIMIT else 1
            for j in range(_tail_positions(xs, positions) if tails else 0):  # rare
                i = positions[j]
                v = float(xs[i])
                density = _INV_SQRT_2PI * vmath.exp(-0.5 * v * v)
                dxs[i] = grads[i] * (_normal_cdf_tail(v) + v * density)


@memory_bound
def leaky_relu_forward(x, negative_slope, out):
    for i in prange(x.size):
        v = x[i]
        out[i] = v if v > 0 else v * negative_slope


@memory_bound
def leaky_relu_backward(grad, x, negative_slope, dx):
    for i in prange(x.size):
        dx[i] = grad[i] if x[i] > 0 else grad[i] * negative_slope


@transcendental
def elu_forward(x, alpha, out):
    for i in prange(x.size):
        v = float(x[i])
        out[i] = v if v > 0 else alpha * math.expm1(v)


@transcendental
def elu_backward(grad, x, alpha, dx):
    for i in prange(x.size):
        v = float(x[i])
        dx[i] = grad[i] if v > 0 else grad[i] * alpha * math.exp(v)


@transcendental
def softplus_forward(x, beta, threshold, out):
    """log(1 + exp(beta x)) / beta, and x itself where beta x > threshold (torch's)."""
    for i in prange(x.size):
        v = float(x[i])
        z = beta * v
        out[i] = v if z > threshold else (max(z, 0.0) + math.log1p(math.exp(-abs(z)))) / beta


@transcendental
def softplus_backward(grad, x, beta, threshold, dx):
    for i in prange(x.size):
        z = beta * float(x[i])
        dx[i] = grad[i] if z > threshold else grad[i] * _sigmoid(z)


@memory_bound
def hardtanh_forward(x, min_val, max_val, out):
    for i in prange(x.size):
        out[i] = min(max(x[i], min_val), max_val)


@memory_bound
def hardtanh_backward(grad, x, min_val, max_val, dx):
    """The gradient passes strictly inside (min_val, max_val), as torch's."""
    for i in prange(x.size):
        v = x[i]
        dx[i] = grad[i] if min_val < v < max_val else 0.0
