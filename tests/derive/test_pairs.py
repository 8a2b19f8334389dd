"""Pair expectations at a finite angle (derive/pairs.py) against the book's printed forms (5.158)-(5.161)."""

from __future__ import annotations

import mpmath
import pytest
import sympy as sp

from pdlt.derive import activations
from pdlt.derive.pairs import K_a, K_b, closed_forms, pair_rule, relu_pair, theta

K_d, psi = sp.symbols("K_d psi", positive=True)


def _equal_norms(expr, **extra):
    """expr at K_aa = K_bb = K_d, K_ab = K_d cos(psi), theta = psi (the book's parametrisation (5.146))."""
    K_ab, D, S = sp.symbols("K_ab D S")
    subs = {K_a: K_d, K_b: K_d, K_ab: K_d * sp.cos(psi), D: 2 * K_d * (1 - sp.cos(psi)), theta: psi}
    subs[S] = 2 * K_d * (1 + sp.cos(psi))
    return expr.subs(extra).subs(subs)


def test_relu_pair_is_the_books_arc_cosine_kernel():
    """(5.158) <relu relu> = K_d/(2 pi) [sin psi + (pi - psi) cos psi]; the step pair is (pi - psi)/(2 pi)."""
    step, relu = relu_pair()
    book = (sp.sin(psi) + (sp.pi - psi) * sp.cos(psi)) / (2 * sp.pi)
    assert sp.simplify(relu.subs(theta, psi) - book) == 0
    assert sp.simplify(step.subs(theta, psi) - (sp.pi - psi) / (2 * sp.pi)) == 0


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "abs", "linear"])
def test_scale_invariant_class_matches_5_159_and_5_161(name):
    act = activations.get(name)
    rule = pair_rule(act)
    assert rule.exact
    lo, hi = (sp.sympify(a).subs(dict(act.params)) for a in rule.slopes)
    forms = {k: v.subs(dict(act.params)) for k, v in closed_forms(rule).items()}
    A2 = (hi**2 + lo**2) / 2
    sig = K_d / (2 * sp.pi) * (hi - lo) ** 2 * (sp.sin(psi) - psi * sp.cos(psi)) + A2 * K_d * sp.cos(psi)
    dsig = A2 - psi / (2 * sp.pi) * (hi - lo) ** 2
    assert sp.simplify(_equal_norms(forms["sigma"]) - sig) == 0
    assert sp.simplify(_equal_norms(forms["dsigma"]) - dsig) == 0


@pytest.mark.parametrize("name", ["relu", "abs"])
def test_distance_and_sum_are_the_moments_they_stand_for(name):
    """<(s_a -+ s_b)^2> = A_2 (K_aa + K_bb) -+ 2 <s_a s_b>, at unequal norms, with D, S, K_ab consistent."""
    rule = pair_rule(activations.get(name))
    lo, hi = rule.slopes
    forms = closed_forms(rule)
    K_ab, D, S, gap = sp.symbols("K_ab D S gap")
    A2 = (hi**2 + lo**2) / 2
    subs = {D: K_a + K_b - 2 * K_ab, S: K_a + K_b + 2 * K_ab, gap: rule.gap}
    for key, sign in (("minus", -1), ("plus", 1)):
        want = A2 * (K_a + K_b) + sign * 2 * forms["sigma"]
        diff = (forms[key].subs(subs) - want).subs({K_ab: sp.sqrt(K_a * K_b) * sp.cos(theta)})
        for point in (
            {K_a: sp.Rational(13, 10), K_b: sp.Rational(2, 5), theta: sp.Rational(7, 10)},
            {K_a: 2, K_b: 2, theta: 3},
        ):
            assert abs(sp.N(diff.subs(point), 30)) < 1e-25


def test_gap_branch_keeps_relative_accuracy_at_small_angles():
    """The Taylor branch of the gap function (which cancels like theta^2) agrees with it at 60 digits."""
    rule = pair_rule(activations.get("relu"))
    branch = rule.gap_branch
    assert branch is not None and 0 < branch.switch <= 0.5
    for t in (branch.switch, 1e-3, 1e-8):
        with mpmath.workdps(60):
            exact = sp.N(rule.gap.subs(theta, sp.Float(t, 60)), 60)
            poly = sp.N(branch.polynomial.subs(theta, sp.Float(t, 60)), 60)
            assert abs(poly - exact) <= 2**-55 * abs(exact)


@pytest.mark.parametrize("name", ["tanh", "hard_tanh", "elu", "gelu", "swish"])
def test_other_activations_use_the_mehler_series(name):
    """A kink away from 0 (hard tanh) or a curved piece (elu) is not in the arc-cosine family."""
    assert pair_rule(activations.get(name)).kind == "hermite"


def test_erf_pair_is_derived_and_agrees_with_the_single_input_engine():
    """The arcsine kernel of erf: Price's theorem holds (d/dK_ab <s_a s_b> = <s'_a s'_b>), it vanishes for
    independent inputs, and at K_ab = K_aa = K_bb it is <erf^2>_K as the single-input engine derives it
    independently (arcsin + Stein, derive/expectations.py)."""
    from pdlt.derive.expectations import closed_form
    from pdlt.derive.notation import K

    rule = pair_rule(activations.get("erf"))
    assert rule.exact and rule.reason.startswith("arcsine")
    forms = closed_forms(rule)
    K_ab = sp.Symbol("K_ab")
    assert sp.simplify(sp.diff(forms["sigma"], K_ab) - forms["dsigma"]) == 0
    assert forms["sigma"].subs(K_ab, 0) == 0
    _, single = closed_form(activations.get("erf"), 1)
    diagonal = forms["sigma"].subs({K_ab: K_a, K_b: K_a}).subs(K_a, K)
    for k in (sp.Rational(1, 10), 1, 7):
        assert abs(sp.N((diagonal - single).subs(K, k), 30)) < 1e-25
    minus = forms["minus"].subs({K_b: K_a, K_ab: K_a})
    assert sp.simplify(minus) == 0  # equal inputs: no distance


def test_sin_pair_by_the_characteristic_function():
    """<sin u_a sin u_b> = e^{-(K_aa + K_bb)/2} sinh K_ab and <cos u_a cos u_b> = e^{-(K_aa + K_bb)/2} cosh K_ab,
    each term with one exponent (so nothing overflows), and the diagonal is <sin^2>_K = (1 - e^{-2K})/2."""
    rule = pair_rule(activations.get("sin"))
    assert rule.exact and rule.reason.startswith("sums of exponentials")
    forms = closed_forms(rule)
    K_ab = sp.Symbol("K_ab")
    damp = sp.exp(-(K_a + K_b) / 2)
    assert sp.simplify((forms["sigma"] - damp * sp.sinh(K_ab)).rewrite(sp.exp)) == 0
    assert sp.simplify((forms["dsigma"] - damp * sp.cosh(K_ab)).rewrite(sp.exp)) == 0
    assert all(len([f for f in sp.Mul.make_args(t) if isinstance(f, sp.exp)]) <= 1 for t in forms["sigma"].args)
    assert sp.simplify(forms["sigma"].subs({K_b: K_a, K_ab: K_a}) - (1 - sp.exp(-2 * K_a)) / 2) == 0
