"""Ensembles of really trained finite-width networks: the check of ``pdlt predict`` (issue 10, item 4).

``count`` MLPs of depth L and hidden width n, initialised as the book does (W ~ N(0, C_W / n_(l-1)), b ~ N(0, C_b)),
are trained together (vectorised over the ensemble) by full-batch gradient descent on the MSE loss
1/2 sum_(i, a) (z_i(x_a) - y_ia)^2 with the book's per-parameter learning rates: eta lambda_b for biases and
eta lambda_W / n_(l-1) for weights (eta is the global rate), until every network fits its training set to
``tol``. Backpropagation by hand; nothing here uses the theory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Trained:
    """Outputs at the test inputs before (``initial``, (count, M, n_L)) and after training (``final``), the initial
    outputs at the training inputs (``initial_train``, (count, N, n_L)), and the steps gradient descent took."""

    initial: np.ndarray
    final: np.ndarray
    initial_train: np.ndarray
    steps: int


def _forward(params, fns, X):
    """Preactivations z(l) (count, P, n_l) of every layer for inputs X (P, n_0)."""
    sigma = fns[0]
    zs = []
    h = np.broadcast_to(X, (params[0][0].shape[0], *X.shape))
    for W, b in params:
        z = np.einsum("cij,cpj->cpi", W, h) + b[:, None, :]
        zs.append(z)
        h = sigma(z)
    return zs


def _ntk(params, fns, zs, X, lb, lw, sizes) -> np.ndarray:
    """Each network's NTK on the training inputs (count, N, N), one output, by backpropagating a unit error."""
    sigma, dsigma = fns
    depth = len(params)
    count = zs[-1].shape[0]
    g = np.ones_like(zs[-1])  # dz_L/dz_L, per sample
    H = np.zeros((count, X.shape[0], X.shape[0]))
    for l in range(depth - 1, -1, -1):
        h = sigma(zs[l - 1]) if l else np.broadcast_to(X, (count, *X.shape))
        gg = np.einsum("cpi,cqi->cpq", g, g)
        H += gg * (lb[l] + lw[l] / sizes[l] * np.einsum("cpj,cqj->cpq", h, h))
        if l:
            g = np.einsum("cpi,cij->cpj", g, params[l][0]) * dsigma(zs[l - 1])
    return H


def train(fns, n: int, depth: int, X, Y, X_test, C_b: float, C_W: float, lambda_b, lambda_W, eta: float,
          count: int, rng, tol: float = 1e-11, max_steps: int = 100_000, kappa=None) -> Trained:  # fmt: skip
    """Train ``count`` networks of hidden width n (sigma, sigma' = fns) on (X (N, n_0), Y (N, n_L)) and return their
    outputs at X_test (M, n_0); ``lambda_b``, ``lambda_W``: one number or one per layer. Raises RuntimeError if some
    network has not fitted to ``tol`` after max_steps. With ``kappa`` (N, N), the two-Newton-step algorithm (∞.148)
    instead: a first step whose sample-space learning rate is kappa (the inverse mean NTK on the training set), a
    second with the inverse of the network's own NTK at that point (one output), then the outputs are read."""
    sigma, dsigma = fns
    X, Y, X_test = (np.asarray(a, dtype=np.float64) for a in (X, Y, X_test))
    n0, nL = X.shape[1], Y.shape[1]
    sizes = [n0] + [n] * (depth - 1) + [nL]
    lb, lw = (np.broadcast_to(np.asarray(v, dtype=np.float64), (depth,)) for v in (lambda_b, lambda_W))
    params = []
    for l in range(depth):
        W = rng.standard_normal((count, sizes[l + 1], sizes[l])) * np.sqrt(C_W / sizes[l])
        b = rng.standard_normal((count, sizes[l + 1])) * np.sqrt(C_b)
        params.append((W, b))
    initial = _forward(params, fns, X_test)[-1]
    initial_train = None
    for step in range(max_steps + 1):  # noqa: B007 (the count is returned)
        zs = _forward(params, fns, X)
        err = zs[-1] - Y  # (count, N, n_L)
        if initial_train is None:
            initial_train = zs[-1].copy()
        worst = np.max(np.abs(err))
        if worst < tol or (kappa is not None and step == 2):
            break
        if not np.isfinite(worst):
            raise RuntimeError(f"gradient descent diverged at step {step}: eta is too large for some networks")
        if kappa is None:
            g = err
        elif step == 0:  # the giant leap: the mean NTK's inverse for every network
            g = np.einsum("ab,cbi->cai", kappa, err)
        else:  # the small step: each network's own NTK on the training set, now
            g = np.linalg.solve(_ntk(params, fns, zs, X, lb, lw, sizes), err)
        for l in range(depth - 1, -1, -1):
            W, b = params[l]
            h = sigma(zs[l - 1]) if l else np.broadcast_to(X, (count, *X.shape))
            dW = np.einsum("cpi,cpj->cij", g, h)
            db = g.sum(axis=1)
            if l:
                g = np.einsum("cpi,cij->cpj", g, W) * dsigma(zs[l - 1])
            rate = 1.0 if kappa is not None else eta
            W -= rate * lw[l] / sizes[l] * dW
            b -= rate * lb[l] * db
    else:
        raise RuntimeError(f"gradient descent did not fit the training set to {tol:g} in {max_steps} steps")
    final = _forward(params, fns, X_test)[-1]
    return Trained(initial, final, initial_train, step)


def against_first_line(final: np.ndarray, L0: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, ...]:
    """(mean, its standard error, Var z_T - Var L_0, its standard error), per test input, from trained outputs
    ``final`` (count, M) and each network's T-shirt first line L_0 = z_0(x) - r (z_0(X) - y) (count, M), whose mean
    c = r y is exact. The mean is estimated as E[d] + c with d = z_T - L_0 = O(1/sqrt n), and
    Var z_T - Var L_0 = E[z_T^2 - L_0^2] - E[d] (E[d] + 2 c): both spread like d, a fraction of the outputs' own
    spread (the part of L_0 with zero mean is the control variate); standard errors by the delta method."""
    d, s = final - L0, final**2 - L0**2
    md, root = d.mean(0), np.sqrt(len(d))
    spread = s.mean(0) - md * (md + 2 * c)
    return md + c, d.std(0, ddof=1) / root, spread, (s - 2 * (md + c) * d).std(0, ddof=1) / root
