"""Fit the polynomial firefly/kernels/activation.py evaluates for the normal density in exact
GELU's backward: exp(-2 (u + 1)) over u in [-1, 1], interpolated at the degree-17 Chebyshev
nodes in 50-digit arithmetic (mpmath, a development-time dependency only) and written in
monomials, highest power first, as ``_EXP_CENTRAL``. Prints the coefficients and the largest
relative error of their float64 Horner evaluation over 4001 points.

    pip install mpmath && python tools/fit_gelu_polynomials.py
"""

import mpmath as mp
import numpy as np

DEGREE = 17


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


def main():
    mp.mp.dps = 50

    def density_part(u):
        return mp.exp(-2 * (u + 1))

    coefficients = chebyshev_interpolant_monomials(density_part, DEGREE)
    u = np.linspace(-1.0, 1.0, 4001)
    exact = np.array([float(density_part(mp.mpf(t))) for t in u])
    horner = np.full_like(u, coefficients[0])
    for c in coefficients[1:]:
        horner = horner * u + c
    print("_EXP_CENTRAL = (")
    for c in coefficients:
        print(f"    {c!r},")
    print(")")
    print(f"largest relative error: {np.max(np.abs(horner / exact - 1)):.2e}")


if __name__ == "__main__":
    main()
