"""Criticality: the book's critical points, classes and Taylor coefficients (chapter 5).

Tolerances follow the stated precision: a value the book quotes to d decimals must agree to half a
unit in the last place, 0.5e-d; the reference sheet's 10-digit recomputations likewise.
"""

from __future__ import annotations

import json

import mpmath
import pytest
import sympy as sp

from pdlt.derive import activations
from pdlt.derive.activations import Activation, ActivationError
from pdlt.derive.criticality import (
    chi_parallel,
    chi_perp,
    critical_points,
    g,
    taylor_data,
)
from pdlt.derive.expectations import mp_expectation
from pdlt.derive.notation import z

get = activations.get


def _leaky(slope: sp.Rational) -> Activation:
    act = get("leaky_relu")
    return Activation(act.name, act.expr, act.description, ((act.params[0][0], slope),))


def _positive_point(name: str):
    (point,) = [p for p in critical_points(get(name)).critical_points if p.K_star]
    return point


def _within(got: float, quoted: float, decimals: int) -> None:
    assert abs(got - quoted) <= 0.5 * 10.0**-decimals * (1 + 1e-9), (got, quoted)


# ---------------------------------------------------------------- Taylor data (5.80)-(5.88)


@pytest.mark.parametrize(
    "name,a_1,a_2,b_1",
    [
        ("tanh", -2, sp.Rational(17, 3), -2),  # book
        ("sin", -1, sp.Rational(2, 3), -1),  # reference sheet [C]
        ("erf", -2, None, -2),
        ("gelu", 6 / sp.pi, None, None),  # the reference: (-a_1) = -6/pi
        ("swish", sp.Rational(3, 4), None, None),  # the reference: a_1 = 3/4
    ],
)
def test_taylor_coefficients_are_exact(name, a_1, a_2, b_1):
    data = taylor_data(get(name))
    for got, want in ((data.a_1, a_1), (data.a_2, a_2), (data.b_1, b_1)):
        if want is not None:
            assert sp.simplify(got - want) == 0, (got, want)


def test_taylor_data_only_for_a_single_piece():
    assert taylor_data(get("relu")) is None and taylor_data(get("elu")) is None
    sigmoid = taylor_data(get("sigmoid"))
    assert sigmoid.sigma[:2] == (sp.Rational(1, 2), sp.Rational(1, 4)) and sigmoid.a_1 is None


# ---------------------------------------------------------------- the four classes


@pytest.mark.parametrize(
    "act,C_W,nu",
    [
        (get("linear"), 1, 2),
        (get("relu"), 2, 5),
        (_leaky(sp.Rational(1, 10)), 2 / (1 + sp.Rational(1, 10) ** 2), None),
        (get("abs"), 1, 2),
    ],
    ids=["linear", "relu", "leaky_relu_0.1", "abs"],
)
def test_scale_invariant_line_and_nu(act, C_W, nu):
    a = act.params[0][1] if act.params else None
    nu = nu if a is None else 6 * (1 + a**4) / (1 + a**2) ** 2 - 1  # (5.120), 3 A_4/A_2^2 - 1
    report = critical_points(act)
    assert report.klass == "scale-invariant"
    (point,) = report.critical_points
    assert (point.C_b, point.K_star) == (0.0, None) and point.stable
    assert point.C_W == pytest.approx(float(C_W), rel=1e-15)
    assert sp.sympify(report.nu_exact) == nu and report.nu == pytest.approx(float(nu), rel=1e-15)


@pytest.mark.parametrize("name,C_W,p_perp", [("tanh", 1, 1), ("sin", 1, 1), ("erf", sp.pi / 4, 1)])
def test_k0_class(name, C_W, p_perp):
    report = critical_points(get(name))
    assert report.klass == "K*=0" and not report.rejected
    (point,) = report.critical_points  # no critical point at K* > 0 either
    assert (point.C_b, point.K_star, point.stable) == (0.0, 0.0, True)
    assert point.C_W == pytest.approx(float(C_W), rel=1e-15)
    assert report.nu_exact == "2/3" and report.nu == pytest.approx(2 / 3, rel=1e-15)
    assert report.exponents == {"p_0": 1, "p_parallel": 2, "p_perp": p_perp, "p_V": 1, "p_1": 0}


@pytest.mark.parametrize(
    "name,book,reference,minus_a1_at_0",
    [
        # (K*, C_b, C_W, (-tilde a_1)): book (5.105) to 8 decimals, reference [C] to 10+
        (
            "gelu",
            (None, 0.17292239, 1.98305826, 1.43626419e-4),
            (3.56155281281, 0.1729223908, 1.983058257, 1.436264187e-4),
            -6 / sp.pi,
        ),
        (
            "swish",
            (14.32017362, 0.55514317, 1.98800468, -2.84979219e-6),
            (14.320173618, 0.5551431707, 1.988004678, -2.849792189e-6),
            sp.Rational(-3, 4),
        ),
    ],
)
def test_half_stable_against_the_book(name, book, reference, minus_a1_at_0):
    report = critical_points(get(name))
    assert report.klass == "half-stable"
    zero, point = report.critical_points
    assert (zero.K_star, zero.C_b, zero.C_W, zero.stable) == (0.0, 0.0, 4.0, False)
    assert zero.minus_a1 == pytest.approx(float(minus_a1_at_0), rel=1e-15)
    got = (point.K_star, point.C_b, point.C_W, point.minus_a1)
    swish = name == "swish"
    for value, quoted, decimals in zip(got, book, (8, 8, 8, 14 if swish else 12)):
        if quoted is not None:
            _within(value, quoted, decimals)
    for value, quoted, decimals in zip(got, reference, (9 if swish else 11, 10, 9, 15 if swish else 13)):
        _within(value, quoted, decimals)
    assert (point.minus_a1 > 0) == (name == "gelu") and not point.stable


def test_gelu_k_star_is_exact():
    assert _positive_point("gelu").K_star == pytest.approx((3 + 17**0.5) / 2, rel=1e-12)


def test_sigmoid_is_not_critical_because_c_b_is_negative():
    report = critical_points(get("sigmoid"))
    assert report.klass == "none" and not report.critical_points and "K* = 0" in report.reason
    (point,) = report.rejected
    assert (point.K_star, point.C_b, point.C_W) == (0.0, -4.0, 16.0)


@pytest.mark.parametrize("act", [get("softplus"), Activation("z2", z**2), Activation("z3", z**3)])
def test_never_critical(act):
    report = critical_points(act)
    assert report.klass == "none" and not report.critical_points and not report.rejected
    assert "no root" in report.reason and report.nu is None


@pytest.mark.parametrize("p", [2, 3])
@pytest.mark.parametrize("kernel", [0.01, 2.5])
def test_monomial_ratio_is_p_over_2p_minus_1(p, kernel):
    act = Activation(f"z{p}", z**p)
    ratio = chi_perp(act, kernel, 1) / chi_parallel(act, kernel, 1)  # R(K) of (5.73) at C_W = 1
    assert abs(ratio - mpmath.mpf(p) / (2 * p - 1)) < 1e-25


def test_discontinuous_activation_is_refused():
    with pytest.raises(ActivationError, match="jumps"):
        critical_points(Activation("step", sp.Heaviside(z)))


# ---------------------------------------------------------------- susceptibilities


# An oracle independent of pdlt.derive: sigma and sigma' written by hand (mpmath) at each
# activation's default parameters, with the breakpoints where sigma' jumps.
def _sigmoid_mp(x):
    return 1 / (1 + mpmath.exp(-x))


def _softplus_mp(x):
    return mpmath.log1p(mpmath.exp(x))


HAND = {
    "linear": (lambda x: x, lambda x: 1, ()),
    "relu": (lambda x: x if x > 0 else 0, lambda x: 1 if x > 0 else 0, (0,)),
    "leaky_relu": (lambda x: x if x > 0 else x / 100, lambda x: 1 if x > 0 else mpmath.mpf(1) / 100, (0,)),
    "abs": (abs, lambda x: 1 if x > 0 else -1, (0,)),
    "tanh": (mpmath.tanh, lambda x: mpmath.sech(x) ** 2, ()),
    "sin": (mpmath.sin, mpmath.cos, ()),
    "erf": (mpmath.erf, lambda x: 2 / mpmath.sqrt(mpmath.pi) * mpmath.exp(-x * x), ()),
    "sigmoid": (_sigmoid_mp, lambda x: _sigmoid_mp(x) * (1 - _sigmoid_mp(x)), ()),
    "softplus": (_softplus_mp, _sigmoid_mp, ()),
    "gelu": (lambda x: x * mpmath.ncdf(x), lambda x: mpmath.ncdf(x) + x * mpmath.npdf(x), ()),
    "swish": (lambda x: x * _sigmoid_mp(x), lambda x: _sigmoid_mp(x) * (1 + x * (1 - _sigmoid_mp(x))), ()),
    "elu": (lambda x: x if x > 0 else mpmath.expm1(x), lambda x: 1 if x > 0 else mpmath.exp(x), (0,)),
    "mish": (
        lambda x: x * mpmath.tanh(_softplus_mp(x)),
        lambda x: mpmath.tanh(_softplus_mp(x)) + x * mpmath.sech(_softplus_mp(x)) ** 2 * _sigmoid_mp(x),
        (),
    ),
    "hard_tanh": (lambda x: max(-1, min(1, x)), lambda x: 1 if -1 < x < 1 else 0, (-1, 1)),
}
EPS = 2.0**-52  # the critical points are reported as doubles
ROOT_PRECISION = 1e-13  # K* is refined until its bracket in log K is narrower than this (criticality.py)


def test_hand_oracle_covers_the_registry_and_its_derivatives_are_right():
    """The hand-written sigma' against mpmath.diff of the hand-written sigma, away from kinks."""
    assert set(HAND) == set(activations.REGISTRY)
    with mpmath.workdps(30):
        for name, (sigma, dsigma, _) in HAND.items():
            for x in ("-2.3", "-0.6", "0.4", "1.7"):
                x = mpmath.mpf(x)
                assert abs(mpmath.diff(sigma, x) - dsigma(x)) < 1e-20, (name, x)


def _mean(f, K, breaks=()):
    """(E[f(z)], error estimate) for z ~ N(0, K): mpmath.quad in x = z/sqrt(K), split at 0 and at
    every breakpoint."""
    root = mpmath.sqrt(K)
    cuts = {mpmath.mpf(0)} | {mpmath.mpf(b) / root for b in breaks}
    value, err = mpmath.quad(
        lambda x: f(root * x) * mpmath.exp(-x * x / 2), [-mpmath.inf, *sorted(cuts), mpmath.inf], error=True
    )
    norm = mpmath.sqrt(2 * mpmath.pi)
    return value / norm, err / norm


def _independent(name, K):
    """(<sigma^2>_K, d/dK <sigma^2>_K, <sigma'^2>_K, error). The derivative is a central difference
    with step h = 1e-10 K at 30 digits: truncation h^2 g'''/6 ~ 1e-20, roundoff ~ 1e-30/h ~ 1e-20;
    the error adds the quadrature estimates (divided by h for the difference) and 1e-19 for those."""
    sigma, dsigma, breaks = HAND[name]
    K = mpmath.mpf(K)
    h = mpmath.mpf("1e-10") * K
    g0, e0 = _mean(lambda x: sigma(x) ** 2, K, breaks)
    gp, e1 = _mean(lambda x: sigma(x) ** 2, K + h, breaks)
    gm, e2 = _mean(lambda x: sigma(x) ** 2, K - h, breaks)
    p0, e3 = _mean(lambda x: dsigma(x) ** 2, K, breaks)
    return g0, (gp - gm) / (2 * h), p0, max(e0, e3, (e1 + e2) / h) + 1e-19


def _slope_of_ratio(name, K):
    """K d/dK [chi_parallel/chi_perp] = K d/dK [g'/<sigma'^2>] by wide differences at 15 digits:
    only its size matters (a tolerance)."""
    sigma, dsigma, breaks = HAND[name]
    with mpmath.workdps(15):
        K = mpmath.mpf(K)
        h = mpmath.mpf("1e-4") * K
        g = [_mean(lambda x: sigma(x) ** 2, K + j * h, breaks)[0] for j in (-1, 0, 1)]
        p = [_mean(lambda x: dsigma(x) ** 2, K + j * h, breaks)[0] for j in (-1, 1)]
        g1, g2 = (g[2] - g[0]) / (2 * h), (g[2] - 2 * g[1] + g[0]) / h**2
        p0, p1 = (p[0] + p[1]) / 2, (p[1] - p[0]) / (2 * h)
        return K * (g2 * p0 - g1 * p1) / p0**2


@pytest.mark.parametrize("name", sorted(activations.REGISTRY))
def test_chis_are_one_at_every_critical_point(name):
    """chi_perp = C_W <sigma'^2>_K (5.51), chi_parallel = C_W d<sigma^2>_K/dK (5.50) and the fixed
    point K* = C_b + C_W <sigma^2>_{K*}, at every critical point (rejected ones too), by the hand oracle.

    Tolerances: at K* > 0, C_W = 1/<sigma'^2>_{K*} is taken at the reported K*, so chi_perp - 1 is the
    rounding of K* and C_W to doubles, 4 eps (1 + |K d log chi/dK|) with |K d log chi/dK| < 10, plus the
    oracle's error; chi_parallel also carries the root's precision |Delta K / K| < 1e-13 times
    |K d(chi_par/chi_perp)/dK|. At K* = 0: the limits C_W sigma'(0)^2 and C_W (sigma'(0)^2 +
    sigma(0) sigma''(0)) from the hand derivatives, within the rounding of C_W. On the line of the
    scale-invariant class: chi = A_2 C_W = 1 at any K (0.3, 1, 7 tried), the report's at K = 1."""
    act = get(name)
    report = critical_points(act)
    points = (*report.critical_points, *report.rejected)
    assert points or name == "softplus"
    sigma, dsigma, _ = HAND[name]
    with mpmath.workdps(30):
        for point in points:
            C_b, C_W = mpmath.mpf(point.C_b), mpmath.mpf(point.C_W)
            checks = []  # (chi_perp, chi_parallel, tolerance on chi_perp, on chi_parallel, report's K?)
            if point.K_star == 0:
                zero = mpmath.mpf(0)
                sigma2 = mpmath.diff(dsigma, zero)
                tol = 4 * EPS
                assert abs(C_b + C_W * sigma(zero) ** 2) <= tol * (abs(C_b) + 1)  # K* = 0 is a fixed point
                checks.append(
                    (C_W * dsigma(zero) ** 2, C_W * (dsigma(zero) ** 2 + sigma(zero) * sigma2), tol, tol, True)
                )
            else:
                for k in [point.K_star] if point.K_star is not None else [0.3, 1, 7]:
                    g, dg, p, err = _independent(name, k)
                    K = mpmath.mpf(k)
                    assert abs(C_b + C_W * g - K) <= 4 * EPS * (abs(C_b) + C_W * g + K) + C_W * err
                    tol = 44 * EPS + C_W * err
                    tol_par = tol + (ROOT_PRECISION * abs(_slope_of_ratio(name, k)) if point.K_star else 0)
                    checks.append((C_W * p, C_W * dg, tol, tol_par, k in (point.K_star, 1)))
            for perp, par, tol_perp, tol_par, reported in checks:
                assert abs(perp - 1) <= tol_perp, (point, perp)
                assert abs(par - 1) <= tol_par, (point, par)
                if reported:  # what the report says agrees with the oracle
                    assert (
                        abs(point.chi_perp - perp) <= tol_perp + EPS and abs(point.chi_parallel - par) <= tol_par + EPS
                    )


@pytest.mark.parametrize("name", ["tanh", "sin", "erf", "gelu", "swish", "mish", "sigmoid"])
def test_k_star_zero_limits_by_quadrature(name):
    """The K -> 0 limits used at K* = 0 are the continuous ones: the oracle's quadrature at K = 1e-5
    and 2e-5, extrapolated linearly: for sigma analytic at 0, chi(K) = chi(0) + c_1 K + c_2 K^2 + ..., so
    2 chi(K) - chi(2K) = chi(0) - 2 c_2 K^2, within 2e-8 of 1 for |c_2| < 100 (these sigma: |c_2| < 20)."""
    report = critical_points(get(name))
    zero = next(p for p in (*report.critical_points, *report.rejected) if p.K_star == 0)
    with mpmath.workdps(30):
        a, b = _independent(name, "1e-5"), _independent(name, "2e-5")
        assert abs(zero.C_W * (2 * a[2] - b[2]) - 1) < 2e-8  # chi_perp
        assert abs(zero.C_W * (2 * a[1] - b[1]) - 1) < 2e-8  # chi_parallel


@pytest.mark.parametrize("name", sorted(activations.REGISTRY))
def test_chi_functions_against_the_hand_oracle(name):
    """chi_perp(act, K, C_W) and chi_parallel(act, K, C_W) off criticality (K = 0.7, C_W = 1.3), and
    g'(K) by the heat-equation weight (mp_expectation), against the oracle within its error."""
    act = get(name)
    with mpmath.workdps(30):
        _, dg, p, err = _independent(name, "0.7")
        C_W = mpmath.mpf("1.3")
        assert abs(chi_perp(act, "0.7", "1.3") - C_W * p) <= C_W * err + 1e-25
        assert abs(chi_parallel(act, "0.7", "1.3") - C_W * dg) <= C_W * err + 1e-25
        assert abs(mp_expectation(act, 1, 1, "0.7", dps=30) - dg) <= err + 1e-25


def test_g_against_closed_forms():
    with mpmath.workdps(40):
        for k in (mpmath.mpf("0.01"), mpmath.mpf(3)):
            assert abs(g(get("relu"), k) - k / 2) < 1e-25
            assert abs(g(get("sin"), k) - (1 - mpmath.exp(-2 * k)) / 2) < 1e-25
    assert g(get("sigmoid"), 0) == mpmath.mpf(1) / 4


@pytest.mark.parametrize("name", ["softplus", "sigmoid", "tanh"])
def test_k_to_zero_limits_match_quadrature(name):
    """g(K) = s0^2 + (s1^2 + s0 s2) K + O(K^2): chi_parallel(0) = C_W (s1^2 + s0 s2), not 2 s0 s2."""
    act, k = get(name), mpmath.mpf("1e-8")
    assert abs(chi_parallel(act, k, 1) - chi_parallel(act, 0, 1)) < 1e-6
    assert abs(chi_perp(act, k, 1) - chi_perp(act, 0, 1)) < 1e-6
    assert abs(g(act, k) - g(act, 0)) < 1e-6


def test_report_is_json_ready():
    data = json.loads(json.dumps(critical_points(get("tanh")).as_dict()))
    assert {"activation", "class", "reason", "critical_points", "taylor", "exponents", "nu"} <= set(data)
    assert data["taylor"]["a_2"] == {"exact": "17/3", "float": pytest.approx(17 / 3)}
    assert set(data["critical_points"][0]) >= {"C_b", "C_W", "K_star", "chi_parallel", "chi_perp", "stable"}
