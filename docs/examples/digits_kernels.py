"""Infinite-width kernel regression on scikit-learn's digits with pdlt's NNGP and NTK matrices.

    pip install scikit-learn && python docs/examples/digits_kernels.py

1797 8x8 images (n_0 = 64), each scaled to |x|^2 / n_0 = 1; 500 for training, the rest for testing.
For relu (C_b = 0, C_W = 2) and tanh (C_b = 0, C_W = 1), both critical, and depths 2..20: the posterior
mean of the infinite-width Bayesian network (NNGP) and the mean prediction of a network trained to
convergence by gradient flow (NTK), y_test = Kernel[test, train] Kernel[train, train]^-1 y_train
(one-hot targets, a 1e-10 relative jitter), and the test accuracy of its argmax.
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.datasets import load_digits

from pdlt.generated import relu, tanh


def main() -> None:
    x, labels = load_digits(return_X_y=True)
    x = x / np.sqrt(np.mean(x**2, axis=1, keepdims=True))  # |x|^2 / n_0 = 1
    order = np.random.default_rng(0).permutation(len(x))
    x, labels = x[order], labels[order]
    train, test = np.arange(500), np.arange(500, len(x))
    y = np.eye(10)[labels[train]]
    depths = [2, 5, 10, 20]
    print(f"{'activation':<10} {'depth':>5} {'NNGP acc':>9} {'NTK acc':>8}")
    for name, mod, (cb, cw) in (("relu", relu, (0.0, 2.0)), ("tanh", tanh, (0.0, 1.0))):
        t0 = time.perf_counter()
        res = mod.kernel(x, max(depths), C_b=cb, C_W=cw, layers=depths)
        seconds = time.perf_counter() - t0
        for s, depth in enumerate(res.layers):
            accs = []
            for kernel in (res.K[s], res.Theta[s]):
                a = kernel[np.ix_(train, train)]
                a = a + 1e-10 * np.trace(a) / len(train) * np.eye(len(train))
                pred = kernel[np.ix_(test, train)] @ np.linalg.solve(a, y)
                accs.append(np.mean(pred.argmax(axis=1) == labels[test]))
            print(f"{name:<10} {depth:>5} {accs[0]:>9.3f} {accs[1]:>8.3f}")
        print(f"  ({name}: all 1797 x 1797 K and Theta through {max(depths)} layers in {seconds:.1f} s, {res.method})")


if __name__ == "__main__":
    main()
