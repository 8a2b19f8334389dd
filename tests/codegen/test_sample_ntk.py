"""The sampled networks' NTK, dNTK and first ddNTK (pdlt.codegen.sample_ntk) against finite differences of one
explicitly parametrized network: the Monte Carlo tests rest on these derivatives being right.

A tanh network of width 5, depth 3, input dimension 3, weights and biases drawn once. The directions are
v_i = lambda grad_theta z_i (lambda_b on biases, lambda_W / n_(l-1) on weights), computed here from the explicit
parameters by central differences of z_i; the NTK H_ij = v_i . grad z_j / ..., the dNTK dH_{i j k} =
D^2 z_i [v_j, v_k] and dd_I H_{i j k l} = D^3 z_i [v_j, v_k, v_l] by central differences of z along those
directions (steps 1e-3, 5e-3, 1e-2: truncation errors O(h^2), relative 1e-6 to 1e-4, against roundoff 1e-16/h^k).
"""

from __future__ import annotations

import numpy as np

from pdlt.codegen.sample_ntk import _dntk

N0, N, DEPTH, LB, LW = 3, 5, 3, 0.7, 1.3
FNS = (np.tanh, lambda z: 1 - np.tanh(z) ** 2, lambda z: -2 * np.tanh(z) * (1 - np.tanh(z) ** 2),
       lambda z: (1 - np.tanh(z) ** 2) * (6 * np.tanh(z) ** 2 - 2))  # fmt: skip


def _params(rng):
    widths = [N0] + [N] * DEPTH
    return [(rng.standard_normal((widths[l + 1], widths[l])) / np.sqrt(widths[l]), 0.3 * rng.standard_normal(N))
            for l in range(DEPTH)]  # fmt: skip


def _forward(params, x):
    zs, h = [], x
    for W, b in params:
        z = W @ h + b
        zs.append(z)
        h = np.tanh(z)
    return zs


def _direction(params, x, i):
    """v_i = lambda grad z_i(L) as a list of (dW, db) per layer, by central differences (step 1e-6)."""
    out = []
    for l, (W, b) in enumerate(params):
        scale_W = LW / W.shape[1]
        dW, db = np.zeros_like(W), np.zeros_like(b)
        for idx in np.ndindex(W.shape):
            for sign in (1, -1):
                p = [(w.copy(), c.copy()) for w, c in params]
                p[l][0][idx] += sign * 1e-6
                dW[idx] += sign * _forward(p, x)[-1][i] / 2e-6
        for k in range(b.size):
            for sign in (1, -1):
                p = [(w.copy(), c.copy()) for w, c in params]
                p[l][1][k] += sign * 1e-6
                db[k] += sign * _forward(p, x)[-1][i] / 2e-6
        out.append((scale_W * dW, LB * db))
    return out


def _moved(params, steps):
    """params + sum_k c_k v_k for steps = [(c, v), ...]."""
    return [(W + sum(c * v[l][0] for c, v in steps), b + sum(c * v[l][1] for c, v in steps))
            for l, (W, b) in enumerate(params)]  # fmt: skip


def test_derivatives_along_the_ntk_directions_are_finite_differences():
    rng = np.random.default_rng(5)
    params, x = _params(rng), rng.standard_normal(N0)
    v0, v1 = _direction(params, x, 0), _direction(params, x, 1)
    out = _dntk(*_sampler_inputs(params, x), [LW] * DEPTH, N, *FNS)
    d_st, d_tt, d_ss, d_stt, d_sst = (a[0] for a in out)

    def z0(s, t, i=0):
        return _forward(_moved(params, [(s, v0), (t, v1)]), x)[-1][i]

    for h in (1e-2, 5e-3):
        fd_st = (z0(h, h) - z0(h, -h) - z0(-h, h) + z0(-h, -h)) / (4 * h * h)
        fd_tt = (z0(0, h) - 2 * z0(0, 0) + z0(0, -h)) / h**2
        fd_stt = (z0(h, h) - 2 * z0(h, 0) + z0(h, -h) - z0(-h, h) + 2 * z0(-h, 0) - z0(-h, -h)) / (2 * h**3)
        fd_sst1 = (z0(h, h, 1) - 2 * z0(0, h, 1) + z0(-h, h, 1) - z0(h, -h, 1) + 2 * z0(0, -h, 1)
                   - z0(-h, -h, 1)) / (2 * h**3)  # fmt: skip
        tol = 50 * h * h
        assert abs(fd_st - d_st[0]) <= tol * max(1, abs(d_st[0])), (h, fd_st, d_st[0])
        assert abs(fd_tt - d_tt[0]) <= tol * max(1, abs(d_tt[0])), (h, fd_tt, d_tt[0])
        assert abs(fd_stt - d_stt[0]) <= tol * max(1, abs(d_stt[0])), (h, fd_stt, d_stt[0])
        assert abs(fd_sst1 - d_sst[1]) <= tol * max(1, abs(d_sst[1])), (h, fd_sst1, d_sst[1])


def _sampler_inputs(params, x):
    """The sampler's inputs: zs, the W of layers 2.., J_l = dz(L)/dz(l) of outputs 0 and 1, and
    c_l = lambda_b + lambda_W |h|^2 / n."""
    zs = _forward(params, x)
    Js, J = [None] * DEPTH, np.eye(N)[:2]
    for l in range(DEPTH - 1, -1, -1):
        Js[l] = J[None]
        if l > 0:
            J = (J @ params[l][0]) * FNS[1](zs[l - 1])[None, :]
    hs = [x] + [np.tanh(z) for z in zs[:-1]]
    cs = [np.array([LB + LW * h @ h / h.size]) for h in hs]
    return [z[None] for z in zs], [W[None] for W, _ in params[1:]], Js, cs


def test_the_second_ddntk_is_the_lambda_product_of_hessian_vector_products():
    """dd_II H_{i1 i2 i3 i4} = sum_mu lambda_mu d_mu g1 d_mu g2 with g = D z_i[v_j], v_j fixed (book ∞.7): g by a
    central difference along v_j (1e-4), its gradient by central differences in each parameter (1e-4); truncation
    O(1e-8), roundoff 1e-16 / 1e-8: within 1e-6 relative."""
    from pdlt.codegen.sample_ntk import ddntk_ii

    rng = np.random.default_rng(6)
    params, x = _params(rng), rng.standard_normal(N0)
    v = [_direction(params, x, 0), _direction(params, x, 1)]

    def g(p, i, j, eps=1e-4):
        return (_forward(_moved(p, [(eps, v[j])]), x)[-1][i] - _forward(_moved(p, [(-eps, v[j])]), x)[-1][i]) / (
            2 * eps
        )

    def grad(i, j, h=1e-4):
        out = []
        for l, (W, b) in enumerate(params):
            for which, shape, scale in ((0, W.shape, LW / W.shape[1]), (1, b.shape, LB)):
                for idx in np.ndindex(shape):
                    up = [(w.copy(), c.copy()) for w, c in params]
                    down = [(w.copy(), c.copy()) for w, c in params]
                    up[l][which][idx] += h
                    down[l][which][idx] -= h
                    out.append((scale, (g(up, i, j) - g(down, i, j)) / (2 * h)))
        return out

    def dd(a, b):
        return sum(s * x1 * x2 for (s, x1), (_, x2) in zip(grad(*a), grad(*b)))

    got = ddntk_ii(*_sampler_inputs(params, x), [LB] * DEPTH, [LW] * DEPTH, N, FNS)
    want = {
        "S": 0.5 * (dd((0, 1), (0, 1)) + dd((1, 0), (1, 0))),
        "T": 0.5 * (dd((0, 0), (1, 1)) + dd((1, 1), (0, 0))),
        "U": 0.5 * (dd((0, 1), (1, 0)) + dd((1, 0), (0, 1))),
    }
    for name, w in want.items():
        assert abs(got[name][0] - w) <= 1e-6 * max(1.0, abs(w)), (name, got[name][0], w)
