"""Two training inputs: ``pdlt predict`` against ensembles of trained tanh networks, and what the training NTK's
condition number does to the expansion. The figure and table of docs/predicting-trained-networks.md ("Several
training inputs").

    python docs/examples/predict_two_inputs.py [--quick] [--out docs/figures/predict_two_inputs.png]

Three cases, each trained by full-batch gradient descent with the book's per-parameter rates (C_W = 1, C_b = 0,
lambda_W = 1) to a training error below 1e-11 (pdlt.codegen.train_ensemble):

(a) depth 2, orthogonal inputs [1, 0.3, -0.2], [-0.3, 1, 0] with targets 2 and -1.5, lambda_b = 0, eta = 1, test
    inputs [0.7, 0.7, 0] and [1, -0.5, 0.5] (the suite's case, at more widths): condition number 1.02;
(b) depth 3, the same inputs with targets 1.5 and -1, test inputs [-0.5, 0.4, 1] and [0.2, 0.9, 0.5]: 1.02;
(c) depth 3, inputs [1, 0.3, -0.2], [0.2, 0.9, 0.5], targets 1.5 and -1, lambda_b = 1, eta = 0.15, test inputs
    [-0.5, 0.4, 1] and [1, -0.5, 0.5]: condition number 12.

The estimator subtracts the initial function's kernel-projected part, z_0(x) - Theta(x, X) Theta(X, X)^-1 z_0(X),
which has zero mean. Prints n (mean - mean_infinite) +- its standard error per width and test input, with pdlt's
coefficient, and c of a weighted fit c + d/n; writes the figure. 40 000 networks per point (10 000 with --quick),
a quarter of that in (c), whose slow mode takes eight times the steps, at widths 16 and 32 only; about 30 minutes
on 2 cores (8 with --quick).
"""

from __future__ import annotations

import argparse

import numpy as np

from pdlt.codegen.train_ensemble import train
from pdlt.generated import load
from pdlt.runtime.predict import predict

FNS = (np.tanh, lambda z: 1.0 - np.tanh(z) ** 2)
ORTHO = np.array([[1.0, 0.3, -0.2], [-0.3, 1.0, 0.0]])
TESTS = np.array([[-0.5, 0.4, 1.0], [0.2, 0.9, 0.5]])
CASES = {
    "(a) depth 2, condition 1.02": dict(
        X=ORTHO,
        Y=[2.0, -1.5],
        XT=np.array([[0.7, 0.7, 0.0], [1.0, -0.5, 0.5]]),
        depth=2,
        lambda_b=0.0,
        eta=1.0,
        widths=(16, 32, 64, 128, 256),
    ),
    "(b) depth 3, condition 1.02": dict(
        X=ORTHO, Y=[1.5, -1.0], XT=TESTS, depth=3, lambda_b=0.0, eta=1.0, widths=(16, 32, 64)
    ),
    "(c) depth 3, condition 12": dict(
        X=np.array([[1.0, 0.3, -0.2], [0.2, 0.9, 0.5]]),
        Y=[1.5, -1.0],
        XT=np.array([[-0.5, 0.4, 1.0], [1.0, -0.5, 0.5]]),
        depth=3,
        lambda_b=1.0,
        eta=0.15,
        widths=(16, 32),
        share=0.25,
    ),
}


def run(case: dict, networks: int, seed: int):
    """pdlt's prediction and, per width, (n (mean - mean_infinite), n * standard error) at each test input."""
    mod = load("tanh")
    X, XT, depth, eta = case["X"], case["XT"], case["depth"], case["eta"]
    Y = np.asarray(case["Y"])[:, None]
    kw = dict(C_W=1.0, lambda_b=case["lambda_b"], lambda_W=1.0)
    p = predict(mod, X, Y, XT, depth, algorithm="gd", eta=eta, **kw)
    theta = mod.kernel(np.vstack([X, XT]), depth, tensors=("Theta",), layers=[depth], **kw).Theta[0]
    N = len(X)
    proj = theta[N:, :N] @ np.linalg.inv(theta[:N, :N])
    rows = []
    for n in case["widths"]:
        rng = np.random.default_rng([seed, depth, n])
        outs = []
        for _ in range(max(1, int(networks * case.get("share", 1.0)) // 5000)):
            t = train(FNS, n, depth, X, Y, XT, 0.0, 1.0, case["lambda_b"], 1.0, eta, 5000, rng)
            outs.append(t.final[:, :, 0] - (t.initial[:, :, 0] - t.initial_train[:, :, 0] @ proj.T))
        r = np.concatenate(outs)
        rows.append((n, n * (r.mean(0) - p.mean_infinite[:, 0]), n * r.std(0, ddof=1) / np.sqrt(len(r))))
    return p, rows


def intercept(rows, j: int) -> tuple[float, float]:
    """c +- its standard error of the weighted least-squares fit c + d/n at test input j."""
    n = np.array([r[0] for r in rows], dtype=float)
    e = np.array([r[1][j] for r in rows])
    w = 1.0 / np.array([r[2][j] for r in rows]) ** 2
    basis = np.stack([np.ones_like(n), 1.0 / n], axis=1)
    cov = np.linalg.inv(basis.T @ (w[:, None] * basis))
    return float((cov @ basis.T @ (w * e))[0]), float(np.sqrt(cov[0, 0]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="docs/figures/predict_two_inputs.png")
    args = ap.parse_args()
    networks = 10_000 if args.quick else 40_000
    results = {}
    for name, case in CASES.items():
        p, rows = run(case, networks, 3)
        results[name] = (p, rows)
        print(f"{name}: condition number {p.condition:.3g}")
        for j in range(len(case["XT"])):
            cells = "  ".join(f"n={n}: {e[j]:+.3f}({1000 * s[j]:.0f})" for n, e, s in rows)
            c, dc = intercept(rows, j)
            print(f"  test {j}: {cells}   fit c = {c:+.3f} +- {dc:.3f}   pdlt {p.mean_coefficient[j, 0]:+.3f}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, (name, (p, rows)) in zip(axes, results.items()):
        inv = np.array([1.0 / r[0] for r in rows])
        for j, color in enumerate(("C0", "C1")):
            e = np.array([r[1][j] for r in rows])
            s = np.array([r[2][j] for r in rows])
            ax.errorbar(inv, e, yerr=s, fmt="o", color=color, label=f"test input {j}, trained networks")
            ax.plot([0.0], [p.mean_coefficient[j, 0]], "*", ms=14, color=color, label=f"test input {j}, pdlt")
        ax.axhline(0.0, color="0.8", lw=0.8)
        ax.set_xlim(left=-0.003)
        ax.set_xlabel("1 / n")
        ax.set_title(name, fontsize=10)
    axes[0].set_ylabel("n (mean - mean_infinite)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
