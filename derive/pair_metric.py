"""The stochastic metric of two inputs to any order in 1/n: the pair sector of kernel matrices (DESIGN §9).

The joint law of ``(z(x_a), z(x_b))`` depends on those two inputs only, so the finite-width mean kernel of N
inputs is N(N-1)/2 independent two-input problems. For one pair the metric is the 3-vector
``G = (G_aa, G_ab, G_bb)``; given layer l, the next one is ``G(l+1) = C_b + C_W X`` with
``X = mean_j Y_j``, ``Y = (sigma_a^2, sigma_a sigma_b, sigma_b^2)`` over ``n_l`` iid draws of
``(z_a, z_b) ~ N(0, G(l))``. The conditional joint cumulants of X are ``n_l^(1-|alpha|) s_alpha(G)``, where
``s_alpha`` is the joint cumulant of Y with multi-index alpha (how often each entry appears), so the
cumulant generating function of X is

    log E_G exp( sum_alpha t^alpha / alpha! n_l^(1-|alpha|) s_alpha(K + Delta) ),   Delta = G(l) - K,

exactly the single-input law of total cumulance (``recursion``) with a vector t and a vector Delta: expand
``s_alpha`` in Delta (Taylor in the three entries), average with the joint cumulants of Delta, take the
logarithm, truncate at 1/n^p. The state of layer l is ``c[gamma][k]``, the 1/n_{l-1}^k part of the joint
cumulant kappa_gamma(G(l)), |gamma| = m = 1..p+1, k = m-1..p; ``c[(0,1,0)][k]`` is the mean kernel's
``G{k}_ab`` and ``c[gamma][1]`` with |gamma| = 2 the two-input four-point vertex. The entries with gamma
along aa only (or bb only) are the single-input flow of one input; the step writes the others.

Everything activation-specific is ``m[p, q, (i, k, j)] = d^i/dK_aa^i d^k/dK_ab^k d^j/dK_bb^j <sigma_a^p
sigma_b^q>`` at the kernel; the joint moments of Y are ``<sigma_a^(2 b0 + b1) sigma_b^(b1 + 2 b2)>``.
Those with q = 0 (p = 0) are the single-input ``d^i/dK^i <sigma^p>`` of input a (b); the runtime sums the
others as Mehler series, in which every metric derivative is a shift of Hermite coefficients (Price's
theorem in series form; no derivative of sigma is ever taken).

Public entries: :func:`derive_pair_step` (memoised), :func:`indices`, :func:`pair_state_keys`, the symbols
:func:`pc`, :func:`pm`, and :func:`pure_moment`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from functools import cache
from itertools import product
from math import comb, factorial, prod

import sympy as sp
from sympy.polys.domains import QQ
from sympy.polys.rings import ring as make_ring

from . import notation as nt
from .errors import UserError
from .series import Series, Truncation, compose_log1p

ENTRIES = ("aa", "ab", "bb")  # the three entries of the pair's metric, in the order of a multi-index
Index = tuple[int, int, int]


@cache
def indices(m: int) -> tuple[Index, ...]:
    """Every multi-index (g_aa, g_ab, g_bb) with g_aa + g_ab + g_bb = m, aa-heaviest first."""
    return tuple((a, b, m - a - b) for a in range(m, -1, -1) for b in range(m - a, -1, -1))


def is_pure(g: Index) -> bool:
    """Along aa only or bb only: a single-input cumulant, not the pair's to compute."""
    return g[1] == 0 and (g[0] == 0 or g[2] == 0)


def pair_state_keys(order: int) -> list[tuple[Index, int]]:
    """Every (gamma, k) of the order-p pair state: |gamma| = m = 1..p+1, k = m-1..p."""
    return [(g, k) for m in range(1, order + 2) for g in indices(m) for k in range(m - 1, order + 1)]


def cumulant_derivatives(order: int) -> list[tuple[Index, Index]]:
    """Every (alpha, beta) with d^beta s_alpha needed at order p: |beta| <= 2 (p + 1 - |alpha|)."""
    return [(a, b) for m in range(1, order + 2) for a in indices(m)
            for j in range(2 * (order + 1 - m) + 1) for b in indices(j)]  # fmt: skip


KAA, KAB, KBB = (sp.Symbol(f"K_{e}", positive=e != "ab", real=True) for e in ENTRIES)
KERNEL = (KAA, KAB, KBB)


@cache
def pc(g: Index, k: int) -> sp.Symbol:
    """State: the 1/n_{l-1}^k part of the joint cumulant kappa_g of (G_aa, G_ab, G_bb)."""
    if sum(g) == 1 and k == 0:
        return KERNEL[g.index(1)]
    return sp.Symbol(f"c_{g[0]}_{g[1]}_{g[2]}_{k}", real=True)


@cache
def ps(alpha: Index, beta: Index) -> sp.Symbol:
    """d^beta of the joint cumulant s_alpha of (sigma_a^2, sigma_a sigma_b, sigma_b^2)."""
    return sp.Symbol("s_{}_{}_{}__{}_{}_{}".format(*alpha, *beta), real=True)


@cache
def pm(p: int, q: int, d: Index) -> sp.Symbol:
    """d^i/dK_aa^i d^k/dK_ab^k d^j/dK_bb^j <sigma_a^p sigma_b^q>, d = (i, k, j)."""
    return sp.Symbol("m_{}_{}__{}_{}_{}".format(p, q, *d), real=True)


def state_index(sym: sp.Symbol) -> Index:
    """gamma of a state symbol (:func:`pc`)."""
    if sym in KERNEL:
        return _unit(KERNEL.index(sym))
    g0, g1, g2, _ = map(int, sym.name[2:].split("_"))
    return (g0, g1, g2)


def pure_moment(sym: sp.Symbol) -> tuple[str, int, int] | None:
    """("a", power, i) or ("b", power, j) for a single-input moment symbol, else None."""
    p, q, i, k, j = _moment_key(sym)
    if q == 0:
        return ("a", p, i)
    if p == 0:
        return ("b", q, j)
    return None


def _moment_key(sym: sp.Symbol) -> tuple[int, int, int, int, int]:
    head, tail = sym.name[2:].split("__")
    p, q = map(int, head.split("_"))
    i, k, j = map(int, tail.split("_"))
    return p, q, i, k, j


def moment_key(sym: sp.Symbol) -> tuple[int, int, Index]:
    p, q, i, k, j = _moment_key(sym)
    return p, q, (i, k, j)


def _add(g: Index, h: Index) -> Index:
    return (g[0] + h[0], g[1] + h[1], g[2] + h[2])


def _sub(g: Index, h: Index) -> Index:
    return (g[0] - h[0], g[1] - h[1], g[2] - h[2])


def _below(g: Index) -> list[Index]:
    """Every nu <= g componentwise."""
    return [tuple(v) for v in product(*(range(x + 1) for x in g))]


def _choose(g: Index, nu: Index) -> int:
    return prod(comb(a, b) for a, b in zip(g, nu))


def _factorial(g: Index) -> int:
    return prod(factorial(x) for x in g)


def _unit(i: int) -> Index:
    return tuple(1 if j == i else 0 for j in range(3))


def _split(g: Index) -> tuple[int, Index]:
    """(i, g - e_i) for the first non-zero entry i of g."""
    i = next(j for j, x in enumerate(g) if x)
    return i, _sub(g, _unit(i))


def joint_cumulants(moment: dict, top: int) -> dict:
    """kappa[g] for 1 <= |g| <= top from raw moments moment[g] (moment[(0,0,0)] = 1), by
    E[Y_i Y^rest] = sum_{nu <= rest} C(rest, nu) kappa[nu + e_i] E[Y^(rest - nu)]."""
    kappa = {}
    for m in range(1, top + 1):
        for g in indices(m):
            i, rest = _split(g)
            acc = moment[g]
            for nu in _below(rest):
                if nu != rest:
                    acc = acc - _choose(rest, nu) * kappa[_add(nu, _unit(i))] * moment[_sub(rest, nu)]
            kappa[g] = acc
    return kappa


def _derivative(expr: sp.Expr, e: int) -> sp.Expr:
    """d/dK_e of a polynomial in the moment symbols: m[p, q, d] -> m[p, q, d + e_e]; <sigma_a^p> does not
    depend on K_ab or K_bb (nor <sigma_b^q> on K_aa or K_ab)."""
    out = sp.Integer(0)
    for sym in expr.free_symbols:
        p, q, d = moment_key(sym)
        if (q == 0 and e != 0) or (p == 0 and e != 2):
            continue
        out += sp.diff(expr, sym) * pm(p, q, _add(d, _unit(e)))
    return sp.expand(out)


def _cumulants_from_moments(order: int) -> dict[tuple[Index, Index], sp.Expr]:
    """s_alpha^(beta) through the moment derivatives m[p, q, d]."""
    top = order + 1
    moment = {(0, 0, 0): sp.Integer(1)}
    for m in range(1, top + 1):
        for g in indices(m):
            moment[g] = pm(2 * g[0] + g[1], g[1] + 2 * g[2], (0, 0, 0))
    kappa = {g: sp.expand(v) for g, v in joint_cumulants(moment, top).items()}
    out: dict[tuple[Index, Index], sp.Expr] = {}
    for alpha, beta in cumulant_derivatives(order):
        expr = kappa[alpha]
        for e in range(3):
            for _ in range(beta[e]):
                expr = _derivative(expr, e)
        out[(alpha, beta)] = expr
    return out


@dataclass(frozen=True)
class PairStep:
    """One step l -> l+1 of the pair's metric cumulants at order p, symbolic in the activation.

    ``new_state[(gamma, k)]``: the layer-(l+1) ``c[gamma][k]`` as a polynomial in the layer-l state
    (:func:`pc`), ``r = n_l/n_{l-1}``, the hyperparameters (``notation.hyper``) and the cumulant derivatives
    (:func:`ps`); ``cumulants[(alpha, beta)]`` writes those through the moment derivatives (:func:`pm`).
    """

    order: int
    new_state: dict[tuple[Index, int], sp.Expr]
    cumulants: dict[tuple[Index, Index], sp.Expr] = field(repr=False)

    @property
    def moments(self) -> list[sp.Symbol]:
        """Every moment derivative the step uses, sorted by name."""
        found = set().union(*(e.free_symbols for e in self.cumulants.values()))
        return sorted(found, key=lambda s: moment_key(s))

    @property
    def mixed_moments(self) -> list[sp.Symbol]:
        """The moment derivatives that are the pair's own (not single-input): the runtime's Mehler series."""
        return [m for m in self.moments if pure_moment(m) is None]


@cache
def derive_pair_step(order: int) -> PairStep:
    """Derive the order-``order`` step of the pair's metric cumulants (memoised in memory); hyperparameters
    carry 1/n_l pieces ``C = sum_k C^{k} / n_l^k`` (``notation.hyper``), as in the single-input sector."""
    if not isinstance(order, int) or order < 0:
        raise UserError(f"order must be a non-negative integer, got {order!r}")
    p, top = order, order + 1
    ts = sp.symbols("t_aa t_ab t_bb")
    d = sp.Symbol("delta")
    wanted = cumulant_derivatives(p)
    s_syms = [ps(a, b) for a, b in wanted]
    c_syms = [pc(g, k) for g, k in pair_state_keys(p) if not (sum(g) == 1 and k == 0)]
    h_syms = [nt.hyper(name, k) for name in ("C_b", "C_W") for k in range(p + 1)]
    gens_syms = [*ts, d, nt.r, *s_syms, *c_syms, *h_syms]
    ring, *gens = make_ring(gens_syms, QQ)
    tg, dg, rg = gens[:3], gens[3], gens[4]
    sym_gen = dict(zip(gens_syms, gens))
    trunc = Truncation(t_max=top, delta_max=p)

    def series(poly) -> Series:
        """Split a ring element into (total degree in t, degree in delta) pieces."""
        terms: dict[tuple[int, int], object] = {}
        for monom, coeff in poly.terms():
            key = (monom[0] + monom[1] + monom[2], monom[3])
            rest = ring({monom[:3] + (0,) + monom[4:]: coeff})
            terms[key] = terms.get(key, ring.zero) + rest
        return Series(terms, trunc, ring.zero)

    def t_power(g: Index):
        return tg[0] ** g[0] * tg[1] ** g[1] * tg[2] ** g[2]

    # joint cumulants of Delta = G(l) - K in powers of delta (1/n_{l-1} = r delta), then its raw moments
    kappa = {}
    for m in range(1, top + 1):
        for g in indices(m):
            poly = sum((sym_gen[pc(g, k)] * rg**k * dg**k for k in range(max(m - 1, 1), p + 1)), ring.zero)
            kappa[g] = series(poly)
    zero = Series({}, trunc, ring.zero)
    moments = {(0, 0, 0): Series.constant(ring.one, trunc)}
    for j in range(1, 2 * p + 1):
        for g in indices(j):
            i, rest = _split(g)
            acc = zero
            for nu in _below(rest):
                key = _add(nu, _unit(i))
                if sum(key) <= top:
                    acc = acc + (kappa[key] * moments[_sub(rest, nu)]).scale(_choose(rest, nu))
            moments[g] = acc

    # F(Delta) = sum t^alpha / alpha! delta^(|alpha|-1) s_alpha^(beta) Delta^beta / beta!
    f0 = ring.zero
    f_delta: dict[Index, Series] = {}
    for alpha, beta in wanted:
        term = sym_gen[ps(alpha, beta)] * t_power(alpha) * dg ** (sum(alpha) - 1)
        term = term * QQ(1, _factorial(alpha) * _factorial(beta))
        if sum(beta) == 0:
            f0 += term
        else:
            f_delta[beta] = f_delta[beta] + series(term) if beta in f_delta else series(term)

    def times(left: dict, right: dict) -> dict:
        out: dict[Index, Series] = {}
        for b1, s1 in left.items():
            for b2, s2 in right.items():
                b = _add(b1, b2)
                prod_ = s1.mul(s2, (sum(b) + 1) // 2)  # E[Delta^b] is O(delta^ceil(|b|/2))
                if prod_.terms:
                    out[b] = out[b] + prod_ if b in out else prod_
        return out

    # E[exp(F_Delta)] - 1 = sum_q E[F_Delta^q] / q!
    u = zero
    if f_delta:
        power: dict[Index, Series] = {(0, 0, 0): Series.constant(ring.one, trunc)}
        for q in range(1, top + 1):
            power = times(power, f_delta)
            if not power:
                break
            expect = zero
            for b, coeff in power.items():
                if sum(b) <= 2 * p:
                    expect = expect + coeff * moments[b]
            u = u + expect.scale(Fraction(1, factorial(q)))
    cgf = series(f0) + (compose_log1p(u) if u.terms else u)

    cw = series(sum((sym_gen[nt.hyper("C_W", k)] * dg**k for k in range(p + 1)), ring.zero))
    cb = series(sum((sym_gen[nt.hyper("C_b", k)] * dg**k for k in range(p + 1)), ring.zero))
    new_state: dict[tuple[Index, int], sp.Expr] = {}
    cw_power = Series.constant(ring.one, trunc)
    for m in range(1, top + 1):
        cw_power = cw_power * cw
        for alpha in indices(m):
            picked = {}
            for (a, b), v in cgf.terms.items():
                if a != m:
                    continue
                part = ring({(0, 0, 0) + mon[3:]: c for mon, c in v.terms() if mon[:3] == alpha})
                if part:
                    picked[(0, b)] = part * _factorial(alpha)
            kappa_g = cw_power * Series(picked, trunc, ring.zero)
            if m == 1:
                kappa_g = kappa_g + cb
            for k in range(m - 1, p + 1):
                new_state[(alpha, k)] = kappa_g.coefficient(0, k).as_expr()
    return PairStep(p, new_state, _cumulants_from_moments(p))
