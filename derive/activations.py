"""Activation functions: the registry, parameters, and the split into smooth pieces.

An :class:`Activation` is a sympy expression in ``notation.z`` (and optionally parameter symbols
with defaults). Piecewise activations are split at their breakpoints into pieces that are smooth
on closed intervals: Gaussian expectations are then taken piece by piece, so no rule ever
integrates across a kink (DESIGN section 3).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import sympy as sp

from .errors import UserError
from .notation import z

oo = sp.oo


@dataclass(frozen=True)
class Piece:
    """sigma restricted to [lo, hi] (lo may be -oo, hi may be +oo), smooth inside."""

    lo: sp.Expr
    hi: sp.Expr
    expr: sp.Expr


@dataclass(frozen=True)
class Activation:
    """An activation sigma(z), optionally with named parameters (symbol, default value)."""

    name: str
    expr: sp.Expr
    description: str = ""
    params: tuple[tuple[sp.Symbol, sp.Rational], ...] = field(default=())

    @cached_property
    def pieces(self) -> tuple[Piece, ...]:
        return split_pieces(self.expr)

    @property
    def breakpoints(self) -> tuple[sp.Expr, ...]:
        return tuple(p.lo for p in self.pieces[1:])

    @property
    def is_piecewise(self) -> bool:
        return len(self.pieces) > 1

    @property
    def param_symbols(self) -> tuple[sp.Symbol, ...]:
        return tuple(sym for sym, _ in self.params)

    def with_defaults(self) -> sp.Expr:
        return self.expr.subs({sym: val for sym, val in self.params})

    def _repr_latex_(self) -> str:
        return f"$\\sigma(z) = {sp.latex(self.expr)}$"

    def derivative(self) -> Activation:
        """sigma' as an activation (piece by piece); refused where sigma jumps, since sigma' would
        then carry a delta function that no Gaussian expectation of sigma'^2 can hold."""
        for left, right in zip(self.pieces[:-1], self.pieces[1:]):
            jump = sp.simplify(left.expr.subs(z, left.hi) - right.expr.subs(z, right.lo))
            if jump != 0:
                raise ActivationError(f"{self.name} jumps by {jump} at z = {left.hi}: sigma' is not a function there")
        branches = [(sp.diff(p.expr, z), z < p.hi) for p in self.pieces[:-1]]
        branches.append((sp.diff(self.pieces[-1].expr, z), True))
        expr = sp.Piecewise(*branches) if len(branches) > 1 else branches[0][0]
        return Activation(f"{self.name}'", expr, f"derivative of {self.name}", self.params)

    @cached_property
    def square_is_even(self) -> bool:
        """True when sigma(-z)^2 == sigma(z)^2, which halves the quadrature work."""
        sq = [(p.lo, p.hi, sp.expand(p.expr**2)) for p in self.pieces]
        for lo, hi, e in sq:
            mirror = next(((l2, h2, e2) for l2, h2, e2 in sq if l2 == -hi and h2 == -lo), None)
            if mirror is None or sp.simplify(e.subs(z, -z) - mirror[2]) != 0:
                return False
        return True


class ActivationError(UserError):
    """An activation that pdlt cannot handle (unsupported breakpoint, unknown name, ...)."""


def check_real_line(expr: sp.Expr, label: str) -> None:
    """Refuse a formula that is not real and finite on the whole real line (1/z, sqrt(z), log(z)):
    preactivations are Gaussian, so every real z occurs. Where sympy cannot decide (erf,
    Heaviside, sign), the Gaussian expectations still catch whatever diverges."""
    from sympy.calculus.util import continuous_domain

    try:
        domain = continuous_domain(expr, z, sp.S.Reals)
    except (NotImplementedError, ValueError, TypeError, AttributeError):
        return
    bad = sp.S.Reals - domain
    if bad is not sp.S.EmptySet:
        raise ActivationError(f"{label} is not real and finite for every real z (not for z in {bad})")


def split_pieces(expr: sp.Expr) -> tuple[Piece, ...]:
    """Split sigma into smooth pieces at the breakpoints of Abs, Max, Min, Heaviside, sign."""
    pw = sp.piecewise_fold(
        expr.rewrite(sp.Piecewise).replace(sp.Heaviside, lambda *a: sp.Heaviside(*a).rewrite(sp.Piecewise))
    )
    if not pw.has(sp.Piecewise):
        return (Piece(-oo, oo, expr),)
    points: set[sp.Expr] = set()
    for rel in pw.atoms(sp.Rel):
        if rel.has(sp.Piecewise):
            raise ActivationError(f"nested breakpoint condition {rel} is not supported")
        lhs = rel.lhs - rel.rhs
        if sp.Poly(lhs, z).degree() != 1 if lhs.has(z) else True:
            if not lhs.has(z):
                continue
            raise ActivationError(f"breakpoint condition {rel} is not linear in z")
        root = sp.solve(sp.Eq(lhs, 0), z)
        if len(root) != 1 or not root[0].is_real or root[0].free_symbols:
            raise ActivationError(f"breakpoint condition {rel} has no fixed real root")
        points.add(sp.nsimplify(root[0]))
    edges = [-oo, *sorted(points, key=float), oo]
    pieces = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        if lo == -oo and hi == oo:
            mid = sp.Integer(0)
        elif lo == -oo:
            mid = hi - 1
        elif hi == oo:
            mid = lo + 1
        else:
            mid = (lo + hi) / 2
        branch = _branch_at(pw, mid)
        pieces.append(Piece(lo, hi, sp.simplify(branch)))
    merged: list[Piece] = []
    for p in pieces:  # merge neighbours with the same formula (e.g. a redundant breakpoint)
        if merged and sp.simplify(merged[-1].expr - p.expr) == 0:
            merged[-1] = Piece(merged[-1].lo, p.hi, p.expr)
        else:
            merged.append(p)
    return tuple(merged)


def _branch_at(expr: sp.Expr, point: sp.Expr) -> sp.Expr:
    """Replace every Piecewise by the branch whose condition holds at z = point."""

    def choose(*args):
        for value, cond in args:
            if bool(cond.subs(z, point)):
                return value
        raise ActivationError(f"no branch of the piecewise activation covers z = {point}")

    return expr.replace(lambda e: isinstance(e, sp.Piecewise), lambda e: choose(*e.args))


def _sigmoid(x: sp.Expr) -> sp.Expr:
    return 1 / (1 + sp.exp(-x))


def _softplus(x: sp.Expr) -> sp.Expr:
    return sp.log(1 + sp.exp(x))


_slope = sp.Symbol("slope", real=True)
_alpha = sp.Symbol("alpha", positive=True)

REGISTRY: dict[str, Activation] = {
    a.name: a
    for a in [
        Activation("linear", z, "identity, sigma(z) = z"),
        Activation("relu", sp.Max(0, z), "rectified linear unit, max(0, z)"),
        Activation(
            "leaky_relu",
            sp.Piecewise((z, z >= 0), (_slope * z, True)),
            "leaky ReLU, z for z >= 0 and slope*z below",
            ((_slope, sp.Rational(1, 100)),),
        ),
        Activation("abs", sp.Abs(z), "absolute value |z|"),
        Activation("tanh", sp.tanh(z), "hyperbolic tangent"),
        Activation("sin", sp.sin(z), "sine"),
        Activation("erf", sp.erf(z), "error function"),
        Activation("sigmoid", _sigmoid(z), "logistic sigmoid 1/(1+exp(-z))"),
        Activation("softplus", _softplus(z), "softplus log(1+exp(z))"),
        Activation("gelu", z * (1 + sp.erf(z / sp.sqrt(2))) / 2, "GELU, z*Phi(z) (exact, erf-based)"),
        Activation("swish", z * _sigmoid(z), "SWISH / SiLU, z*sigmoid(z)"),
        Activation(
            "elu",
            sp.Piecewise((z, z >= 0), (_alpha * (sp.exp(z) - 1), True)),
            "ELU, z for z >= 0 and alpha*(exp(z)-1) below",
            ((_alpha, sp.Integer(1)),),
        ),
        Activation("mish", z * sp.tanh(_softplus(z)), "Mish, z*tanh(softplus(z))"),
        Activation("hard_tanh", sp.Max(-1, sp.Min(1, z)), "hard tanh, z clipped to [-1, 1]"),
    ]
}
ALIASES = {"silu": "swish", "identity": "linear"}


def get(name: str) -> Activation:
    """Look up a registered activation by name (or alias)."""
    key = ALIASES.get(name, name)
    if key not in REGISTRY:
        raise ActivationError(f"unknown activation {name!r}; registered: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[key]
