"""The single-input layer-to-layer recursion to any order in 1/n (DESIGN section 2).

Given the metric ``G(l) = g``, the next metric is ``G(l+1) = C_b + C_W X`` with
``X = mean_j sigma(z_j)^2`` over ``n_l`` iid ``z_j ~ N(0, g)``. The conditional cumulants of X are
``n_l^(1-m) s_m(g)``, so the cumulant generating function of X is

    log E_G exp( sum_m t^m/m! n_l^(1-m) s_m(K + Delta) ),   Delta = G(l) - K.

Expanding ``s_m`` in Delta, averaging with the cumulants of G(l) and taking the logarithm, all
truncated at ``1/n^p``, gives the cumulants of X and hence of G(l+1). The expansion variable is
``delta = 1/n_l``; the state of layer l is in powers of ``1/n_{l-1} = r delta`` with
``r = n_l/n_{l-1}``, so width ratios appear as powers of r.

Public entry: :func:`derive_step`, memoised in memory (a derivation takes 0.02-0.3 s at orders 3-5).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from functools import cache
from math import comb, factorial

import sympy as sp
from sympy.polys.domains import QQ
from sympy.polys.rings import ring as make_ring

from . import notation as nt
from .errors import UserError
from .series import Series, Truncation, compose_log1p, times_polynomial


def state_keys(order: int) -> list[tuple[int, int]]:
    """Every (m, k) of the order-p state: m = 1..p+1, k = m-1..p."""
    return [(m, k) for m in range(1, order + 2) for k in range(m - 1, order + 1)]


def cumulant_derivatives(order: int) -> list[tuple[int, int]]:
    """Every (m, j) with s_m^(j) needed at order p: a t^m term carries delta^(m-1), and the
    average of Delta^j is at least of order delta^ceil(j/2), so j <= 2(p + 1 - m)."""
    return [(m, j) for m in range(1, order + 2) for j in range(0, 2 * (order + 1 - m) + 1)]


def moment_derivatives(order: int) -> list[tuple[int, int]]:
    """Every (a, i) with d^i/dK^i <sigma^(2a)>_K needed at order p (same bound as above)."""
    return [(a, i) for a in range(1, order + 2) for i in range(0, 2 * (order + 1 - a) + 1)]


@dataclass(frozen=True)
class StepDerivation:
    """One step l -> l+1 at order p, symbolic in the activation.

    ``new_state[(m, k)]`` is the layer-(l+1) coefficient ``c[m][k]`` as a polynomial in the
    layer-l coefficients (:func:`notation.c`), the width ratio ``r``, the hyperparameters and the
    cumulant derivatives ``s_m^(j)`` (:func:`notation.s`). ``cumulants[(m, j)]`` expresses those
    through the moment derivatives ``mu_a^(i) = d^i/dK^i <sigma^(2a)>_K`` (:func:`notation.mu`).
    """

    order: int
    renormalized: bool
    new_state: dict[tuple[int, int], sp.Expr]
    cumulants: dict[tuple[int, int], sp.Expr] = field(repr=False)

    @property
    def state_keys(self) -> list[tuple[int, int]]:
        return state_keys(self.order)

    @property
    def moments(self) -> list[tuple[int, int]]:
        return moment_derivatives(self.order)

    def latex(self) -> str:
        """The recursion as an amsmath align environment, in the book's notation."""
        from .latex import recursion_align

        return recursion_align(self)

    def _repr_latex_(self) -> str:
        return "$$" + self.latex().replace("align", "aligned") + "$$"


def _cumulants_from_moments(order: int) -> dict[tuple[int, int], sp.Expr]:
    """s_m^(j) in terms of mu_a^(i): moment-to-cumulant recursion, then d/dK by the chain rule
    d mu_a^(i)/dK = mu_a^(i+1)."""
    top = order + 1
    base: dict[int, sp.Expr] = {}
    for m in range(1, top + 1):
        expr = nt.mu(m, 0) - sum((comb(m - 1, i - 1) * base[i] * nt.mu(m - i, 0) for i in range(1, m)), sp.Integer(0))
        base[m] = sp.expand(expr)

    def d_dK(expr: sp.Expr) -> sp.Expr:
        out = sp.Integer(0)
        for sym in expr.free_symbols:
            _, a, i = sym.name.split("_")
            out += sp.diff(expr, sym) * nt.mu(int(a), int(i) + 1)
        return sp.expand(out)

    result: dict[tuple[int, int], sp.Expr] = {}
    for m, j in cumulant_derivatives(order):
        expr = base[m]
        for _ in range(j):
            expr = d_dK(expr)
        result[(m, j)] = expr
    return result


@cache
def derive_step(order: int, renormalized: bool = False) -> StepDerivation:
    """Derive the order-``order`` recursion (memoised in memory).

    ``renormalized`` lets the hyperparameters carry 1/n_l pieces, ``C = sum_k C^{k} / n_l^k``
    (book 5.138-5.139), with symbols :func:`notation.hyper`.
    """
    if not isinstance(order, int) or order < 0:
        raise UserError(f"order must be a non-negative integer, got {order!r}")
    p = order
    top = p + 1
    t, d = sp.symbols("t delta")
    s_syms = [nt.s(m, j) for m, j in cumulant_derivatives(p)]
    c_syms = [nt.c(m, k) for m, k in state_keys(p) if (m, k) != (1, 0)]
    h_syms = [nt.hyper(name, k) for name in ("C_b", "C_W") for k in range(p + 1)] if renormalized else [nt.C_b, nt.C_W]
    ring, *gens = make_ring([t, d, nt.r, *s_syms, *c_syms, *h_syms], QQ)
    tg, dg, rg = gens[0], gens[1], gens[2]
    sym_gen = dict(zip([t, d, nt.r, *s_syms, *c_syms, *h_syms], gens))
    trunc = Truncation(t_max=top, delta_max=p)

    def series(poly) -> Series:
        """Split a ring element into the (t, delta) graded pieces."""
        terms: dict[tuple[int, int], object] = {}
        for monom, coeff in poly.terms():
            key = (monom[0], monom[1])
            rest = ring({(0, 0) + monom[2:]: coeff})
            terms[key] = terms.get(key, ring.zero) + rest
        return Series(terms, trunc, ring.zero)

    # Cumulants of Delta = G(l) - K, in powers of delta: 1/n_{l-1}^k = r^k delta^k.
    kappa_delta: dict[int, Series] = {}
    for m in range(1, top + 1):
        poly = ring.zero
        for k in range(max(m - 1, 1), p + 1):
            poly += sym_gen[nt.c(m, k)] * rg**k * dg**k
        kappa_delta[m] = series(poly)

    # Raw moments of Delta from its cumulants: M_j = sum_i C(j-1, i-1) kappa_i M_{j-i}.
    max_j = 2 * p
    moments: list[Series] = [Series.constant(ring.one, trunc)]
    for j in range(1, max_j + 1):
        acc = Series({}, trunc, ring.zero)
        for i in range(1, min(j, top) + 1):
            acc = acc + (kappa_delta[i] * moments[j - i]).scale(comb(j - 1, i - 1))
        moments.append(acc)

    # F(Delta) = sum_{m,j} t^m/m! delta^(m-1) s_m^(j) Delta^j / j!, split into j = 0 and j >= 1.
    f0 = ring.zero
    f_delta: dict[int, Series] = {}
    for m, j in cumulant_derivatives(p):
        term = sym_gen[nt.s(m, j)] * tg**m * dg ** (m - 1) * QQ(1, factorial(m) * factorial(j))
        if j == 0:
            f0 += term
        else:
            f_delta[j] = f_delta[j] + series(term) if j in f_delta else series(term)

    def least_order(j: int) -> int:
        return (j + 1) // 2

    # E[exp(F_Delta)] - 1 = sum_q E[F_Delta^q] / q!
    u = Series({}, trunc, ring.zero)
    if f_delta:
        power: dict[int, Series] = {0: Series.constant(ring.one, trunc)}
        for q in range(1, top + 1):
            power = times_polynomial(power, f_delta, least_order)
            if not power:
                break
            expect = Series({}, trunc, ring.zero)
            for j, coeff in power.items():
                if j <= max_j:
                    expect = expect + coeff * moments[j]
            u = u + expect.scale(Fraction(1, factorial(q)))
    cgf = series(f0) + (compose_log1p(u) if u.terms else u)

    # Cumulants of G(l+1): kappa_1 = C_b + C_W kappa_1(X), kappa_m = C_W^m kappa_m(X).
    if renormalized:
        cw = series(sum((sym_gen[nt.hyper("C_W", k)] * dg**k for k in range(p + 1)), ring.zero))
        cb = series(sum((sym_gen[nt.hyper("C_b", k)] * dg**k for k in range(p + 1)), ring.zero))
    else:
        cw = Series.constant(sym_gen[nt.C_W], trunc)
        cb = Series.constant(sym_gen[nt.C_b], trunc)
    new_state: dict[tuple[int, int], sp.Expr] = {}
    cw_power = Series.constant(ring.one, trunc)
    for m in range(1, top + 1):
        cw_power = cw_power * cw
        kappa_x = Series({(0, b): v * factorial(m) for (a, b), v in cgf.terms.items() if a == m}, trunc, ring.zero)
        kappa_g = cw_power * kappa_x
        if m == 1:
            kappa_g = kappa_g + cb
        for k in range(m - 1, p + 1):
            new_state[(m, k)] = kappa_g.coefficient(0, k).as_expr()
    return StepDerivation(p, renormalized, new_state, _cumulants_from_moments(p))
