"""Lower a derivation to plain data: the one place where sympy objects become strings.

``lower(activation, order)`` returns a :class:`KernelSpec` holding only strings, numbers, tuples
and lists. Templates see nothing else (STYLE habit 2; ``tests/codegen`` checks it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from importlib import metadata

import mpmath
import sympy as sp

from pdlt.derive import notation as nt
from pdlt.derive.activations import Activation, ActivationError
from pdlt.derive.expectations import expectations, perp_expectations
from pdlt.derive.quadrature import (
    CALIBRATION_KERNELS,
    GL_DEGREES,
    TOLERANCE,
    calibrate_trapezoid,
    gauss_legendre,
    truncation_radius,
)
from pdlt.derive.recursion import cumulant_derivatives, derive_step, moment_derivatives

from .printer import NumbaPrinter, print_assignments


@dataclass(frozen=True)
class KernelSpec:
    """Everything a generated module needs, as plain data."""

    name: str
    formula: str
    order: int
    command: str
    params: tuple[tuple[str, float], ...]
    state: tuple[tuple[int, int, str], ...]
    expectations: tuple[tuple[int, int, str, str], ...]
    quadrature: dict
    quadrature_pairs: tuple[tuple[int, int], ...]
    quadrature_powers: tuple[int, ...]
    gauss_legendre: dict | None
    max_i: int
    sigma_lines: tuple[str, ...]
    dsigma_lines: tuple[str, ...]
    perp_expectations: tuple[tuple[int, str, str], ...]
    accuracy: dict
    qtop: int
    exact_lines: tuple[str, ...]
    exact_magnitude_lines: tuple[str, ...]
    exact_perp_lines: tuple[str, ...]
    exact_perp_magnitude_lines: tuple[str, ...]
    cumulant_lines: tuple[str, ...]
    step_lines: tuple[str, ...]

    def hash(self) -> str:
        """Content hash of the spec (not of tool versions), printed in the header."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def context(self) -> dict:
        ctx = asdict(self)
        ctx["spec_hash"] = self.hash()
        ctx["pdlt_version"] = _version("pdlt")
        ctx["sympy_version"] = sp.__version__
        ctx["n_params"] = len(self.params)
        ctx["param_names"] = ", ".join(p for p, _ in self.params) or "none"
        return ctx


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


def symbol_map(act: Activation, order: int) -> dict[sp.Symbol, str]:
    """How every symbol of the derivation is spelled in generated code."""
    mapping: dict[sp.Symbol, str] = {nt.K: "K", nt.r: "r", nt.z: "z"}
    for j, sym in enumerate(act.param_symbols):
        mapping[sym] = f"params[{j}]"
    top = order + 1
    for m in range(1, top + 1):
        for k in range(m - 1, order + 1):
            if (m, k) != (1, 0):
                mapping[nt.c(m, k)] = f"c[{m}, {k}]"
    for m, j in cumulant_derivatives(order):
        mapping[nt.s(m, j)] = f"s[{m}, {j}]"
    for a, i in moment_derivatives(order):
        mapping[nt.mu(a, i)] = f"mu[{a}, {i}]"
    for k in range(order + 1):
        mapping[nt.hyper("C_b", k)] = f"cb[{k}]"
        mapping[nt.hyper("C_W", k)] = f"cw[{k}]"
    return mapping


def magnitude(expr: sp.Expr) -> sp.Expr:
    """A bound on the size of the terms that floating point adds up when evaluating ``expr``:
    every sum becomes the sum of absolute values. eps times it bounds the roundoff, which
    matters where a closed form cancels (hard tanh at large K)."""
    if expr.is_Add:
        return sp.Add(*[magnitude(a) for a in expr.args])
    if expr.is_Mul:
        return sp.Mul(*[magnitude(a) for a in expr.args])
    if expr.is_Pow and expr.exp.is_Integer:
        return magnitude(expr.base) ** expr.exp
    if expr.is_Number:
        return abs(expr)
    return sp.Abs(expr)


def _sigma_lines(act: Activation, mapping: dict[sp.Symbol, str]) -> tuple[str, ...]:
    printer = NumbaPrinter(mapping)
    pieces = act.pieces
    lines: list[str] = []
    for piece in pieces[:-1]:
        lines.append(f"if z < {float(piece.hi)!r}:")
        lines.append(f"    return {printer.doprint(piece.expr)}")
    lines.append(f"return {printer.doprint(pieces[-1].expr)}")
    return tuple(lines)


def _quadrature_spec(act: Activation, order: int, quad: list, qpairs: tuple, perp_row: int) -> tuple[dict, dict | None]:
    """Which rule the generated quadrature uses and its constants (calibrated for smooth sigma)."""
    if not quad:
        return {"kind": "none"}, None
    if act.is_piecewise:
        x_max = truncation_radius(max(2 * min(a, order + 1) + 2 * i for a, i in qpairs))
        (x1, w1), (x2, w2) = gauss_legendre(GL_DEGREES[0]), gauss_legendre(GL_DEGREES[1])
        return (
            {"kind": "gauss-legendre", "degrees": GL_DEGREES, "x_max": x_max},
            {"x1": x1, "w1": w1, "x2": x2, "w2": w2, "breakpoints": tuple(float(b) for b in act.breakpoints)},
        )
    rule = calibrate_trapezoid(act, tuple(p for p in quad if p[0] != perp_row) or ((1, 0),))
    return (
        {"kind": "trapezoid", "beta": rule.beta, "h_max": rule.h_max, "x_max": rule.x_max, "even": act.square_is_even},
        None,
    )


def _accuracy() -> dict:
    """How accurate each path is and how that is checked, for the module's ACCURACY table."""
    return {
        "exact": "closed form; with check=True err = 8 eps * (sum of |terms| it adds), a roundoff bound",
        "trapezoid": (
            f"spacing calibrated against mpmath to {mpmath.nstr(TOLERANCE, 1)} of the integrand's L1 size "
            f"at K = {', '.join(CALIBRATION_KERNELS)}; "
            "with check=True err = |T(h) - M(h)|/2 + 8 eps * L1 size"
        ),
        "gauss-legendre": (
            f"{GL_DEGREES[1]} nodes per piece; with check=True err = |Q_{GL_DEGREES[0]} - "
            f"Q_{GL_DEGREES[1]}| + 8 eps * L1 size"
        ),
        "tests": "every expectation within its err (x10) of 30-digit mpmath (tests/generated/test_kernels.py)",
    }


def lower(act: Activation, order: int, command: str = "python -m pdlt.codegen") -> KernelSpec:
    """The plain-data spec of the order-``order`` kernels for ``act``."""
    step = derive_step(order, renormalized=True)
    pairs = moment_derivatives(order)
    exps = dict(expectations(act, pairs))
    perp_row = order + 2  # mu[perp_row, i] = d^i/dK^i <sigma'^2>_K, for chi_perp and h
    try:
        derivative = act.derivative()
    except ActivationError:  # sigma jumps: no sigma'^2, so no chi_perp (the flow is unaffected)
        derivative = None
    if derivative is not None:
        for i, e in perp_expectations(act).items():
            exps[(perp_row, i)] = e
    mapping = symbol_map(act, order)
    max_i = max(max(i for _, i in pairs), 1)  # perp needs d/dK <sigma'^2>

    exact = [(f"mu[{a}, {i}]", e.expr) for (a, i), e in exps.items() if e.exact and a != perp_row]
    exact_mag = [(f"mag[{a}, {i}]", magnitude(e.expr)) for (a, i), e in exps.items() if e.exact and a != perp_row]
    exact_perp = [(f"mu[{a}, {i}]", e.expr) for (a, i), e in exps.items() if e.exact and a == perp_row]
    exact_perp_mag = [(f"mag[{a}, {i}]", magnitude(e.expr)) for (a, i), e in exps.items() if e.exact and a == perp_row]
    quad = [(a, i) for (a, i), e in exps.items() if not e.exact]
    qpowers = tuple(sorted({a for a, _ in quad}))
    plain_powers = [a for a in qpowers if a != perp_row]
    qtop = max(plain_powers) if plain_powers else (perp_row if qpowers else 0)
    qpairs = tuple((a, max(i for b, i in quad if b == a)) for a in qpowers)

    quadrature, gl = _quadrature_spec(act, order, quad, qpairs, perp_row)
    state = tuple((m, k, nt.state_name(m, k)) for m in range(1, order + 2) for k in range(m - 1, order + 1))
    exp_table = tuple((a, i, e.path, e.rule) for (a, i), e in sorted(exps.items()) if a != perp_row)
    perp_table = tuple((i, e.path, e.rule) for (a, i), e in sorted(exps.items()) if a == perp_row)
    params = tuple((sym.name, float(val)) for sym, val in act.params)

    step_out = [(f"out[{m}, {k}]", step.new_state[(m, k)]) for m, k in step.state_keys]
    cum_out = [(f"s[{m}, {j}]", step.cumulants[(m, j)]) for m, j in cumulant_derivatives(order)]
    return KernelSpec(
        name=act.name,
        formula=sp.sstr(act.expr),
        order=order,
        command=command,
        params=params,
        state=state,
        expectations=exp_table,
        quadrature=quadrature,
        quadrature_pairs=qpairs,
        quadrature_powers=qpowers,
        gauss_legendre=gl,
        max_i=max_i,
        sigma_lines=_sigma_lines(act, mapping),
        dsigma_lines=_sigma_lines(derivative, mapping) if derivative is not None else ("return math.nan",),
        perp_expectations=perp_table,
        accuracy=_accuracy(),
        qtop=qtop,
        exact_lines=tuple(print_assignments(exact, mapping, "e")) if exact else (),
        exact_magnitude_lines=tuple(print_assignments(exact_mag, mapping, "g")) if exact else (),
        exact_perp_lines=tuple(print_assignments(exact_perp, mapping, "p")) if exact_perp else (),
        exact_perp_magnitude_lines=tuple(print_assignments(exact_perp_mag, mapping, "q")) if exact_perp else (),
        cumulant_lines=tuple(print_assignments(cum_out, mapping, "u")),
        step_lines=tuple(print_assignments(step_out, mapping, "t")),
    )
