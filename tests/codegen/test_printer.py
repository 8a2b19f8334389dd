"""The strict numba printer: tables for what it knows, an error for everything else."""

from __future__ import annotations

import pytest
import sympy as sp

from pdlt.codegen.printer import NumbaPrinter, UnsupportedExpression, print_pairs

x, y = sp.symbols("x y", real=True)
BIND = {x: "x", y: "y"}


def p(expr):
    return NumbaPrinter(BIND).doprint(expr)


@pytest.mark.parametrize(
    "expr,text",
    [
        (sp.tanh(x), "math.tanh(x)"),
        (sp.erf(x) + sp.erfc(y), "math.erf(x) + math.erfc(y)"),
        (sp.Rational(1, 3) * x, "(1/3)*x"),
        (sp.sqrt(x), "math.sqrt(x)"),
        (1 / sp.sqrt(x), "(1.0/math.sqrt(x))"),
        (1 / (1 + sp.exp(-x)), "(1.0/(1 + math.exp(-x)))"),
        (x**3, "x**3"),
        (sp.pi * x, "math.pi*x"),
        (sp.asin(x), "math.asin(x)"),
    ],
)
def test_known_functions(expr, text):
    assert p(expr) == text


@pytest.mark.parametrize(
    "expr",
    [
        sp.Heaviside(x),
        sp.Piecewise((x, x > 0), (0, True)),
        sp.gamma(x),
        sp.I * x,
        sp.zoo,
        sp.besselj(0, x),
        sp.oo * x,
    ],
)
def test_refuses_what_numba_cannot_compute(expr):
    with pytest.raises(UnsupportedExpression):
        p(expr)


def test_unbound_symbol_is_an_error():
    with pytest.raises(UnsupportedExpression, match="no binding"):
        NumbaPrinter({}).doprint(x + 1)


def test_assignments_share_subexpressions():
    lines = [f"{t} = {e}" for t, e in print_pairs([("a", sp.exp(x) * y), ("b", sp.exp(x) + 1)], BIND, "t")]
    assert lines == ["t0 = math.exp(x)", "a = t0*y", "b = t0 + 1"]


def test_printed_code_evaluates_to_the_expression():
    import math

    expr = sp.log(1 + sp.exp(x)) * sp.tanh(y) / (1 + x**2)
    code = p(expr)
    value = eval(code, {"math": math, "x": 0.3, "y": -1.2})  # our own generated code, not user text
    assert value == pytest.approx(float(expr.subs({x: 0.3, y: -1.2})), rel=1e-14)


@pytest.mark.parametrize(
    ("expr", "exact"),
    [
        (sp.log(1 + sp.exp(x)), lambda v: max(v, 0) + __import__("math").log1p(__import__("math").exp(-abs(v)))),
        (sp.log(sp.cosh(x)), None),
    ],
)
def test_softplus_and_log_cosh_do_not_overflow(expr, exact):
    """log(1 + e^x) and log(cosh x) are printed in forms that stay finite where e^x overflows
    (x > 709); checked against mpmath at 30 digits from -800 to 800."""
    import math

    import mpmath

    text = NumbaPrinter(BIND).doprint(expr)
    f = eval(f"lambda x: {text}", {"math": math})  # our own printed code, not user input
    g = sp.lambdify(x, expr, "mpmath")
    for v in (-800.0, -30.0, -1.0, 0.0, 0.5, 30.0, 800.0):
        with mpmath.workdps(30):
            ref = g(mpmath.mpf(v))
        assert math.isfinite(f(v)) and abs(f(v) - ref) <= 4e-16 * max(1.0, abs(ref)), (text, v)


def test_the_logistic_factor_is_written_without_overflow():
    from pdlt.derive.stability import overflow_safe

    expr = overflow_safe(x * sp.exp(x) / (sp.exp(x) + 1))
    assert expr == x / (1 + sp.exp(-x))
