"""Each generated kernel against the symbolic form evaluated in mpmath at 30 digits.

Expectations: hypothesis searches (not derandomized: every run draws new points) kernels K
log-uniformly over [1e-5, 30]: deep critical networks reach 1e-3 after ~500 layers and 1e-5 after
~50 000, the half-stable points of GELU and SWISH sit at 3.6 and 14.3; the edges and the hard
regions (K near 1 for hard tanh, whose kinks sit at z = +-1) are fixed examples. The generated value
must lie within its own error estimate (times 10, the estimate being a leading-order one), which
must be finite, plus the reference's own error: mpmath quadrature at 30 digits is accurate to about
1e-28 of the integrand's L1 size, bounded by Cauchy-Schwarz as sqrt(<sigma^(4a)>_K (2i)!)/(2K)^i.
That floor is never allowed to exceed the value checked, unless the value is structurally zero.
Steps: the generated step on random states equals the symbolic recursion evaluated in mpmath.
"""

from __future__ import annotations

import functools
import math

import mpmath
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pdlt import generated
from pdlt.derive import activations
from pdlt.derive.evaluate import moments_at, reference_flow, step_at
from pdlt.derive.expectations import mp_expectation
from pdlt.derive.recursion import state_keys

NAMES = sorted(generated.SHIPPED)
log_kernels = st.floats(min_value=-5.0, max_value=math.log10(30.0)).map(lambda t: 10.0**t)
REFERENCE_DIGITS = 28  # mpmath.quad at dps=30 (working at 40): error below 1e-28 of the L1 size


@functools.cache
def _fourth_power_mean(name: str, a: int, kernel: float) -> float:
    return float(mp_expectation(activations.get(name), 2 * a, 0, kernel, dps=15))


def l1_bound(name: str, a: int, i: int, kernel: float) -> float:
    """The integrand's L1 size, <|sigma^(2a) He_2i(z/sqrt K)|>_K / (2K)^i, bounded by Cauchy-Schwarz:
    sqrt(<sigma^(4a)>_K (2i)!) / (2K)^i. The mpmath reference is good to 1e-28 of it."""
    return math.sqrt(_fourth_power_mean(name, a, kernel) * math.factorial(2 * i)) / (2 * kernel) ** i


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=3, deadline=None)  # three random kernels a run, besides the five fixed ones (suite time)
@given(kernel=log_kernels)
@example(kernel=1e-5)
@example(kernel=1e-3)
@example(kernel=0.93)
@example(kernel=14.32)
@example(kernel=30.0)
def test_expectations_against_mpmath(name, kernel):
    mod = generated.load(name)
    act = activations.get(name)
    mu, err, mag = mod.workspace()
    params = np.array([d for _, d in mod.PARAMS] or [0.0])
    mod.moments(kernel, params, True, mu, err, mag)
    ref = moments_at(act, mod.ORDER, mpmath.mpf(kernel), dps=30)
    for (a, i), value in ref.items():
        got, want, estimate = mu[a, i], float(value), err[a, i]
        assert math.isfinite(estimate) and estimate >= 0, (a, i, estimate)
        l1 = l1_bound(name, a, i, kernel)
        floor = l1 * 10.0**-REFERENCE_DIGITS  # the reference's own error
        structural_zero = abs(want) <= 1e-20 * l1
        assert structural_zero or floor <= 1e-6 * abs(want), ("the reference cannot resolve", a, i, want, floor)
        # 10x the kernel's own estimate, the reference's error, and rounding the reference to double
        allowed = 10 * estimate + floor + 2.0**-53 * abs(want)
        assert abs(got - want) <= allowed, (a, i, got, want, estimate)


state_values = st.lists(st.floats(min_value=-2.0, max_value=2.0), min_size=30, max_size=30)


@pytest.mark.parametrize("name", ["tanh", "relu", "gelu"])
@settings(max_examples=6, deadline=None)
@given(values=state_values, ratio=st.floats(min_value=0.25, max_value=4.0), kernel=log_kernels)
def test_step_against_symbolic_recursion(name, values, ratio, kernel):
    mod = generated.load(name)
    order = mod.ORDER
    keys = state_keys(order)
    state = {key: values[j] for j, key in enumerate(keys)}
    state[(1, 0)] = kernel
    c = np.zeros((order + 2, order + 1))
    for (m, k), v in state.items():
        c[m, k] = v
    act = activations.get(name)
    mu_ref = moments_at(act, order, mpmath.mpf(kernel), dps=30)
    mu, _, _ = mod.workspace()
    for (a, i), v in mu_ref.items():
        mu[a, i] = float(v)
    s, _, _ = mod.workspace()
    mod.cumulants(mu, s)
    cb = np.array([0.3, 0.1, -0.05])[: order + 1]
    cw = np.array([1.7, 0.2, 0.4])[: order + 1]
    out = np.zeros_like(c)
    mod.step(c, s, cb, cw, ratio, out)
    ref = step_at(
        order, {k: mpmath.mpf(v) for k, v in state.items()}, mu_ref, cb[0], cw[0], ratio, C_b_n=cb[1:], C_W_n=cw[1:]
    )
    for (m, k), value in ref.items():
        assert out[m, k] == pytest.approx(float(value), rel=1e-11, abs=1e-11), (m, k)


@pytest.mark.parametrize("name", NAMES)
def test_flow_against_reference_with_unequal_widths(name):
    """Depth 4, widths 7, 12, 5: the whole chain, including the width ratios."""
    mod = generated.load(name)
    act = activations.get(name)
    scale_invariant = name in ("relu", "leaky_relu", "linear", "abs")
    C_b, C_W = (0.0, 2.0) if scale_invariant else (0.1, 1.3)
    widths = [7, 12, 5]
    flow = mod.flow(4, widths=widths, C_b=C_b, C_W=C_W, input_norm2=0.8)
    ref = reference_flow(act, mod.ORDER, 4, widths, mpmath.mpf(C_b), mpmath.mpf(C_W), mpmath.mpf("0.8"), dps=25)
    for l, layer in enumerate(ref):
        for (m, k), value in layer.items():
            assert flow.coefficients[l, m, k] == pytest.approx(float(value), rel=1e-10, abs=1e-12), (l + 1, m, k)


@pytest.mark.parametrize("name", ["tanh", "relu"])
def test_raw_kernels_refuse_arrays_too_small(name):
    """numba does not bounds-check: the kernels check shapes themselves instead of writing past the end."""
    mod = generated.load(name)
    params = np.zeros(1)
    small = np.zeros((mod._TOP + 1, mod._MAX_I + 1))  # one row short: no room for <sigma'^2>
    with pytest.raises(ValueError, match="workspace"):
        mod.moments(0.5, params, True, small, small.copy(), small.copy())
    with pytest.raises(ValueError, match="coeffs must have shape"):
        mod.flow_coefficients(np.ones(2), np.zeros(3), np.ones(3), 1.0, params, False, np.zeros((3, 2, 2)), np.zeros(3))
    mu, err, mag = mod.workspace()
    mod.moments(0.5, params, True, mu, err, mag)
    assert mu[1, 0] > 0 and mu[mod._PERP, 0] > 0
