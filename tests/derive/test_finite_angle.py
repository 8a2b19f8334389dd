"""The finite-angle recursion of the scale-invariant class (book 5.158-5.168)."""

from __future__ import annotations

import math

import mpmath
import pytest
import sympy as sp

from pdlt.derive import activations
from pdlt.derive.activations import Activation, ActivationError
from pdlt.derive.finite_angle import finite_angle_flow, rho, slopes
from pdlt.derive.notation import z


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


# ---------------------------------------------------------------- a_- != 0 (5.159)-(5.168)


def _leaky(slope: sp.Rational) -> Activation:
    act = activations.get("leaky_relu")
    return Activation(act.name, act.expr, act.description, ((act.params[0][0], slope),))


# (activation, a_+, a_-): leaky ReLU at its default slope 1/100 and at 3/10, abs (a_- = -1), and a
# general pair with a_+ != 1 and a_- < 0
CASES = [
    (activations.get("leaky_relu"), 1.0, 0.01),
    (_leaky(sp.Rational(3, 10)), 1.0, 0.3),
    (activations.get("abs"), 1.0, -1.0),
    (Activation("pl", sp.Piecewise((3 * z / 2, z >= 0), (-z / 4, True))), 1.5, -0.25),
]
IDS = ["leaky_relu", "leaky_relu_0.3", "abs", "a+1.5_a-_-0.25"]


def _pair_average(a_plus: float, a_minus: float, K_d, psi):
    """<sigma(z_a) sigma(z_b)> for (z_a, z_b) Gaussian with variances K_d and correlation cos psi, by
    mpmath quadrature, independent of (5.159): with z_a = sqrt(K_d) r cos(t), z_b = sqrt(K_d) r cos(t - psi)
    (polar coordinates of two iid standard normals) and sigma(c z) = c sigma(z) for c > 0, the radial
    integral is int_0^oo r^3 exp(-r^2/2) dr = 2, leaving (K_d/pi) int_0^{2 pi} sigma(cos t) sigma(cos(t - psi)) dt,
    split where either factor has its kink."""

    def sigma(x):
        return (a_plus if x >= 0 else a_minus) * x

    psi = mpmath.mpf(psi)
    kinks = {
        mpmath.pi / 2,
        3 * mpmath.pi / 2,
        (psi + mpmath.pi / 2) % (2 * mpmath.pi),
        (psi + 3 * mpmath.pi / 2) % (2 * mpmath.pi),
    }
    points = [mpmath.mpf(0), *sorted(kinks), 2 * mpmath.pi]
    angular = mpmath.quad(lambda t: sigma(mpmath.cos(t)) * sigma(mpmath.cos(t - psi)), points)
    return mpmath.mpf(K_d) / mpmath.pi * angular


def test_polar_average_against_a_two_dimensional_integral():
    """The oracle's polar reduction against plain nested quadrature (mpmath.fp, double precision) over
    (u, v) iid N(0, 1), z_a = sqrt(K_d) u, z_b = sqrt(K_d)(u cos psi + v sin psi), the inner integral
    split where sigma(z_b) kinks (v = -u cos psi / sin psi): tanh-sinh in doubles on smooth pieces is
    good to ~1e-14, so 1e-12 of K_d."""
    a_plus, a_minus, K_d, psi = 1.5, -0.25, 1.3, 2.1
    fp = mpmath.fp
    c, s, root = math.cos(psi), math.sin(psi), math.sqrt(K_d)

    def sigma(x):
        return (a_plus if x >= 0 else a_minus) * x

    def npdf(x):
        return math.exp(-x * x / 2) / math.sqrt(2 * math.pi)

    def inner(u):
        return fp.quad(lambda v: sigma(root * (c * u + s * v)) * npdf(v), [-fp.inf, -u * c / s, fp.inf])

    plain = fp.quad(lambda u: sigma(root * u) * inner(u) * npdf(u), [-fp.inf, 0, fp.inf])
    with mpmath.workdps(30):
        polar = _pair_average(a_plus, a_minus, K_d, psi)
    assert abs(plain - polar) < 1e-12 * K_d


@pytest.mark.parametrize("act,a_plus,a_minus", CASES, ids=IDS)
def test_slopes_and_rho_with_a_minus(act, a_plus, a_minus):
    assert slopes(act) == (a_plus, a_minus)
    expected = (a_plus - a_minus) ** 2 / (math.pi * (a_plus**2 + a_minus**2))  # (5.162)
    assert rho(a_plus, a_minus) == pytest.approx(expected, rel=1e-15)


def test_a_jump_away_from_zero_is_not_scale_invariant():
    """2z above z = 1 and z below jumps at 1: no (a_+, a_-) describes it."""
    with pytest.raises(ActivationError, match="not scale-invariant"):
        slopes(Activation("jump", sp.Piecewise((2 * z, z >= 1), (z, True))))


@pytest.mark.parametrize("act,a_plus,a_minus", CASES, ids=IDS)
def test_each_step_matches_the_gaussian_integral(act, a_plus, a_minus):
    """(5.160) off criticality (C_b = 0.2, C_W = 1.3), layer by layer from the flow's own layer l:
    K_d' = C_b + C_W <sigma^2> and K_d' cos psi' = C_b + C_W <sigma(z_a) sigma(z_b)> by the oracle.
    One step in double precision is a few roundings: 1e-14 of K_d'."""
    C_b, C_W = 0.2, 1.3
    flow = finite_angle_flow(act, 6, psi1=2.5, K_d1=0.9, C_b=C_b, C_W=C_W)
    with mpmath.workdps(30):
        for l in range(5):
            K_d, psi = flow.K_d[l], flow.psi[l]
            diag = C_b + C_W * _pair_average(a_plus, a_minus, K_d, 0)
            off = C_b + C_W * _pair_average(a_plus, a_minus, K_d, psi)
            assert abs(flow.K_d[l + 1] - diag) <= 1e-14 * diag, l
            assert abs(flow.K_d[l + 1] * math.cos(flow.psi[l + 1]) - off) <= 1e-14 * diag, l
    # cos psi' - cos psi = [C_b (1 - cos psi) + C_W K_d (a_+ - a_-)^2 (sin psi - psi cos psi)/(2 pi)]/K_d' > 0
    assert all(b < a for a, b in zip(flow.psi, flow.psi[1:]))


@pytest.mark.parametrize("act,a_plus,a_minus", CASES, ids=IDS)
def test_angle_closes_like_3_over_rho_l(act, a_plus, a_minus):
    """At criticality (C_b = 0, C_W = 1/A_2): K_d is constant, psi = 3/(rho l) (5.166) and
    K_[2] = K_d 9/(4 rho^2 l^2) (5.168). Expanding (5.163), psi' = psi - rho psi^2/3 - rho^2 psi^3/18 + ...,
    so 1/psi = rho l/3 + (3/2)(rho/3) log l + O(1): the relative correction is (3/2) log(l)/l + O(1/(rho l));
    tolerance 10 log(l)/l for psi and twice that for K_[2] at l = 10^5."""
    rho_book = (a_plus - a_minus) ** 2 / (math.pi * (a_plus**2 + a_minus**2))
    L = 100_000
    flow = finite_angle_flow(act, L, psi1=1.0, K_d1=1.7)
    assert max(abs(k - 1.7) for k in flow.K_d) < 1e-12
    assert flow.psi[-1] * L == pytest.approx(3 / rho_book, rel=10 * math.log(L) / L)
    assert flow.K2[-1] * L**2 == pytest.approx(1.7 * 9 / (4 * rho_book**2), rel=20 * math.log(L) / L)
