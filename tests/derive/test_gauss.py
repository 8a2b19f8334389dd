"""The shared Gaussian integrator against closed forms, at 30 digits (mpmath) and in double precision."""

from __future__ import annotations

import math

import mpmath
import pytest
import sympy as sp

from pdlt.derive.gauss import gaussian_mp, hermite_weight, split_points

DPS = 30
TOL = mpmath.mpf(10) ** -(DPS - 3)  # tanh-sinh at the working precision, less a few digits of roundoff
FP_TOL = 1e-13  # mpmath.fp.quad: double precision, less roundoff
KERNELS = ("0.001", "0.7", "3", "30")
WHOLE = (-sp.oo, sp.oo)


def _close(got, ref, tol=TOL):
    assert abs(got - ref) <= tol * max(1, abs(ref)), (got, ref)


@pytest.mark.parametrize("k_text", KERNELS)
def test_moments_and_kinks(k_text):
    with mpmath.workdps(DPS):
        k = mpmath.mpf(k_text)
        _close(gaussian_mp([(*WHOLE, lambda x, t: t**4)], k), 3 * k**2)  # <z^4>_K = 3 K^2
        absolute = [(-sp.oo, 0, lambda x, t: -t), (0, sp.oo, lambda x, t: t)]
        _close(gaussian_mp(absolute, k), mpmath.sqrt(2 * k / mpmath.pi))  # <|z|>_K
        relu2 = [(-sp.oo, 0, lambda x, t: 0 * t), (0, sp.oo, lambda x, t: t * t)]
        _close(gaussian_mp(relu2, k), k / 2)  # <relu(z)^2>_K


@pytest.mark.parametrize("k_text", KERNELS)
def test_breakpoint_away_from_zero(k_text):
    """<hard_tanh(z)^2>_K = 1 - erf(s) + 2K(erf(s)/2 - s e^(-s^2)/sqrt(pi)), s = 1/sqrt(2K)."""
    pieces = [(-sp.oo, -1, lambda x, t: 1 + 0 * t), (-1, 1, lambda x, t: t * t), (1, sp.oo, lambda x, t: 1 + 0 * t)]
    with mpmath.workdps(DPS):
        k = mpmath.mpf(k_text)
        s = 1 / mpmath.sqrt(2 * k)
        inner = mpmath.erf(s) / 2 - s * mpmath.exp(-s * s) / mpmath.sqrt(mpmath.pi)
        _close(gaussian_mp(pieces, k), 1 - mpmath.erf(s) + 2 * k * inner)


@pytest.mark.parametrize("k_text", KERNELS)
def test_k_derivatives_by_the_hermite_weight(k_text):
    """d/dK <z^4> = 6K, d^2/dK^2 <z^4> = 6, d/dK <relu^2> = 1/2, d/dK <cos z> = -e^(-K/2)/2."""
    relu2 = [(-sp.oo, 0, lambda x, t: 0 * t), (0, sp.oo, lambda x, t: t * t)]
    with mpmath.workdps(DPS):
        k = mpmath.mpf(k_text)
        quartic = [(*WHOLE, lambda x, t: t**4)]
        _close(gaussian_mp(quartic, k, derivative=1), 6 * k)
        _close(gaussian_mp(quartic, k, derivative=2), mpmath.mpf(6))
        _close(gaussian_mp(relu2, k, derivative=1), mpmath.mpf(1) / 2)
        _close(gaussian_mp([(*WHOLE, lambda x, t: mpmath.cos(t))], k, derivative=1), -mpmath.exp(-k / 2) / 2)


def test_hermite_weight_is_he_2i_over_2k_to_the_i():
    x, k = sp.symbols("x K", positive=True)
    for i in range(4):
        assert sp.expand(hermite_weight(i, x, k) - sp.hermite_prob(2 * i, x) / (2 * k) ** i) == 0


def test_split_points_in_x():
    with mpmath.workdps(DPS):
        root = mpmath.sqrt(4)
        assert split_points(-sp.oo, sp.oo, root) == [-mpmath.inf, 0, mpmath.inf]
        assert split_points(sp.Rational(-1), sp.Integer(3), root) == [mpmath.mpf(-1) / 2, 0, mpmath.mpf(3) / 2]
        assert split_points(sp.Integer(1), sp.oo, root) == [mpmath.mpf(1) / 2, mpmath.inf]


def test_double_precision_context_and_underflowing_tails():
    """Under mpmath.fp the integrand is not evaluated where the Gaussian underflows: there
    exp(0.45 x^2) would overflow, while <exp(0.45 z^2 / K)>_K = 1/sqrt(0.1) is finite."""
    fp = mpmath.fp
    _close(gaussian_mp([(*WHOLE, lambda x, t: t * t)], 2.5, ctx=fp), 2.5, FP_TOL)
    value = gaussian_mp([(*WHOLE, lambda x, t: complex(t * t, t**4))], 1.5, ctx=fp)
    _close(value.real, 1.5, FP_TOL)
    _close(value.imag, 3 * 1.5**2, FP_TOL)
    k = 2.0
    wide = gaussian_mp([(*WHOLE, lambda x, t: math.exp(0.45 * t * t / k))], k, ctx=fp)
    _close(wide, 0.1**-0.5, FP_TOL)
