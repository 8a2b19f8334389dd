"""Criticality and universality classes of an activation (book chapter 5, section 5.3).

For a candidate fixed point K* > 0 the hyperparameters (5.71)-(5.72),
``C_W = 1 / <sigma'^2>_{K*}`` and ``C_b = K* - <sigma^2>_{K*} / <sigma'^2>_{K*}``, give
``chi_perp = 1``; ``chi_parallel = 1`` is then the hyperparameter-free condition (5.73),
``R(K) = 2 K^2 <sigma'^2>_K / <sigma^2 (z^2 - K)>_K = 1``. By (5.53),
``<sigma^2 (z^2 - K)>_K = 2 K^2 d/dK <sigma^2>_K = 2 K <z sigma sigma'>_K``, so the scan uses
``D(K) = 1 - 1/R(K) = 1 - <z sigma sigma'>_K / (K <sigma'^2>_K)``, which has the same zeros and
no poles. K* = 0 is handled by the Taylor data at z = 0 (5.80)-(5.90), and the scale-invariant
class (every piece a*z) symbolically (5.59)-(5.67).

Expectations are Gaussian integrals in ``x = z / sqrt(K)`` by ``gauss.gaussian_mp``, split at every
breakpoint and at 0; sigma' is the sympy derivative of each smooth piece, so a sigma that jumps
at a breakpoint (whose sigma' would carry a delta function) is refused. The scan over
K in [1e-4, 1e3] runs in double precision (``mpmath.fp.quad``, about 1e-14 in D); each sign change
is then refined at 25 digits and the hyperparameters are evaluated at 30
(``pdlt.derive.expectations.mp_expectation`` for <sigma^2>_K and its K-derivatives).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import mpmath
import sympy as sp

from .activations import Activation
from .expectations import mp_expectation
from .notation import z
from .susceptibilities import (
    FINAL_DPS,
    Number,
    chi_parallel,
    chi_perp,
    defect,
    g,
    gaussian,
    pair_mp,
)
from .taylor import TaylorData, local_at_zero, smooth_pieces, taylor_data

__all__ = [
    "CriticalPoint",
    "CriticalityReport",
    "TaylorData",
    "chi_parallel",
    "chi_perp",
    "critical_points",
    "g",
    "taylor_data",
]

K_MIN, K_MAX, N_SCAN = 1e-4, 1e3, 80
REFINE_DPS = 25
ZERO_TOL = 1e-10  # |D(K)| below this counts as zero in the double-precision scan (no sign)
REL_TOL = 1e-13  # relative width of the final root bracket


# ---------------------------------------------------------------- data


@dataclass(frozen=True)
class CriticalPoint:
    """A solution of chi_parallel = chi_perp = 1 (K_star None for a line of fixed points).

    ``minus_a1`` is the book's stability coefficient: (-a_1) (5.86) at K* = 0, (-tilde a_1)
    (5.102) at K* > 0, where K' - K* = Delta K + tilde a_1 Delta K^2 + ...
    """

    C_b: float
    C_W: float
    K_star: float | None
    chi_parallel: float
    chi_perp: float
    stable: bool
    note: str = ""
    minus_a1: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "C_b": self.C_b,
            "C_W": self.C_W,
            "K_star": self.K_star,
            "chi_parallel": self.chi_parallel,
            "chi_perp": self.chi_perp,
            "stable": self.stable,
            "minus_a1": self.minus_a1,
            "note": self.note,
        }


@dataclass(frozen=True)
class CriticalityReport:
    """Universality class, critical points, and the data behind them, of one activation."""

    activation: str
    klass: str  # "scale-invariant", "K*=0", "half-stable" or "none"
    reason: str
    critical_points: tuple[CriticalPoint, ...]
    rejected: tuple[CriticalPoint, ...]
    taylor: TaylorData | None
    exponents: dict[str, float | None] = field(default_factory=dict)
    nu: float | None = None
    nu_exact: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready report."""
        return {
            "activation": self.activation,
            "class": self.klass,
            "reason": self.reason,
            "critical_points": [p.as_dict() for p in self.critical_points],
            "rejected": [p.as_dict() for p in self.rejected],
            "taylor": None if self.taylor is None else self.taylor.as_dict(),
            "exponents": dict(self.exponents),
            "nu": self.nu,
            "nu_exact": self.nu_exact,
        }


# ---------------------------------------------------------------- the scan for K* > 0


@cache
def _scan(act: Activation) -> tuple[tuple[tuple[float, float], ...], tuple[float, float]]:
    """Brackets [K_a, K_b] on a log grid where D(K) changes sign, and the range of R(K) seen."""
    grid = [K_MIN * (K_MAX / K_MIN) ** (i / (N_SCAN - 1)) for i in range(N_SCAN)]
    brackets: list[tuple[float, float]] = []
    last: tuple[float, int] | None = None
    ratios = []
    for k in grid:
        d = float(defect(act, k, fast=True))
        ratios.append(1 / (1 - d) if d != 1 else math.inf)
        if abs(d) < ZERO_TOL:
            continue
        sign = 1 if d > 0 else -1
        if last is not None and sign != last[1]:
            brackets.append((last[0], k))
        last = (k, sign)
    return tuple(brackets), (min(ratios), max(ratios))


def _illinois(
    f: Callable[[Number], Number], a: Number, b: Number, tol: float, fa: Number = None, fb: Number = None
) -> Number:
    """A root of f in the sign-changing bracket [a, b], by the Illinois method, to |b - a| < tol."""
    fa = f(a) if fa is None else fa
    fb = f(b) if fb is None else fb
    for _ in range(200):
        if fb == 0 or abs(b - a) < tol:
            break
        c = b - fb * (b - a) / (fb - fa)
        fc = f(c)
        if fc * fb < 0:
            a, fa = b, fb
        else:
            fa /= 2
        b, fb = c, fc
    return b


def _refine(act: Activation, lo: float, hi: float) -> Number:
    """The root of D in [lo, hi]: Illinois in log K, in double precision, then at REFINE_DPS."""
    t = _illinois(lambda u: defect(act, math.exp(u), fast=True), math.log(lo), math.log(hi), 1e-10)
    with mpmath.workdps(REFINE_DPS):
        f = lambda u: defect(act, mpmath.exp(u))  # noqa: E731
        a, b = mpmath.mpf(t) - mpmath.mpf(1e-8), mpmath.mpf(t) + mpmath.mpf(1e-8)
        fa, fb = f(a), f(b)
        if fa * fb > 0:  # the double-precision root was off: start from the scan's bracket
            a, b = mpmath.log(lo), mpmath.log(hi)
            fa, fb = f(a), f(b)
        return mpmath.exp(_illinois(f, a, b, REL_TOL, fa, fb))


def _point_at(act: Activation, kstar: Number) -> CriticalPoint:
    """Hyperparameters (5.71)-(5.72), susceptibilities and (-tilde a_1) at a root K* > 0."""
    with mpmath.workdps(FINAL_DPS):
        k = mpmath.mpf(kstar)
        dsig, zss = pair_mp(act, k)
        c_w = 1 / dsig
        c_b = k - mp_expectation(act, 1, 0, k, dps=FINAL_DPS) * c_w
        minus_a1 = -c_w / 2 * mp_expectation(act, 1, 2, k, dps=FINAL_DPS)  # tilde a_1 = C_W g''/2
        chi_par, chi_per = c_w * zss / k, c_w * dsig  # (5.50), (5.51)
    if c_b < 0:
        note = f"C_b = {float(c_b):.10g} < 0 is unphysical"
    elif minus_a1 > 0:
        note = "half-stable: attracts from above (K > K*), repels from below"
    elif minus_a1 < 0:
        note = "half-stable: attracts from below (K < K*), repels from above"
    else:
        note = "marginal to second order"
    return CriticalPoint(float(c_b), float(c_w), float(k), float(chi_par), float(chi_per), False, note, float(minus_a1))


# ---------------------------------------------------------------- K* = 0


def _small_k_drift(act: Activation, c_w: sp.Expr, kernel: float = 1e-3) -> Number:
    """(C_W g(K) - K)/K^2 at small K from sigma^2 - sigma_1^2 z^2, integrated as one (sigma_0 = 0)."""
    s1sq = sp.N(1 / c_w, FINAL_DPS)
    with mpmath.workdps(FINAL_DPS):
        k = mpmath.mpf(kernel)
        mw = mpmath.mpf(sp.N(c_w, FINAL_DPS))
        gap = gaussian(act, k, lambda x, t, p: p.f(t) ** 2 - mpmath.mpf(s1sq) * t * t)
        return mw * gap / k**2


def _zero_point(act: Activation, taylor: TaylorData | None) -> CriticalPoint | None:
    """The K* = 0 solution of (5.73), accepted or not, or None when (5.73) fails there."""
    local = local_at_zero(act)
    if local is None or local[1] is None or local[1] == 0:
        return None
    s0, s1, s2 = local
    if s0 != 0 and (s2 is None or s2 != 0):
        return None  # R(0+) = s1^2 / (s1^2 + s0 s2) != 1
    c_w = 1 / s1**2
    c_b = -(s0**2) * c_w  # the fixed point K* = 0 needs C_b + C_W sigma_0^2 = 0
    chi_par = float(c_w * (s1**2 + s0 * (s2 or 0)))
    if c_b != 0:
        note = f"C_b = -(sigma_0/sigma_1)^2 = {c_b} < 0 is unphysical"
        return CriticalPoint(float(c_b), float(c_w), 0.0, chi_par, 1.0, False, note)
    if taylor is not None and taylor.a_1 is not None and taylor.a_1 != 0:
        stable = bool(taylor.a_1 < 0)
        note = f"K* = 0, (-a_1) = {-taylor.a_1}: " + ("stable" if stable else "unstable")
        return CriticalPoint(0.0, float(c_w), 0.0, chi_par, 1.0, stable, note, float(-taylor.a_1))
    if taylor is not None and taylor.a_2 is not None and taylor.a_1 == 0 and taylor.a_2 != 0:
        stable = bool(taylor.a_2 < 0)
        verdict = "stable, K ~ 1/sqrt(l)" if stable else "unstable"
        note = f"K* = 0 with a_1 = 0, (-a_2) = {-taylor.a_2}: {verdict}"
        return CriticalPoint(0.0, float(c_w), 0.0, chi_par, 1.0, stable, note, 0.0)
    drift = _small_k_drift(act, c_w)
    stable = bool(drift < 0)
    note = (
        f"K* = 0; sigma is not analytic at 0 (or a_1 = a_2 = 0), so stability is read from "
        f"(C_W g(K) - K)/K^2 = {float(drift):.6g} at K = 1e-3: " + ("stable" if stable else "unstable")
    )
    return CriticalPoint(0.0, float(c_w), 0.0, chi_par, 1.0, stable, note)


# ---------------------------------------------------------------- scale-invariant class


def _scale_invariant(act: Activation) -> tuple[sp.Expr, sp.Expr] | None:
    """(a_+, a_-) if every piece is a*z, else None."""
    slopes = []
    for _, _, expr in smooth_pieces(act):
        a = sp.simplify(expr / z) if expr != 0 else sp.Integer(0)
        if a.has(z):
            return None
        slopes.append(a)
    return slopes[-1], slopes[0]


def _scale_invariant_report(act: Activation, a_plus: sp.Expr, a_minus: sp.Expr) -> CriticalityReport:
    """The line of critical points (0, 1/A_2) and nu = 3 A_4/A_2^2 - 1 (5.67), (5.120)."""
    a2 = (a_plus**2 + a_minus**2) / 2
    if a2 == 0:
        return CriticalityReport(act.name, "none", "sigma is identically zero", (), (), None)
    a4 = (a_plus**4 + a_minus**4) / 2
    nu = sp.nsimplify(sp.simplify(3 * a4 / a2**2 - 1))
    c_w = 1 / a2
    chi_par, chi_per = chi_parallel(act, 1, c_w), chi_perp(act, 1, c_w)
    line = CriticalPoint(
        0.0,
        float(c_w),
        None,
        float(chi_par),
        float(chi_per),
        True,
        f"line of fixed points K* = |x|^2/(n_0 A_2), A_2 = {a2}; chi = A_2 C_W = 1 for every K* "
        "(susceptibilities shown at K = 1)",
    )
    # p_perp: 2 from the finite-angle analysis (5.168), 0 for linear where rho = 0; G{1} = 0 (p_1 None)
    p_perp = 0.0 if a_plus == a_minus else 2.0
    exponents = {"p_0": 0.0, "p_parallel": 0.0, "p_perp": p_perp, "p_V": -1.0, "p_1": None}
    reason = (
        f"sigma = a_+ z (z >= 0), a_- z (z < 0) with (a_+, a_-) = ({a_plus}, {a_minus}): R(K) = 1 identically (5.73)"
    )
    return CriticalityReport(
        act.name, "scale-invariant", reason, (line,), (), taylor_data(act), exponents, float(nu), str(nu)
    )


# ---------------------------------------------------------------- the report


@cache
def critical_points(act: Activation) -> CriticalityReport:
    """All critical points of sigma (at default parameters) and its universality class (5.3.1)."""
    smooth_pieces(act)  # refuse a discontinuous sigma up front
    if all(sp.diff(expr, z) == 0 for _, _, expr in smooth_pieces(act)):
        return CriticalityReport(act.name, "none", "sigma is constant: chi_perp = 0 (5.51)", (), (), None)
    slopes = _scale_invariant(act)
    if slopes is not None:
        return _scale_invariant_report(act, *slopes)
    taylor = taylor_data(act)
    found = [_point_at(act, _refine(act, lo, hi)) for lo, hi in _scan(act)[0]]
    zero = _zero_point(act, taylor)
    if zero is not None:
        found.insert(0, zero)
    accepted = tuple(p for p in found if p.C_b >= 0)
    rejected = tuple(p for p in found if p.C_b < 0)
    positive = [p for p in accepted if p.K_star]
    stable_zero = zero is not None and zero in accepted and zero.stable
    exponents: dict[str, float | None] = {}
    nu = nu_exact = None
    if stable_zero:
        klass = "K*=0"
        reason = "sigma_0 = 0 != sigma_1 (5.89): critical at (C_b, C_W) = (0, 1/sigma_1^2), K* = 0"
        if taylor is not None and taylor.a_1 is not None and taylor.a_1 != 0:
            p_perp = float(taylor.b_1 / taylor.a_1)
            # (5.92), (5.97), (5.99), (5.127), (5.134); p_1 = 0 for the bare NLO metric
            exponents = {"p_0": 1.0, "p_parallel": 2.0, "p_perp": p_perp, "p_V": 1.0, "p_1": 0.0}
            nu, nu_exact = 2 / 3, "2/3"
        else:
            reason += "; a_1 = 0 or sigma is not analytic at 0: (5.92)-(5.134) do not apply"
    elif positive:
        klass = "half-stable"
        where = ", ".join(f"{p.K_star:.10g}" for p in positive)
        reason = f"chi_parallel = chi_perp = 1 at K* = {where} with C_b >= 0 (5.3.4), stable on one side"
        exponents = {"p_DeltaK": 1.0}
    else:
        klass = "none"
        reason = _no_criticality_reason(act, zero, rejected)
    return CriticalityReport(act.name, klass, reason, accepted, rejected, taylor, exponents, nu, nu_exact)


def _no_criticality_reason(act: Activation, zero: CriticalPoint | None, rejected: tuple[CriticalPoint, ...]) -> str:
    """Why no (C_b, C_W) makes sigma critical."""
    r_lo, r_hi = _scan(act)[1]
    scan = (
        f"(5.73) has no root with C_b >= 0 for K* in [{K_MIN:g}, {K_MAX:g}] "
        f"(R(K) = 2K^2<sigma'^2>/<sigma^2(z^2-K)> ranges over [{r_lo:.6g}, {r_hi:.6g}] there)"
    )
    if zero is not None and zero.C_b < 0:
        return f"(5.73) holds only at K* = 0, where {zero.note}; {scan}"
    if zero is not None:
        return f"the only critical point, K* = 0, is unstable ({zero.note}); {scan}"
    local = local_at_zero(act)
    parts = [scan]
    if local is not None and local[1] == 0:
        parts.append("sigma'(0) = 0, so C_W = 1/sigma_1^2 diverges at K* = 0 (5.79)")
    elif local is not None and local[0] != 0:
        parts.append("and sigma(0) != 0 with sigma''(0) != 0: R(0+) != 1 (5.76)")
    if rejected:
        parts.append(f"{len(rejected)} root(s) rejected for C_b < 0")
    return "; ".join(parts)
