"""Gaussian expectations <sigma^(2a)>_K and their K-derivatives (DESIGN section 3).

Every activation-specific number in the flow is ``mu_a^(i)(K) = d^i/dK^i <sigma(z)^(2a)>_K``.
By the heat equation, ``d/dK <F>_K = <F w_1>_K`` with ``w_i = He_{2i}(z/sqrt(K)) / (2K)^i``
(probabilists' Hermite polynomials), so no derivative of sigma is ever taken and kinks are harmless.

Exact rules are tried first, in this order, for the whole of ``<sigma^(2a)>_K``:

1. piecewise polynomial sigma (linear, ReLU, leaky ReLU, abs, hard tanh): truncated Gaussian
   moments on each piece, ``J_q(b) = int_b^oo z^q phi_K``, by ``J_q = (q-1) K J_{q-2} + K b^(q-1) phi_K(b)``;
2. sums of ``z^q exp(w z)`` on the whole line (sin, cos, sinh, cosh, exp): the characteristic
   function, ``<z^q e^(w z)>_K = d^q/dw^q exp(w^2 K / 2)``;
3. ``z^q (alpha + beta erf(gamma z))`` for a = 1 (erf, GELU): the arcsin identity
   ``<erf(g z)^2>_K = (2/pi) asin(2 g^2 K / (1 + 2 g^2 K))`` and Stein's lemma in heat-equation form
   ``<z^2 f>_K = (K + 2 K^2 d/dK) <f>_K``.

What they do not reach is left to quadrature in the generated code, recorded as such: the
trapezoid rule in ``x = z/sqrt(K)`` for smooth sigma (spectrally accurate for analytic integrands,
its spacing calibrated here against mpmath), Gauss-Legendre on each piece for piecewise sigma.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import mpmath
import sympy as sp

from .activations import Activation, Piece
from .gauss import Number, gaussian_mp
from .notation import K, z
from .stability import exponential_terms


@dataclass(frozen=True)
class Expectation:
    """How mu_a^(i) is computed: a closed form in K (and parameters), or quadrature."""

    a: int
    i: int
    path: str  # "exact" or "quadrature"
    rule: str  # which rule produced it
    expr: sp.Expr | None  # closed form when exact

    @property
    def exact(self) -> bool:
        return self.path == "exact"


def hermite_weight(i: int) -> sp.Expr:
    """w_i(z, K) = phi_K^{-1} d^i phi_K / dK^i = He_{2i}(z/sqrt K) / (2K)^i."""
    x = sp.Symbol("x")
    he = sp.hermite_prob(2 * i, x)
    return sp.expand(he.subs(x, z / sp.sqrt(K)) / (2 * K) ** i)


# ---------------------------------------------------------------- rule 1: piecewise polynomial


def _phi(b: sp.Expr) -> sp.Expr:
    return sp.exp(-(b**2) / (2 * K)) / sp.sqrt(2 * sp.pi * K)


def _tail_moment(q: int, b: sp.Expr) -> sp.Expr:
    """J_q(b) = int_b^oo z^q phi_K(z) dz for b finite or -oo."""
    if b == -sp.oo:
        return sp.Integer(0) if q % 2 else sp.factorial2(q - 1) * K ** sp.Rational(q, 2)
    if q == 0:
        return sp.erfc(b / sp.sqrt(2 * K)) / 2
    if q == 1:
        return K * _phi(b)
    return (q - 1) * K * _tail_moment(q - 2, b) + K * b ** (q - 1) * _phi(b)


def _interval_moment(q: int, lo: sp.Expr, hi: sp.Expr) -> sp.Expr:
    upper = sp.Integer(0) if hi == sp.oo else _tail_moment(q, hi)
    return _tail_moment(q, lo) - upper


def _polynomial_pieces(pieces: tuple[Piece, ...], power: int) -> sp.Expr | None:
    total = sp.Integer(0)
    for piece in pieces:
        if not piece.expr.is_polynomial(z):  # decided on the tree: expanding sigma'^2 of tanh(tanh(...)) takes minutes
            return None
        integrand = sp.expand(piece.expr**power)
        if not integrand.is_polynomial(z):
            return None
        poly = sp.Poly(integrand, z)
        for (q,), coeff in poly.terms():
            total += coeff * _interval_moment(q, piece.lo, piece.hi)
    return total


# ---------------------------------------------------------------- rule 2: characteristic function


_EXPONENTIALS = (sp.exp, sp.sin, sp.cos, sp.sinh, sp.cosh)


def exponential_shaped(expr: sp.Expr) -> bool:
    """Whether ``expr`` is built from numbers and z by sums, products and non-negative integer powers
    of z and of exp, sin, cos, sinh, cosh of polynomials of degree <= 2 in z: the only expressions that
    expand to sums of z^q exp(a z^2 + w z). tanh(tanh(z)), say, is refused here in microseconds
    instead of after minutes of expansion."""
    if expr.is_Number or expr == z or not expr.has(z):
        return True
    if expr.is_Add or expr.is_Mul:
        return all(exponential_shaped(a) for a in expr.args)
    if expr.is_Pow:
        return bool(expr.exp.is_Integer and expr.exp >= 0) and exponential_shaped(expr.base)
    if isinstance(expr, _EXPONENTIALS):
        arg = expr.args[0]
        return bool(arg.is_polynomial(z) and sp.degree(arg, z) <= 2)
    return False


def _exponential_sum(expr: sp.Expr) -> sp.Expr | None:
    """<expr>_K for expr a sum of c z^q exp(a z^2 + w z) on the whole line, else None.

    <z^q e^(a z^2 + w z)>_K = (1 - 2aK)^(-1/2) d^q/dw^q exp(w^2 K'/2), K' = K/(1 - 2aK): a Gaussian
    factor only rescales the variance (where 2aK >= 1 the integral diverges and the form is not real).
    """
    if not exponential_shaped(expr):  # decided on the tree, before any expansion can blow up
        return None
    w = sp.Symbol("w")
    expanded = sp.expand(sp.powsimp(sp.expand(expr.rewrite(sp.exp))))
    total = sp.Integer(0)
    for term in sp.Add.make_args(expanded):
        coeff, rest = term.as_independent(z, as_Add=False)
        q, rate, curvature = 0, sp.Integer(0), sp.Integer(0)
        for factor in sp.Mul.make_args(sp.powsimp(rest)):
            base, exponent = factor.as_base_exp()
            if factor == 1:
                continue
            if base == z and exponent.is_Integer and exponent > 0:
                q += int(exponent)
            elif isinstance(factor, sp.exp) or base == sp.E:
                arg = sp.expand(factor.args[0] if isinstance(factor, sp.exp) else exponent)
                if not arg.is_polynomial(z) or sp.degree(arg, z) > 2:
                    return None
                poly = sp.Poly(arg, z)
                quad, slope = poly.coeff_monomial(z**2), poly.coeff_monomial(z)
                coeff *= sp.exp(poly.coeff_monomial(1))
                rate += slope
                curvature += quad
            else:
                return None
        if curvature == 0:
            total += coeff * sp.diff(sp.exp(w**2 * K / 2), w, q).subs(w, rate)
        else:
            stretch = 1 - 2 * curvature * K
            inner = sp.diff(sp.exp(w**2 * K / (2 * stretch)), w, q).subs(w, rate)
            total += coeff * inner / sp.sqrt(stretch)
    result = sp.expand(sp.expand_complex(total)) if total.has(sp.I) else total
    return sp.simplify(result) if not result.has(sp.I) else None


# ---------------------------------------------------------------- rule 3: erf and GELU, a = 1


def _stein(expectation: sp.Expr, times: int) -> sp.Expr:
    """<z^(2 times) f>_K from <f>_K, by <z^2 f>_K = K <f>_K + 2 K^2 d/dK <f>_K."""
    for _ in range(times):
        expectation = K * expectation + 2 * K**2 * sp.diff(expectation, K)
    return expectation


def _erf_square(expr: sp.Expr) -> sp.Expr | None:
    """<expr^2>_K for expr = z^q (alpha + beta erf(gamma z)), else None."""
    if any(not isinstance(f, sp.erf) for f in expr.atoms(sp.Function)):  # on the tree, before expanding
        return None
    alpha, beta, gamma = (sp.Wild(n, exclude=[z]) for n in ("alpha", "beta", "gamma"))
    q = 0
    coeff, body = sp.factor_terms(sp.expand(expr)).as_independent(z, as_Add=False)
    factors = []
    for f in sp.Mul.make_args(body):
        if f == z:
            q += 1
        elif f.is_Pow and f.base == z and f.exp.is_Integer and f.exp > 0:
            q += int(f.exp)
        else:
            factors.append(f)
    inner = sp.expand(sp.Mul(*factors))
    match = inner.match(alpha + beta * sp.erf(gamma * z))
    if match is None or not sp.expand(inner - (match[alpha] + match[beta] * sp.erf(match[gamma] * z))) == 0:
        return None
    al, be, ga = coeff * match[alpha], coeff * match[beta], match[gamma]
    # sigma^2 = z^(2q) (al^2 + 2 al be erf + be^2 erf^2); the cross term is odd, its mean zero.
    erf2 = 2 / sp.pi * sp.asin(2 * ga**2 * K / (1 + 2 * ga**2 * K))
    return _stein(al**2 + be**2 * erf2, q)


def _tidy_roots(expr: sp.Expr) -> sp.Expr:
    """Expand what sits under square roots: d/dK asin(x) leaves sqrt(1 - x^2) as, e.g.,
    sqrt(-K^2 + (K + 1)^2), which is sqrt(2K + 1)."""
    return expr.replace(
        lambda e: e.is_Pow and e.exp in (sp.Rational(1, 2), -sp.Rational(1, 2), sp.Rational(3, 2), -sp.Rational(3, 2)),
        lambda e: sp.Pow(sp.factor(sp.expand(e.base)), e.exp),
    )


# ---------------------------------------------------------------- dispatch


@cache
def closed_form(act: Activation, a: int) -> tuple[str, sp.Expr] | None:
    """(rule, <sigma^(2a)>_K) if an exact rule reaches it, else None."""
    pieces = act.pieces
    poly = _polynomial_pieces(pieces, 2 * a)
    if poly is not None:
        rule = "Isserlis (Gaussian moments)" if len(pieces) == 1 else "truncated Gaussian moments per piece"
        return rule, sp.simplify(poly)
    if len(pieces) == 1:
        expr = pieces[0].expr
        char = _exponential_sum(expr ** (2 * a))
        if char is not None:
            return "characteristic function", exponential_terms(char)
        if a == 1:
            erf = _erf_square(expr)
            if erf is not None:
                return "arcsin identity with Stein's lemma", _tidy_roots(sp.simplify(erf))
    return None


def expectations(act: Activation, pairs: list[tuple[int, int]]) -> dict[tuple[int, int], Expectation]:
    """How each mu_a^(i) in ``pairs`` is computed for ``act``."""
    out: dict[tuple[int, int], Expectation] = {}
    for a, i in pairs:
        found = closed_form(act, a)
        if found is None:
            rule = (
                "Gauss-Legendre on each piece between breakpoints"
                if act.is_piecewise
                else "trapezoid rule in z/sqrt(K)"
            )
            out[(a, i)] = Expectation(a, i, "quadrature", rule, None)
        else:
            rule, expr = found
            out[(a, i)] = Expectation(a, i, "exact", rule, sp.diff(expr, K, i) if i else expr)
    return out


def perp_expectations(act: Activation, max_i: int = 1) -> dict[int, Expectation]:
    """How d^i/dK^i <sigma'(z)^2>_K is computed (i <= max_i): chi_perp = C_W <sigma'^2>_K and
    h = (C_W/2) d/dK <sigma'^2>_K (book 5.51-5.52). Same rules, applied to sigma'."""
    found = expectations(act.derivative(), [(1, i) for i in range(max_i + 1)])
    return {i: found[(1, i)] for i in range(max_i + 1)}


# ---------------------------------------------------------------- high-precision reference


@cache
def _mp_pieces(act: Activation, subs: tuple) -> tuple:
    """(lo, hi, sigma as an mpmath callable) per piece, lambdified once per activation."""
    values = dict(subs)
    return tuple((p.lo, p.hi, sp.lambdify(z, p.expr.subs(values), "mpmath")) for p in act.pieces)


def mp_expectation(
    act: Activation, a: int, i: int, kernel: Number, params: dict[str, Number] | None = None, dps: int = 30
) -> Number:
    """mu_a^(i)(K) by mpmath quadrature at ``dps`` (+10 guard) digits, split at every breakpoint.

    Independent of the exact rules and of the generated quadrature: the oracle of the tests.
    """
    subs = {sym: val for sym, val in act.params}
    if params:
        subs.update({sym: sp.nsimplify(params[sym.name]) for sym, _ in act.params if sym.name in params})
    pieces = _mp_pieces(act, tuple(sorted(subs.items(), key=lambda kv: kv[0].name)))
    with mpmath.workdps(dps + 10):
        power = [(lo, hi, lambda x, t, f=f: f(t) ** (2 * a)) for lo, hi, f in pieces]
        return +gaussian_mp(power, mpmath.mpf(kernel), derivative=i)
