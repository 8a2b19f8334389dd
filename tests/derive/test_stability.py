"""Stable closed forms: small-K Taylor branches where a closed form cancels, one exponential per term."""

from __future__ import annotations

import mpmath
import sympy as sp

from pdlt.derive import activations
from pdlt.derive.expectations import expectations
from pdlt.derive.notation import K
from pdlt.derive.recursion import moment_derivatives
from pdlt.derive.stability import DEGREE, REMAINDER, exponential_terms, magnitude, small_k_branch


def test_sin_squared_gets_its_taylor_branch():
    expr = (1 - sp.exp(-2 * K)) / 2
    branch = small_k_branch(expr)
    assert branch is not None and 0 < branch.switch <= 0.5
    assert sp.expand(branch.polynomial - sp.series(expr, K, 0, DEGREE + 1).removeO()) == 0
    # below the switch the polynomial is the closed form to 2^-60 (what the switch was chosen for)
    with mpmath.workdps(50):
        for k in (sp.Float(branch.switch, 50), sp.Float(branch.switch, 50) / 3, sp.Float("1e-9", 50)):
            exact = mpmath.mpf(sp.N(expr.subs(K, k), 50))
            assert abs(mpmath.mpf(sp.N(branch.polynomial.subs(K, k), 50)) - exact) <= 2 * REMAINDER * exact


def test_closed_forms_that_do_not_cancel_have_no_branch():
    relu = expectations(activations.get("relu"), moment_derivatives(2))
    assert all(small_k_branch(e.expr) is None for e in relu.values())
    assert small_k_branch((1 + sp.exp(-2 * K)) / 2) is None  # <cos^2>: no cancellation at K = 0
    # not analytic at K = 0 (the truncated moments of a piecewise sigma): no Taylor branch, no error
    assert small_k_branch(sp.exp(-1 / (2 * K)) * K) is None


def test_every_sin_row_that_cancels_has_a_branch():
    sin = expectations(activations.get("sin"), moment_derivatives(2))
    branched = {key for key, e in sin.items() if small_k_branch(e.expr) is not None}
    assert branched == {(1, 0), (2, 0), (2, 1), (3, 0)}  # the rows that vanish at K = 0


def test_exponentials_are_combined_so_nothing_overflows():
    expr = sp.exp(16 * K) * sp.exp(-18 * K) - sp.exp(-2 * K) / 3
    assert exponential_terms(expr) == 2 * sp.exp(-2 * K) / 3


def test_magnitude_is_the_sum_of_absolute_terms():
    assert magnitude(1 - 2 * sp.exp(-K)) == 1 + 2 * sp.Abs(sp.exp(-K))


def test_a_function_flat_at_zero_gets_no_branch():
    """The truncated moments of max(0, z - 1) are e^{-1/(2K)} times polynomials in sqrt(K): they cancel
    as K -> 0, but their Taylor series at 0 is identically 0. A branch would replace them by 0."""
    from pdlt.derive.parse import parse_activation

    act = activations.Activation("shifted_relu", parse_activation("max(0, z - 1)"))
    assert all(small_k_branch(e.expr) is None for e in expectations(act, moment_derivatives(2)).values())
