"""Gaussian expectations of one activation by split mpmath quadrature (book 5.49-5.53, 5.73).

g(K) = <sigma^2>_K, chi_perp = C_W <sigma'^2>_K, chi_parallel = C_W dg/dK, and the defect
D(K) = 1 - <z sigma sigma'>_K / (K <sigma'^2>_K) whose zeros are the K* > 0 critical points. Integrals
are in x = z/sqrt(K), split at every breakpoint and at 0; sigma' is the sympy derivative of each
smooth piece, so a sigma that jumps (sigma' would carry a delta) is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import mpmath
import sympy as sp

from .activations import Activation, ActivationError
from .expectations import mp_expectation
from .gauss import Integrand, Number, gaussian_mp
from .notation import z
from .taylor import local_at_zero, smooth_pieces

FINAL_DPS = 30


@dataclass(frozen=True)
class _Piece:
    lo: sp.Expr  # bound in z (may be -oo)
    hi: sp.Expr
    f: Callable[[Number], Number]  # sigma, mpmath
    df: Callable[[Number], Number]  # sigma', mpmath
    f_fast: Callable[[float], float]  # sigma, math (double precision)
    df_fast: Callable[[float], float]  # sigma', math


@cache
def _numeric(act: Activation) -> tuple[_Piece, ...]:
    """sigma and sigma' of each piece as mpmath and as double-precision callables."""
    out = []
    for lo, hi, expr in smooth_pieces(act):
        d = sp.diff(expr, z)
        fns = [sp.lambdify(z, e, mod) for mod in ("mpmath", "math") for e in (expr, d)]
        out.append(_Piece(lo, hi, *fns))
    return tuple(out)


def pair_mp(act: Activation, kernel: Number) -> tuple[Number, Number]:
    """(<sigma'^2>_K, <z sigma sigma'>_K) by mpmath.quad at the working precision."""

    def pair(piece: _Piece) -> Integrand:
        def integrand(x: Number, t: Number) -> Number:
            f, d = piece.f(t), piece.df(t)
            return mpmath.mpc(d * d, t * f * d)

        return integrand

    total = gaussian_mp([(p.lo, p.hi, pair(p)) for p in _numeric(act)], kernel)
    return total.real, total.imag


def pair_fast(act: Activation, kernel: float) -> tuple[float, float]:
    """(<sigma'^2>_K, <z sigma sigma'>_K) by mpmath.fp.quad in double precision (the scan)."""

    def pair(piece: _Piece) -> Integrand:
        def integrand(x: float, t: float) -> complex:
            try:
                f, d = float(piece.f_fast(t)), float(piece.df_fast(t))
            except (OverflowError, ZeroDivisionError, ValueError):  # e.g. exp(-z) at z = -1000
                with mpmath.workdps(15):
                    f, d = float(piece.f(mpmath.mpf(t))), float(piece.df(mpmath.mpf(t)))
            return complex(d * d, t * f * d)

        return integrand

    total = gaussian_mp([(p.lo, p.hi, pair(p)) for p in _numeric(act)], kernel, ctx=mpmath.fp)
    return total.real, total.imag


def _dsigma2(act: Activation, kernel: Number) -> Number:
    """<sigma'(z)^2>_K."""
    return pair_mp(act, kernel)[0]


def _zss(act: Activation, kernel: Number) -> Number:
    """<z sigma(z) sigma'(z)>_K = K d/dK <sigma^2>_K (5.53)."""
    return pair_mp(act, kernel)[1]


def defect(act: Activation, kernel: Number, fast: bool = False) -> Number:
    """D(K) = 1 - 1/R(K) of (5.73): zero exactly where chi_parallel = chi_perp."""
    dsig, zss = pair_fast(act, float(kernel)) if fast else pair_mp(act, kernel)
    return 1 - zss / (kernel * dsig)


def gaussian(act: Activation, kernel: Number, integrand: Callable[[Number, Number, Any], Number]) -> Number:
    """<F(z)>_K = E[F(sqrt(K) x)], x ~ N(0, 1); integrand(x, z, piece) gives F, split at breakpoints."""

    def on(piece: _Piece) -> Integrand:
        return lambda x, t: integrand(x, t, piece)

    return gaussian_mp([(p.lo, p.hi, on(p)) for p in _numeric(act)], kernel)


def at_zero(act: Activation, kind: str) -> Number:
    """K -> 0 limits of g, <sigma'^2> and g' from sigma(0), sigma'(0), sigma''(0)."""
    local = local_at_zero(act)
    if local is None or local[1] is None or (kind == "g1" and local[2] is None):
        raise ActivationError(f"{act.name}: sigma is not smooth enough at z = 0 for the K -> 0 limit")
    s0, s1, s2 = local
    # g(K) = s0^2 + (s1^2 + s0 s2) K + O(K^2): the z^2 coefficient of sigma^2 is s1^2 + s0 s2
    value = {"g": s0**2, "dsigma2": s1**2, "g1": s1**2 + s0 * s2}[kind]
    return mpmath.mpf(sp.N(value, mpmath.mp.dps + 5))


def g(act: Activation, K: Number, dps: int = FINAL_DPS) -> Number:
    """g(K) = <sigma(z)^2>_K (5.5), by mpmath quadrature (K = 0: sigma(0)^2)."""
    if K == 0:
        with mpmath.workdps(dps):
            return +at_zero(act, "g")
    return mp_expectation(act, 1, 0, K, dps=dps)


def chi_perp(act: Activation, K: Number, C_W: Number, dps: int = FINAL_DPS) -> Number:
    """chi_perp(K) = C_W <sigma'(z)^2>_K (5.51)."""
    with mpmath.workdps(dps):
        inner = at_zero(act, "dsigma2") if K == 0 else _dsigma2(act, K)
        return mpmath.mpf(C_W) * inner


def chi_parallel(act: Activation, K: Number, C_W: Number, dps: int = FINAL_DPS) -> Number:
    """chi_parallel(K) = C_W g'(K) = (C_W / K) <z sigma'(z) sigma(z)>_K (5.50)."""
    with mpmath.workdps(dps):
        if K == 0:
            return mpmath.mpf(C_W) * at_zero(act, "g1")
        k = mpmath.mpf(K)
        return mpmath.mpf(C_W) * _zss(act, k) / k
