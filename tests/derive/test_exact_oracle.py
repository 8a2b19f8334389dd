"""The derived recursion against exact finite-width moments, for activations with g'' != 0.

Deep linear and ReLU networks (test_recursion.py) have g(K) = <sigma^2>_K linear in K, so every
term of the recursion that carries g'', g''' or g'''' is invisible to them, and the mpmath
references evaluate the same ``derive_step`` that the generator uses. Here a polynomial sigma makes
the exact moments of G(l) polynomials in the inverse widths (``exact_moments.py``: Isserlis and
the cumulants of a mean of iid variables, no expansion at all), and every coefficient c[m][k] of
the derived recursion, iterated layer by layer, must equal the exact one: in rational arithmetic,
at every layer, orders 1-4, unequal widths, plain and 1/n-renormalized hyperparameters. A wrong
sign, a wrong factorial or a dropped term anywhere in the order-p physics changes a rational
number and fails, whatever its size.
"""

from __future__ import annotations

from fractions import Fraction as F

import numpy as np
import pytest
import sympy as sp
from exact_moments import derivative_at, gaussian_moment_polynomial, metric_cumulants

from pdlt.derive import notation as nt
from pdlt.derive.activations import Activation
from pdlt.derive.recursion import cumulant_derivatives, derive_step, state_keys


def recursion_flow(
    sigma: dict[int, F], alphas: list[F], C_b: list[F], C_W: list[F], K1: F, order: int
) -> list[dict[tuple[int, int], sp.Rational]]:
    """The state c[m][k] of layers 1..L from ``derive_step`` with sigma's exact Gaussian moments.

    Hidden widths n_l = n / alphas[l-1], so r = n_l / n_{l-1} = alphas[l-2] / alphas[l-1].
    ``C_b``, ``C_W`` hold the 1/n_l^k parts (book 5.138); the renormalized derivation takes them.
    """
    step = derive_step(order, renormalized=True)
    state = {key: sp.Integer(0) for key in state_keys(order)}
    state[(1, 0)] = sp.Rational(K1)
    layers = [state]
    hyper = {
        nt.hyper(name, k): sp.Rational(values[k]) if k < len(values) else sp.Integer(0)
        for name, values in (("C_b", C_b), ("C_W", C_W))
        for k in range(order + 1)
    }
    for l in range(1, len(alphas) + 1):
        K = F(str(state[(1, 0)]))
        mu = {
            nt.mu(a, i): sp.Rational(derivative_at(gaussian_moment_polynomial(sigma, 2 * a), i, K))
            for a in range(1, order + 2)
            for i in range(0, 2 * (order + 1 - a) + 1)
        }
        values = {nt.s(m, j): step.cumulants[(m, j)].xreplace(mu) for m, j in cumulant_derivatives(order)}
        values.update({nt.c(m, k): v for (m, k), v in state.items() if (m, k) != (1, 0)})
        values[nt.r] = sp.Rational(1) if l == 1 else sp.Rational(alphas[l - 2] / alphas[l - 1])
        values.update(hyper)
        state = {key: sp.expand(step.new_state[key].xreplace(values)) for key in state_keys(order)}
        layers.append(state)
    return layers


def assert_matches_exact(sigma: dict[int, F], alphas: list[F], C_b: list[F], C_W: list[F], K1: F, order: int) -> None:
    derived = recursion_flow(sigma, alphas, C_b, C_W, K1, order)
    exact = metric_cumulants(sigma, alphas, C_b, C_W, K1, order + 1, order)
    for l in range(2, len(alphas) + 2):
        alpha = alphas[l - 2]  # 1/n_{l-1} = alpha_{l-1} eps
        for m, k in state_keys(order):
            series = exact[l - 1][m]
            want = series[k] / alpha**k if k < len(series) else F(0)
            got = derived[l - 1][(m, k)]
            assert got.is_Rational and F(int(got.p), int(got.q)) == want, (
                f"layer {l}, {nt.state_name(m, k)} = c[{m}][{k}]: derived {got}, exact {want}"
            )


# sigma as {power of z: coefficient}. What each reaches in g(K) = <sigma^2>_K:
SIGMAS = {
    "z^2": {2: F(1)},  # g = 3K^2: g'' != 0
    "z+z^2/2": {1: F(1), 2: F(1, 2)},  # g = K + 3K^2/4: odd and even parts, g'' != 0
    "z^3/2": {3: F(1, 2)},  # g = 15K^3/4: g''' != 0
    "z+z^4/8": {1: F(1), 4: F(1, 8)},  # g = K + 105K^4/64 (+ a z^5 cross term of zero mean): g'''' != 0
}


def test_the_oracle_activations_reach_every_derivative_of_g():
    """Power: the terms the recursion multiplies by g'', g''', g'''' are all exercised."""
    reached = set()
    for sigma in SIGMAS.values():
        g = gaussian_moment_polynomial(sigma, 2)
        reached |= {j for j in range(2, 5) if derivative_at(g, j, F(1, 3)) != 0}
    assert reached == {2, 3, 4}


def test_the_oracle_is_exact_for_deep_linear_networks():
    """The oracle itself against book (3.45-3.47): E[G(L)^m] = K^m prod_l prod_k (1 + 2k/n_l)."""
    alphas = [F(2), F(3), F(1)]
    layers = metric_cumulants({1: F(1)}, alphas, [F(0)], [F(1)], F(1), 3, None)
    eps = sp.Symbol("eps")
    moments = [sp.prod([1 + 2 * k * a * eps for a in alphas for k in range(m)]) for m in range(4)]
    kappa2 = sp.Poly(sp.expand(moments[2] - moments[1] ** 2), eps).all_coeffs()[::-1]
    kappa3 = sp.Poly(sp.expand(moments[3] - 3 * moments[2] * moments[1] + 2 * moments[1] ** 3), eps).all_coeffs()[::-1]
    assert [sp.Rational(v) for v in layers[-1][2]] == kappa2
    assert [sp.Rational(v) for v in layers[-1][3]] == kappa3


def test_truncation_agrees_with_the_exact_rational_function():
    """Truncating the oracle's arithmetic at eps^p keeps every coefficient through eps^p."""
    args = (SIGMAS["z+z^2/2"], [F(1), F(2), F(1, 2)], [F(1, 5)], [F(2, 3)], F(1, 2), 4)
    exact = metric_cumulants(*args, None)
    truncated = metric_cumulants(*args, 3)
    for l in range(4):
        for m in range(1, 5):
            assert truncated[l][m] == (exact[l][m] + [F(0)] * 4)[: len(truncated[l][m])]
            assert len(truncated[l][m]) <= 4


@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize("name", ["z^2", "z+z^2/2"])
def test_recursion_is_exact_for_quadratic_activations(name, order):
    """Depth 4, widths n/2, n/3, n: K, G{1..p}, V, V{1..}, U, ... at layers 2-4, exactly."""
    assert_matches_exact(SIGMAS[name], [F(2), F(3), F(1)], [F(1, 10)], [F(2, 5)], F(3, 4), order)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_recursion_is_exact_for_a_cubic_activation(order):
    assert_matches_exact(SIGMAS["z^3/2"], [F(1), F(3, 2), F(1, 2)], [F(1, 4)], [F(1, 3)], F(1, 2), order)


@pytest.mark.parametrize("order", [2, 3])
def test_recursion_is_exact_with_a_fourth_derivative(order):
    """g'''' != 0: the Delta^4/4! term of the Taylor expansion enters G{2} (order 2)."""
    assert_matches_exact(SIGMAS["z+z^4/8"], [F(1), F(2)], [F(1, 3)], [F(1, 2)], F(2, 3), order)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_renormalized_hyperparameters_are_exact(order):
    """C = C{0} + C{1}/n_l + C{2}/n_l^2 (book 5.138): the extra sources at every order."""
    assert_matches_exact(
        SIGMAS["z+z^2/2"],
        [F(1), F(2), F(1)],
        [F(1, 10), F(1, 7), F(-1, 11)],
        [F(1, 2), F(1, 3), F(-1, 5)],
        F(3, 5),
        order,
    )


def test_generated_kernels_agree_with_the_exact_moments(tmp_path, monkeypatch):
    """The whole pipeline (derive, lower, print, render, numba) for sigma = z + z^2/2 at order 2,
    in floating point, against the exact rational coefficients: relative 1e-12 (a few ulps per
    layer of closed-form polynomial arithmetic at these magnitudes)."""
    from pdlt.codegen.usercache import kernels

    monkeypatch.setenv("PDLT_CACHE_DIR", str(tmp_path))
    z = nt.z
    mod = kernels(Activation("oracle_quadratic", z + z**2 / 2), 2)
    alphas, C_b, C_W, K1 = [F(1), F(2), F(1, 2)], F(1, 10), F(2, 5), F(3, 4)
    n = 24
    widths = [int(n / a) for a in alphas]
    flow = mod.flow(4, widths=widths, C_b=float(C_b), C_W=float(C_W), input_norm2=float((K1 - C_b) / C_W))
    exact = metric_cumulants(SIGMAS["z+z^2/2"], alphas, [C_b], [C_W], K1, 3, 2)
    checked = 0
    for l in range(2, 5):
        for m, k in state_keys(2):
            series = exact[l - 1][m]
            want = float(series[k] / alphas[l - 2] ** k) if k < len(series) else 0.0
            assert flow.coefficients[l - 1, m, k] == pytest.approx(want, rel=1e-12, abs=1e-300), (l, m, k)
            checked += want != 0.0
    assert checked >= 12 and np.all(flow.errors < 1e-13)
