"""The project's one Gaussian integrator: <F(z)>_K and its K-derivatives by split mpmath quadrature.

``<F>_K = E[F(sqrt(K) x)]`` with ``x ~ N(0, 1)``, integrated in ``x = z/sqrt(K)`` so that the
Gaussian has unit width at every K. ``F`` is given piece by piece between sigma's breakpoints, and
each piece is split at its ends and at 0, where tanh-sinh quadrature wants its nodes to cluster.
By the heat equation ``d^i/dK^i <F>_K = <F He_2i(x)>_K / (2K)^i`` (probabilists' Hermite), so a
K-derivative never differentiates F. Works at the ambient precision of ``ctx``: ``mpmath.mp``
(set it with ``mpmath.workdps``), or ``mpmath.fp`` for double-precision scans.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import mpmath
import sympy as sp

Number = Any  # an mpmath.mpf or mpc, a float or complex under mpmath.fp
Integrand = Callable[[Number, Number], Number]  # (x, z) -> F(z), z = sqrt(K) x
Piece = tuple[sp.Expr, sp.Expr, Integrand]  # (lo, hi) in z (either may be infinite), and F there


def split_points(lo: sp.Expr, hi: sp.Expr, root: Number, ctx: Any = mpmath.mp) -> list[Number]:
    """Integration points in x for the piece lo <= z <= hi, root = sqrt(K): its ends, and 0 when inside."""
    x_lo = -ctx.inf if lo == -sp.oo else ctx.mpf(sp.Rational(lo)) / root
    x_hi = ctx.inf if hi == sp.oo else ctx.mpf(sp.Rational(hi)) / root
    return [x_lo, *([ctx.zero] if x_lo < 0 < x_hi else []), x_hi]


def hermite_weight(i: int, x: Number, kernel: Number) -> Number:
    """He_2i(x) / (2K)^i, the heat-equation weight of d^i/dK^i (He_n by its three-term recurrence)."""
    prev, cur = 1, x
    if i == 0:
        return prev
    for n in range(1, 2 * i):
        prev, cur = cur, x * cur - n * prev
    return cur / (2 * kernel) ** i


def gaussian_mp(pieces: Iterable[Piece], kernel: Number, derivative: int = 0, ctx: Any = mpmath.mp) -> Number:
    """d^i/dK^i <F(z)>_K (i = derivative) for F given per piece, by ``ctx.quad`` in x = z/sqrt(K).

    Where the Gaussian factor underflows (only under ``mpmath.fp``) the integrand is taken as 0, so
    a sigma that overflows far out in the tail is never evaluated there.
    """
    k = ctx.mpf(kernel)
    root = ctx.sqrt(k)
    total = ctx.zero
    for lo, hi, integrand in pieces:

        def weighted(x: Number, integrand: Integrand = integrand) -> Number:
            w = ctx.exp(-x * x / 2)
            if w == 0:
                return w
            value = integrand(x, root * x) * w
            return value * hermite_weight(derivative, x, k) if derivative else value

        total += ctx.quad(weighted, split_points(lo, hi, root, ctx))
    return total / ctx.sqrt(2 * ctx.pi)
