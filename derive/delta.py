"""Two nearby inputs at infinite width: the delta expansion derived, not transcribed (book 5.39-5.53).

Inputs ``x_pm = x_0 pm dx/2`` (5.21); their kernel in the gamma basis (5.15-5.19) with the parity
expansion (5.22-5.24), bookkeeping ``eps`` with ``dK1 ~ eps`` and ``ddK0, ddK2 ~ eps^2``::

    K_{++} = K00 + ddK0 + dK1 + ddK2,  K_{--} = K00 + ddK0 - dK1 + ddK2,  K_{+-} = K00 + ddK0 - ddK2,

``K00`` the kernel of the midpoint ``x_0``; layer 1 has ``ddK0 = 0``. The next layer is
``K'_ab = C_b + C_W E[sigma(u_a) sigma(u_b)]``, ``u ~ N(0, K)``. By the heat equation
(``dE[F]/dK_aa = E[d_a^2 F]/2``, ``dE[F]/dK_{+-} = E[d_+ d_- F]``) the expectation under
``K00 gamma0 + dK`` is ``E_0[exp(D) F]``, ``D = dK_{++} d_+^2/2 + dK_{--} d_-^2/2 + dK_{+-} d_+ d_-``;
``D`` is O(eps), so ``1 + D + D^2/2`` is exact to eps^2. Under ``E_0``, ``u_+ = u_- = z ~ N(0, K00)``:
every term is a ``<sigma^(p) sigma^(q)>``, reduced to the rows ``d^j/dK^j <(sigma^(f))^2>`` by
``d/dK <F>_K = <F''>_K / 2``. Projected on the gamma basis, the eps^0, eps^1, eps^2 coefficients give
(5.46)-(5.48) with (5.50)-(5.52); ``ddK0`` drops out of them (gamma orthogonality).

Found on the way: ``K'_[0]`` is not ``K00' = C_b + C_W g`` at eps^2, even when ``ddK0 = 0``:
``ddK0' = chi_par ddK0 + (chi_par - chi_perp) ddK2 + (C_W g_2/2 - h) dK1^2`` (the book leaves it
as O(delta^2)). So (K00, dK1, ddK2) is a closed system, but ``K_{+-} = K00 - ddK2`` holds at layer 1 only.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import NamedTuple

import sympy as sp

from . import notation as nt
from .errors import PdltError

eps = sp.Symbol("epsilon", positive=True)  # bookkeeping: dK1 ~ eps, ddK0 and ddK2 ~ eps^2
K00 = sp.Symbol("K_00", positive=True)  # midpoint kernel, K of x_0
dK1 = sp.Symbol("dK_1", real=True)  # delta K_[1], first order (5.23)
ddK2 = sp.Symbol("ddK_2", real=True)  # delta delta K_[2], second order (5.24)
ddK0 = sp.Symbol("ddK_0", real=True)  # delta delta K_[0] = K_[0] - K00, second order (5.22)
CHI_PAR = sp.Symbol("chi_parallel", positive=True)  # same symbol as derive.latex.CHI
CHI_PERP = sp.Symbol("chi_perp", positive=True)
H = sp.Symbol("h", real=True)
sigma = sp.Function("sigma")
_UP, _UM = sp.symbols("u_plus u_minus", real=True)
_TOP = 8  # highest derivative of sigma any term can carry at eps^2 (D^2 F: four per variable)


class Row(NamedTuple):
    """A basis row: ``d^derivative_order/dK^derivative_order <factor(z)^2>_K`` at K = K00."""

    symbol: sp.Symbol
    description: str
    factor: str  # "sigma" or "sigma'"
    derivative_order: int


BASIS = (
    Row(sp.Symbol("g", real=True), "<sigma^2>_K (5.5)", "sigma", 0),
    Row(sp.Symbol("g_1", real=True), "d/dK <sigma^2>_K", "sigma", 1),
    Row(sp.Symbol("p_0", real=True), "<sigma'^2>_K", "sigma'", 0),
    Row(sp.Symbol("p_1", real=True), "d/dK <sigma'^2>_K", "sigma'", 1),
)
EXTRA_BASIS = (Row(sp.Symbol("g_2", real=True), "d^2/dK^2 <sigma^2>_K", "sigma", 2),)  # for ddK0' only


class BasisError(PdltError):
    """A term of the expansion is not a combination of the basis rows (a bug, never user input)."""


def pair_form(expr: sp.Expr) -> dict[tuple[int, int], sp.Expr]:
    """A sum of ``coefficient * sigma^(p)(z) sigma^(q)(z)`` as ``{(p, q): coefficient}``, p <= q."""
    s = sp.symbols(f"s0:{_TOP + 1}")
    table = {sp.diff(sigma(nt.z), nt.z, k) if k else sigma(nt.z): s[k] for k in range(_TOP + 1)}
    flat = sp.expand(expr).xreplace(table)
    if flat.has(sigma):
        raise BasisError(f"a derivative of sigma beyond order {_TOP} in {expr}")
    out: dict[tuple[int, int], sp.Expr] = {}
    for monom, coeff in sp.Poly(flat, *s).terms():
        if coeff == 0:
            continue
        idx = tuple(k for k, e in enumerate(monom) for _ in range(e))
        if len(idx) != 2:
            raise BasisError(f"{sp.Mul(*(s[k] for k in idx))} is not a product of two sigma factors")
        out[idx] = out.get(idx, sp.Integer(0)) + coeff
    return {key: value for key, value in out.items() if sp.expand(value) != 0}


def row_form(row: Row) -> dict[tuple[int, int], sp.Expr]:
    """The row as sigma products: ``d^j/dK^j <F>_K = <F^(2j)>_K / 2^j`` with ``F = (sigma^(f))^2``."""
    f = {"sigma": 0, "sigma'": 1}[row.factor]
    square = sp.diff(sigma(nt.z), nt.z, f) ** 2 if f else sigma(nt.z) ** 2
    return pair_form(sp.diff(square, nt.z, 2 * row.derivative_order) / 2**row.derivative_order)


def reduce_to_basis(expr: sp.Expr, rows: tuple[Row, ...] = BASIS) -> sp.Expr:
    """``<expr>_K`` (expr in sigma(z) and its derivatives) as a linear combination of ``rows``;
    BasisError when no combination matches every product <sigma^(p) sigma^(q)>."""
    target = pair_form(expr)
    forms = [row_form(row) for row in rows]
    unknowns = sp.symbols(f"c0:{len(rows)}")
    keys = set(target).union(*forms)
    equations = [sum(c * form.get(k, 0) for c, form in zip(unknowns, forms)) - target.get(k, 0) for k in keys]
    solutions = sp.linsolve(equations, unknowns)
    if not solutions:
        names = ", ".join(row.symbol.name for row in rows)
        raise BasisError(f"<{sp.expand(expr)}> is not a combination of {names}")
    (solution,) = solutions
    if solution.free_symbols & set(unknowns):
        raise BasisError("the basis rows are not independent")
    return sp.expand(sum(c * row.symbol for c, row in zip(solution, rows)))


def next_layer_expectation(F: sp.Expr) -> sp.Expr:
    """``E[F(u_+, u_-)]`` to eps^2 around ``K00 gamma0``, as sigma products at ``u_+ = u_- = z``."""
    d_pp = eps * dK1 + eps**2 * (ddK0 + ddK2)  # K_{++} - K00
    d_mm = -eps * dK1 + eps**2 * (ddK0 + ddK2)  # K_{--} - K00
    d_pm = eps**2 * (ddK0 - ddK2)  # K_{+-} - K00

    def heat(G: sp.Expr) -> sp.Expr:
        return d_pp / 2 * sp.diff(G, _UP, 2) + d_mm / 2 * sp.diff(G, _UM, 2) + d_pm * sp.diff(G, _UP, _UM)

    once = heat(F)
    series = sp.expand(F + once + heat(once) / 2)
    truncated = sum(series.coeff(eps, k) * eps**k for k in range(3))
    return sp.expand(truncated.subs({_UP: nt.z, _UM: nt.z}))


@dataclass(frozen=True)
class DeltaExpansion:
    """(5.46)-(5.48) and (5.50)-(5.52), derived. ``susceptibilities`` are in the basis rows;
    ``updates`` give K00, dK1, ddK2 of layer l+1 in the layer-l symbols, C_b, C_W, the basis and the
    susceptibility symbols. ``midpoint_correction`` is ddK0 of layer l+1 (needs ``EXTRA_BASIS``)."""

    basis: tuple[Row, ...]
    susceptibilities: tuple[tuple[str, sp.Expr], ...]
    updates: tuple[tuple[str, sp.Expr], ...]
    midpoint_correction: tuple[str, sp.Expr]
    extra_basis: tuple[Row, ...] = EXTRA_BASIS

    def latex(self) -> str:
        """Susceptibilities and updates as an amsmath align* block, tagged with the book's numbers."""
        names = _latex_names(self.basis + self.extra_basis)
        tags = {"chi_parallel": "5.50", "chi_perp": "5.51", "h": "5.52", "K00": "5.46", "dK1": "5.47", "ddK2": "5.48"}
        lhs = {"chi_parallel": r"\chi_{\parallel}", "chi_perp": r"\chi_{\perp}", "h": "h"}
        for name, symbol in (("K00", K00), ("dK1", dK1), ("ddK2", ddK2), ("ddK0", ddK0)):
            lhs[name] = f"{names[symbol]}^{{(\\ell+1)}}"
        lines = ["% two inputs x_pm = x_0 pm dx/2; right sides at layer l"]
        for name, expr in (*self.susceptibilities, *self.updates, self.midpoint_correction):
            tag = rf" \tag{{{tags[name]}}}" if name in tags else r" \notag % derived here, O(delta^2) in the book"
            sep = "" if name == "ddK0" else r" \\"
            expr = sp.collect(expr, [ddK0, ddK2, dK1])
            lines.append(f"{lhs[name]} &= {sp.latex(expr, symbol_names=names)}{tag}{sep}")
        return "\\begin{align*}\n" + "\n".join(lines) + "\n\\end{align*}"


def _latex_names(rows: tuple[Row, ...]) -> dict[sp.Symbol, str]:
    names = {nt.C_b: "C_b", nt.C_W: "C_W", CHI_PAR: r"\chi_{\parallel}", CHI_PERP: r"\chi_{\perp}", H: "h"}
    names |= {
        K00: "{K_{00}}",
        dK1: r"{\delta K_{[1]}}",
        ddK2: r"{\delta\delta K_{[2]}}",
        ddK0: r"{\delta\delta K_{[0]}}",
    }
    for row in rows:
        factor = r"\sigma'^2" if row.factor == "sigma'" else r"\sigma^2"
        names[row.symbol] = rf"{nt.derivative_prefix(row.derivative_order)}\langle {factor} \rangle_{{K_{{00}}}}"
    return names


def _coefficient(expr: sp.Expr, k: int) -> sp.Expr:
    return sp.expand(expr).coeff(eps, k)


@cache
def derive_delta_expansion() -> DeltaExpansion:
    """Derive the two-input recursion to second order in the separation (memoised in memory)."""
    entries = {
        (a, b): nt.C_W * next_layer_expectation(sigma(ua) * sigma(ub))
        for a, b, ua, ub in (("+", "+", _UP, _UP), ("-", "-", _UM, _UM), ("+", "-", _UP, _UM))
    }
    pp, mm, pm = entries["+", "+"], entries["-", "-"], entries["+", "-"]
    gamma = {0: (pp + mm + 2 * pm) / 4, 1: (pp - mm) / 2, 2: (pp + mm - 2 * pm) / 4}  # (5.17)-(5.19)
    parity = {0: (1,), 1: (0, 2), 2: (0, 1)}  # eps powers that must vanish (5.22)-(5.24)
    for a, powers in parity.items():
        if any(pair_form(_coefficient(gamma[a], k)) for k in powers):
            raise BasisError(f"gamma[{a}] breaks parity")
    k00 = nt.C_b + reduce_to_basis(_coefficient(gamma[0], 0))
    dk1 = reduce_to_basis(_coefficient(gamma[1], 1))
    ddk2 = reduce_to_basis(_coefficient(gamma[2], 2))
    ddk0 = reduce_to_basis(_coefficient(gamma[0], 2), BASIS + EXTRA_BASIS)
    if ddK0 in (dk1 + ddk2).free_symbols:
        raise BasisError("ddK0 enters dK1' or ddK2'")
    chi_par = sp.diff(dk1, dK1)
    chi_perp = sp.diff(ddk2, ddK2)
    h = sp.diff(ddk2, dK1, 2) / 2
    if sp.expand(dk1 - chi_par * dK1) != 0 or sp.expand(ddk2 - chi_perp * ddK2 - h * dK1**2) != 0:
        raise BasisError("dK1' or ddK2' has a term beyond (5.47)-(5.48)")
    # each susceptibility is C_W times one row: write that row through the susceptibility symbol
    rows_in = {}
    for symbol, expr in ((CHI_PAR, chi_par), (CHI_PERP, chi_perp), (H, h)):
        (row,) = expr.free_symbols - {nt.C_W}
        rows_in[row] = sp.solve(expr - symbol, row)[0]

    def named(expr: sp.Expr) -> sp.Expr:
        return sp.expand(expr.subs(rows_in))

    return DeltaExpansion(
        basis=BASIS,
        susceptibilities=(("chi_parallel", chi_par), ("chi_perp", chi_perp), ("h", h)),
        updates=(("K00", k00), ("dK1", named(dk1)), ("ddK2", named(ddk2))),
        midpoint_correction=("ddK0", named(ddk0)),
    )
