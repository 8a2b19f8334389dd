"""What pdlt's two-input dNTK of ReLU means: the kink's point mass, seen by sampled networks only through crossings.
The measurement behind docs/ntk-fluctuations.md ("Kinks at two inputs").

    python docs/examples/relu_dntk_kinks.py [--networks 1500] [--width 32] [--step 0.05]

A ReLU MLP of depth 3 (C_W = 2, C_b = 0, lambda_b = lambda_W = 1) with two outputs on two inputs at an angle.
pdlt's P and Q read sigma'' as the point mass at the kink (book 11.67, 11.70): Gaussian averages of delta(z) times
the other factors, which at two inputs do not vanish (at one input sigma(0) = 0 kills them, and P = 0). A sampled
network's own second derivatives (the complex step, pdlt.codegen.network_tensors with activation="relu") hold almost
surely, where sigma'' = 0: they never see the point mass. A central difference of the network's gradient along
its own NTK direction, with a finite step, sees it through the preactivations that cross 0 within the step: its
ensemble mean is the smoothed (point-mass) derivative up to O(step^2), at the price of a large spread (crossings
are rare and large). Both estimators give n E[.] of P and Q (pdlt.codegen.network_tensors.components), entry by
entry, next to pdlt's. About 7 seconds at the defaults, 2 minutes with --networks 30000, 7 at --width 64 too.
"""

from __future__ import annotations

import argparse

import numpy as np

from pdlt.codegen.network_tensors import components, initial, network_tensors, output_and_gradient, rates
from pdlt.generated import load

X = np.array([[1.0, 0.3, -0.2], [0.2, 0.9, 0.5]])
DEPTH, C_W = 3, 2.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--networks", type=int, default=1500)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--step", type=float, default=0.05)
    args = ap.parse_args()
    n = args.width
    t = load("relu").kernel(X, DEPTH, C_W=C_W, lambda_b=1.0, lambda_W=1.0, tensors=("P", "Q"), layers=[DEPTH],
                            tolerance=1e-6)  # fmt: skip
    sizes = [X.shape[1]] + [n] * (DEPTH - 1) + [2]
    lam = rates(sizes, 1.0)
    rng = np.random.default_rng([11, n])
    exact, crossing = [], []
    for _ in range(args.networks):
        theta = initial(sizes, rng, C_W=C_W)
        z, _, dH, _, _ = network_tensors(theta, sizes, X, lam, third=False, activation="relu")
        exact.append(components(z, dH, None, np.zeros((2 * len(X),) * 4), len(X)))
        g = output_and_gradient(theta, sizes, X, "relu")[1]
        V, s = g * lam, args.step
        HV = np.array([(output_and_gradient(theta + s * v, sizes, X, "relu")[1]
                        - output_and_gradient(theta - s * v, sizes, X, "relu")[1]) / (2 * s) for v in V])  # fmt: skip
        crossing.append(components(z, np.einsum("cdm,bm->dbc", HV, V), None, np.zeros((2 * len(X),) * 4), len(X)))
    print(f"ReLU, depth {DEPTH}, width {n}, {args.networks} networks; entries in the order of np.ndindex(2, 2, 2, 2)")
    for k in ("P", "Q"):
        print(f"{k}: pdlt (point mass)        " + " ".join(f"{v:6.2f}" for v in getattr(t, k)[0].ravel()))
        for name, draws in (("almost-sure derivatives", exact), (f"difference, step {args.step:g}", crossing)):
            a = np.array([d[k] for d in draws])
            mean, se = n * a.mean(0), n * a.std(0, ddof=1) / np.sqrt(len(a))
            print(f"{k}: {name:24s} " + " ".join(f"{v:6.2f}" for v in mean.ravel()))
            print(f"{k}: {'  standard error':24s} " + " ".join(f"{v:6.2f}" for v in se.ravel()))


if __name__ == "__main__":
    main()
