"""The engine against symbolic truths: the book's recursions, deep linear networks, layer 2."""

from __future__ import annotations

import pytest
import sympy as sp

from pdlt.derive import activations
from pdlt.derive import notation as nt
from pdlt.derive.expectations import closed_form
from pdlt.derive.recursion import cumulant_derivatives, derive_step, moment_derivatives, state_keys

K = nt.K
eps = sp.Symbol("eps")


def specialise(order: int, act_name: str, renormalized: bool = False) -> dict:
    """new_state with s and mu replaced by the activation's closed forms (exact rules only)."""
    step = derive_step(order, renormalized)
    act = activations.get(act_name)
    mu = {}
    for a, i in moment_derivatives(order):
        rule, expr = closed_form(act, a)
        mu[nt.mu(a, i)] = sp.diff(expr, K, i)
    s_vals = {nt.s(m, j): step.cumulants[(m, j)].subs(mu) for m, j in cumulant_derivatives(order)}
    return {key: sp.expand(expr.subs(s_vals)) for key, expr in step.new_state.items()}


def test_first_order_is_the_books_recursion():
    """(5.108)-(5.111) with the width ratios of (4.115), (4.119), generic in sigma."""
    step = derive_step(1)
    g, chi_over_cw, g2 = nt.s(1, 0), nt.s(1, 1), nt.s(1, 2)
    var = nt.s(2, 0)
    V, G1, r, C_b, C_W = nt.c(2, 1), nt.c(1, 1), nt.r, nt.C_b, nt.C_W
    chi = C_W * chi_over_cw
    j_over_8K2 = C_W * g2 / 2  # j(K)/(8K^2) = (C_W/2) d^2 g / dK^2, by the heat equation
    assert sp.expand(step.new_state[(1, 0)] - (C_b + C_W * g)) == 0
    assert sp.expand(step.new_state[(2, 1)] - (r * chi**2 * V + C_W**2 * var)) == 0
    assert sp.expand(step.new_state[(1, 1)] - r * (chi * G1 + j_over_8K2 * V)) == 0
    # kappa_2 of sigma^2 is the book's <sigma^4> - <sigma^2>^2
    assert sp.expand(step.cumulants[(2, 0)] - (nt.mu(2, 0) - nt.mu(1, 0) ** 2)) == 0


def test_j_of_K_matches_the_heat_equation_form():
    """The book's j(K) = C_W <sigma^2 [(z^2/K)^2 - 6 z^2/K + 3]>_K equals 4 C_W K^2 g''(K)."""
    from pdlt.derive.expectations import hermite_weight

    assert sp.expand(4 * K**2 * hermite_weight(2) - ((nt.z**2 / K) ** 2 - 6 * nt.z**2 / K + 3)) == 0
    assert sp.expand(hermite_weight(1) - (nt.z**2 - K) / (2 * K**2)) == 0  # book (5.53)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_deep_linear_networks_are_exact_at_every_order(order):
    """G_2m of a deep linear net is prod c_2m(n) G_2^m (book 3.45-3.47): the cumulants of the metric
    truncated at 1/n^p must equal the exact ones expanded to 1/n^p, layer after layer."""
    new = specialise(order, "linear")
    C_W, G1, depth = sp.Rational(3, 2), sp.Rational(7, 5), 4
    state = {key: (G1 if key == (1, 0) else sp.Integer(0)) for key in state_keys(order)}
    for _ in range(1, depth):
        values = {nt.c(m, k): v for (m, k), v in state.items() if (m, k) != (1, 0)}
        values.update({nt.C_W: C_W, nt.C_b: 0, nt.r: 1})
        state = {key: sp.expand(expr.subs(values).subs(K, state[(1, 0)])) for key, expr in new.items()}

    def chi2_moment(m):  # E[(chi^2_n / n)^m] = prod_k (1 + 2k/n), with eps = 1/n
        return sp.prod([1 + 2 * k * eps for k in range(m)])

    moments = [sp.Integer(1)] + [
        C_W ** (m * (depth - 1)) * G1**m * chi2_moment(m) ** (depth - 1) for m in range(1, order + 2)
    ]
    assert_truncation_of(state, moments, order)


def assert_truncation_of(state: dict, moments: list, order: int) -> None:
    """The state's coefficients are the exact cumulants (from the raw moments, series in eps)
    truncated at eps^order."""
    kappa = {}
    for m in range(1, order + 2):
        kappa[m] = sp.expand(
            moments[m] - sum(sp.binomial(m - 1, i - 1) * kappa[i] * moments[m - i] for i in range(1, m))
        )
    for m, k in state_keys(order):
        assert state[(m, k)] == kappa[m].coeff(eps, k), (m, k)


def test_deep_linear_unequal_widths():
    """Same with widths 2n, 3n, n: the ratios r = n_l/n_{l-1} must come out right."""
    order = 2
    new = specialise(order, "linear")
    alphas = [2, 3, 1]
    state = {key: (sp.Integer(1) if key == (1, 0) else sp.Integer(0)) for key in state_keys(order)}
    for l in range(1, len(alphas) + 1):
        ratio = 1 if l == 1 else sp.Rational(alphas[l - 1], alphas[l - 2])
        values = {nt.c(m, k): v for (m, k), v in state.items() if (m, k) != (1, 0)}
        values.update({nt.C_W: 1, nt.C_b: 0, nt.r: ratio})
        state = {key: sp.expand(expr.subs(values).subs(K, state[(1, 0)])) for key, expr in new.items()}
    # exact: E[G^m] = prod_l prod_k (1 + 2k/(alpha_l n)); expansion variable 1/n_{L-1} = eps
    last = alphas[-1]
    moments = [sp.Integer(1)]
    for m in range(1, order + 2):
        moments.append(sp.prod([1 + 2 * k * eps * last / a for a in alphas for k in range(m)]))
    assert_truncation_of(state, moments, order)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_layer_two_is_exact_at_any_width(order):
    """From a deterministic layer 1, kappa_m(G(2)) = C_W^m s_m(K) / n_1^(m-1) exactly (book 4.37,
    4.40, 4.59): leading coefficients only, every 1/n correction zero."""
    step = derive_step(order)
    zero = {nt.c(m, k): 0 for m, k in state_keys(order) if (m, k) != (1, 0)}
    for (m, k), expr in step.new_state.items():
        got = sp.expand(expr.subs(zero))
        if k == m - 1:
            expected = (nt.C_b if m == 1 else 0) + nt.C_W**m * nt.s(m, 0)
            assert sp.expand(got - expected) == 0
        else:
            assert got == 0, (m, k)


def test_third_cumulant_at_layer_two_is_book_4_59():
    """kappa_3 of sigma^2 is <s^6> - 3 <s^4><s^2> + 2 <s^2>^3 (4.59, single input)."""
    step = derive_step(2)
    mu = nt.mu
    assert sp.expand(step.cumulants[(3, 0)] - (mu(3, 0) - 3 * mu(2, 0) * mu(1, 0) + 2 * mu(1, 0) ** 3)) == 0


def test_relu_six_point_vertex_is_the_epilogue_recursion():
    """(eps.20): U' = C_W^3/8 [U + 30 V K + 44 K^3] at equal widths."""
    new = specialise(2, "relu")
    U, V = nt.c(3, 2), nt.c(2, 1)
    got = new[(3, 2)].subs(nt.r, 1)
    assert sp.expand(got - nt.C_W**3 / 8 * (U + 30 * V * K + 44 * K**3)) == 0


def test_scale_invariant_class_has_no_nlo_metric_and_linear_vertex_growth():
    """(5.116)-(5.120): for ReLU, G{1} is never sourced and V' = chi^2 (5 K^2 + V)."""
    new = specialise(1, "relu")
    assert sp.expand(new[(1, 1)] - nt.r * nt.C_W / 2 * nt.c(1, 1)) == 0
    assert sp.expand(new[(2, 1)] - nt.C_W**2 / 4 * (5 * K**2 + nt.r * nt.c(2, 1))) == 0


def test_renormalized_hyperparameters_add_the_book_5_140_source():
    """With C = c{0} + c{1}/n_l, G{1}' gains c_b{1} + c_W{1} g(K) (book 5.140)."""
    step = derive_step(1, renormalized=True)
    plain = derive_step(1).new_state[(1, 1)].subs({nt.C_W: nt.hyper("C_W", 0)})
    extra = sp.expand(step.new_state[(1, 1)] - plain)
    assert sp.expand(extra - (nt.hyper("C_b", 1) + nt.hyper("C_W", 1) * nt.s(1, 0))) == 0


def test_order_zero_is_the_infinite_width_kernel():
    step = derive_step(0)
    assert list(step.new_state) == [(1, 0)]
    assert step.new_state[(1, 0)] == nt.C_b + nt.C_W * nt.s(1, 0)


def test_bad_order():
    with pytest.raises(ValueError, match="non-negative"):
        derive_step(-1)


def test_jupyter_rendering():
    text = derive_step(1)._repr_latex_()
    assert text.startswith("$$") and r"\chi_{\parallel}" in text and "aligned" in text
