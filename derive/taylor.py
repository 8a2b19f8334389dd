"""Taylor data of an activation at z = 0 (book 5.80-5.90): sigma_p = sigma^(p)(0) and a_1, a_2, b_1,
which decide the K* = 0 universality class and its large-depth exponents."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import sympy as sp

from .activations import Activation
from .notation import z


@cache
def smooth_pieces(act: Activation) -> tuple[tuple[sp.Expr, sp.Expr, sp.Expr], ...]:
    """(lo, hi, sigma) per piece at default parameters; refuses a jump at a breakpoint."""
    act.derivative()  # raises ActivationError where sigma jumps (sigma' would carry a delta)
    subs = dict(act.params)
    return tuple((p.lo, p.hi, sp.sympify(p.expr).subs(subs)) for p in act.pieces)


@dataclass(frozen=True)
class TaylorData:
    """sigma_p = sigma^(p)(0), p = 0..5 (5.80), and a_1, a_2, b_1 (5.86)-(5.88) when defined."""

    sigma: tuple[sp.Expr, ...]
    a_1: sp.Expr | None
    a_2: sp.Expr | None
    b_1: sp.Expr | None

    def as_dict(self) -> dict[str, dict[str, str | float] | None]:
        """JSON-ready: each value as its exact sympy string and a float."""
        named: dict[str, sp.Expr | None] = {f"sigma_{p}": v for p, v in enumerate(self.sigma)}
        named.update(a_1=self.a_1, a_2=self.a_2, b_1=self.b_1)
        return {k: None if v is None else {"exact": str(v), "float": float(v)} for k, v in named.items()}


def _exact(value: sp.Expr) -> sp.Expr:
    """Simplify a constant (tanh(log 2) -> 3/5 needs the exp rewrite)."""
    simple = sp.simplify(value)
    if simple.has(sp.tanh, sp.sinh, sp.cosh, sp.coth):
        simple = sp.simplify(simple.rewrite(sp.exp))
    return simple


def _derivatives_at_zero(expr: sp.Expr, top: int) -> tuple[sp.Expr, ...]:
    """(expr(0), expr'(0), ..., expr^(top)(0)), exact."""
    out, d = [], expr
    for _ in range(top + 1):
        out.append(_exact(d.subs(z, 0)))
        d = sp.diff(d, z)
    return tuple(out)


def _coefficients(s: tuple[sp.Expr, ...]) -> tuple[sp.Expr | None, sp.Expr | None, sp.Expr | None]:
    """a_1, a_2, b_1 of (5.86)-(5.88), or Nones unless sigma_0 = 0 != sigma_1."""
    if s[0] != 0 or s[1] == 0:
        return None, None, None
    r2, r3, r4, r5 = (s[p] / s[1] for p in (2, 3, 4, 5))
    a_1 = _exact(r3 + sp.Rational(3, 4) * r2**2)
    a_2 = _exact(sp.Rational(1, 4) * r5 + sp.Rational(5, 8) * r4 * r2 + sp.Rational(5, 12) * r3**2)
    b_1 = _exact(r3 + r2**2)
    return a_1, a_2, b_1


@cache
def taylor_data(act: Activation) -> TaylorData | None:
    """sigma_0..sigma_5 and a_1, a_2, b_1 at default parameters, for a single-piece sigma."""
    if len(act.pieces) != 1:
        return None
    sigma = _derivatives_at_zero(act.with_defaults(), 5)
    return TaylorData(sigma, *_coefficients(sigma))


def local_at_zero(act: Activation) -> tuple[sp.Expr, sp.Expr | None, sp.Expr | None] | None:
    """(sigma(0), sigma'(0), sigma''(0)) from the pieces around 0; None for a one-sided value."""
    pieces = smooth_pieces(act)
    left = next(e for lo, hi, e in pieces if lo < 0 <= hi)
    right = next(e for lo, hi, e in pieces if lo <= 0 < hi)
    ls, rs = _derivatives_at_zero(left, 2), _derivatives_at_zero(right, 2)
    vals = [lv if sp.simplify(lv - rv) == 0 else None for lv, rv in zip(ls, rs)]
    if vals[0] is None:
        return None
    return vals[0], vals[1], vals[2]
