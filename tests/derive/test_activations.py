"""The registry and the split of piecewise activations into smooth pieces."""

from __future__ import annotations

import re

import pytest
import sympy as sp

from pdlt.derive import activations
from pdlt.derive.activations import Activation, ActivationError, split_pieces
from pdlt.derive.notation import z

REQUIRED = {
    "linear",
    "relu",
    "leaky_relu",
    "abs",
    "tanh",
    "sin",
    "erf",
    "sigmoid",
    "softplus",
    "gelu",
    "swish",
    "elu",
    "mish",
    "hard_tanh",
}


def test_registry_has_every_required_activation():
    assert REQUIRED <= set(activations.REGISTRY)
    assert activations.get("silu") is activations.get("swish")


def test_unknown_name_is_one_clear_error():
    with pytest.raises(ActivationError, match="unknown activation 'relu6'; registered: abs, "):
        activations.get("relu6")


@pytest.mark.parametrize(
    "name,points",
    [
        ("relu", [0]),
        ("leaky_relu", [0]),
        ("abs", [0]),
        ("elu", [0]),
        ("hard_tanh", [-1, 1]),
        ("tanh", []),
        ("gelu", []),
        ("linear", []),
    ],
)
def test_breakpoints(name, points):
    assert [float(b) for b in activations.get(name).breakpoints] == points


def test_pieces_reproduce_the_activation():
    for name, act in activations.REGISTRY.items():
        f = act.with_defaults()
        for piece in act.pieces:
            lo = -5 if piece.lo == -sp.oo else piece.lo
            hi = 5 if piece.hi == sp.oo else piece.hi
            for t in (sp.Rational(1, 3), sp.Rational(2, 3)):
                x = lo + t * (hi - lo)
                expr = piece.expr.subs(dict(act.params))
                assert abs(sp.N(expr.subs(z, x) - f.subs(z, x))) < 1e-12, (name, x)


def test_even_squares_halve_quadrature():
    assert activations.get("tanh").square_is_even
    assert activations.get("hard_tanh").square_is_even
    assert not activations.get("gelu").square_is_even
    assert not activations.get("relu").square_is_even


def test_nonlinear_breakpoint_is_refused():
    with pytest.raises(ActivationError, match="not linear in z"):
        split_pieces(sp.Max(0, z**2 - 1))


def test_redundant_breakpoints_merge():
    act = Activation("x", sp.Max(z, z))
    assert len(act.pieces) == 1


@pytest.mark.parametrize("name", sorted(activations.REGISTRY))
def test_registry_activations_are_real_on_the_whole_line(name):
    activations.check_real_line(activations.get(name).with_defaults(), name)


@pytest.mark.parametrize(
    "text",
    [
        "z*tanh(log(1+exp(z)))",
        "log(cosh(z))",
        "max(0, z - 1)",
        "z/(1+abs(z))",
        "sqrt(1+z**2)",
        "log(1+z**2)",
        "1/(1+z**2)",
        "heaviside(z)",
        "erf(z)",
    ],
)
def test_real_formulas_pass_the_domain_check(text):
    from pdlt.derive.parse import parse_activation

    activations.check_real_line(parse_activation(text), text)


@pytest.mark.parametrize(
    "text,where",
    [("1/z", "{0}"), ("sqrt(z)", "Interval.open(-oo, 0)"), ("log(z)", "Interval(-oo, 0)"), ("1/(z - 2)", "{2}")],
)
def test_formulas_undefined_somewhere_on_the_line_are_refused(text, where):
    from pdlt.derive.parse import parse_activation

    with pytest.raises(activations.ActivationError, match=f"not for z in {re.escape(where)}"):
        activations.check_real_line(parse_activation(text), text)
