"""Exact finite-width moments of the stochastic metric for polynomial activations: an oracle.

For a polynomial sigma with rational coefficients nothing needs expanding. Given G(l) = g, the
layer-l preactivations z_j are iid N(0, g), so
Y_j = sigma(z_j)^2 has moments <sigma^(2s)>_g that are polynomials in g (Isserlis:
<z^q>_g = (q-1)!! g^(q/2)). The mean X of n_l iid copies has cumulants
kappa_r(X) = kappa_r(Y) / n_l^(r-1), and G(l+1) = C_b + C_W X. So every raw moment
E[G(l+1)^m | G(l) = g] is a polynomial in g whose coefficients are polynomials in 1/n_l, and
E[G(l+1)^m] is a linear combination of the raw moments E[G(l)^i] of the layer below: layer by
layer from the deterministic G(1), the exact moments of G(L) are polynomials in the inverse widths.

This shares nothing with the engine under test (no cumulant generating function, no Taylor
expansion in Delta, no series truncation by order, no sympy): plain integers and Fractions. With
the hidden widths n_l = n / alpha_l the moments are polynomials in eps = 1/n; the order-p state
coefficient c[m][k] of layer L is alpha_{L-1}^k times the eps^k coefficient of kappa_m(G(L)).
Arithmetic may be truncated at eps^p (``order``), which is exact through eps^p because nothing is
ever divided by eps; ``order=None`` keeps every power (the exact rational function of the widths).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from math import comb

Series = list[Fraction]  # coefficients of eps^0, eps^1, ... (a polynomial in eps)
GPoly = dict[int, Series]  # power of g -> its coefficient, a polynomial in eps


def _add(a: Series, b: Series, top: int | None) -> Series:
    out = [Fraction(0)] * max(len(a), len(b))
    for i, v in enumerate(a):
        out[i] += v
    for i, v in enumerate(b):
        out[i] += v
    return out if top is None else out[: top + 1]


def _mul(a: Series, b: Series, top: int | None) -> Series:
    if not a or not b:
        return []
    size = len(a) + len(b) - 1 if top is None else min(len(a) + len(b) - 1, top + 1)
    out = [Fraction(0)] * size
    for i, x in enumerate(a):
        if x == 0:
            continue
        for j, y in enumerate(b[: size - i]):
            out[i + j] += x * y
    return out


def _scale(a: Series, factor: Fraction) -> Series:
    return [factor * v for v in a]


def _poly_power(coeffs: dict[int, Fraction], power: int) -> dict[int, Fraction]:
    """The polynomial sum_q coeffs[q] z^q raised to ``power`` (exact)."""
    out = {0: Fraction(1)}
    for _ in range(power):
        nxt: dict[int, Fraction] = {}
        for q1, v1 in out.items():
            for q2, v2 in coeffs.items():
                nxt[q1 + q2] = nxt.get(q1 + q2, Fraction(0)) + v1 * v2
        out = nxt
    return out


def _double_factorial(q: int) -> int:
    out = 1
    while q > 1:
        out *= q
        q -= 2
    return out


def gaussian_moment_polynomial(sigma: dict[int, Fraction], power: int) -> dict[int, Fraction]:
    """<sigma(z)^power>_g as a polynomial in g (power of g -> rational coefficient), by Isserlis."""
    out: dict[int, Fraction] = {}
    for q, v in _poly_power(sigma, power).items():
        if q % 2 == 0 and v != 0:
            out[q // 2] = out.get(q // 2, Fraction(0)) + v * _double_factorial(q - 1)
    return out


def derivative_at(poly: dict[int, Fraction], order: int, g: Fraction) -> Fraction:
    """d^order/dg^order of a polynomial in g, at g."""
    total = Fraction(0)
    for i, v in poly.items():
        if i >= order:
            falling = 1
            for t in range(order):
                falling *= i - t
            total += v * falling * g ** (i - order)
    return total


def _gpoly_mul(a: GPoly, b: GPoly, top: int | None) -> GPoly:
    out: GPoly = {}
    for i, x in a.items():
        for j, y in b.items():
            prod = _mul(x, y, top)
            out[i + j] = _add(out.get(i + j, []), prod, top)
    return out


def _gpoly_add(a: GPoly, b: GPoly, top: int | None) -> GPoly:
    out = dict(a)
    for i, v in b.items():
        out[i] = _add(out.get(i, []), v, top)
    return out


def conditional_moments(
    sigma: dict[int, Fraction],
    count: int,
    e: Fraction,
    C_b: Series,
    C_W: Series,
    top: int | None,
    at: Fraction | None = None,
) -> list[GPoly]:
    """E[G(l+1)^m | G(l) = g] for m = 0..count as polynomials in g with eps-series coefficients.

    ``e`` is n_l as a multiple of 1/eps (1/n_l = e * eps); ``C_b``, ``C_W`` are eps-series
    (constants, or the book's C = C{0} + C{1}/n_l + ...: coefficient k multiplies e^k eps^k).
    Raw moments of G = C_b + C_W X come from the cumulants of X (kappa_r(X) = (e eps)^(r-1)
    kappa_r(Y)) by M_m = sum_i C(m-1, i-1) kappa_i M_{m-i}. With ``at`` the polynomials are
    evaluated at g = ``at`` (a deterministic layer below) and returned as constants in g.
    """
    rmax = count if top is None else min(count, top + 1)  # kappa_r(X) = O(eps^(r-1))
    raw_y = [gaussian_moment_polynomial(sigma, 2 * s) for s in range(rmax + 1)]  # E[Y^s | g]
    if at is not None:
        raw_y = [{0: sum((v * at**p for p, v in poly.items()), Fraction(0))} for poly in raw_y]
    kappa_y: list[dict[int, Fraction]] = [{}]
    for r in range(1, rmax + 1):
        acc = dict(raw_y[r])
        for i in range(1, r):
            for pi, vi in kappa_y[i].items():
                for pj, vj in raw_y[r - i].items():
                    acc[pi + pj] = acc.get(pi + pj, Fraction(0)) - comb(r - 1, i - 1) * vi * vj
        kappa_y.append({p: v for p, v in acc.items() if v != 0})
    cw = [c * e**k for k, c in enumerate(C_W)]
    cb = [c * e**k for k, c in enumerate(C_b)]
    kappa_g: list[GPoly] = [{}]
    cw_power: Series = [Fraction(1)]
    for r in range(1, rmax + 1):
        cw_power = _mul(cw_power, cw, top)
        shift = [Fraction(0)] * (r - 1) + [e ** (r - 1)]  # (e eps)^(r-1)
        factor = _mul(cw_power, shift, top)
        poly: GPoly = {p: _scale(factor, v) for p, v in kappa_y[r].items()}
        if r == 1:
            poly = _gpoly_add(poly, {0: cb}, top)
        kappa_g.append(poly)
    moments: list[GPoly] = [{0: [Fraction(1)]}]
    for m in range(1, count + 1):
        acc: GPoly = {}
        for i in range(1, min(m, rmax) + 1):
            if kappa_g[i]:
                term = _gpoly_mul(kappa_g[i], moments[m - i], top)
                acc = _gpoly_add(acc, {p: _scale(v, Fraction(comb(m - 1, i - 1))) for p, v in term.items()}, top)
        moments.append(acc)
    return moments


def cumulants_from_moments(moments: Sequence[Series], top: int | None) -> list[Series]:
    """kappa_1..kappa_M from raw moments M_0..M_M (eps-series)."""
    kappa: list[Series] = [[]]
    for m in range(1, len(moments)):
        acc = list(moments[m])
        for i in range(1, m):
            acc = _add(acc, _scale(_mul(kappa[i], moments[m - i], top), Fraction(-comb(m - 1, i - 1))), top)
        kappa.append(acc)
    return kappa


def metric_cumulants(
    sigma: dict[int, Fraction],
    alphas: Sequence[Fraction],
    C_b: Series,
    C_W: Series,
    K1: Fraction,
    cumulants: int,
    order: int | None,
) -> list[list[Series]]:
    """kappa_1..kappa_cumulants of G(l) for l = 1..len(alphas)+1, as polynomials in eps = 1/n.

    Hidden widths n_l = n / alphas[l-1]. ``sigma`` maps powers of z to rational coefficients.
    Truncated at eps^order (``None``: exact).
    """
    degree = max(sigma)
    need = [cumulants]
    for _ in alphas:
        need.append(need[-1] * degree)  # E[G(l+1)^m | g] has degree m * deg(sigma) in g
    need.reverse()  # need[l-1]: how many raw moments of G(l) are used
    moments: list[Series] = [[K1**j] for j in range(need[0] + 1)]  # layer 1 is deterministic
    layers = [cumulants_from_moments(moments[: cumulants + 1], order)]
    for l, alpha in enumerate(alphas, start=1):
        below = moments if l > 1 else [[Fraction(1)]]  # layer 1: the moments sit in ``at``
        moments = []
        at = K1 if l == 1 else None
        for poly in conditional_moments(sigma, need[l], Fraction(alpha), C_b, C_W, order, at):
            acc: Series = []
            for i, coeff in poly.items():
                acc = _add(acc, _mul(coeff, below[i], order), order)
            moments.append(acc)
        layers.append(cumulants_from_moments(moments[: cumulants + 1], order))
    return layers
