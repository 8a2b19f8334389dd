"""NTK statistics of one input against ensembles of real networks, NTK by explicit backpropagation (issue 8).

Each network is sampled as initialised (Gaussian W with variance C_W/n, biases C_b) at width n in every hidden
layer; its layer-1 preactivations are drawn from their exact law N(0, K(1)). The NTK of the first m = 8 output
neurons of layer L is computed from its definition (book 8.5, 8.7) by the chain rule: with J_l = dz(L)/dz(l)
(J_L = 1, J_l = J_(l+1) W(l+1) diag sigma'(z(l))),

    H(L) = sum_l [lambda_b + lambda_W |sigma(z(l-1))|^2 / n_(l-1)] J_l J_l^T        (sigma(z(0)) = x),

never through the forward equation the theory starts from. Estimators, averaged over the pairs i != j of the
m neurons (each the coefficient of 1/n, so multiplied by n):

    A = n Cov(H_ii, H_jj),  B = n E[H_ij^2],  F = n E[z_i z_j H_ij],  D = n Cov(z_i^2, H_jj),  V = n Var(z_i^2 ...),
    P = n E[dH_{i j j} z_i],  Q = n E[dH_{i i j} z_j]   (the dNTK by forward-mode second derivatives, ``_dntk``)

where D and V use E[z_i^2 | layers < L] = G(L) = C_b + C_W mean sigma(z(L-1))^2 (row i of W(L) and b(L) is
independent of row j and of the layers below, and z_i is Gaussian given them), which removes most of the noise.
Standard errors by a grouped jackknife (50 groups) over S networks per width.

At widths 16, 32, 64 the estimates e(n) = T + c/n + O(1/n^2) are fitted by weighted least squares; the fitted
T must be within 4 of its standard errors of the generated value, and that standard error below 10 % of it, so
a tensor wrong by its own size (or a misplaced index) is rejected (relu's P is 0, resolved to a tenth of Q).
tanh and ReLU, depth 3 (layer 3 is the first with every recursion term: the layer-2 values enter layer 3
through V, D, A, F).
"""

from __future__ import annotations

import numpy as np
import pytest

from pdlt.generated import load

pytestmark = pytest.mark.slow

DEPTH, NORM2, LAMBDA_B, LAMBDA_W, M = 3, 1.0, 1.0, 1.0, 8
WIDTHS, SAMPLES, CHUNK, GROUPS = (16, 32, 64), 100_000, 5_000, 50
ACTIVATIONS = {
    "tanh": (1.0, np.tanh, lambda z: 1.0 - np.tanh(z) ** 2, lambda z: -2.0 * np.tanh(z) * (1.0 - np.tanh(z) ** 2)),
    "relu": (2.0, lambda z: np.maximum(z, 0.0), lambda z: (z > 0).astype(float), lambda z: 0.0 * z),
}
TENSORS = ("H", "V", "A", "B", "D", "F", "P", "Q")


def _dntk(zs, Ws, Js, c, n, s, ds, dds):
    """The dNTK dH_{i0 i1 i2} = sum_{mu nu} lambda_mu lambda_nu d^2 z_i0 / d theta_mu d theta_nu dz_i1/d theta_mu
    dz_i2/d theta_nu (book 11.8) of output neurons 0, 1: second derivatives of z(L) along the directions
    v_i = lambda grad z_i, by forward mode through the layers (a weight step along v_i is lambda_b J_l[i] on the
    biases and lambda_W / n J_l[i] sigma(z(l-1))^T on the weights). Returns (d_st, d_tt, d_ss) at layer L:
    dH_{. 0 1}, dH_{. 1 1}, dH_{. 0 0}."""
    count = zs[0].shape[0]
    d_s, d_t = c[0][:, None] * Js[0][:, 0], c[0][:, None] * Js[0][:, 1]
    d_st, d_tt, d_ss = (np.zeros((count, n)) for _ in range(3))
    for l in range(1, len(zs)):
        u, up, upp = s(zs[l - 1]), ds(zs[l - 1]), dds(zs[l - 1])
        u_s, u_t = up * d_s, up * d_t
        u_st, u_tt, u_ss = upp * d_s * d_t + up * d_st, upp * d_t**2 + up * d_tt, upp * d_s**2 + up * d_ss
        j0, j1 = Js[l][:, 0], Js[l][:, 1]
        a0, a1 = LAMBDA_W / n * j0, LAMBDA_W / n * j1

        def Wv(v, W=Ws[l - 1]):
            return np.einsum("bij,bj->bi", W, v)

        def dot(x, y):
            return np.sum(x * y, axis=1, keepdims=True)

        d_s, d_t, d_st, d_tt, d_ss = (
            c[l][:, None] * j0 + Wv(u_s),
            c[l][:, None] * j1 + Wv(u_t),
            a0 * dot(u, u_t) + a1 * dot(u, u_s) + Wv(u_st),
            2 * a1 * dot(u, u_t) + Wv(u_tt),
            2 * a0 * dot(u, u_s) + Wv(u_ss),
        )
    return d_st, d_tt, d_ss


def sample(name: str, n: int, count: int, rng) -> dict[str, np.ndarray]:
    """Per network: the sums over pairs i != j (and over i) that the estimators average."""
    C_W, s, ds, dds = ACTIVATIONS[name]
    zs = [np.sqrt(C_W * NORM2) * rng.standard_normal((count, n))]
    Ws = [None]
    for _ in range(2, DEPTH + 1):
        W = rng.standard_normal((count, n, n)) * np.sqrt(C_W / n)
        zs.append(np.einsum("bij,bj->bi", W, s(zs[-1])))
        Ws.append(W)
    J = np.broadcast_to(np.eye(n)[:M], (count, M, n)).copy()
    H = np.zeros((count, M, M))
    Js, cs = [None] * DEPTH, [None] * DEPTH
    for l in range(DEPTH, 0, -1):
        c = LAMBDA_B + LAMBDA_W * (NORM2 if l == 1 else np.mean(s(zs[l - 2]) ** 2, axis=1))
        cs[l - 1], Js[l - 1] = np.broadcast_to(c, (count,)), J[:, :2]
        H += np.reshape(c, (-1, 1, 1)) * np.matmul(J, J.transpose(0, 2, 1))
        if l > 1:
            J = np.matmul(J, Ws[l - 1]) * ds(zs[l - 2])[:, None, :]
    d_st, d_tt, d_ss = _dntk(zs, Ws[1:], Js, cs, n, s, ds, dds)
    z = zs[-1][:, :M]
    G = C_W * np.mean(s(zs[-2]) ** 2, axis=1)  # E[z_i^2 | the layers below], C_b = 0
    d = np.einsum("bii->bi", H)
    pairs = M * (M - 1)
    return {
        "h": d.mean(axis=1),
        "hh": (d.sum(1) ** 2 - (d * d).sum(1)) / pairs,
        "hij2": ((H * H).sum((1, 2)) - (d * d).sum(1)) / pairs,
        "zhz": (np.einsum("bi,bij,bj->b", z, H, z) - (z * z * d).sum(1)) / pairs,
        "G": G,
        "Gh": G * d.mean(axis=1),
        # E[dH_{i0 i1 i1} z_i0] = P/n and E[dH_{i0 i0 i2} z_i2] = Q/n (book 11.30), i0 != i1, both ways round
        "p": 0.5 * (d_tt[:, 0] * z[:, 0] + d_ss[:, 1] * z[:, 1]),
        "q": 0.5 * (d_st[:, 0] * z[:, 1] + d_st[:, 1] * z[:, 0]),
    }


def estimators(n: int):
    mean = {k: (lambda a, k=k: a[k].mean()) for k in ("h", "hh", "hij2", "zhz", "G", "Gh", "p", "q")}
    return {
        "H": lambda a: mean["h"](a),
        "V": lambda a: n * (np.mean(a["G"] ** 2) - mean["G"](a) ** 2),
        "A": lambda a: n * (mean["hh"](a) - mean["h"](a) ** 2),
        "B": lambda a: n * mean["hij2"](a),
        "D": lambda a: n * (mean["Gh"](a) - mean["G"](a) * mean["h"](a)),
        "F": lambda a: n * mean["zhz"](a),
        "P": lambda a: n * mean["p"](a),
        "Q": lambda a: n * mean["q"](a),
    }


def jackknife(data: dict[str, np.ndarray], f) -> tuple[float, float]:
    groups = np.array_split(np.arange(len(data["h"])), GROUPS)
    parts = [f({k: np.delete(v, g) for k, v in data.items()}) for g in groups]
    return float(f(data)), float(np.sqrt((GROUPS - 1) / GROUPS * np.sum((np.array(parts) - np.mean(parts)) ** 2)))


@pytest.fixture(scope="module", params=sorted(ACTIVATIONS))
def ensembles(request):
    name = request.param
    C_W = ACTIVATIONS[name][0]
    theory = load(name).kernel(np.full((1, 1), np.sqrt(NORM2)), DEPTH, C_W=C_W, lambda_b=LAMBDA_B,
                               lambda_W=LAMBDA_W, tensors=("Theta", *TENSORS[1:]), layers=[DEPTH])  # fmt: skip
    want = {"H": float(theory.Theta[0, 0, 0]), **{t: float(getattr(theory, t).ravel()[0]) for t in TENSORS[1:]}}
    rows = []
    for n in WIDTHS:
        rng = np.random.default_rng([7, n, len(name)])
        chunks = [sample(name, n, CHUNK, rng) for _ in range(SAMPLES // CHUNK)]
        data = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
        rows.append((n, {t: jackknife(data, f) for t, f in estimators(n).items()}))
    return name, want, rows


@pytest.mark.parametrize("tensor", TENSORS)
def test_sampled_networks_approach_the_theory_like_one_over_n(ensembles, tensor):
    name, want, rows = ensembles
    n = np.array([w for w, _ in rows], dtype=float)
    e = np.array([r[tensor][0] for _, r in rows])
    se = np.array([r[tensor][1] for _, r in rows])
    X = np.stack([np.ones_like(n), 1.0 / n], axis=1)
    w = 1.0 / se**2
    cov = np.linalg.inv(X.T @ (w[:, None] * X))
    T, c = cov @ X.T @ (w * e)
    sigma_T = float(np.sqrt(cov[0, 0]))
    size = max(abs(want[tensor]), 0.1 * abs(want["Q"]))  # relu P = 0: resolved on the scale of its partner Q
    assert sigma_T <= 0.1 * size, (name, tensor, sigma_T, want[tensor])
    assert abs(T - want[tensor]) <= 4 * sigma_T, (name, tensor, T, sigma_T, want[tensor], e, se)
