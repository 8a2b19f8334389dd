"""The Monte Carlo table of docs/ntk-fluctuations.md: n times each pair statistic of sampled networks at layer 3
(lambda_b = lambda_W = 1, |x|^2/n_0 = 1, criticality), with its jackknife error, beside pdlt's tensors.

    python docs/examples/ntk_montecarlo.py          (about a minute on 2 cores)
"""

import numpy as np

from pdlt.codegen.sample_ntk import estimators, jackknife, pair_statistics, sample
from pdlt.generated import load

DEPTH, NETWORKS, CHUNK = 3, 100_000, 5_000
ACTIVATIONS = {
    "relu": (2.0, (lambda z: np.maximum(z, 0.0), lambda z: (z > 0).astype(float), lambda z: 0.0 * z)),
    "tanh": (1.0, (np.tanh, lambda z: 1 - np.tanh(z) ** 2, lambda z: -2 * np.tanh(z) * (1 - np.tanh(z) ** 2))),
}
NAMES = ("A", "B", "D", "F", "P", "Q")

for name, widths in (("relu", (16, 64)), ("tanh", (64,))):
    C_W, fns = ACTIVATIONS[name]
    r = load(name).kernel(np.ones((1, 1)), DEPTH, C_W=C_W, lambda_b=1.0, lambda_W=1.0, tensors=NAMES, layers=[DEPTH])
    for n in widths:
        rng = np.random.default_rng([3, n])
        ones = np.ones(DEPTH)
        parts = [
            pair_statistics(sample(fns, n, CHUNK, 0.0, C_W, ones, ones, 1.0, rng)) for _ in range(NETWORKS // CHUNK)
        ]
        data = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        est = estimators(n)
        for t in NAMES:
            value, se = jackknife(data, est[t])
            print(f"{name} n={n} {t}: {value:.4g} +- {se:.2g}  (pdlt {getattr(r, t).ravel()[0]:.5g})")
