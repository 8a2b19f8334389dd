"""The spread of trained networks over initializations against ``pdlt predict``'s variance (∞.161) to 1/n: the
figure of docs/predicting-trained-networks.md ("How much single networks scatter").

    python docs/examples/predict_variance.py [--quick] [--out docs/figures/predict_variance.png]
    python docs/examples/predict_variance.py --depth 2 --seed 77 --out variance_depth2.png

Depth 3 tanh networks (C_b = 0, C_W = 1, lambda_b = lambda_W = 1), one training input x_0 with target y = 2,
gradient descent at eta = 0.3 (pdlt.codegen.train_ensemble), outputs read at two test inputs. Each network's
T-shirt first line L_0 = z_0(x) - r (z_0(x_0) - y), r = Theta(x, x_0) / Theta(x_0, x_0), is known from its initial
function, so the estimator n (Var z_T - Var L_0) = n (E[z_T^2 - L_0^2] - E[d] (E[d] + 2 r y)), d = z_T - L_0, has
a small spread (d = O(1/sqrt n)); its standard error is the delta method's. pdlt predicts the limit
variance_coefficient - (its "kernel" part p K1 p, which Var L_0 carries). Widths 16 to 128 with 80 000 networks each
(20 000 with --quick); prints the table, weighted fits c + d/n and c + d/n + f/n^2 of this and of the mean's
n (mean - mean_infinite) (the estimator of tests/montecarlo/test_predict_mc.py), and writes the figure (about 15
minutes on 2 cores at depth 3, 8 at depth 2, 3 with --quick).
"""

from __future__ import annotations

import argparse

import numpy as np

from pdlt.codegen.train_ensemble import against_first_line, train
from pdlt.generated import load
from pdlt.runtime.predict import predict

X = np.array([[1.0, 0.3, -0.2]])
XT = np.array([[0.2, 0.9, 0.5], [-0.5, 0.4, 1.0]])
Y = np.array([[2.0]])
FNS = (np.tanh, lambda z: 1.0 - np.tanh(z) ** 2)
HYPER = dict(C_W=1.0, lambda_b=1.0, lambda_W=1.0)
ETA, CHUNK = 0.3, 4000


def measure(n: int, depth: int, networks: int, r: np.ndarray, seed: int):
    """n (Var z_T - Var L_0) per test input and its standard error, the sample variances of z_T and L_0, and
    n times the mean's estimator d + r y (d = z_T - L_0) with its standard error."""
    rng = np.random.default_rng([seed, n])
    finals, lines = [], []
    for _ in range(networks // CHUNK):
        t = train(FNS, n, depth, X, Y, XT, 0.0, 1.0, 1.0, 1.0, ETA, CHUNK, rng)
        finals.append(t.final[:, :, 0])
        lines.append(t.initial[:, :, 0] - np.outer(t.initial_train[:, 0, 0] - Y[0, 0], r))
    f, L0 = np.concatenate(finals), np.concatenate(lines)
    mean, mean_se, est, se = against_first_line(f, L0, r * Y[0, 0])
    return n * est, n * se, f.var(0, ddof=1), L0.var(0, ddof=1), (n * mean, n * mean_se)


def fit(rows: list, want: np.ndarray, what: str, powers: int) -> list[np.ndarray]:
    """Weighted least squares of rows (n, estimates, errors) in 1, 1/n, ..., printed against ``want``."""
    nn = np.array([row[0] for row in rows], dtype=float)
    basis = np.stack([nn**-k for k in range(powers)], axis=1)
    out = []
    for j in range(len(want)):
        e = np.array([row[1][j] for row in rows])
        w = 1 / np.array([row[2][j] for row in rows]) ** 2
        cov = np.linalg.inv(basis.T @ (w[:, None] * basis))
        coef = cov @ basis.T @ (w * e)
        chi2 = float(np.sum(w * (e - basis @ coef) ** 2))
        sigma = np.sqrt(cov[0, 0])
        out.append(coef)
        print(
            f"{what}, test input {j}, fit in 1/n^0..{powers - 1}: c = {coef[0]:.4f} +- {sigma:.4f} (chi2 {chi2:.1f} "
            f"for {len(nn) - powers} dof); pdlt {want[j]:.4f}, {(coef[0] - want[j]) / sigma:+.1f} standard errors"
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--seed", type=int, default=31)
    ap.add_argument("--out", default="docs/figures/predict_variance.png")
    args = ap.parse_args()
    networks = 20_000 if args.quick else 80_000
    widths = (16, 32, 64) if args.quick else (16, 24, 32, 48, 64, 96, 128)
    mod = load("tanh")
    p = predict(mod, X, Y, XT, args.depth, algorithm="gd", eta=ETA, **HYPER)
    want = p.variance_coefficient[:, 0] - p.variance_parts["kernel"][:, 0]
    theta = mod.kernel(np.vstack([X, XT]), args.depth, tensors=("Theta",), layers=[args.depth], **HYPER).Theta[0]
    r = theta[1:, 0] / theta[0, 0]
    print(f"depth {args.depth}: variance_infinite {p.variance_infinite}, coefficient {p.variance_coefficient[:, 0]}")
    print(f"predicted limit of n (Var z_T - Var L_0): {want}; mean_coefficient {p.mean_coefficient[:, 0]}")
    print("  n   test   n (Var z_T - Var L_0) +- se    Var z_T    Var L_0    n (mean - mean_infinite) +- se")
    rows, means = [], []
    for n in widths:
        est, se, vf, vl, (m, ms) = measure(n, args.depth, networks, r, args.seed)
        rows.append((n, est, se))
        means.append((n, m - n * p.mean_infinite[:, 0], ms))
        for j in range(2):
            print(f"{n:4d}  {j:4d}   {est[j]:9.4f} +- {se[j]:.4f}     {vf[j]:.5f}    {vl[j]:.5f}    "
                  f"{means[-1][1][j]:9.4f} +- {ms[j]:.4f}", flush=True)  # fmt: skip
    fits = fit(rows, want, "variance", 2)
    fit(rows, want, "variance", 3)
    fit(means, p.mean_coefficient[:, 0], "mean", 2)
    fit(means, p.mean_coefficient[:, 0], "mean", 3)
    nn = np.array([row[0] for row in rows], dtype=float)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    grid = np.linspace(0, 1.05 / nn.min(), 50)
    for j, color in enumerate(("C0", "C1")):
        ax.errorbar(1 / nn, [row[1][j] for row in rows], [row[2][j] for row in rows], fmt="o", color=color,
                    label=f"trained networks, test input {j}")  # fmt: skip
        ax.plot(grid, fits[j][0] + fits[j][1] * grid, ":", color=color)
        ax.axhline(want[j], ls="--", color=color, label=f"pdlt: {want[j]:.3f}")
    ax.set_xlabel("1 / n")
    ax.set_ylabel(r"$n\,(\mathrm{Var}\,z_T - \mathrm{Var}\,L_0)$")
    ax.set_title(f"spread of trained tanh networks (depth {args.depth}, y = 2, gd eta = 0.3)")
    ax.set_xlim(0, None)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
