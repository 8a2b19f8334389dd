"""One sampled tanh network's NTK, dNTK and ddNTKs on a few inputs, from its own derivatives (book §11.1, §∞.1).

For a tanh MLP (an index d below is an (output, input) pair) with parameters ``theta`` (weights then biases, layer
by layer) and the book's per-parameter learning rates ``lam`` (lambda_W / n_(l-1) for weights, lambda_b for biases),
with v_d = lam * grad z_d:

    H_(d0 d1)          = grad z_d0 . lam grad z_d1
    dH_(d0 d1 d2)      = v_d1 . (Hess z_d0) v_d2
    ddI_(d0 d1 d2 d3)  = the third derivative of z_d0 along v_d1, v_d2, v_d3
    ddII_(d1 d2 d3 d4) = (Hess z_d1 v_d3) . lam (Hess z_d2 v_d4)

Gradients by backpropagation, Hessian-vector products by the complex step (exact to rounding: tanh is analytic),
third derivatives by a central difference of those (relative step 1e-4, error ~1e-8). ``activation="relu"`` takes
ReLU instead, extended to complex arguments as z 1[Re z > 0]: the complex step then gives the derivatives that hold
almost surely (sigma'' = 0 off the kink, which a sampled preactivation never hits), i.e. the dNTK without the
kink's point mass; its third derivatives by differences are not defined (use third=False). Used by
tests/montecarlo/test_dntk_pair_mc.py and docs/examples (predict_per_network.py, dntk_two_inputs_mc.py).
"""

from __future__ import annotations

import numpy as np

ACTIVATIONS = {  # sigma and sigma', both accepting complex arguments (the complex step)
    "tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2),
    "relu": (lambda z: np.where(z.real > 0, z, 0), lambda z: (z.real > 0).astype(np.float64)),
}


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


def output_and_gradient(theta: np.ndarray, sizes: list[int], X: np.ndarray, activation: str = "tanh"):
    """z (m P,) and dz/dtheta (m P, parameters) of the m = sizes[-1] outputs at the P inputs, output-major (entry
    o P + d is output o at input d), by backpropagation (complex theta allowed)."""
    sigma, dsigma = ACTIVATIONS[activation]
    params = layers(theta, sizes)
    hs, zs = [X.astype(theta.dtype)], []
    for W, b in params:
        zs.append(hs[-1] @ W.T + b)
        hs.append(sigma(zs[-1]))
    outputs, rows = [], []
    for o in range(sizes[-1]):
        g = np.zeros_like(zs[-1])
        g[:, o] = 1.0
        grads = []
        for ell in range(len(params) - 1, -1, -1):
            grads.append(np.concatenate([(g[:, :, None] * hs[ell][:, None, :]).reshape(len(X), -1), g], axis=1))
            if ell:
                g = (g @ params[ell][0]) * dsigma(zs[ell - 1])
        outputs.append(zs[-1][:, o])
        rows.append(np.concatenate(grads[::-1], axis=1))
    return np.concatenate(outputs), np.concatenate(rows, axis=0)


def hessian_times(theta: np.ndarray, sizes: list[int], X: np.ndarray, v: np.ndarray, activation: str = "tanh"):
    """(Hess z at every input) v, (P, parameters), by the complex step."""
    h = 1e-30
    return output_and_gradient(theta + 1j * h * v, sizes, X, activation)[1].imag / h


def network_tensors(
    theta: np.ndarray, sizes: list[int], X: np.ndarray, lam: np.ndarray, third: bool = True, activation: str = "tanh"
) -> tuple[np.ndarray, ...]:
    """z (A,), H (A, A), dH (A, A, A), ddI and ddII (A, A, A, A) of one network, A = m P over its m outputs and the P
    inputs X, output-major (index o P + d; with one output, the inputs); module doc. ``third=False`` skips ddI (the
    third derivatives cost 2 A more Hessian-vector products per direction) and returns None for it."""
    if third and activation != "tanh":
        raise ValueError(f"third derivatives by differences need an analytic activation, not {activation}")
    z, g = output_and_gradient(theta, sizes, X, activation)
    P = len(z)
    V = g * lam
    H = g @ V.T
    HV = np.array([hessian_times(theta, sizes, X, V[c], activation) for c in range(P)])  # [c, d, :] = Hess z_d v_c
    dH = np.einsum("cdm,bm->dbc", HV, V)
    ddII = np.einsum("cam,m,dbm->abcd", HV, lam, HV)
    if not third:
        return z, H, dH, None, ddII
    ddI = np.zeros((P,) * 4)
    for c in range(P):
        s = 1e-4 * np.sqrt(np.mean(theta**2)) / np.sqrt(np.mean(V[c] ** 2))
        up = np.array([hessian_times(theta + s * V[c], sizes, X, V[e]) for e in range(P)])
        down = np.array([hessian_times(theta - s * V[c], sizes, X, V[e]) for e in range(P)])
        ddI[:, :, :, c] = np.einsum("edm,bm->dbe", (up - down) / (2 * s), V)
    return z, H, dH, ddI, ddII


def components(
    z: np.ndarray, dH: np.ndarray, ddI: np.ndarray | None, ddII: np.ndarray, P: int
) -> dict[str, np.ndarray]:
    """One two-output network's estimators of P, Q, R, S, T, U (each (P, P, P, P), axes in the book's subscript order;
    their means are the tensors / n_(L-1)): the book's decompositions (11.30), (∞.171), (∞.173) pick each tensor out
    alone at the output neurons (i0 i1 i2 i3) below; averaged over the two labellings of the outputs.

        P_(d0 d1 d2 d3) = E[dH_(0 1 1) z_0],  Q_(d0 d1 d2 d3) = E[dH_(0 0 1) z_1],  R = E[ddI_(0 0 1 1)],
        S_(d1 d2 d3 d4) = E[ddII_(0 0 1 1)],  T_(d1 d3 d4 d2) = E[ddII_(0 1 0 1)],  U_(d1 d4 d2 d3) = E[ddII_(0 1 1 0)]
    """
    out: dict[str, np.ndarray] = {}
    for a, b in ((0, 1), (1, 0)):
        A, B = slice(a * P, (a + 1) * P), slice(b * P, (b + 1) * P)
        parts = {
            "P": np.einsum("ijk,l->ijkl", dH[A, B, B], z[A]),
            "Q": np.einsum("ijk,l->ijkl", dH[A, A, B], z[B]),
            "S": ddII[A, A, B, B],
            "T": ddII[A, B, A, B].transpose(0, 2, 3, 1),  # T_(x y z w) = ddII_(0x 1w 0y 1z)
            "U": ddII[A, B, B, A].transpose(0, 3, 1, 2),  # U_(x y z w) = ddII_(0x 1z 1w 0y)
        }
        if ddI is not None:
            parts["R"] = ddI[A, A, B, B]
        for key, value in parts.items():
            out[key] = out.get(key, 0.0) + value / 2
    return out


def one_output_combinations(tensors) -> dict[str, np.ndarray]:
    """What a one-output network measures of P, Q, R, S, T, U (``tensors``: an object with those (N, N, N, N) arrays,
    e.g. one stored layer): with every neuron index equal the decompositions (11.30), (∞.171), (∞.173) add up to
    n E[dH_(d0 d1 d2) z_(d3)] = P_(d0 d1 d2 d3) + Q_(d0 d1 d2 d3) + Q_(d0 d2 d1 d3),
    n E[ddI_(d0 d1 d2 d3)] = R_(d0 d1 d2 d3) + R_(d0 d2 d3 d1) + R_(d0 d3 d1 d2) and
    n E[ddII_(d1 d2 d3 d4)] = S_(d1 d2 d3 d4) + T_(d1 d3 d4 d2) + U_(d1 d4 d2 d3)."""
    P, Q, R, S, T, U = (tensors[k] for k in "PQRSTU")
    return {
        "dH z": P + Q + Q.transpose(0, 2, 1, 3),
        "ddI": R + R.transpose(0, 3, 1, 2) + R.transpose(0, 2, 3, 1),
        "ddII": S + T.transpose(0, 3, 1, 2) + U.transpose(0, 2, 3, 1),
    }
