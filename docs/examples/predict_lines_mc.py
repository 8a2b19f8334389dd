"""The T-shirt formula's lines averaged over sampled (untrained) networks against ``pdlt predict``'s parts: the
table of docs/predicting-trained-networks.md ("Where the shortfall comes from").

    python docs/examples/predict_lines_mc.py [--depth 3] [--widths 64 128] [--networks 20000]

For each sampled tanh network (C_b = 0, C_W = 1, lambda_b = lambda_W = 1) at the training input x_0 and two test
inputs, its own NTK H, dNTK dH and ddNTKs ddI, ddII (pdlt.codegen.network_tensors: backpropagation and complex-step
derivatives) give the lines of (∞.154) with the mean NTK's projectors (gradient descent, eta = 0.3, target y = 2):
L_0 = z(x) - r (z(x_0) - y), the Delta-H lines L_1 (linear) and L_2 (quadratic, Delta H = H - Theta - H1/n), the dNTK
lines L_d and the ddNTK lines L_I, L_II. Their averages are what the 1/n parts of the mean and the variance are made
of, before training is involved:

    n E[L_2], n E[L_d], n E[L_I], n E[L_II]  ->  parts "NTK fluctuations", "dNTK", "ddNTK-I", "ddNTK-II"
    2n Cov(L_0, L_d), ...                    ->  variance_parts, and n (2 Cov(L_0, L_1 + L_2) + Var L_1) -> theirs

as n grows. So this checks pdlt's tensors and its moment algebra together, at any width, without training; what
trained networks add on top is the formula's own remainder. About 2.5 minutes per 20 000 networks at n = 64 and
10 at n = 128 on one core.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from pdlt.codegen.network_tensors import initial, network_tensors, rates
from pdlt.generated import load
from pdlt.runtime.predict import predict, projectors

X = np.array([[1.0, 0.3, -0.2]])
XT = np.array([[0.2, 0.9, 0.5], [-0.5, 0.4, 1.0]])
Y, ETA = 2.0, 0.3
HYPER = dict(C_W=1.0, lambda_b=1.0, lambda_W=1.0)
PARTS = ("NTK fluctuations", "dNTK", "ddNTK-I", "ddNTK-II")


def sample_lines(depth: int, n: int, networks: int) -> np.ndarray:
    """(networks, test inputs, 6): L_0, L_1, L_2, L_d, L_I, L_II of each sampled network at each test input."""
    mod = load("tanh")
    km = mod.kernel(np.vstack([X, XT]), depth, layers=[depth], tensors=("Theta", "H1"), tolerance=1e-4, **HYPER)
    theta_mean, H1 = km.Theta[0], km.H1[0]
    Z = {k: float(v.ravel()[0]) for k, v in projectors(theta_mean[:1, :1], "gd", ETA).items()}
    Hi = 1 / theta_mean[0, 0]
    r = theta_mean[1:, 0] * Hi
    sizes = [X.shape[1]] + [n] * (depth - 1) + [1]
    lam = rates(sizes, 1.0)
    rng = np.random.default_rng([3, n])
    both = np.vstack([X, XT])
    out = np.empty((networks, len(XT), 6))
    for s in range(networks):
        z, H, dH, ddI, ddII = network_tensors(initial(sizes, rng), sizes, both, lam)
        eps = z[0] - Y
        dHm = H - theta_mean - H1 / n
        for j, b in enumerate(range(1, len(XT) + 1)):
            pdH = dHm[b, 0] - r[j] * dHm[0, 0]
            out[s, j] = (
                z[b] - r[j] * eps,
                -pdH * Hi * eps,
                pdH * Hi * dHm[0, 0] * Hi * eps,
                ((dH[0, b, 0] - r[j] * dH[0, 0, 0]) * Z["A"] + (dH[b, 0, 0] - r[j] * dH[0, 0, 0]) * Z["B"]) * eps**2,
                ((ddI[0, b, 0, 0] - r[j] * ddI[0, 0, 0, 0]) * Z["IA"]
                 + (ddI[b, 0, 0, 0] - r[j] * ddI[0, 0, 0, 0]) * Z["IB"]) * eps**3,
                ((ddII[0, 0, b, 0] - r[j] * ddII[0, 0, 0, 0]) * Z["IIA"]
                 + (ddII[b, 0, 0, 0] - r[j] * ddII[0, 0, 0, 0]) * Z["IIB"]) * eps**3,
            )  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--widths", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--networks", type=int, default=20_000)
    args = ap.parse_args()
    p = predict(load("tanh"), X, [Y], XT, args.depth, algorithm="gd", eta=ETA, **HYPER)
    for n in args.widths:
        t0 = time.time()
        rec = sample_lines(args.depth, n, args.networks)
        print(f"n = {n}, {args.networks} networks ({time.time() - t0:.0f} s); pdlt | sampled, +- standard error")
        for j in range(len(XT)):
            L0, L1, L2, Ld, LI, LII = rec[:, j].T
            print(f"  test input {j}, mean:")
            for name, a in zip(PARTS, (L2, Ld, LI, LII)):
                se = n * a.std(ddof=1) / np.sqrt(len(a))
                print(f"    {name:17s} {p.parts[name][j, 0]:9.4f} | {n * a.mean():9.4f} +- {se:.4f}")
            print(f"  test input {j}, variance:")
            c0 = L0 - L0.mean()
            for name, a in zip(PARTS, (L1 + L2, Ld, LI, LII)):
                u = 2 * n * c0 * (a - a.mean()) + (n * (L1 - L1.mean()) ** 2 if name == PARTS[0] else 0.0)
                se = u.std(ddof=1) / np.sqrt(len(u))
                print(f"    {name:17s} {p.variance_parts[name][j, 0]:9.4f} | {u.mean():9.4f} +- {se:.4f}")


if __name__ == "__main__":
    main()
