"""NTK statistics of one input against ensembles of real networks, NTK by explicit backpropagation (issue 8).

Each network is sampled as initialised (Gaussian W with variance C_W/n, biases C_b) at width n in every hidden
layer; its layer-1 preactivations are drawn from their exact law N(0, K(1)). The NTK of the first m = 8 output
neurons of layer L is computed from its definition (book 8.5, 8.7) by the chain rule: with J_l = dz(L)/dz(l)
(J_L = 1, J_l = J_(l+1) W(l+1) diag sigma'(z(l))),

    H(L) = sum_l [lambda_b + lambda_W |sigma(z(l-1))|^2 / n_(l-1)] J_l J_l^T        (sigma(z(0)) = x),

never through the forward equation the theory starts from. Estimators, averaged over the pairs i != j of the
m neurons (each the coefficient of 1/n, so multiplied by n):

    A = n Cov(H_ii, H_jj),  B = n E[H_ij^2],  F = n E[z_i z_j H_ij],  D = n Cov(z_i^2, H_jj),  V = n Var(z_i^2 ...),
    P = n E[dH_{i j j} z_i],  Q = n E[dH_{i i j} z_j]   (the dNTK by forward-mode second derivatives, ``_dntk``)
    R = n E[dd_I H_{i i j j}]                              (the first ddNTK by third derivatives; tanh only)
    S, T, U = n E[dd_II H_{i i j j}], n E[dd_II H_{i j i j}], n E[dd_II H_{i j j i}]   (the second ddNTK, ∞.7, as
    lambda-products of Hessian-vector products by reverse mode through the tangent pass; tanh only)

where D and V use E[z_i^2 | layers < L] = G(L) = C_b + C_W mean sigma(z(L-1))^2 (row i of W(L) and b(L) is
independent of row j and of the layers below, and z_i is Gaussian given them), which removes most of the noise.
Standard errors by a grouped jackknife (50 groups) over S networks per width.

At widths 16, 32, 64 the estimates e(n) = T + c/n + O(1/n^2) are fitted by weighted least squares; the fitted
T must be within 4 of its standard errors of the generated value, and that standard error below 10 % of it, so
a tensor wrong by its own size (or a misplaced index) is rejected (relu's P is 0, resolved to a tenth of Q).
tanh and ReLU, depth 3 (layer 3 is the first with every recursion term: the layer-2 values enter layer 3
through V, D, A, F).
"""

from __future__ import annotations

import numpy as np
import pytest

from pdlt.codegen.sample_ntk import estimators, jackknife, pair_statistics, sample
from pdlt.generated import load
from pdlt.runtime.errors import FlowError

pytestmark = pytest.mark.slow

DEPTH, NORM2, LAMBDA_B, LAMBDA_W, M = 3, 1.0, 1.0, 1.0, 8
WIDTHS, SAMPLES, CHUNK, GROUPS = (16, 32, 64), 40_000, 5_000, 50
ACTIVATIONS = {  # C_W at criticality, (sigma, sigma', sigma'' [, sigma''']) on arrays
    "tanh": (1.0, (np.tanh, lambda z: 1.0 - np.tanh(z) ** 2, lambda z: -2.0 * np.tanh(z) * (1.0 - np.tanh(z) ** 2),
                   lambda z: (1.0 - np.tanh(z) ** 2) * (6.0 * np.tanh(z) ** 2 - 2.0))),
    "relu": (2.0, (lambda z: np.maximum(z, 0.0), lambda z: (z > 0).astype(float), lambda z: 0.0 * z)),
}  # fmt: skip
TENSORS = ("H", "V", "A", "B", "D", "F", "P", "Q", "R", "S", "T", "U")  # R..U: tanh only (ReLU's are refused)


@pytest.fixture(scope="module", params=sorted(ACTIVATIONS))
def ensembles(request):
    name = request.param
    C_W, fns = ACTIVATIONS[name]
    names = TENSORS[1:] if len(fns) > 3 else TENSORS[1:-4]
    theory = load(name).kernel(np.full((1, 1), np.sqrt(NORM2)), DEPTH, C_W=C_W, lambda_b=LAMBDA_B,
                               lambda_W=LAMBDA_W, tensors=("Theta", *names), layers=[DEPTH])  # fmt: skip
    want = {"H": float(theory.Theta[0, 0, 0]), **{t: float(getattr(theory, t).ravel()[0]) for t in names}}
    rates = np.full(DEPTH, LAMBDA_B), np.full(DEPTH, LAMBDA_W)
    rows = []
    for n in WIDTHS:
        rng = np.random.default_rng([7, n, len(name)])
        chunks = [pair_statistics(sample(fns, n, CHUNK, 0.0, C_W, *rates, NORM2, rng, rows=M))
                  for _ in range(SAMPLES // CHUNK)]  # fmt: skip
        data = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
        rows.append((n, {t: jackknife(data, f, GROUPS) for t, f in estimators(n).items() if t in want}))
    return name, want, rows


@pytest.mark.parametrize("tensor", TENSORS)
def test_sampled_networks_approach_the_theory_like_one_over_n(ensembles, tensor):
    name, want, rows = ensembles
    if tensor not in want:  # ReLU's ddNTK: refused, not sampled (its sigma'' is a point mass)
        with pytest.raises(FlowError, match="not defined for relu"):
            load(name).kernel(np.ones((1, 1)), DEPTH, C_W=2.0, tensors=(tensor,))
        return
    n = np.array([w for w, _ in rows], dtype=float)
    e = np.array([r[tensor][0] for _, r in rows])
    se = np.array([r[tensor][1] for _, r in rows])
    X = np.stack([np.ones_like(n), 1.0 / n], axis=1)
    w = 1.0 / se**2
    cov = np.linalg.inv(X.T @ (w[:, None] * X))
    T, c = cov @ X.T @ (w * e)
    sigma_T = float(np.sqrt(cov[0, 0]))
    size = max(abs(want[tensor]), 0.1 * abs(want["Q"]))  # relu P = 0: resolved on the scale of its partner Q
    assert sigma_T <= 0.1 * size, (name, tensor, sigma_T, want[tensor])
    assert abs(T - want[tensor]) <= 4 * sigma_T, (name, tensor, T, sigma_T, want[tensor], e, se)
