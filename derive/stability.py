"""Closed forms that stay accurate in double precision for K from 1e-12 to 1e4 (issue 9).

A closed form can be exact and still lose every digit when evaluated in floating point:

- **cancellation at small K**: ``<sin^2>_K = (1 - e^{-2K})/2`` is about K, but it is computed as the
  difference of two numbers of size 1/2, so at K = 1e-14 nothing is left. ``magnitude`` bounds the
  size of what floating point adds up; where it exceeds the value by far, the closed form cancels.
  ``small_k_branch`` then gives the Taylor polynomial of the closed form at K = 0 and the switch
  below which it is used: the largest K where the polynomial agrees with the closed form to 2^-60
  (checked at 60 digits there and below) and the closed form still keeps all but three digits.
- **overflow at large K**: ``e^{16K} e^{-18K}`` overflows at K = 45 though it equals ``e^{-2K}``.
  ``exponential_terms`` writes a sum of exponentials with one exponent per term.

Both are decided here, symbolically and in mpmath, so the generated code only evaluates them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import mpmath
import sympy as sp
from sympy.core.function import PoleError

from .notation import K

DEGREE = 24  # of the small-K Taylor polynomial
SWITCHES = (0.5, 0.25, 0.1, 0.05, 0.025, 0.01, 0.005, 0.0025, 0.001)  # candidate switch points, largest first
REMAINDER = mpmath.mpf(2) ** -60  # |polynomial - closed form| / value allowed below the switch
MAX_LOSS = 1e3  # magnitude / value the closed form may have at the switch (three digits)
CANCELS = 1e3  # magnitude / value at K = 1e-8 above which a closed form is said to cancel


def magnitude(expr: sp.Expr) -> sp.Expr:
    """A bound on the size of the terms that floating point adds up when evaluating ``expr``:
    every sum becomes the sum of absolute values. eps times it bounds the roundoff, which
    matters where a closed form cancels (hard tanh at large K, sin at small K)."""
    if expr.is_Add:
        return sp.Add(*[magnitude(a) for a in expr.args])
    if expr.is_Mul:
        return sp.Mul(*[magnitude(a) for a in expr.args])
    if expr.is_Pow and expr.exp.is_Integer:
        return magnitude(expr.base) ** expr.exp
    if expr.is_Number:
        return abs(expr)
    return sp.Abs(expr)


def exponential_terms(expr: sp.Expr) -> sp.Expr:
    """``expr`` as a sum of terms with one exponential each (``e^{16K} e^{-18K}`` becomes ``e^{-2K}``)."""
    return sp.expand(sp.powsimp(sp.expand(expr, power_exp=False), combine="exp"), power_exp=False)


def overflow_safe(expr: sp.Expr) -> sp.Expr:
    """``expr`` with every factor pair e^u (e^u + 1)^-1 written as (1 + e^-u)^-1, which does not overflow
    for large u (the logistic function in softplus' and mish's derivatives). log(1 + e^u) and
    log(cosh u) are made safe by the printer."""

    def fix(mul: sp.Mul) -> sp.Expr:
        factors = list(mul.args)
        for f in factors:
            if isinstance(f, sp.exp):
                ratio = sp.Pow(f + 1, -1)
                if ratio in factors:
                    factors.remove(f)
                    factors.remove(ratio)
                    return sp.Mul(*factors, sp.Pow(1 + sp.exp(-f.args[0]), -1))
        return mul

    return expr.replace(lambda e: e.is_Mul, fix)


@dataclass(frozen=True)
class SmallK:
    """Below ``switch``, evaluate ``polynomial`` (the Taylor polynomial at K = 0) instead of the closed form."""

    switch: float
    polynomial: sp.Expr


def _ratio(value: sp.Expr, size: sp.Expr, k: float, var: sp.Symbol = K) -> mpmath.mpf:
    with mpmath.workdps(60):
        v = abs(mpmath.mpf(sp.N(value.subs(var, sp.Float(k, 60)), 60)))
        s = mpmath.mpf(sp.N(size.subs(var, sp.Float(k, 60)), 60))
        return s / v if v else mpmath.inf


@cache
def small_k_branch(expr: sp.Expr, var: sp.Symbol = K) -> SmallK | None:
    """The Taylor branch for a closed form that cancels as ``var`` (K by default; the angle theta for
    pair expectations) -> 0, or None if it does not cancel (or is not analytic at 0, e.g. the truncated
    moments of piecewise sigma, or has parameters)."""
    if expr.free_symbols != {var}:
        return None
    size = magnitude(expr)
    try:
        if _ratio(expr, size, 1e-8, var) < CANCELS:
            return None
        series = sp.series(expr, var, 0, DEGREE + 2).removeO()
    except (PoleError, ValueError, ZeroDivisionError, NotImplementedError, TypeError):  # not analytic at K = 0
        return None
    series = sp.expand(series)
    if not series.is_polynomial(var):
        return None
    poly = sp.Poly(series, var)
    polynomial = sum(poly.coeff_monomial(var**n) * var**n for n in range(DEGREE + 1))
    for switch in SWITCHES:
        # the polynomial must reproduce the closed form below the switch, checked at 60 digits: this also
        # rejects a function flat at 0 (e^{-1/K}), whose Taylor series is 0
        points = (switch, switch / 10, switch / 1000, 1e-8)
        agree = all(_agrees(expr, polynomial, k, var) for k in points)
        if agree and _ratio(expr, size, switch, var) <= MAX_LOSS:
            return SmallK(switch, polynomial)
    return None


def _agrees(expr: sp.Expr, polynomial: sp.Expr, k: float, var: sp.Symbol = K) -> bool:
    with mpmath.workdps(60):
        at = sp.Float(k, 60)
        value = mpmath.mpf(sp.N(expr.subs(var, at), 60))
        return bool(value) and abs(mpmath.mpf(sp.N(polynomial.subs(var, at), 60)) - value) <= REMAINDER * abs(value)
