"""Two inputs through the same sampled networks: every entry of V, A, B, D, F against the generated tensors
(issue 8, item 4: the index permutations are where implementations go wrong).

tanh at C_W = 1, lambda_b = lambda_W = 1, depth 3 (the first layer where every recursion term enters), two inputs
at an angle (x_0 . x_1 / |x_0||x_1| = 0.37). 40 000 networks per width (16, 24, 32); the NTK of 8 output neurons
by the chain rule (``pdlt.codegen.sample_ntk.sample_two``), n times each pair estimator per entry. For each of the
80 entries the estimates are fitted as T + c/n by weighted least squares; T must be within 4 standard errors of
the generated entry. The fitted errors are asserted below a tenth of the tensor's largest entry, so a permuted
slot (B_{0011} against B_{0110} differ by 1 %, by hundreds of standard errors; F's by 10 %) or a tensor wrong by
its own size is rejected.
"""

from __future__ import annotations

import numpy as np
import pytest

from pdlt.codegen.sample_ntk import jackknife, sample_two, two_input_estimates, two_input_estimators
from pdlt.generated import load

pytestmark = pytest.mark.slow

X = np.array([[1.0, 0.3, -0.2], [0.2, 0.9, 0.5]])
DEPTH, WIDTHS, SAMPLES, CHUNK = 3, (16, 24, 32), 40_000, 5_000
FNS = (np.tanh, lambda z: 1.0 - np.tanh(z) ** 2, lambda z: -2.0 * np.tanh(z) * (1.0 - np.tanh(z) ** 2))


@pytest.fixture(scope="module")
def fits():
    gram = X @ X.T / X.shape[1]
    theory = load("tanh").kernel(X, DEPTH, C_W=1.0, lambda_b=1.0, lambda_W=1.0, tensors=("V", "A", "B", "D", "F"),
                                 layers=[DEPTH])  # fmt: skip
    rows = []
    for n in WIDTHS:
        rng = np.random.default_rng([11, n])
        ones = np.ones(DEPTH)
        parts = [two_input_estimates(sample_two(FNS, n, CHUNK, 0.0, 1.0, ones, ones, gram, rng), n)
                 for _ in range(SAMPLES // CHUNK)]  # fmt: skip
        data = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        rows.append({key: jackknife(data, f) for key, f in two_input_estimators(n).items()})
    out = {}
    for key in rows[0]:
        n = np.array(WIDTHS, dtype=float)
        e = np.array([r[key][0] for r in rows])
        w = 1.0 / np.array([r[key][1] for r in rows]) ** 2
        A = np.stack([np.ones_like(n), 1.0 / n], axis=1)
        cov = np.linalg.inv(A.T @ (w[:, None] * A))
        T = (cov @ A.T @ (w * e))[0]
        out[key] = (T, float(np.sqrt(cov[0, 0])))
    return theory, out


@pytest.mark.parametrize("name", ["V", "A", "B", "D", "F"])
def test_every_entry_of_two_inputs_matches_sampled_networks(fits, name):
    theory, out = fits
    want = getattr(theory, name)[0]
    scale = np.max(np.abs(want))
    for a1, a2, a3, a4 in np.ndindex(2, 2, 2, 2):
        T, sigma = out[f"{name}:{a1}{a2}{a3}{a4}"]
        assert sigma <= 0.1 * scale, (name, (a1, a2, a3, a4), sigma, scale)
        assert abs(T - want[a1, a2, a3, a4]) <= 4 * sigma, (name, (a1, a2, a3, a4), T, sigma, want[a1, a2, a3, a4])
