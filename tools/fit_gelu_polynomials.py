"""Fit the two polynomials firefly/kernels/activation.py evaluates for exact GELU in its central
range |x| < 2 sqrt 2, in the variable u = x**2 / 4 - 1 (which runs over [-1, 1] there):

- ``_GELU_ODD``, degree 16: (Phi(x) - 1/2) / x = erf(a) / (2 sqrt 2 a), a = |x| / sqrt 2, an
  even function of x, so that Phi(x) = 1/2 + x * odd(u) on both sides of 0; and
  ``_GELU_ODD_F32``, the same to degree 13, which float32 outputs need;
- ``_GELU_SLOPE``, degree 17: GELU's derivative Phi(x) + x phi(x) is 1/2 + x * slope(u) with
  slope(u) = odd(u) + phi(x), the normal density phi(x) = exp(-2 (u + 1)) / sqrt(2 pi).

Each is interpolated at the Chebyshev nodes of the first kind in 50-digit arithmetic (mpmath, a
development-time dependency only) and written in monomials, highest power first. Prints the
coefficients and the largest relative error of their float64 Horner evaluation over 4001 points.

    pip install mpmath && python tools/fit_gelu_polynomials.py
"""

import mpmath as mp
import numpy as np


def chebyshev_interpolant_monomials(f, degree):
    """Monomial coefficients (highest power first, rounded to float64) of the polynomial
    interpolating f at the Chebyshev nodes of the first kind on [-1, 1]."""
    n = degree + 1
    angles = [mp.pi * (k + mp.mpf(1) / 2) / n for k in range(n)]
    values = [f(mp.cos(t)) for t in angles]
    cheb = [2 * mp.fsum(v * mp.cos(j * t) for v, t in zip(values, angles)) / n for j in range(n)]
    cheb[0] /= 2
    basis = [[mp.mpf(1)], [mp.mpf(0), mp.mpf(1)]]  # T_j in monomials, lowest power first
    for j in range(2, n):
        doubled = [mp.mpf(0)] + [2 * c for c in basis[j - 1]]
        previous = basis[j - 2] + [mp.mpf(0)] * (len(doubled) - len(basis[j - 2]))
        basis.append([a - b for a, b in zip(doubled, previous)])
    monomials = [mp.mpf(0)] * n
    for c, t in zip(cheb, basis):
        for k, coefficient in enumerate(t):
            monomials[k] += c * coefficient
    return [float(m) for m in reversed(monomials)]


def odd_part(u):
    a = mp.sqrt(2 * (u + 1))
    return mp.erf(a) / (2 * mp.sqrt(2) * a) if a else 1 / mp.sqrt(2 * mp.pi)


def slope(u):
    return odd_part(u) + mp.exp(-2 * (u + 1)) / mp.sqrt(2 * mp.pi)


def main():
    mp.mp.dps = 50
    u = np.linspace(-1.0, 1.0, 4001)
    for name, f, degree in (
        ("_GELU_ODD", odd_part, 16),
        ("_GELU_ODD_F32", odd_part, 13),
        ("_GELU_SLOPE", slope, 17),
    ):
        coefficients = chebyshev_interpolant_monomials(f, degree)
        exact = np.array([float(f(mp.mpf(t))) for t in u])
        horner = np.full_like(u, coefficients[0])
        for c in coefficients[1:]:
            horner = horner * u + c
        print(f"{name} = (")
        for c in coefficients:
            print(f"    {c!r},")
        print(")")
        print(f"largest relative error: {np.max(np.abs(horner / exact - 1)):.2e}")


if __name__ == "__main__":
    main()
