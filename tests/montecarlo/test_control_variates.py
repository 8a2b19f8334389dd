"""The control-variate estimate of kappa_1 (networks.py) is unbiased and its jackknife error honest.

The Hermite control variates have mean exactly zero by construction (the preactivations are
Gaussian given the layer below), and ``estimate`` fits their coefficients on the same data. These
checks stand behind every kappa_1 of test_order_two.py: an unbiased estimate (against a value known
exactly, and against the plain sample mean of the same networks) and a standard error that matches
the spread of independent replicates.
"""

from __future__ import annotations

import numpy as np
import pytest
from networks import estimate, sample_metric

from pdlt import generated
from pdlt.derive.activations import get
from pdlt.derive.expectations import mp_expectation

Z = 4.0


# the settings whose kappa_1 test_order_two.py estimates with control variates
LAYER2 = [("sin", 0.0, 1.5, 0.2, 811), ("erf", 0.0, 2.5, 0.2, 812), ("gelu", 0.1, 0.75, 2.0, 813)]


@pytest.mark.parametrize("act,C_b,C_W,input_norm2,seed", LAYER2, ids=[a[0] for a in LAYER2])
def test_layer_two_mean_is_exact_with_control_variates(act, C_b, C_W, input_norm2, seed):
    """E[G(2)] = C_b + C_W <sigma^2>_{K(1)} exactly at any width (z(1) is Gaussian); here n_1 = 3.

    The value comes from the mpmath oracle, not the kernels. The controls of layer 1 explain most
    of G(2)'s fluctuations at these settings (SE 13-900 times smaller), so the check is sharp:
    power, a bias of 0.4 SE of the plain sample mean would exceed Z SE of the control-variate
    estimate.
    """
    K1 = C_b + C_W * input_norm2
    exact = C_b + C_W * float(mp_expectation(get(act), 1, 0, K1, dps=20))
    samples, controls = sample_metric(
        generated.load(act).sigma, [3], C_b, C_W, input_norm2, 200_000, seed=seed, controls=True
    )
    cv, plain = estimate(samples, controls=controls), estimate(samples)
    assert abs(cv.kappa[1] - exact) <= Z * cv.se[1], f"{cv.kappa[1]:.8g} +- {cv.se[1]:.2g} vs exact {exact:.8g}"
    assert abs(plain.kappa[1] - exact) <= Z * plain.se[1]
    assert Z * cv.se[1] < 0.4 * plain.se[1], f"reduction {cv.reduction:.3g} too small for the stated power"


def test_control_variate_errors_match_the_spread_of_replicates():
    """60 independent ensembles (erf as in test_order_two.py: depth 4, width 10; 10^4 networks and
    40 fitted controls each): the standard deviation of their control-variate kappa_1 equals the
    mean jackknife SE within Z times its sampling error (1/sqrt(2 * 59), about 9 %), and the mean
    difference from the plain sample means of the same networks is zero within Z SE. Power: an SE
    off by a factor 1.6 either way, or a bias as large as one ensemble's plain-mean SE, would fail
    (the layer-2 check above is the sharp one for bias)."""
    sigma = generated.load("erf").sigma
    cv, plain, errors, plain_errors = [], [], [], []
    for r in range(60):
        samples, controls = sample_metric(sigma, [10, 10, 10], 0.0, 2.5, 0.2, 10_000, seed=[802, r], controls=True)
        est = estimate(samples, controls=controls)
        cv.append(est.kappa[1])
        errors.append(est.se[1])
        simple = estimate(samples)
        plain.append(simple.kappa[1])
        plain_errors.append(simple.se[1])
    cv, plain, errors = np.array(cv), np.array(plain), np.array(errors)
    ratio = cv.std(ddof=1) / errors.mean()
    tolerance = Z / np.sqrt(2 * (len(cv) - 1))
    assert abs(ratio - 1) <= tolerance, f"spread / jackknife SE = {ratio:.3f}, allowed 1 +- {tolerance:.3f}"
    assert 1.6 - 1 > tolerance and 1 - 1 / 1.6 > tolerance  # power against an SE off by 1.6
    diff = cv - plain
    diff_se = diff.std(ddof=1) / np.sqrt(len(diff))
    assert abs(diff.mean()) <= Z * diff_se, f"control-variate minus plain: {diff.mean():.3g} +- {diff_se:.2g}"
    assert Z * diff_se < np.mean(plain_errors)  # power: a bias of one plain SE exceeds Z diff-SE
