"""Large kernels: sigma and its quadrature must not overflow where the integrand is finite (issue 9).

`pdlt flow softplus --input-norm2 4200` used to say "sigma(z)^6 is not integrable": e^z overflowed at
z > 709 inside the quadrature (the nodes reach 11 sqrt(K) = 713). softplus, mish and their
derivatives are now printed in forms that stay finite, and their expectations at K up to 1e4 agree
with 30-digit mpmath within their own error estimates (x10, as in test_kernels.py).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from pdlt.derive import activations
from pdlt.derive.expectations import mp_expectation
from pdlt.generated import mish, softplus


@pytest.mark.parametrize("mod", [softplus, mish], ids=lambda m: m.NAME)
def test_sigma_and_its_derivative_stay_finite(mod):
    p = np.zeros(1)
    for z in (-1000.0, -710.0, 710.0, 1000.0):
        assert math.isfinite(mod.sigma(z, p)) and math.isfinite(mod.dsigma(z, p))
    assert mod.sigma(1000.0, p) == pytest.approx(1000.0, rel=1e-15)
    assert mod.dsigma(1000.0, p) == pytest.approx(1.0, rel=1e-15)


@pytest.mark.parametrize("kernel", [1e3, 4200.0, 1e4])
def test_softplus_expectations_at_large_kernels(kernel):
    act = activations.get("softplus")
    mu, err, mag = softplus.workspace()
    softplus.moments(kernel, np.zeros(1), True, mu, err, mag)
    for a, i, _, _ in softplus.EXPECTATIONS:
        ref = float(mp_expectation(act, a, i, kernel))
        assert math.isfinite(err[a, i]) and abs(mu[a, i] - ref) <= 10 * err[a, i] + 1e-13 * abs(ref), (a, i)


def test_the_flow_from_the_issue_runs():
    flow = softplus.flow(2, width=64, input_norm2=4200.0)
    expected = float(mp_expectation(activations.get("softplus"), 1, 0, 4200.0))  # K(2) = C_W <sigma^2>_K(1)
    assert flow.errors.max() < 1e-10 and flow.K[-1] == pytest.approx(expected, rel=1e-13)
