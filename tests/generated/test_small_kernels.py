"""High orders at small kernels: the trapezoid rule refines its spacing where its own error estimate says it must
(issue 9).

`pdlt flow tanh --order 6 --depth 30 --width 16` stopped at layer 8 (K = 0.074, "relative error 2.2e-10 above
1e-10"): the K-derivatives d^i/dK^i <sigma^2a> carry Hermite factors He_2i(x), up to i = 2p + ..., whose
oscillations the spacing h = min(h_max, beta / sqrt(K)) no longer resolves once it reaches h_max (K ~ 0.07 for
tanh). The rule now halves h while |T(h) - M(h)| / 2 (trapezoid against midpoint) is above 1e-13 of the
integral of |integrand|. At order 6 that flow now runs through layer 30 with every estimate below 1e-13
(149 s to generate the order-6 kernels, so it is not run here). Order 4 shows the same at K = 0.0745: its
worst estimate there was 6.2e-13 of the scale, and is now at rounding, with the values within 10 times their
estimates of 30-digit mpmath (as in test_kernels.py).
"""

from __future__ import annotations

import functools

import mpmath
import numpy as np
import pytest

from pdlt.codegen.usercache import kernels
from pdlt.derive import activations
from pdlt.derive.evaluate import moments_at


@functools.cache
def _tanh(order: int):
    return kernels(activations.get("tanh"), order)


@pytest.mark.parametrize("kernel", [0.0745, 0.09])
def test_high_derivatives_at_small_kernels_are_refined_and_right(kernel):
    mod = _tanh(4)
    mu, err, mag = mod.workspace()
    mod.moments(kernel, np.zeros(1), True, mu, err, mag)
    top = mod.ORDER + 1
    worst = max(err[a, i] / mag[a, i] for a in range(1, top + 1) for i in range(mu.shape[1]) if mag[a, i] > 0)
    assert worst < 1e-13, worst
    ref = moments_at(activations.get("tanh"), mod.ORDER, mpmath.mpf(kernel), dps=30)
    for (a, i), value in ref.items():
        want = float(value)
        assert abs(mu[a, i] - want) <= 10 * err[a, i] + 2.0**-52 * abs(want), (a, i, mu[a, i], want, err[a, i])


def test_an_order_four_critical_flow_keeps_its_error_small():
    """tanh at criticality (C_W = 1) through 40 layers, where K falls to 0.03: every layer's expectations within
    1e-13 of their scale."""
    mod = _tanh(4)
    res = mod.flow(40, 64, C_b=0.0, C_W=1.0, input_norm2=1.0)
    assert float(np.max(res.errors)) < 1e-13 and res.K[-1] < 0.05
