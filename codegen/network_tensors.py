"""One sampled tanh network's NTK, dNTK and ddNTKs on a few inputs, from its own derivatives (book §11.1, §∞.1).

For a one-output tanh MLP with parameters ``theta`` (weights then biases, layer by layer) and the book's per-parameter
learning rates ``lam`` (lambda_W / n_(l-1) for weights, lambda_b for biases), with v_d = lam * grad z_d:

    H_(d0 d1)          = grad z_d0 . lam grad z_d1
    dH_(d0 d1 d2)      = v_d1 . (Hess z_d0) v_d2
    ddI_(d0 d1 d2 d3)  = the third derivative of z_d0 along v_d1, v_d2, v_d3
    ddII_(d1 d2 d3 d4) = (Hess z_d1 v_d3) . lam (Hess z_d2 v_d4)

Gradients by backpropagation, Hessian-vector products by the complex step (exact to rounding: tanh is analytic),
third derivatives by a central difference of those (relative step 1e-4, error ~1e-8). Used by
tests/montecarlo/test_dntk_pair_mc.py and docs/examples (predict_per_network.py, dntk_two_inputs_mc.py).
"""

from __future__ import annotations

import numpy as np


def layers(theta: np.ndarray, sizes: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(W, b) per layer from the flat parameter vector."""
    out, k = [], 0
    for m, n0 in zip(sizes[1:], sizes[:-1]):
        W = theta[k : k + m * n0].reshape(m, n0)
        k += m * n0
        out.append((W, theta[k : k + m]))
        k += m
    return out


def rates(sizes: list[int], lambda_b: float, lambda_W: float = 1.0) -> np.ndarray:
    """The book's per-parameter learning rates, flattened like theta: lambda_W / n_(l-1) for weights."""
    return np.concatenate(
        [np.r_[np.full(m * n0, lambda_W / n0), np.full(m, lambda_b)] for m, n0 in zip(sizes[1:], sizes[:-1])]
    )


def initial(sizes: list[int], rng: np.random.Generator, C_W: float = 1.0) -> np.ndarray:
    """Parameters at initialization with C_b = 0: weights N(0, C_W / n_(l-1)), biases 0."""
    return np.concatenate(
        [np.r_[rng.standard_normal(m * n0) * np.sqrt(C_W / n0), np.zeros(m)] for m, n0 in zip(sizes[1:], sizes[:-1])]
    )


def output_and_gradient(theta: np.ndarray, sizes: list[int], X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """z (P,) and dz/dtheta (P, parameters) of the single output, by backpropagation (complex theta allowed)."""
    params = layers(theta, sizes)
    hs, zs = [X.astype(theta.dtype)], []
    for W, b in params:
        zs.append(hs[-1] @ W.T + b)
        hs.append(np.tanh(zs[-1]))
    g = np.ones_like(zs[-1])
    grads = []
    for ell in range(len(params) - 1, -1, -1):
        grads.append(np.concatenate([(g[:, :, None] * hs[ell][:, None, :]).reshape(len(X), -1), g], axis=1))
        if ell:
            g = (g @ params[ell][0]) * (1 - np.tanh(zs[ell - 1]) ** 2)
    return zs[-1][:, 0], np.concatenate(grads[::-1], axis=1)


def hessian_times(theta: np.ndarray, sizes: list[int], X: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(Hess z at every input) v, (P, parameters), by the complex step."""
    h = 1e-30
    return output_and_gradient(theta + 1j * h * v, sizes, X)[1].imag / h


def network_tensors(theta: np.ndarray, sizes: list[int], X: np.ndarray, lam: np.ndarray) -> tuple[np.ndarray, ...]:
    """z (P,), H (P, P), dH (P, P, P), ddI and ddII (P, P, P, P) of one network on the P inputs X (module doc)."""
    z, g = output_and_gradient(theta, sizes, X)
    P = len(X)
    V = g * lam
    H = g @ V.T
    HV = np.array([hessian_times(theta, sizes, X, V[c]) for c in range(P)])  # [c, d, :] = Hess z_d v_c
    dH = np.einsum("cdm,bm->dbc", HV, V)
    ddII = np.einsum("cam,m,dbm->abcd", HV, lam, HV)
    ddI = np.zeros((P,) * 4)
    for c in range(P):
        s = 1e-4 * np.sqrt(np.mean(theta**2)) / np.sqrt(np.mean(V[c] ** 2))
        up = np.array([hessian_times(theta + s * V[c], sizes, X, V[e]) for e in range(P)])
        down = np.array([hessian_times(theta - s * V[c], sizes, X, V[e]) for e in range(P)])
        ddI[:, :, :, c] = np.einsum("edm,bm->dbe", (up - down) / (2 * s), V)
    return z, H, dH, ddI, ddII
