"""The mean output of trained networks against ``pdlt predict`` (issue 10, item 4).

Ensembles of tanh networks (depth 3, C_W = 1, C_b = 0, lambda_b = lambda_W = 1, three inputs) are trained by
full-batch gradient descent at eta = 0.3 (pdlt.codegen.train_ensemble: the book's per-parameter rates, to a
training error below 1e-11) on one input x_0 with target y = 2, and their outputs read at two test inputs.
Each network's output minus its initial function's kernel-projected part, z(x) - Theta(x, x_0)/Theta(x_0, x_0)
z(x_0) (zero mean: flipping the last layer's sign flips it), has the same mean as the output and a fraction of
its spread. The estimates e(n) = n (mean - mean_infinite) at widths 16, 32, 64 (20 000 networks each) are fitted
as c + d/n by weighted least squares; c must be within 4 of its standard errors of the predicted coefficient, and
that standard error below 10 % of it. The outputs' variance over initializations tends to the infinite-width
variance_infinite. The parts of the coefficient are 0.18 (NTK fluctuations), -0.38 (dNTK),
1.38 (ddNTK-I), -0.32 (ddNTK-II) at the first test input, so a sign or a misplaced term among them moves c by
more than 0.3, several standard errors (the book's printed sign of the fluctuation term, as transcribed in the
reference, is such an error: it would predict 0.49 where the networks give 0.85). Two training inputs are checked
the same way at depth 2 (test_two_training_inputs_approach_the_predicted_mean), and two Newton steps at one.
"""

from __future__ import annotations

import numpy as np
import pytest

from pdlt.codegen.train_ensemble import against_first_line, train
from pdlt.generated import load
from pdlt.runtime.predict import predict

pytestmark = pytest.mark.slow

X = np.array([[1.0, 0.3, -0.2]])
XT = np.array([[0.2, 0.9, 0.5], [-0.5, 0.4, 1.0]])
Y = np.array([[2.0]])
DEPTH, ETA, WIDTHS, SAMPLES, CHUNK = 3, 0.3, (16, 32, 64), 20_000, 4_000
FNS = (np.tanh, lambda z: 1.0 - np.tanh(z) ** 2)


def _intercepts(rows, widths, powers: int) -> list[tuple[float, float]]:
    """Per test input, the weighted least-squares intercept of rows[k] = (estimates, standard errors) at widths[k]
    in the basis 1, 1/n, ..., 1/n^(powers - 1), and its standard error."""
    n = np.array(widths, dtype=float)
    basis = np.stack([n**-k for k in range(powers)], axis=1)
    out = []
    for j in range(len(rows[0][0])):
        e = np.array([row[0][j] for row in rows])
        w = 1.0 / np.array([row[1][j] for row in rows]) ** 2
        cov = np.linalg.inv(basis.T @ (w[:, None] * basis))
        out.append(((cov @ basis.T @ (w * e))[0], float(np.sqrt(cov[0, 0]))))
    return out


def _ensembles(p, X, y, XT, depth, widths, seed, lambda_b=1.0, eta=ETA, kappa=None):
    """Per width n, trained networks' (n (mean - mean_infinite), n * standard error) of the estimator, their
    final outputs (SAMPLES, test inputs), and (n (Var z_T - Var L_0), n * standard error). The estimator of the mean
    subtracts the initial function's kernel-projected part, z_0(x) - Theta(x, X) Theta(X, X)^-1 z_0(X), whose mean
    is zero. The variance is measured against L_0 = z_0(x) - Theta(x, X) Theta(X, X)^-1 (z_0(X) - y), the T-shirt
    formula's first line, known per network: Var z_T - Var L_0 = E[z_T^2 - L_0^2] - E[d] (E[d] + 2 E[L_0]) with
    d = z_T - L_0 = O(1/sqrt n) and E[L_0] = r y exactly, so its spread is a fraction of the variance's; its standard
    error by the delta method."""
    kw = dict(C_W=1.0, lambda_b=lambda_b, lambda_W=1.0)
    theta = load("tanh").kernel(np.vstack([X, XT]), depth, tensors=("Theta",), layers=[depth], **kw).Theta[0]
    N = len(X)
    proj = theta[N:, :N] @ np.linalg.inv(theta[:N, :N])
    c = proj @ y[:, 0]  # E[L_0]
    out = []
    for n in widths:
        rng = np.random.default_rng([seed, n])
        finals, lines = [], []
        for _ in range(SAMPLES // CHUNK):
            t = train(FNS, n, depth, X, y, XT, 0.0, 1.0, lambda_b, 1.0, eta, CHUNK, rng, kappa=kappa)
            finals.append(t.final[:, :, 0])
            lines.append(t.initial[:, :, 0] - (t.initial_train[:, :, 0] - y[:, 0]) @ proj.T)
        f = np.concatenate(finals)
        mean, mean_se, spread, spread_se = against_first_line(f, np.concatenate(lines), c)
        out.append(((n * (mean - p.mean_infinite[:, 0]), n * mean_se), f, (n * spread, n * spread_se)))
    return out


@pytest.fixture(scope="module")
def fit():
    p = predict(load("tanh"), X, Y, XT, DEPTH, C_W=1.0, lambda_b=1.0, lambda_W=1.0, algorithm="gd", eta=ETA)
    rows, variances, spreads = [], [], []
    for row, f, spread in _ensembles(p, X, Y, XT, DEPTH, WIDTHS, 31):
        rows.append(row)
        spreads.append(spread)
        v = f.var(0, ddof=1)
        kurtosis = ((f - f.mean(0)) ** 4).mean(0) / v**2
        variances.append((v, v * np.sqrt((kurtosis - 1.0) / len(f))))
    return p, _intercepts(rows, WIDTHS, 2), _intercepts(variances, WIDTHS, 3), _intercepts(spreads, WIDTHS, 2)


@pytest.mark.parametrize("j", [0, 1])
def test_trained_networks_approach_the_predicted_mean_like_one_over_n(fit, j):
    p, fits, _, _ = fit
    want = float(p.mean_coefficient[j, 0])
    c, sigma = fits[j]
    assert sigma <= 0.1 * abs(want), (j, sigma, want)
    assert abs(c - want) <= 4 * sigma, (j, c, sigma, want)


@pytest.mark.parametrize("j", [0, 1])
def test_the_spread_over_initializations_is_the_infinite_width_one_at_large_width(fit, j):
    """The outputs' variance through v + w/n + f/n^2 at the same widths (the 1/n^2 term is large here: a straight
    line in 1/n misses v by 3 standard errors), its error propagated from each variance's, v sqrt((kurtosis - 1)/S):
    v within 4 standard errors of variance_infinite, that error below 10 % of it."""
    p, _, var_fits, _ = fit
    v, sigma = var_fits[j]
    want = float(p.variance_infinite[j])
    assert sigma <= 0.1 * want, (j, sigma, want)
    assert abs(v - want) <= 4 * sigma, (j, v, sigma, want)


@pytest.mark.parametrize("j", [0, 1])
def test_the_spread_of_trained_networks_moves_like_one_over_n_with_the_predicted_coefficient(fit, j):
    """n (Var z_T - Var L_0) through c + d/n: c within 4 standard errors of variance_coefficient less its "kernel" part
    (p K1 p, the one piece of Var L_0 that the per-network L_0 carries exactly). The parts are 0.34 (NTK fluctuations),
    -1.45 (dNTK), 0.33 (ddNTK-I), -0.08 (ddNTK-II) at the first test input: a sign or a pairing missed moves c by
    several standard errors."""
    p, _, _, spread_fits = fit
    want = float(p.variance_coefficient[j, 0] - p.variance_parts["kernel"][j, 0])
    c, sigma = spread_fits[j]
    assert sigma <= 0.15 * abs(want), (j, sigma, want)
    assert abs(c - want) <= 4 * sigma, (j, c, sigma, want)


@pytest.fixture(scope="module")
def newton():
    """The two-Newton-step algorithm (∞.148): a giant leap with the mean NTK's inverse, then a small step with each
    network's own (pdlt.codegen.train_ensemble with kappa), at widths 32, 64, 128, 20 000 networks each."""
    mod = load("tanh")
    y = np.array([[1.5]])
    p = predict(mod, X, y, XT, DEPTH, C_W=1.0, lambda_b=1.0, lambda_W=1.0, algorithm="newton2")
    theta = mod.kernel(X, DEPTH, C_W=1.0, lambda_b=1.0, lambda_W=1.0, tensors=("Theta",), layers=[DEPTH]).Theta[0]
    widths = (32, 64, 128)
    rows = [row for row, _, _ in _ensembles(p, X, y, XT, DEPTH, widths, 37, eta=1.0, kappa=np.linalg.inv(theta))]
    return p, _intercepts(rows, widths, 2)


@pytest.mark.parametrize("j", [0, 1])
def test_two_newton_steps_approach_the_predicted_mean(newton, j):
    """Its projectors are the simplest (Z_B and Z_IB only), so this checks the dNTK and first-ddNTK terms apart from
    gradient descent's X_II, X_III (predicted 0.392 and 0.496; measured 0.353 +- 0.035 and 0.441 +- 0.035)."""
    p, fits = newton
    want = float(p.mean_coefficient[j, 0])
    c, sigma = fits[j]
    assert sigma <= 0.25 * abs(want), (j, sigma, want)
    assert abs(c - want) <= 4 * sigma, (j, c, sigma, want)


X2 = np.array([[1.0, 0.3, -0.2], [-0.3, 1.0, 0.0]])
XT2 = np.array([[0.7, 0.7, 0.0], [1.0, -0.5, 0.5]])


@pytest.fixture(scope="module")
def two_inputs():
    """Two orthogonal training inputs with targets 2 and -1.5, depth 2, lambda_b = 0 (the training NTK's condition
    number is 1.02), gradient descent at eta = 1, widths 16, 32, 64 with 20 000 networks each."""
    y = np.array([[2.0], [-1.5]])
    p = predict(load("tanh"), X2, y, XT2, 2, C_W=1.0, lambda_b=0.0, lambda_W=1.0, algorithm="gd", eta=1.0)
    widths = (16, 32, 64)
    runs = _ensembles(p, X2, y, XT2, 2, widths, 41, lambda_b=0.0, eta=1.0)
    return p, _intercepts([run[0] for run in runs], widths, 2), _intercepts([run[2] for run in runs], widths, 2)


@pytest.mark.parametrize("j", [0, 1])
def test_two_training_inputs_approach_the_predicted_mean(two_inputs, j):
    """Every line of the T-shirt formula with distinct training indices: the coefficient is 1.355 at the first test
    input (mostly ddNTK-I, 1.275) and -1.169 at the second (mostly ddNTK-II, -0.952), so a slot of the multi-input
    contractions read wrongly moves c by far more than its standard error (measured: 1.355 +- 0.027 and
    -1.144 +- 0.037)."""
    p, fits, _ = two_inputs
    want = float(p.mean_coefficient[j, 0])
    c, sigma = fits[j]
    assert sigma <= 0.1 * abs(want), (j, sigma, want)
    assert abs(c - want) <= 4 * sigma, (j, c, sigma, want)


@pytest.mark.parametrize("j", [0, 1])
def test_the_spread_of_networks_trained_on_two_inputs_moves_with_the_predicted_coefficient(two_inputs, j):
    """The variance's 1/n part with distinct training indices in every pairing (the same networks as the mean's):
    n (Var z_T - Var L_0) through c + d/n, c within 4 standard errors of variance_coefficient less its kernel part."""
    p, _, spreads = two_inputs
    want = float(p.variance_coefficient[j, 0] - p.variance_parts["kernel"][j, 0])
    c, sigma = spreads[j]
    assert sigma <= 0.15 * abs(want), (j, sigma, want)
    assert abs(c - want) <= 4 * sigma, (j, c, sigma, want)
