"""chi_parallel, chi_perp, h and the two-input delta expansion (book 5.46-5.52) in the kernels."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

from pdlt import generated
from pdlt.derive import activations
from pdlt.derive.criticality import chi_parallel, chi_perp

NAMES = sorted(generated.SHIPPED)


def _params(mod):
    return np.array([d for _, d in mod.PARAMS] or [0.0])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("K", [0.02, 0.7, 3.0])
def test_susceptibilities_against_mpmath(name, K):
    """chi_parallel and chi_perp against 30-digit quadrature (derive.criticality); h against a
    central difference of that chi_perp (step 1e-4: truncation ~1e-8 relative, far above roundoff)."""
    mod = generated.load(name)
    act = activations.get(name)
    out = np.zeros(3)
    mod.susceptibilities(K, 1.3, _params(mod), out)
    assert out[0] == pytest.approx(float(chi_parallel(act, K, 1.3)), rel=1e-11, abs=1e-13)
    assert out[1] == pytest.approx(float(chi_perp(act, K, 1.3)), rel=1e-11, abs=1e-13)
    step = mpmath.mpf("1e-4") * K
    with mpmath.workdps(30):
        h = (chi_perp(act, K + step, 1.3) - chi_perp(act, K - step, 1.3)) / (4 * step)
    assert out[2] == pytest.approx(float(h), rel=1e-6, abs=1e-9)


def test_delta_expansion_recursions():
    """(5.46)-(5.48) layer by layer, with the susceptibilities the module reports."""
    res = generated.load("tanh").two_input_flow(8, C_b=0.1, C_W=1.4, input_norm2=0.9, input_dot=0.2, input_delta2=0.05)
    K00, d1, d2, cpar, cperp, h = (res[k] for k in ("K00", "dK1", "ddK2", "chi_parallel", "chi_perp", "h"))
    assert K00[0] == pytest.approx(0.1 + 1.4 * 0.9) and d1[0] == pytest.approx(1.4 * 0.2)
    assert d2[0] == pytest.approx(1.4 * 0.05 / 4)
    np.testing.assert_allclose(d1[1:], cpar[:-1] * d1[:-1], rtol=1e-14)
    np.testing.assert_allclose(d2[1:], cperp[:-1] * d2[:-1] + h[:-1] * d1[:-1] ** 2, rtol=1e-14)
    flow = generated.load("tanh").flow(8, width=64, C_b=0.1, C_W=1.4, input_norm2=0.9)
    np.testing.assert_allclose(K00, flow.K, rtol=1e-14)


def test_scale_invariant_two_inputs_at_criticality():
    """chi_parallel = chi_perp = 1 and h = 0 for ReLU at C_W = 2 (5.62): everything is preserved."""
    res = generated.load("relu").two_input_flow(20, C_W=2.0, input_norm2=1.0, input_dot=0.3, input_delta2=0.01)
    for key in ("K00", "dK1", "ddK2"):
        np.testing.assert_allclose(res[key], res[key][0], rtol=1e-14)
    np.testing.assert_array_equal(res["h"], 0.0)


def test_k_star_zero_perturbations_decay_with_the_book_exponents():
    """tanh at criticality: dK[1] ~ l^-2 (p_parallel = 2, 5.97), ddK[2] ~ l^-1 (p_perp = b_1/a_1 = 1, 5.99);
    local log-slopes at l = 10^4 are within O(log l / l) of the exponents (tolerance 20 log(l)/l)."""
    L = 10_000
    res = generated.load("tanh").two_input_flow(L, C_W=1.0, input_norm2=1.0, input_dot=0.01, input_delta2=1e-4)
    l = np.arange(1, L + 1)
    for key, p in (("dK1", 2.0), ("ddK2", 1.0)):
        y = res[key]
        slope = np.log(y[-1] / y[L // 2 - 1]) / np.log(l[-1] / l[L // 2 - 1])
        assert -slope == pytest.approx(p, abs=20 * np.log(L) / L)


def _exact_two_inputs(sigma, C_b, C_W, K, depth, nodes=100):
    """The infinite-width kernel of two inputs, layer by layer, with no expansion: 2x2 Gaussian
    expectations by tensor Gauss-Hermite (probabilists') on the Cholesky factor of each layer's kernel."""
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / np.sqrt(2 * np.pi)
    X1, X2 = np.meshgrid(x, x, indexing="ij")
    W = np.outer(w, w)
    out = [K]
    for _ in range(depth - 1):
        L = np.linalg.cholesky(K)
        u1, u2 = L[0, 0] * X1, L[1, 0] * X1 + L[1, 1] * X2
        s1, s2 = sigma(u1), sigma(u2)
        K = C_b + C_W * np.array(
            [[np.sum(W * s1 * s1), np.sum(W * s1 * s2)], [np.sum(W * s1 * s2), np.sum(W * s2 * s2)]]
        )
        out.append(K)
    return out


def test_ddK0_makes_the_delta_expansion_second_order_in_every_entry():
    """Two inputs x0 +- dx/2 through 4 tanh layers, against the exact 2x2 recursion. With ddK[0], K_{++}
    and K_{+-} are right to O(eps^3) (eps = |dx|), so halving eps divides the error by about 8; without
    it, K_{+-} = K00 - ddK2 is off at O(eps^2) from layer 2 on (halving divides by 4) and far larger."""
    C_b, C_W, depth = 0.1, 1.4, 4
    err_with, err_without = [], []
    for eps in (0.04, 0.02):
        dot, delta2 = 0.2 * eps, 0.9 * eps**2  # x0.dx/n0, |dx|^2/n0 with |x0|^2/n0 = 0.9
        res = generated.load("tanh").two_input_flow(depth, C_b, C_W, 0.9, dot, delta2)
        K1 = C_b + C_W * np.array(
            [[0.9 + dot + delta2 / 4, 0.9 - delta2 / 4], [0.9 - delta2 / 4, 0.9 - dot + delta2 / 4]]
        )
        exact = _exact_two_inputs(np.tanh, C_b, C_W, K1, depth)[-1]
        K00, d1, d2, d0 = (res[k][-1] for k in ("K00", "dK1", "ddK2", "ddK0"))
        with_shift = np.array([K00 + d0 + d1 + d2, K00 + d0 - d2])
        without = np.array([K00 + d1 + d2, K00 - d2])
        target = np.array([exact[0, 0], exact[0, 1]])
        err_with.append(np.abs(with_shift - target).max())
        err_without.append(np.abs(without - target).max())
    assert err_with[0] / err_with[1] > 6  # O(eps^3) or better
    assert 3 < err_without[0] / err_without[1] < 5  # O(eps^2)
    assert err_with[1] < 0.05 * err_without[1]
