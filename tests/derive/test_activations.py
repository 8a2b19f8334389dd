"""The registry and the split of piecewise activations into smooth pieces."""

from __future__ import annotations

import pytest
import sympy as sp

from pdlt.derive import activations
from pdlt.derive.activations import Activation, ActivationError, split_pieces
from pdlt.derive.notation import z

REQUIRED = {"linear", "relu", "leaky_relu", "abs", "tanh", "sin", "erf", "sigmoid", "softplus",
            "gelu", "swish", "elu", "mish", "hard_tanh"}


def test_registry_has_every_required_activation():
    assert REQUIRED <= set(activations.REGISTRY)
    assert activations.get("silu") is activations.get("swish")


def test_unknown_name_is_one_clear_error():
    with pytest.raises(ActivationError, match="unknown activation 'relu6'; registered: abs, "):
        activations.get("relu6")


@pytest.mark.parametrize("name,points", [
    ("relu", [0]), ("leaky_relu", [0]), ("abs", [0]), ("elu", [0]), ("hard_tanh", [-1, 1]),
    ("tanh", []), ("gelu", []), ("linear", []),
])
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
