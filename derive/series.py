"""Bivariate truncated power series with exact polynomial coefficients.

The engine expands a cumulant generating function in two grading variables: ``t`` (the
generating-function variable) and ``delta`` (one over the width). A naive sympy expansion
of the whole expression drowns in terms that are thrown away at the end; here every product
drops what lies beyond the truncation as it is formed, and coefficients live in a sparse
``sympy.polys`` ring (dicts of monomials), which is orders of magnitude faster than ``Expr``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from sympy.polys.rings import PolyElement

Key = tuple[int, int]  # (degree in t, degree in delta)


@dataclass(frozen=True)
class Truncation:
    """Keep monomials t^a delta^b with a <= t_max and b + extra <= delta_max."""

    t_max: int
    delta_max: int

    def keeps(self, key: Key, extra: int = 0) -> bool:
        return key[0] <= self.t_max and key[1] + extra <= self.delta_max


class Series:
    """A truncated series: a dict from (t degree, delta degree) to a ring element."""

    __slots__ = ("terms", "trunc", "zero")

    def __init__(self, terms: dict[Key, PolyElement], trunc: Truncation, zero: PolyElement):
        self.terms = {k: v for k, v in terms.items() if v and trunc.keeps(k)}
        self.trunc = trunc
        self.zero = zero

    @classmethod
    def constant(cls, value: PolyElement, trunc: Truncation) -> Series:
        return cls({(0, 0): value}, trunc, value.ring.zero)

    def __add__(self, other: Series) -> Series:
        out = dict(self.terms)
        for k, v in other.terms.items():
            out[k] = out.get(k, self.zero) + v
        return Series(out, self.trunc, self.zero)

    def scale(self, factor: PolyElement | Fraction | int) -> Series:
        return Series({k: v * factor for k, v in self.terms.items()}, self.trunc, self.zero)

    def mul(self, other: Series, extra: int = 0) -> Series:
        """Product, dropping terms whose delta degree plus ``extra`` exceeds the truncation."""
        out: dict[Key, PolyElement] = {}
        for (a1, b1), v1 in self.terms.items():
            for (a2, b2), v2 in other.terms.items():
                key = (a1 + a2, b1 + b2)
                if self.trunc.keeps(key, extra):
                    out[key] = out.get(key, self.zero) + v1 * v2
        return Series(out, self.trunc, self.zero)

    __mul__ = mul

    def coefficient(self, t_degree: int, delta_degree: int) -> PolyElement:
        return self.terms.get((t_degree, delta_degree), self.zero)

    def min_t_degree(self) -> int:
        return min((k[0] for k in self.terms), default=self.trunc.t_max + 1)


def compose_log1p(u: Series) -> Series:
    """log(1 + u) for a series u with no t^0 term, truncated in t."""
    if u.min_t_degree() < 1:
        raise ValueError("log1p needs a series without constant term in t")
    result = Series({}, u.trunc, u.zero)
    power = u
    for q in range(1, u.trunc.t_max + 1):
        result = result + power.scale(Fraction((-1) ** (q + 1), q))
        power = power * u
        if not power.terms:
            break
    return result


def times_polynomial(
    left: dict[int, Series], right: dict[int, Series], extra: Callable[[int], int]
) -> dict[int, Series]:
    """Product of two polynomials in an auxiliary variable (dicts degree -> Series).

    ``extra(j)`` is the least delta order that the auxiliary variable's j-th power carries once
    averaged, so that products which cannot survive the truncation are never formed.
    """
    out: dict[int, Series] = {}
    for j1, s1 in left.items():
        for j2, s2 in right.items():
            prod = s1.mul(s2, extra(j1 + j2))
            if prod.terms:
                j = j1 + j2
                out[j] = out[j] + prod if j in out else prod
    return out
