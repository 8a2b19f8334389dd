"""The dNTK and both ddNTKs at two inputs, measured on sampled networks, against pdlt's P, Q, R, S, T, U.

    python docs/examples/dntk_two_inputs_mc.py [--widths 16 32 64] [--networks 20000] [--outputs 1|2]

A tanh MLP of depth 3 (C_W = 1, C_b = 0, lambda_b = lambda_W = 1) with one output, on the two inputs of the
prediction example of docs/predicting-trained-networks.md (the training input [1, 0.3, -0.2] and the test input
[0.2, 0.9, 0.5]). Each network's dNTK dH and ddNTKs ddI, ddII on the two inputs come from its own derivatives
(``pdlt.codegen.network_tensors``: backpropagation, complex-step Hessian-vector products, a central
difference for the third derivatives). With one output neuron every neuron index is equal, so the book's
decompositions (11.30), (∞.171), (∞.173) give, for every entry (d0, d1, d2, d3) of the two inputs,

    n E[dH_(d0 d1 d2) z_(d3)] = P_(d0 d1 d2 d3) + Q_(d0 d1 d2 d3) + Q_(d0 d2 d1 d3)
    n E[ddI_(d0 d1 d2 d3)]    = R_(d0 d1 d2 d3) + R_(d0 d2 d3 d1) + R_(d0 d3 d1 d2)
    n E[ddII_(d1 d2 d3 d4)]   = S_(d1 d2 d3 d4) + T_(d1 d3 d4 d2) + U_(d1 d4 d2 d3)

up to O(1/n). The script fits each measured entry as c + d/n over the widths (weighted least squares with the
ensemble's standard errors) and prints c, its standard error and pdlt's value, and the residual in standard errors.
These are exactly the combinations that a one-output prediction (∞.158)-(∞.160) contracts. With ``--outputs 2`` the
networks have two output neurons, at whose indices each of P, Q, R, S, T, U stands alone
(``pdlt.codegen.network_tensors.components``), and every single entry is compared.
"""

from __future__ import annotations

import argparse

import numpy as np

from pdlt.codegen.network_tensors import components, initial, network_tensors, one_output_combinations, rates
from pdlt.generated import tanh

DEPTH = 3
X = np.array([[1.0, 0.3, -0.2], [0.2, 0.9, 0.5]])


def theory(outputs: int = 1) -> dict[str, np.ndarray]:
    t = tanh.kernel(X, DEPTH, C_W=1.0, lambda_b=1.0, lambda_W=1.0, tensors=("P", "Q", "R", "S", "T", "U"),
                    layers=[DEPTH], tolerance=1e-6)  # fmt: skip
    tensors = {k: getattr(t, k)[0] for k in "PQRSTU"}
    return tensors if outputs == 2 else one_output_combinations(tensors)


def measure(n: int, count: int, seed: int, outputs: int = 1) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """n times the ensemble means of dH z, ddI, ddII (one output) or of the estimators of P..U (two outputs) over
    ``count`` networks of width n, with standard errors."""
    rng = np.random.default_rng([seed, n])
    sizes = [X.shape[1]] + [n] * (DEPTH - 1) + [outputs]
    lam = rates(sizes, 1.0)
    samples: dict[str, list] = {}
    for _ in range(count):
        z, _, dH, ddI, ddII = network_tensors(initial(sizes, rng), sizes, X, lam)
        if outputs == 2:
            drawn = components(z, dH, ddI, ddII, len(X))
        else:
            drawn = {"dH z": np.einsum("abc,d->abcd", dH, z), "ddI": ddI, "ddII": ddII}
        for key, value in drawn.items():
            samples.setdefault(key, []).append(value)
    out = {}
    for key, values in samples.items():
        a = n * np.array(values)
        out[key] = (a.mean(axis=0), a.std(axis=0, ddof=1) / np.sqrt(count))
    return out


def fit(widths, means, errors):
    """c and its standard error of c + d/n, weighted by 1/error^2, entry by entry."""
    A = np.stack([np.ones(len(widths)), 1.0 / np.asarray(widths, dtype=float)], axis=1)
    c, s = np.zeros(means[0].shape), np.zeros(means[0].shape)
    for idx in np.ndindex(means[0].shape):
        w = np.array([1.0 / e[idx] ** 2 for e in errors])
        y = np.array([m[idx] for m in means])
        cov = np.linalg.inv(A.T @ (w[:, None] * A))
        c[idx], s[idx] = (cov @ A.T @ (w * y))[0], np.sqrt(cov[0, 0])
    return c, s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--networks", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--outputs", type=int, choices=(1, 2), default=1)
    args = parser.parse_args()
    if len(set(args.widths)) < 2:
        parser.error("give at least two --widths (the fit is c + d/n)")
    want = theory(args.outputs)
    runs = [measure(n, args.networks, args.seed, args.outputs) for n in args.widths]
    for key in want:
        c, s = fit(args.widths, [r[key][0] for r in runs], [r[key][1] for r in runs])
        print(f"{key}: entry, fitted c +- se, pdlt, residual/se")
        worst = 0.0
        for idx in np.ndindex(c.shape):
            z = (c[idx] - want[key][idx]) / s[idx]
            worst = max(worst, abs(z))
            print(f"  {''.join(map(str, idx))}  {c[idx]:+.4f} +- {s[idx]:.4f}  {want[key][idx]:+.4f}  {z:+.1f}")
        scale = np.max(np.abs(want[key]))
        print(f"  largest |residual|/se: {worst:.1f}; largest se / largest |entry|: {np.max(s) / scale:.3f}")


if __name__ == "__main__":
    main()
