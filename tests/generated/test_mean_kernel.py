"""The finite-width mean kernel G of N inputs (issue 7, item 2): pdlt.runtime.finite with the generated pair sector.

The reference is independent of the engine: the book's order-1 recursions (4.118), (4.115) and (4.119) for two
inputs, written out with raised indices and evaluated by 2-D Gauss-Hermite quadrature (a tensor rule on the
Cholesky factor of K, 120^2 nodes; its error, the change from 80^2 nodes, is printed in the assertion).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pdlt import generated
from pdlt.runtime.errors import FlowError

AB = (0, 1)


def _grid(K, n):
    x, w = np.polynomial.hermite_e.hermegauss(n)
    w = w / np.sqrt(2 * np.pi)
    X, Y = np.meshgrid(x, x, indexing="ij")
    L = np.linalg.cholesky(K)
    z = np.stack([L[0, 0] * X, L[1, 0] * X + L[1, 1] * Y])
    return z, np.outer(w, w)


def _polar_grid(K, n):
    """A rule exact for relu-type integrands: polar coordinates on the Cholesky factor, Gauss-Legendre in the angle
    between the lines where z_a = 0 or z_b = 0 (the kinks), Gauss-Legendre in the radius on [0, 14]."""
    L = np.linalg.cholesky(K)
    zb = np.arctan2(-L[1, 0], L[1, 1])  # z_b = L10 X + L11 Y vanishes along this direction and its opposite
    edges = np.sort(np.mod([np.pi / 2, -np.pi / 2, zb, zb + np.pi], 2 * np.pi))
    edges = np.concatenate([edges, [edges[0] + 2 * np.pi]])
    t, w = np.polynomial.legendre.leggauss(n)
    angles, aw = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        angles.append(lo + (hi - lo) * (t + 1) / 2)
        aw.append((hi - lo) / 2 * w)
    th, wt = np.concatenate(angles), np.concatenate(aw)
    r, wr = 7 * (t + 1), 7 * w
    wr = wr * r * np.exp(-r * r / 2) / (2 * np.pi)
    R, TH = np.meshgrid(r, th, indexing="ij")
    X, Y = R * np.cos(TH), R * np.sin(TH)
    z = np.stack([L[0, 0] * X, L[1, 0] * X + L[1, 1] * Y])
    return z, np.outer(wr, wt)


def book_order_one(sigma, x, depth, C_b, C_W, ratios, n=120, grid=_grid):
    """(K, G1) [layer, a, b] of two inputs x[0], x[1] from (4.118), (4.115), (4.119); ratios[l] = n_l/n_(l-1)."""
    n0 = x.shape[1]
    K = C_b + C_W * (x @ x.T) / n0
    G1, V = np.zeros((2, 2)), np.zeros((2,) * 4)
    Ks, G1s = [K], [G1]
    for l in range(1, depth):
        z, w = grid(K, n)
        s = sigma(z)
        Kinv = np.linalg.inv(K)
        Vup = np.einsum("ae,bf,cg,dh,efgh->abcd", Kinv, Kinv, Kinv, Kinv, V)
        zz = np.array([[z[b1] * z[b2] - K[b1, b2] for b2 in AB] for b1 in AB])
        r = ratios[l - 1]
        Kn, G1n, Vn = np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((2,) * 4)
        for a1, a2 in itertools.product(AB, repeat=2):
            ss = s[a1] * s[a2]
            Kn[a1, a2] = C_b + C_W * np.sum(w * ss)
            total = 0.0
            for b1, b2, b3, b4 in itertools.product(AB, repeat=4):
                total += 0.5 * Kinv[b1, b3] * Kinv[b2, b4] * G1[b3, b4] * np.sum(w * ss * zz[b1, b2])
                total += Vup[b1, b2, b3, b4] / 8 * np.sum(w * ss * zz[b1, b2] * zz[b3, b4])
                total += Vup[b1, b3, b2, b4] / 4 * K[b3, b4] * np.sum(w * ss * (K[b1, b2] - 2 * z[b1] * z[b2]))
            G1n[a1, a2] = r * C_W * total
        mean = {(a1, a2): np.sum(w * s[a1] * s[a2]) for a1, a2 in itertools.product(AB, repeat=2)}
        proj = {(a1, a2): np.array([[np.sum(w * s[a1] * s[a2] * zz[b1, b2]) for b2 in AB] for b1 in AB])
                for a1, a2 in itertools.product(AB, repeat=2)}  # fmt: skip
        for a in itertools.product(AB, repeat=4):
            a1, a2, a3, a4 = a
            four = np.sum(w * s[a1] * s[a2] * s[a3] * s[a4])
            Vn[a] = C_W**2 * (four - mean[a1, a2] * mean[a3, a4])
            Vn[a] += C_W**2 * r / 4 * np.einsum("abcd,ab,cd->", Vup, proj[a1, a2], proj[a3, a4])
        K, G1, V = Kn, G1n, Vn
        Ks.append(K)
        G1s.append(G1)
    return np.array(Ks), np.array(G1s)


def _sigma(name):
    from scipy.special import erf

    return {"tanh": np.tanh, "erf": erf, "gelu": lambda z: 0.5 * z * (1 + erf(z / np.sqrt(2)))}[name]


def _inputs():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 5))
    x[2] *= 1.4
    x[3] = -0.6 * x[0] + 0.5 * rng.normal(size=5)
    return x


@pytest.mark.parametrize("name", ["tanh", "erf", "gelu"])
def test_order_one_is_the_books_recursion_for_every_pair(name):
    """G{1}_ab of every pair (and the diagonal) against (4.115) with the two-input vertex (4.119), by 2-D
    quadrature; unequal widths enter as n_l/n_(l-1) (reference part 1, after (5.111))."""
    x, depth, widths = _inputs(), 5, [12, 20, 10, 16]
    hyper = {"C_b": 0.1, "C_W": 1.3}
    res = generated.load(name).kernel(x, depth, **hyper, tensors=("K", "G"), order=1, widths=widths)
    ratios = [1.0] + [widths[l] / widths[l - 1] for l in range(1, depth - 1)]
    for i, j in itertools.combinations(range(x.shape[0]), 2):
        pair = x[[i, j]]
        K, G1 = book_order_one(_sigma(name), pair, depth, hyper["C_b"], hyper["C_W"], ratios)
        Kc, G1c = book_order_one(_sigma(name), pair, depth, hyper["C_b"], hyper["C_W"], ratios, n=80)
        quad, kquad = np.max(np.abs(G1 - G1c)), np.max(np.abs(K - Kc))
        got = res.G[:, 1][:, [i, j]][:, :, [i, j]]
        scale = np.max(np.abs(G1)) + 1e-300
        assert np.max(np.abs(got - G1)) <= 1e-8 * scale + 10 * quad, (i, j, np.max(np.abs(got - G1)), quad)
        assert np.max(np.abs(res.G[:, 0][:, [i, j]][:, :, [i, j]] - K)) <= 1e-12 * np.max(K) + 10 * kquad


def test_relu_is_summed_through_its_kink():
    """relu's pair moments by coefficients integrated piece by piece (Gauss-Legendre between the kinks), against
    the book's recursions by a polar rule that is exact for relu (its own change from 60 to 90 nodes printed)."""
    x, depth = _inputs()[:3], 4
    res = generated.load("relu").kernel(x, depth, C_b=0.1, C_W=1.8, tensors=("K", "G"), order=1)
    relu = lambda z: np.maximum(z, 0.0)  # noqa: E731
    for i, j in itertools.combinations(range(x.shape[0]), 2):
        K, G1 = book_order_one(relu, x[[i, j]], depth, 0.1, 1.8, [1.0] * depth, n=90, grid=_polar_grid)
        _, G1c = book_order_one(relu, x[[i, j]], depth, 0.1, 1.8, [1.0] * depth, n=60, grid=_polar_grid)
        quad = np.max(np.abs(G1 - G1c))
        got = res.G[:, 1][:, [i, j]][:, :, [i, j]]
        assert quad < 1e-10 * np.max(np.abs(G1))
        assert np.max(np.abs(got - G1)) <= 1e-8 * np.max(np.abs(G1)), (i, j, np.max(np.abs(got - G1)))


def test_the_diagonal_is_the_single_input_flow_and_G0_is_K():
    mod = generated.load("tanh")
    x, depth = _inputs(), 4
    res = mod.kernel(x, depth, C_b=0.2, C_W=1.1, tensors=("K", "G"), order=2)
    assert res.G.shape == (depth, 3, 4, 4) and np.array_equal(res.G[:, 0], res.K)
    for a in range(x.shape[0]):
        flow = mod.flow(depth, width=7, C_b=0.2, C_W=1.1, input_norm2=float(x[a] @ x[a]) / x.shape[1])
        for k in (1, 2):
            assert np.allclose(res.G[:, k, a, a], flow.coefficient(1, k), rtol=1e-12, atol=1e-15)
    assert np.allclose(res.G, np.transpose(res.G, (0, 1, 3, 2)), rtol=0, atol=0)


def test_order_two_keeps_the_order_one_coefficient():
    mod, x = generated.load("erf"), _inputs()
    one = mod.kernel(x, 4, C_b=0.1, C_W=1.5, tensors=("G",), order=1)
    two = mod.kernel(x, 4, C_b=0.1, C_W=1.5, tensors=("G",), order=2)
    bound = (one.G_error[:, None, None] + two.G_error[:, None, None]) * np.max(np.abs(one.G[:, 1]))
    assert np.all(np.abs(two.G[:, 1] - one.G[:, 1]) <= bound)  # the same coefficient, within the error bounds
    assert np.max(np.abs(two.G[:, 2])) > 1e-3  # the order-2 coefficient is there, not a zero placeholder


def test_identical_inputs_share_the_diagonal_and_near_ones_approach_it():
    """x_1 = x_0 copies the diagonal exactly; x_2 = x_0 + eps u approaches it linearly in eps (the series summed
    at correlations within 1e-5 of 1, where the Mehler sums need their most terms)."""
    mod = generated.load("tanh")
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, 4))
    x[1] = x[0]
    gaps = []
    for eps in (0.01, 0.005):
        x[2] = x[0] + eps * np.array([1.0, -0.5, 0.3, 0.2])
        res = mod.kernel(x, 4, C_b=0.1, C_W=1.2, tensors=("G",), order=1)
        assert np.array_equal(res.G[:, :, 0, 1], res.G[:, :, 0, 0])
        gaps.append(np.abs(res.G[2:, 1, 0, 2] - res.G[2:, 1, 0, 0]))  # G{1} = 0 at layers 1 and 2
    ratio = gaps[0] / gaps[1]
    assert np.all(np.abs(ratio - 2) < 0.2), ratio


def test_mean_kernel_sums_the_series_at_the_widths():
    res = generated.load("erf").kernel(_inputs(), 3, C_b=0.1, C_W=1.5, tensors=("G",), order=2)
    got = res.mean_kernel(widths=[10, 20])
    assert np.array_equal(got[0], res.K[0])
    assert np.allclose(got[2], res.G[2, 0] + res.G[2, 1] / 20 + res.G[2, 2] / 400, rtol=1e-15)
    assert np.allclose(res.mean_kernel(width=10)[1], res.G[1, 0] + res.G[1, 1] / 10 + res.G[1, 2] / 100)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"order": 3}, "order must be one of 1, 2"),
        ({"order": 0}, "order must be one of 1, 2"),
        ({"order": 1.5}, "order must be one of 1, 2"),
        ({"widths": [4]}, "widths needs depth - 1 = 3"),
    ],
)
def test_bad_requests_are_refused_with_the_reason(kwargs, message):
    with pytest.raises(FlowError, match=message):
        generated.load("tanh").kernel(_inputs(), 4, tensors=("G",), **kwargs)


def test_nearly_equal_inputs_beyond_the_series_reach_are_refused_not_guessed():
    """relu's Hermite coefficients fall like a power (its kink), so with inputs 1e-6 apart the metric derivatives
    (Dirac masses at the kink, by Price's theorem) cannot be summed to the tolerance: refused, with the reason,
    after the retries stop helping."""
    x = _inputs()
    x[1] = x[0] + 1e-6
    with pytest.raises(FlowError, match="nearly equal inputs when sigma has a kink"):
        generated.load("relu").kernel(x, 3, tensors=("G",), order=1)
