"""The trained-network figures of docs/predicting-trained-networks.md: ``pdlt predict`` against ensembles of tanh
networks really trained by gradient descent (pdlt.codegen.train_ensemble).

    python docs/examples/predict_trained.py [--quick] [--out docs/figures/predict_tanh.png]

(1) Depth 3, one training input x_0 with target y = 2, gradient descent at eta = 0.3 with the book's per-parameter
rates (lambda_b = lambda_W = 1, criticality C_b = 0, C_W = 1), widths 8 to 96: the measured mean output at two
test inputs minus the infinite-width answer, times n, against 1/n, with the predicted coefficient (its intercept).
(2) Width 32, depths 2 to 8 at the same eta * Theta(x_0, x_0) = 0.8: the part of the measured mean that the
prediction leaves, (mean - mean_infinite - coefficient / n), against the depth-to-width ratio L/n.
Each point is 40 000 networks (10 000 with --quick); the error bars are standard errors. Prints a table of every
point (about 12 minutes on 2 cores, 3 with --quick) and writes the figure.
"""

from __future__ import annotations

import argparse

import numpy as np

from pdlt.codegen.train_ensemble import train
from pdlt.generated import load
from pdlt.runtime.predict import predict

X = np.array([[1.0, 0.3, -0.2]])
XT = np.array([[0.2, 0.9, 0.5], [-0.5, 0.4, 1.0]])
Y = np.array([[2.0]])
FNS = (np.tanh, lambda z: 1.0 - np.tanh(z) ** 2)
HYPER = dict(C_W=1.0, lambda_b=1.0, lambda_W=1.0)


def measure(depth: int, n: int, eta: float, networks: int, seed: int):
    """(prediction, mean - mean_infinite per test input, its standard error) for one ensemble."""
    mod = load("tanh")
    p = predict(mod, X, Y, XT, depth, algorithm="gd", eta=eta, **HYPER)
    theta = mod.kernel(np.vstack([X, XT]), depth, tensors=("Theta",), layers=[depth], **HYPER).Theta[0]
    proj = theta[1:, 0] / theta[0, 0]
    rng = np.random.default_rng([seed, depth, n])
    outs = []
    for _ in range(networks // 5000):
        t = train(FNS, n, depth, X, Y, XT, 0.0, 1.0, 1.0, 1.0, eta, 5000, rng)
        outs.append(t.final[:, :, 0] - (t.initial[:, :, 0] - proj * t.initial_train[:, 0, :]))
    r = np.concatenate(outs)
    return p, r.mean(0) - p.mean_infinite[:, 0], r.std(0, ddof=1) / np.sqrt(len(r))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="docs/figures/predict_tanh.png")
    args = ap.parse_args()
    networks = 10_000 if args.quick else 40_000
    widths = (8, 16, 32, 64) if args.quick else (8, 12, 16, 24, 32, 48, 64, 96)
    depths = (2, 4, 8) if args.quick else (2, 3, 4, 6, 8)

    print("(1) depth 3, eta 0.3: n, test input, n (mean - mean_infinite) +- se, predicted coefficient")
    width_rows = []
    for n in widths:
        p, d, se = measure(3, n, 0.3, networks, 1)
        width_rows.append((n, n * d, n * se))
        for j in range(2):
            print(f"  {n:4d}  {j}  {n * d[j]:8.4f} +- {n * se[j]:.4f}   {p.mean_coefficient[j, 0]:.4f}")
    coef = p.mean_coefficient[:, 0]

    print("(2) width 32, eta Theta = 0.8: L, L/n, test input, mean - mean_inf - coef/n +- se, coef/n")
    depth_rows = []
    n = 32
    for L in depths:
        theta = load("tanh").kernel(X, L, tensors=("Theta",), layers=[L], **HYPER).Theta[0, 0, 0]
        p, d, se = measure(L, n, 0.8 / theta, networks, 2)
        left = d - p.mean_coefficient[:, 0] / n
        depth_rows.append((L, left, se, p.mean_coefficient[:, 0] / n))
        for j in range(2):
            print(f"  {L:3d}  {L / n:.4f}  {j}  {left[j]:9.5f} +- {se[j]:.5f}   {p.mean_coefficient[j, 0] / n:.5f}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    inv = np.array([1 / r[0] for r in width_rows])
    for j, color in ((0, "C0"), (1, "C1")):
        a.errorbar(inv, [r[1][j] for r in width_rows], yerr=[r[2][j] for r in width_rows], fmt="o", color=color,
                   label=f"trained networks, test input {j}")  # fmt: skip
        a.axhline(coef[j], color=color, ls="--", label=f"pdlt predict: coefficient {coef[j]:.3f}")
        e, w = np.array([r[1][j] for r in width_rows]), np.array([r[2][j] for r in width_rows]) ** -2.0
        basis = np.stack([np.ones_like(inv), inv], axis=1)
        c, d = np.linalg.solve(basis.T @ (w[:, None] * basis), basis.T @ (w * e))
        grid = np.linspace(0, inv.max(), 50)
        a.plot(grid, c + d * grid, ":", color=color, lw=1, label=f"fit c + d/n: c = {c:.3f}")
        print(f"  test input {j}: fitted c = {c:.4f}, predicted {coef[j]:.4f}")
    a.set_xlabel("1 / n")
    a.set_ylabel("n (mean output - infinite-width answer)")
    a.set_title("depth 3, gradient descent: the 1/n coefficient")
    a.set_xlim(left=0)
    a.legend(fontsize=8)
    ratio = np.array([r[0] / n for r in depth_rows])
    for j, color in ((0, "C0"), (1, "C1")):
        b.errorbar(ratio, [abs(r[3][j]) for r in depth_rows], fmt="s", mfc="none", color=color,
                   label=f"|predicted correction| coefficient / n, input {j}")  # fmt: skip
        b.errorbar(ratio, [abs(r[1][j]) for r in depth_rows], yerr=[r[2][j] for r in depth_rows], fmt="o",
                   color=color, label=f"|what it leaves|, input {j}")  # fmt: skip
    last = abs(depth_rows[-1][1][0])
    b.plot(ratio, last * (ratio / ratio[-1]) ** 2, "k:", label="~ (L/n)^2")
    b.plot(ratio, last * ratio / ratio[-1], "k--", lw=0.8, label="~ L/n")
    b.set_xscale("log")
    b.set_yscale("log")
    b.set_xlabel("L / n (n = 32)")
    b.set_title("the truncation left at O(1/n^2)")
    b.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
