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


# Exact GELU x Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2 the normal CDF, as polynomials LLVM
# vectorizes: math.erf is a libm call per element, which kept the loops scalar (35x torch's
# time for a (768, 512) float32 GELU). In the central range |x| < 2 sqrt 2, with
# u = x**2 / 4 - 1 in [-1, 1], Phi(x) = 1/2 + x odd(u) and GELU's derivative
# Phi(x) + x phi(x) = 1/2 + x slope(u): Phi - 1/2 is odd and so is x phi(x), so each is x
# times an even function, one polynomial in u on both sides of 0 (no sign test), and the
# backward's CDF and density are one polynomial, not two (tools/fit_gelu_polynomials.py:
# Chebyshev interpolants of degree 16 and 17, relative error 2e-16 and 3e-16). Beyond,
# erfc(a) = exp(Q(1 / a) - a**2) / a with a = |x| / sqrt 2, Q a degree-16 fit of
# log(a erfc(a)) + a**2 (2e-14): Phi is within 3e-13 relative of the exact value down to
# x = -40 (the erfc form keeps the left tail's precision, which 1 + erf(x) cancels away). The
# kernels run the central form over every element in vectorized loops, then redo the few
# elements beyond |x| = 2 sqrt 2 with the tail form: computing both forms everywhere and
# selecting cost 2.7x the central loop alone (the tail's exp and division).
_CENTRAL_LIMIT = 2.0 * math.sqrt(2.0)  # |x| below which the central form holds (u < 1)
# The tails are found group by group: the central loop over a group also counts the group's
# elements beyond the limit, and only a group with some is scanned, serially, for their
# positions; the tail form then runs at those only. A loop testing each element and computing
# the tail where the test holds was vectorized by LLVM whenever the tail's helper got inlined,
# computing the tail for every element (10-40x the central loop's time). The group's loops run
# over views indexed from 0: written as range(start, stop) over the whole arrays, the central
# loop did not vectorize (6x slower).
_TAIL_BLOCK = 4096  # elements per prange task, a multiple of _TAIL_GROUP
_TAIL_GROUP = 64
_GELU_ODD = (
    6.070393198965642e-12,
    -5.238802351660913e-11,
    4.0070253660569017e-10,
    -3.0418432849092293e-09,
    2.1636420773461992e-08,
    -1.4302030952504087e-07,
    8.75327954369826e-07,
    -4.93074992716718e-06,
    2.5385490057886874e-05,
    -0.00011849113334510796,
    0.0004967748369135372,
    -0.0018508081010923068,
    0.006055784298616544,
    -0.01720488996284298,
    0.04224225456067684,
    -0.09231698375636099,
    0.2386249340259104,
)  # (Phi(x) - 1/2) / x in u = x**2 / 4 - 1, highest power first, |x| < 2 sqrt 2
_GELU_ODD_F32 = (
    -3.2252012594544535e-09,
    2.3084027111423325e-08,
    -1.4276818205849755e-07,
    8.733172467009826e-07,
    -4.930921853672205e-06,
    2.5386867603293327e-05,
    -0.00011849107315226765,
    0.0004967743534948051,
    -0.001850808111132191,
    0.006055784379307349,
    -0.017204889962214035,
    0.04224225455562986,
    -0.0923169837563675,
    0.2386249340259619,
)  # the same function to degree 13 (relative error 3e-13), for float32 outputs (see _central_phi)
_GELU_SLOPE = (
    -2.1636902238210724e-11,
    1.8543015704996303e-10,
    -1.400440445041316e-09,
    1.052816592387715e-08,
    -7.407705228388811e-08,
    4.833394014127737e-07,
    -2.9131137783297884e-06,
    1.6110862354530808e-05,
    -8.110848331450143e-05,
    0.00036818528151331487,
    -0.0014896902820738728,
    0.005295971859513138,
    -0.016248399171399953,
    0.042049761974153034,
    -0.08919284531375178,
    0.15022418758705,
    -0.20029891678273729,
    0.2926159005390985,
)  # (Phi(x) + x phi(x) - 1/2) / x in the same u, highest power first, |x| < 2 sqrt 2
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


@inline_helper
def _degree13(c, u):
    """The polynomial with coefficients ``c`` (14, highest power first) at u, by Horner's
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
    return _mul_add(r, u, c[13])


@inline_helper
def _degree16(c, u):
    """As _degree13, for 17 coefficients."""
    return _mul_add(_mul_add(_mul_add(_degree13(c[:14], u), u, c[14]), u, c[15]), u, c[16])


@inline_helper
def _degree17(c, u):
    """As _degree16, for 18 coefficients."""
    return _mul_add(_degree16(c[:17], u), u, c[17])


@inline_helper
def _central_u(v):
    """u = x**2 / 4 - 1, the central polynomials' variable."""
    return _mul_add(v * v, 0.25, -1.0)


def _central_phi_f32(out, v):
    return _mul_add(v, _degree13(_GELU_ODD_F32, _central_u(v)), 0.5)


def _central_phi_f64(out, v):
    return _mul_add(v, _degree16(_GELU_ODD, _central_u(v)), 0.5)


# Phi(v) in the central range, in float64, for an output array ``out`` of float32 or float64:
# a float32 result needs less of the polynomial (degree 13: within 1 ulp, as degree 16, over
# the float32 points of the range, 5.6e-5 of them 1 ulp off against 1e-7), and the loop is
# bound by its float64 multiply-adds. The backward keeps its degree for both: its derivative
# has a zero at x = -0.7518, where 1/2 + x slope(u) cancels completely.
_central_phi = vmath._by_float_type(_central_phi_f32, _central_phi_f64)


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
    """x * Phi(x), or torch's tanh approximation 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).

    One prange loop over blocks, either form inside, so that the parallel run is the loop cut
    into shares (``_jit.sized_kernel``) rather than a parfor build."""
    n = x.size
    for block in prange((n + _TAIL_BLOCK - 1) // _TAIL_BLOCK):
        stop = min(n, (block + 1) * _TAIL_BLOCK)
        if tanh_approximation:
            xs, outs = x[block * _TAIL_BLOCK : stop], out[block * _TAIL_BLOCK : stop]
            for i in range(xs.size):
                v = float(xs[i])
                outs[i] = (
                    0.5 * v * (1.0 + vmath.tanh(_SQRT_2_OVER_PI * (v + _GELU_CUBIC * v * v * v)))
                )
            continue
        positions = np.empty(_TAIL_GROUP, np.int64)
        for start in range(block * _TAIL_BLOCK, stop, _TAIL_GROUP):
            xs, outs = x[start : start + _TAIL_GROUP], out[start : start + _TAIL_GROUP]
            tails = 0
            for i in range(xs.size):
                v = np.float64(xs[i])  # float(): float32 stays float32 in Numba
                outs[i] = v * _central_phi(outs, v)
                tails += 0 if abs(v) < _CENTRAL_LIMIT else 1
            for j in range(_tail_positions(xs, positions) if tails else 0):  # rare
                v = float(xs[positions[j]])
                outs[positions[j]] = v * _normal_cdf_tail(v)


@transcendental
def gelu_backward(grad, x, tanh_approximation, dx):
    """dx = grad * (Phi(x) + x phi(x)), or the tanh approximation's derivative; one prange
    loop over blocks, as gelu_forward."""
    n = x.size
    for block in prange((n + _TAIL_BLOCK - 1) // _TAIL_BLOCK):
        stop = min(n, (block + 1) * _TAIL_BLOCK)
        if tanh_approximation:
            span = slice(block * _TAIL_BLOCK, stop)
            xs, grads, dxs = x[span], grad[span], dx[span]
            for i in range(xs.size):
                v = float(xs[i])
                inner = _SQRT_2_OVER_PI * (v + _GELU_CUBIC * v * v * v)
                t = vmath.tanh(inner)
                d = 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * _SQRT_2_OVER_PI * (
                    1.0 + 3.0 * _GELU_CUBIC * v * v
                )
                dxs[i] = grads[i] * d
            continue
        positions = np.empty(_TAIL_GROUP, np.int64)
        for start in range(block * _TAIL_BLOCK, stop, _TAIL_GROUP):
            end = start + _TAIL_GROUP
            xs, grads, dxs = x[start:end], grad[start:end], dx[start:end]
            tails = 0
            for i in range(xs.size):
                v = np.float64(xs[i])
                dxs[i] = grads[i] * _mul_add(v, _degree17(_GELU_SLOPE, _central_u(v)), 0.5)
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
