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
        ("gelu", (None, 0.17292239, 1.98305826, 1.43626419e-4),
         (3.56155281281, 0.1729223908, 1.983058257, 1.436264187e-4), -6 / sp.pi),
        ("swish", (14.32017362, 0.55514317, 1.98800468, -2.84979219e-6),
         (14.320173618, 0.5551431707, 1.988004678, -2.849792189e-6), sp.Rational(-3, 4)),
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


ALL = ["linear", "relu", "abs", "tanh", "sin", "erf", "gelu", "swish", "sigmoid"]


@pytest.mark.parametrize("name", ALL)
def test_chis_are_one_at_every_critical_point(name):
    act = get(name)
    report = critical_points(act)
    for point in (*report.critical_points, *report.rejected):
        assert abs(point.chi_parallel - 1) < 1e-10 and abs(point.chi_perp - 1) < 1e-10
        kernels = [point.K_star] if point.K_star is not None else [0.3, 1, 7]  # the line: any K*
        for k in kernels:
            assert abs(chi_parallel(act, k, point.C_W) - 1) < 1e-10
            assert abs(chi_perp(act, k, point.C_W) - 1) < 1e-10
            if k:  # chi_parallel = C_W g'(K) by the heat-equation weight, independently (5.10)
                assert abs(point.C_W * mp_expectation(act, 1, 1, k, dps=30) - 1) < 1e-10
        if point.K_star == 0:  # the K -> 0 limit, by quadrature: chi = 1 + O(K)
            k = mpmath.mpf("1e-6")
            assert abs(chi_parallel(act, k, point.C_W) - point.chi_parallel) < 10 * k
            assert abs(chi_perp(act, k, point.C_W) - point.chi_perp) < 10 * k


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
