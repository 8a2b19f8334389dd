"""Empirical NNGP kernels and NTKs of real sampled networks, by explicit backpropagation, against pdlt kernel.

The mean kernels are exact at any width in two cases, so finite ensembles test the infinite-width code and
the parametrization itself with no 1/n correction to model: a deep *linear* network (every expectation is
linear in the layer below, and W(l+1) is independent of it), and *any* activation at depth 2 (layer 1 is
deterministic). The NTK is the book's (8.5)-(8.7): bias learning rate lambda_b, weight learning rate
lambda_W / n_{l-1}. Each network contributes the average over its output neurons; tolerances are 4.5
standard errors over networks.
"""

from __future__ import annotations

import numpy as np
import pytest

from pdlt import generated

pytestmark = pytest.mark.slow

ACTIVATIONS = {
    "linear": (lambda z: z, lambda z: np.ones_like(z)),
    "tanh": (np.tanh, lambda z: 1 / np.cosh(z) ** 2),
    "relu": (lambda z: np.maximum(z, 0), lambda z: (z > 0).astype(float)),
}


def empirical(name, x, widths, cb, cw, lb, lw, samples, seed):
    """Per network: (mean_i z_i(x_a) z_i(x_b), mean_i Theta_ii(x_a, x_b)) at the last layer, (S, N, N) each.
    widths = (n_1, ..., n_L); x is (N, n_0)."""
    sigma, dsigma = ACTIVATIONS[name]
    rng = np.random.default_rng(seed)
    S, (N, n0) = samples, x.shape
    sizes = (n0, *widths)
    Ws = [rng.normal(size=(S, sizes[l + 1], sizes[l])) * np.sqrt(cw[l] / sizes[l]) for l in range(len(widths))]
    bs = [rng.normal(size=(S, 1, sizes[l + 1])) * np.sqrt(cb[l]) for l in range(len(widths))]
    acts, zs = [np.broadcast_to(x, (S, N, n0))], []
    for l in range(len(widths)):  # forward: z(l+1) = b + W sigma(z(l)), with sigma(z(0)) = x
        z = np.einsum("sjk,sak->saj", Ws[l], acts[-1]) + bs[l]
        zs.append(z)
        acts.append(sigma(z))
    L = len(widths)
    J = np.broadcast_to(np.eye(widths[-1]), (S, N, widths[-1], widths[-1]))  # dz_i(L)/dz_j(L): [s, a, i, j]
    theta = np.zeros((S, N, N))
    for l in range(L - 1, -1, -1):  # layer l + 1 = L..1: its biases and weights
        jj = np.einsum("saij,sbij->sab", J, J)  # sum_{i, j} J_ij(a) J_ij(b); / n_L below
        prev = acts[l]  # sigma(z(l)), x at l = 0
        theta += jj * (lb[l] + lw[l] * np.einsum("sak,sbk->sab", prev, prev) / sizes[l])
        if l > 0:
            J = np.einsum("saik,skj->saij", J, Ws[l]) * dsigma(zs[l - 1])[:, :, None, :]
    nngp = np.einsum("sai,sbi->sab", zs[-1], zs[-1]) / widths[-1]
    return nngp, theta / widths[-1]


def _check(name, depth, widths, hyper, samples, seed):
    x = np.array([[1.0, 0.5, -0.3], [0.2, -1.1, 0.7], [0.9, 0.4, -0.2]])
    lists = [np.broadcast_to(np.asarray(hyper[k], float), (depth,)) for k in ("C_b", "C_W", "lambda_b", "lambda_W")]
    res = generated.load(name).kernel(x, depth, **hyper, layers=[depth])
    K_mc, T_mc = empirical(name, x, widths, *lists, samples, seed)
    for pred, mc in ((res.K[0], K_mc), (res.Theta[0], T_mc)):
        se = mc.std(axis=0, ddof=1) / np.sqrt(samples)
        assert np.all(np.abs(mc.mean(axis=0) - pred) <= 4.5 * se), (pred, mc.mean(axis=0), se)
        assert np.all(se < 0.02 * np.abs(pred).max())
    return res, T_mc, lists


def test_deep_linear_network_is_exact_at_any_width():
    """Depth 4 at widths 3, 2, 4, 2 with per-layer hyperparameters: exact means, so pdlt must sit within the
    standard error; the same test rejects a weight learning rate without the book's 1/n_{l-1}."""
    hyper = {"C_b": [0.1, 0.3, 0.0, 0.2], "C_W": [1.2, 0.8, 1.5, 1.0], "lambda_b": [0.5, 1.0, 0.2, 0.7],
             "lambda_W": [1.0, 2.0, 0.5, 1.5]}  # fmt: skip
    widths = (3, 2, 4, 2)
    res, T_mc, lists = _check("linear", 4, widths, hyper, samples=40000, seed=11)
    # plain gradient descent on the same parameters (lambda_W n_{l-1} instead of lambda_W) is far away
    wrong = generated.load("linear").kernel(
        np.array([[1.0, 0.5, -0.3], [0.2, -1.1, 0.7], [0.9, 0.4, -0.2]]), 4, **{**hyper,
        "lambda_W": [v * n for v, n in zip(hyper["lambda_W"], (3, 3, 2, 4))]}, layers=[4],
    )  # fmt: skip
    se = T_mc.std(axis=0, ddof=1) / np.sqrt(T_mc.shape[0])
    assert np.max(np.abs(wrong.Theta[0] - T_mc.mean(axis=0)) / se) > 20


def test_standard_parametrization_is_plain_gradient_descent():
    """Plain gradient descent (every learning rate 1) on the same sampled networks is pdlt's standard
    parametrization, lambda_b = 1 and lambda_W = n_(l-1), which needs the widths."""
    x = np.array([[1.0, 0.5, -0.3], [0.2, -1.1, 0.7], [0.9, 0.4, -0.2]])
    widths, cb, cw = (3, 2, 4, 2), [0.1, 0.3, 0.0, 0.2], [1.2, 0.8, 1.5, 1.0]
    res = generated.load("linear").kernel(x, 4, C_b=cb, C_W=cw, parametrization="standard", widths=widths[:-1])
    ones = [1.0] * 4
    sizes = (3, *widths[:-1])  # plain gradient descent: lambda_W / n_{l-1} = 1
    _, T_mc = empirical("linear", x, widths, cb, cw, ones, [float(n) for n in sizes], 40000, 13)
    se = T_mc.std(axis=0, ddof=1) / np.sqrt(T_mc.shape[0])
    assert np.all(np.abs(T_mc.mean(axis=0) - res.Theta[-1]) <= 4.5 * se)


@pytest.mark.parametrize("name", ["tanh", "relu"])
def test_depth_two_is_exact_at_any_width(name):
    hyper = {"C_b": [0.2, 0.1], "C_W": [1.3, 1.8], "lambda_b": [0.4, 1.0], "lambda_W": [1.5, 0.6]}
    _check(name, 2, (5, 3), hyper, samples=40000, seed=12)
