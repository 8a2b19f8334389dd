"""Sectors: each family of recursions as one frozen symbolic description (DESIGN section 8).

A :class:`Sector` says everything mathematical about one family of recursions, and nothing about
code: its fields (name, index structure, symmetry, one symbol per entry), the Gaussian integrands it
needs (which factor, sigma or sigma', to which power, how many K-derivatives, and how derive decided
to evaluate each: a closed form or quadrature), and its update rules as ordered stages of
``target = expression``. ``codegen.lower`` turns sectors into a small plain-data IR; templates only
lay files out. Adding a family of recursions means writing a sector here (docs/architecture.md,
"Adding a sector").

Sectors today:

- ``single_input``: the cumulants c[m][k] of the stochastic metric through one layer, to order p in
  1/n (book chapter 4 and section 5.5), from :func:`recursion.derive_step`;
- ``delta``: two nearby inputs to second order in their separation at infinite width, with the
  susceptibilities chi_parallel, chi_perp and h (book 5.46-5.52), from :func:`delta.derive_delta_expansion`;
- ``pair_metric``: the joint cumulants of a pair's metric (G_aa, G_ab, G_bb) to order p, the finite-width
  mean kernel of N inputs (book 4.115, 4.119 at order 1), from :func:`pair_metric.derive_pair_step`;
- ``ntk``: one input's kernel, vertex, NTK mean, its fluctuations A, B, D, F and the dNTK's P, Q at leading
  order in 1/n (book ch. 8-11), from :func:`ntk.derive_ntk_step` (Wick contractions of the stochastic forward
  equations).

The quadrature rule that evaluates every integrand without a closed form is chosen for the
activation as a whole (:func:`choose_rule`), since all of a module's integrands share its nodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import sympy as sp

from . import notation as nt
from .activations import Activation, ActivationError
from .delta import CHI_PAR, CHI_PERP, K00, H, ddK0, ddK2, derive_delta_expansion, dK1
from .expectations import Expectation, expectations, perp_expectations
from .ntk import TENSORS as NTK_TENSORS
from .ntk import TWO_SLOT, derive_ntk_step, lam_b, lam_W, tensor, weight_form
from .pair_metric import derive_pair_step, indices, is_pure, pair_state_keys, pc, pm, ps, pure_moment
from .quadrature import GL_DEGREES, calibrate_trapezoid, gauss_legendre, truncation_radius
from .recursion import cumulant_derivatives, derive_step, moment_derivatives, state_keys
from .stability import SmallK, small_k_branch

SIGMA, DSIGMA = "sigma", "sigma'"


@dataclass(frozen=True)
class Field:
    """A named array of the sector: one symbol per index tuple it holds."""

    name: str
    indices: tuple[str, ...]  # names of the index slots, e.g. ("m", "k")
    entries: tuple[tuple[tuple[int, ...], sp.Symbol], ...]  # (index tuple, symbol) in storage order
    symmetry: str  # in words; "" when the entries are independent
    doc: str

    def symbol(self, key: tuple[int, ...]) -> sp.Symbol:
        return dict(self.entries)[key]


@dataclass(frozen=True)
class Integrand:
    """d^i/dK^i <f(z)^(2 power)>_K for f = sigma or sigma', z ~ N(0, K), and how it is evaluated."""

    symbol: sp.Symbol  # how the update rules refer to it
    factor: str  # SIGMA or DSIGMA
    power: int
    derivatives: int
    expectation: Expectation  # exact (with its closed form) or quadrature, decided by derive

    @property
    def small_k(self) -> SmallK | None:
        """Where the closed form cancels as K -> 0: its Taylor polynomial and the switch (stability)."""
        return small_k_branch(self.expectation.expr) if self.expectation.exact else None

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.factor, self.power, self.derivatives)


@dataclass(frozen=True)
class Stage:
    """Update rules evaluated in order: ``target`` (a field's symbol) = expression."""

    name: str
    doc: str
    reads: tuple[str, ...]  # the fields (and "integrands") its expressions use
    writes: str  # the field it fills
    rules: tuple[tuple[tuple[int, ...], sp.Expr], ...]  # (index tuple of ``writes``, expression)


@dataclass(frozen=True)
class Sector:
    name: str
    doc: str
    book: str  # where the book derives it
    fields: tuple[Field, ...]
    integrands: tuple[Integrand, ...]
    stages: tuple[Stage, ...]
    scalars: tuple[sp.Symbol, ...]  # hyperparameters and the like, passed as plain numbers

    def field(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)


def _field(name, indices, keys, make, symmetry, doc) -> Field:
    return Field(name, indices, tuple((key, make(*key)) for key in keys), symmetry, doc)


def _mu_integrands(act: Activation, order: int) -> tuple[Integrand, ...]:
    found = expectations(act, moment_derivatives(order))
    return tuple(Integrand(nt.mu(a, i), SIGMA, a, i, e) for (a, i), e in found.items())


@cache
def single_input(act: Activation, order: int) -> Sector:
    """The order-``order`` single-input flow of the metric cumulants (renormalized hyperparameters)."""
    step = derive_step(order, renormalized=True)
    state = _field("c", ("m", "k"), state_keys(order), nt.c, "", "c[m][k]: the 1/n_{l-1}^k part of kappa_m(G(l))")
    cumulants = _field(
        "s", ("m", "j"), cumulant_derivatives(order), nt.s, "", "s[m][j]: d^j/dK^j kappa_m(sigma(z)^2), z ~ N(0, K)"
    )
    hyper = tuple(nt.hyper(name, k) for name in ("C_b", "C_W") for k in range(order + 1))
    return Sector(
        name="single_input",
        doc=f"the cumulants of the stochastic metric G(l) of one input, to order {order} in 1/n",
        book="(4.115)-(4.118), (5.138)-(5.139); to any order by the truncated series engine",
        fields=(state, cumulants),
        integrands=_mu_integrands(act, order),
        stages=(
            Stage(
                "cumulants",
                "cumulants of sigma^2 from the moments",
                ("integrands",),
                "s",
                tuple((key, step.cumulants[key]) for key in cumulant_derivatives(order)),
            ),
            Stage(
                "step",
                "one layer l -> l+1; r = n_l/n_{l-1}",
                ("c", "s"),
                "c",
                tuple((key, step.new_state[key]) for key in state_keys(order)),
            ),
        ),
        scalars=(nt.r, *hyper),
    )


def perp_integrands(act: Activation) -> tuple[Integrand, ...]:
    """<sigma'^2>_K and its first K-derivative (chi_perp and h), none when sigma jumps."""
    try:
        found = perp_expectations(act)
    except ActivationError:  # sigma jumps: sigma' carries a delta, chi_perp is not defined
        return ()
    return tuple(Integrand(sp.Symbol(f"p_{i}", real=True), DSIGMA, 1, i, e) for i, e in sorted(found.items()))


@cache
def delta(act: Activation) -> Sector:
    """Two nearby inputs at infinite width: the delta expansion and the susceptibilities."""
    expansion = derive_delta_expansion()
    sigma_rows = expectations(act, [(1, 0), (1, 1), (1, 2)])
    perp = {p.derivatives: p for p in perp_integrands(act)}
    integrands = []
    for row in expansion.basis + expansion.extra_basis:
        i = row.derivative_order
        if row.factor == SIGMA:
            integrands.append(Integrand(row.symbol, SIGMA, 1, i, sigma_rows[(1, i)]))
        elif i in perp:
            integrands.append(Integrand(row.symbol, DSIGMA, 1, i, perp[i].expectation))
    state = Field("state", ("j",), (((0,), K00), ((1,), dK1), ((2,), ddK2), ((3,), ddK0)), "",
                  "(K00, dK[1], ddK[2], ddK[0]): the midpoint kernel, its variations, the shift of K_[0]")  # fmt: skip
    chi = Field("chi", ("j",), (((0,), CHI_PAR), ((1,), CHI_PERP), ((2,), H)), "",
                "(chi_parallel, chi_perp, h) at K00")  # fmt: skip
    return Sector(
        name="delta",
        doc="two inputs x0 +- dx/2 to second order in dx, infinite width",
        book="(5.46)-(5.52)",
        fields=(state, chi),
        integrands=tuple(integrands),
        stages=(
            Stage(
                "susceptibilities",
                "chi_parallel, chi_perp, h",
                ("integrands",),
                "chi",
                tuple(((j,), e) for j, (_, e) in enumerate(expansion.susceptibilities)),
            ),
            Stage(
                "step",
                "one layer of the delta expansion, with the shift ddK[0] of K_[0]",
                ("state", "chi", "integrands"),
                "state",
                tuple(((j,), e) for j, (_, e) in enumerate((*expansion.updates, expansion.midpoint_correction))),
            ),
        ),
        scalars=(nt.C_b, nt.C_W),
    )


@dataclass(frozen=True)
class Rule:
    """The quadrature rule for the integrands without a closed form, with its constants."""

    kind: str  # "none", "trapezoid" or "gauss-legendre"
    x_max: float = 0.0
    h_max: float = 0.0
    beta: float = 0.0
    even: bool = False  # the integrands are even in z: integrate x >= 0 only
    nodes: tuple[tuple[tuple[float, ...], tuple[float, ...]], ...] = ()  # Gauss-Legendre (x, w), coarse, fine
    breakpoints: tuple[float, ...] = ()
    fallback: bool = False  # Gauss-Legendre also covers the closed forms, for where they cancel


def needs_fallback(act: Activation, integrands: tuple[Integrand, ...]) -> bool:
    """A kink away from z = 0 makes the truncated-Gaussian closed forms cancel: below the kink's scale
    (K << b^2) each is a difference of terms of size ~1 whose result is ~exp(-b^2/2K) times a polynomial, and
    the K-derivatives of hard tanh's K - (tail) are that tail alone. No Taylor series exists there (the
    exponential is not analytic at K = 0), so the module carries a Gauss-Legendre rule for those rows too."""
    return act.is_piecewise and any(b != 0 for b in act.breakpoints) and any(p.expectation.exact for p in integrands)


def choose_rule(act: Activation, integrands: tuple[Integrand, ...]) -> Rule:
    """Trapezoid in x = z/sqrt(K) for smooth sigma (spacing calibrated against mpmath on the
    sigma^(2a) integrands), Gauss-Legendre between breakpoints for piecewise sigma, or none. A piecewise
    sigma whose closed forms can cancel (``needs_fallback``) gets the Gauss-Legendre rule for every integrand,
    used by the runtime where a closed form's error estimate is worse."""
    quad = [p for p in integrands if not p.expectation.exact]
    fallback = needs_fallback(act, integrands)
    if not quad and not fallback:
        return Rule("none")
    if act.is_piecewise:
        covered = integrands if fallback else quad
        # sigma'^2 counts as the top power of sigma for the truncation radius
        degrees = [2 * (p.power if p.factor == SIGMA else _top(integrands)) + 2 * p.derivatives for p in covered]
        return Rule(
            "gauss-legendre" if quad else "none",
            x_max=truncation_radius(max(degrees)),
            nodes=tuple(gauss_legendre(n) for n in GL_DEGREES),
            breakpoints=tuple(float(b) for b in act.breakpoints),
            fallback=fallback,
        )
    pairs = tuple(sorted({(p.power, p.derivatives) for p in quad if p.factor == SIGMA})) or ((1, 0),)
    rule = calibrate_trapezoid(act, pairs)
    return Rule("trapezoid", x_max=rule.x_max, h_max=rule.h_max, beta=rule.beta, even=act.square_is_even)


def _top(integrands: tuple[Integrand, ...]) -> int:
    return max(p.power for p in integrands if p.factor == SIGMA)


@cache
def pair_metric(order: int) -> Sector:
    """The two-input metric at order ``order``: the finite-width mean kernel of a pair (issue 7, item 2).

    Activation-independent: its moments are numbers the runtime supplies (single-input moments of each
    input from the module, the pair's own by Mehler series), so one generated module serves every activation.
    """
    step = derive_pair_step(order)
    rows = [g for m in range(1, order + 2) for g in indices(m)]
    row = {g: n for n, g in enumerate(rows)}
    entries = tuple(((row[g], k), pc(g, k)) for g, k in pair_state_keys(order))
    state = Field("c", ("row", "k"), entries, "", "c[row, k]: the 1/n_{l-1}^k part of the joint cumulant STATE[row]")
    nonzero = [(key, e) for key, e in step.cumulants.items() if e != 0]
    s_entries = tuple(((n,), ps(*key)) for n, (key, _) in enumerate(nonzero))
    s_field = Field("s", ("n",), s_entries, "", "s[n]: d^beta of the joint cumulant s_alpha of the sigma products")
    mixed = step.mixed_moments
    m_entries = tuple(((n,), sym) for n, sym in enumerate(mixed))
    m_field = Field("m", ("n",), m_entries, "", "m[n]: the pair's moment derivative MOMENTS[n]")
    pure = [pure_moment(sym) for sym in step.moments if pure_moment(sym) is not None]
    fields = [state, s_field, m_field]
    for side in ("a", "b"):
        keys = sorted((power // 2, i) for who, power, i in pure if who == side)
        make = (lambda a, i: pm(2 * a, 0, (i, 0, 0))) if side == "a" else (lambda a, j: pm(0, 2 * a, (0, 0, j)))
        doc = f"mu{side}[a, i]: d^i/dK^i <sigma^(2a)> of input {side} (the module's single-input mu)"
        fields.append(_field(f"mu{side}", ("a", "i"), keys, make, "", doc))
    zeros = {ps(*k): 0 for k, e in step.cumulants.items() if e == 0}
    rules = tuple(((row[g], k), e.xreplace(zeros)) for (g, k), e in step.new_state.items() if not is_pure(g))
    hyper = tuple(nt.hyper(name, k) for name in ("C_b", "C_W") for k in range(order + 1))
    return Sector(
        name="pair_metric",
        doc=f"the joint cumulants of the two-input metric (G_aa, G_ab, G_bb), to order {order} in 1/n",
        book="(4.115), (4.119) at order 1; to any order by the law of total cumulance (derive.pair_metric)",
        fields=tuple(fields),
        integrands=(),
        stages=(
            Stage(
                "cumulants",
                "joint cumulants of the sigma products and their metric derivatives",
                ("m", "mua", "mub"),
                "s",
                tuple(((n,), e) for n, (_, e) in enumerate(nonzero)),
            ),  # fmt: skip
            Stage(
                "step",
                "one layer l -> l+1 of the entries that involve both inputs; r = n_l/n_{l-1}",
                ("c", "s"),
                "c",
                rules,
            ),  # fmt: skip
        ),
        scalars=(nt.r, *hyper),
    )


NTK_LABELS = (0, 0, 0, 0)  # one input: every sample label is input 0


def ntk_state_symbol(name: str) -> sp.Symbol:
    """The layer-l symbol of a tensor of the ntk sector at one input."""
    return tensor(name, *NTK_LABELS[: 2 if name in TWO_SLOT else 4])


def _ntk_sector(name: str, doc: str, book: str, stage_doc: str, rules: dict, states: list, table: str) -> Sector:
    """A sector of NTK statistics: the state t (one symbol per stored entry, in ``states`` order), the Gaussian
    expectations e its ``rules`` read (``table`` names their table in the generated module), one step."""
    found = sorted({s for e in rules.values() for s in e.free_symbols if s.name.startswith("E[")}, key=str)
    state = Field("t", ("i",), tuple(((i,), s) for i, s in enumerate(states)), "",
                  f"t[i]: the entry {table}_TENSORS[i] of layer l (V..U: their 1/n_(l-1) parts)")  # fmt: skip
    expect = Field("e", ("n",), tuple(((n,), s) for n, s in enumerate(found)), "",
                   f"e[n]: the Gaussian expectation {table}_EXPECTATIONS[n] at K(l)")  # fmt: skip
    return Sector(
        name=name,
        doc=doc,
        book=book,
        fields=(state, expect),
        integrands=(),
        stages=(Stage("step", stage_doc, ("t", "e"), "t", tuple(((i,), rules[s]) for i, s in enumerate(states))),),
        scalars=(nt.r, nt.C_b, nt.C_W, lam_b, lam_W),
    )


@cache
def ntk() -> Sector:
    """One input's NTK statistics at leading order (issue 8): K, H, V, A, B, D, F, P, Q, R, S, T, U, one layer,
    and the 1/n parts K1, H1 of the kernel and NTK means (issue 10).

    Activation-independent like ``pair_metric``: its Gaussian expectations <d^m (sigma^a sigma'^b ...)>_K arrive
    as numbers (the runtime integrates them with the module's sigma and its derivatives)."""
    # sigma'' integrated by parts wherever one input carries it once; R, S, T, U keep sigma''^2 and sigma''' (a smooth
    # sigma evaluates them directly; a kinked one is refused for those four, as the book does, ∞.39-44)
    step = derive_ntk_step(NTK_LABELS)
    states = [ntk_state_symbol(name) for name in NTK_TENSORS]
    rules = {sym: weight_form(step[name], strict=False) for sym, name in zip(states, NTK_TENSORS)}
    return _ntk_sector(
        "ntk",
        "one input's kernel, vertex, NTK mean and fluctuations, dNTK P, Q, ddNTKs R, S, T, U, the means' 1/n parts",
        "(4.118)-(4.119), (8.63), (8.77)-(8.97), (9.13)-(9.19), (11.49)-(11.56), (∞.14)-(∞.18), (∞.172)-(∞.176)",
        "one layer l -> l+1; r = n_l/n_{l-1}, hyperparameters of layer l+1",
        rules,
        states,
        "NTK",
    )


@cache
def ntk_pair() -> Sector:
    """Two inputs' NTK statistics at leading order: every entry of K, H, K1, H1 (labels in {0, 1}^2) and of V, ..., U
    (labels in {0, 1}^4), each stored once under its tensor's symmetries. The recursions are the generic ones
    re-derived at each label pattern, so coinciding labels are exact; expectations over both inputs are bivariate
    (the runtime sums them as Mehler series, a weight derivative being a shift of Hermite coefficients)."""
    from itertools import product

    rules: dict = {}
    for pattern in product((0, 1), repeat=4):
        for name, e in derive_ntk_step(pattern).items():
            sym = tensor(name, *(pattern[:2] if name in TWO_SLOT else pattern))
            if sym not in rules:
                rules[sym] = weight_form(e, strict=False)
    order = {name: i for i, name in enumerate(NTK_TENSORS)}
    states = sorted(rules, key=lambda s: (order[s.name.split("[")[0]], s.name))
    return _ntk_sector(
        "ntk_pair",
        "two inputs' kernel, NTK mean, and every entry of V, A, B, D, F, P, Q, R, S, T, U at leading order",
        "the ntk sector's recursions at the 16 label patterns of two inputs (book 8.77-8.97, 11.49, 11.52, ∞.17x)",
        "one layer l -> l+1 of both inputs; r = n_l/n_{l-1}",
        rules,
        states,
        "NTK_PAIR",
    )
