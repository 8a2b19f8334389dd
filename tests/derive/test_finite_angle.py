"""The finite-angle recursion of the scale-invariant class (book 5.158-5.168)."""

from __future__ import annotations

import math

import mpmath
import pytest

from pdlt.derive import activations
from pdlt.derive.activations import ActivationError
from pdlt.derive.finite_angle import finite_angle_flow, rho, slopes


def test_slopes_and_rho():
    assert slopes(activations.get("relu")) == (1.0, 0.0)
    assert slopes(activations.get("leaky_relu")) == (1.0, 0.01)
    assert rho(1.0, 0.0) == pytest.approx(1 / math.pi, rel=1e-15)
    assert rho(1.0, 1.0) == 0.0
    with pytest.raises(ActivationError, match="not scale-invariant"):
        slopes(activations.get("tanh"))


def test_relu_off_diagonal_matches_the_gaussian_integral():
    """(5.158): <sigma(z+) sigma(z-)> = K_d/(2 pi) [sin psi + (pi - psi) cos psi], against mpmath:
    with z+ = sqrt(K_d) u and z- = sqrt(K_d)(c u + s v), the v-average of relu(z-) is the closed
    form m Phi(m/t) + t phi(m/t) (m = sqrt(K_d) c u, t = sqrt(K_d) s), leaving a 1-D integral."""
    K_d, psi = 1.7, 0.9
    flow = finite_angle_flow(activations.get("relu"), 2, psi, K_d, C_b=0.0, C_W=1.0)
    c, s = math.cos(psi), math.sin(psi)
    with mpmath.workdps(30):
        sk = mpmath.sqrt(K_d)

        def integrand(u):
            m, t = sk * c * u, sk * s
            inner = m * mpmath.ncdf(m / t) + t * mpmath.npdf(m / t)
            return sk * u * inner * mpmath.npdf(u)

        ref = mpmath.quad(integrand, [0, mpmath.inf])
    off = flow.K_d[1] * math.cos(flow.psi[1])
    assert off == pytest.approx(float(ref), rel=1e-13)


def test_relu_angle_closes_like_3_pi_over_l():
    """(5.166): psi = 3/(rho l) + O(log l / l^2); at l = 10^5 the relative correction is ~ log(l)/l."""
    L = 100_000
    flow = finite_angle_flow(activations.get("relu"), L, psi1=1.0)
    assert flow.psi[-1] * L == pytest.approx(3 * math.pi, rel=10 * math.log(L) / L)
    assert flow.K2[-1] * L**2 == pytest.approx(9 * math.pi**2 / 4, rel=20 * math.log(L) / L)
    assert flow.K_d[-1] == pytest.approx(1.0, rel=1e-12)


def test_linear_angle_is_frozen():
    flow = finite_angle_flow(activations.get("linear"), 50, psi1=0.4)
    assert max(abs(p - 0.4) for p in flow.psi) < 1e-12
