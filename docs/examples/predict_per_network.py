"""The T-shirt formula (∞.154) network by network: each sampled network's own dNTK and ddNTKs, against its own
training. The table of docs/predicting-trained-networks.md ("Network by network").

    python docs/examples/predict_per_network.py [--widths 64 256 1024] [--seeds 4]

For a tanh MLP (depth 3, C_W = 1, C_b = 0) the script computes, at initialization and on the training inputs plus
one test input, the network's NTK H, dNTK dH, and ddNTKs ddI, ddII as the book defines them (§11.1, §∞.1), from the
network's own derivatives (pdlt.codegen.network_tensors). It then trains the
network by full-batch gradient descent to a training error below 1e-12 and compares

    actual     = z_T(x) - [z_0(x) - H(x, X) H(X, X)^-1 (z_0(X) - y)]   (what training did beyond the frozen NTK)
    correction = the dNTK and ddNTK lines of (∞.154) with H~ = this network's H (so Delta H = 0), the projectors of
                 pdlt.runtime.predict.projectors

for each network. Both are O(1/n); their difference, the remainder, is O(1/n^2) with a coefficient that grows with
the training NTK's condition number. Three training sets, test input [-0.5, 0.4, 1], eta = 0.15: the one input
[1, 0.3, -0.2] with target 1.5 and lambda_b = 1; orthogonal inputs [1, 0.3, -0.2], [-0.3, 1, 0] with targets 1.5
and -1 and lambda_b = 0 (condition number about 1); the inputs [1, 0.3, -0.2], [0.2, 0.9, 0.5] with the same
targets and lambda_b = 1 (about 12). About 15 minutes on 2 cores at the default widths and seeds.
"""

from __future__ import annotations

import argparse

import numpy as np

from pdlt.codegen.network_tensors import initial, network_tensors, output_and_gradient, rates
from pdlt.runtime.predict import projectors

DEPTH, ETA = 3, 0.15
Y = np.array([1.5, -1.0])
TEST = np.array([[-0.5, 0.4, 1.0]])
SETS = {
    "one input, lambda_b = 1": (np.array([[1.0, 0.3, -0.2]]), 1.0),
    "orthogonal, lambda_b = 0": (np.array([[1.0, 0.3, -0.2], [-0.3, 1.0, 0.0]]), 0.0),
    "correlated, lambda_b = 1": (np.array([[1.0, 0.3, -0.2], [0.2, 0.9, 0.5]]), 1.0),
}


def lines(H, dH, ddI, ddII, e, train, d):
    """The dNTK and ddNTK lines of (∞.154) at input d, one output, Delta H = 0."""
    Z = projectors(H[np.ix_(train, train)], "gd", ETA)
    proj = H[d, train] @ np.linalg.inv(H[np.ix_(train, train)])

    def line(T, slot):
        free = np.moveaxis(T, slot, 0)[np.ix_(np.arange(len(T)), *[train] * (T.ndim - 1))]
        return free[d] - np.einsum("a,a...->...", proj, free[train])

    two = sum(np.einsum("ab,abce,c,e->", line(dH, s), Z[k], e, e) for k, s in (("A", 1), ("B", 0)))
    three = sum(np.einsum("abc,abcefg,e,f,g->", line(T, s), Z[k], e, e, e)
                for k, T, s in (("IA", ddI, 1), ("IB", ddI, 0), ("IIA", ddII, 2), ("IIB", ddII, 0)))  # fmt: skip
    return two + three


def one_network(X, lambda_b, n, rng):
    sizes = [X.shape[1]] + [n] * (DEPTH - 1) + [1]
    lam = rates(sizes, lambda_b)
    theta = initial(sizes, rng)
    both = np.vstack([X, TEST])
    train, d = np.arange(len(X)), len(X)
    z, H, dH, ddI, ddII = network_tensors(theta, sizes, both, lam)
    t = theta.copy()
    for _ in range(100_000):
        zt, g = output_and_gradient(t, sizes, X)
        if np.max(np.abs(zt - Y[: len(X)])) < 1e-12:
            break
        t -= ETA * lam * ((zt - Y[: len(X)]) @ g)
    else:
        raise RuntimeError("gradient descent did not converge")
    e = z[train] - Y[: len(X)]
    frozen = z[d] - H[d, train] @ np.linalg.solve(H[np.ix_(train, train)], e)
    actual = output_and_gradient(t, sizes, both)[0][d] - frozen
    return actual, lines(H, dH, ddI, ddII, e, train, d), np.linalg.cond(H[np.ix_(train, train)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--widths", type=int, nargs="+", default=[64, 256, 1024])
    ap.add_argument("--seeds", type=int, default=4)
    args = ap.parse_args()
    print("set, n, condition number, rms of n * correction, rms of n * remainder, their ratio, median of the")
    print("networks' |remainder| / |correction|")
    for name, (X, lambda_b) in SETS.items():
        for n in args.widths:
            rng = np.random.default_rng([5, n])
            rows = np.array([one_network(X, lambda_b, n, rng) for _ in range(args.seeds)])
            corr, rem = rows[:, 1], rows[:, 0] - rows[:, 1]
            rms = lambda a: float(np.sqrt(np.mean(a**2)))  # noqa: E731
            median = float(np.median(np.abs(rem) / np.abs(corr)))
            print(f"{name:>26}  {n:5d}  {np.mean(rows[:, 2]):6.2f}  {n * rms(corr):8.3f}  {n * rms(rem):8.3f}  "
                  f"{rms(rem) / rms(corr):6.3f}  {median:6.3f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
