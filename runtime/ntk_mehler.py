"""Gaussian expectations over three and four distinct inputs by Hermite series across a split into two pairs.

The four-index tensors on N inputs need E[f_1(z_1) f_2(z_2) f_3(z_3) f_4(z_4)] for every group of three or four
distinct inputs, z ~ N(0, K), where each f_i is a product of sigma and its first three derivatives (a weight
derivative on input i is moved onto f_i by Price's theorem: Leibniz's rule; for a kinked sigma, where that would
make sigma'' a point mass, it is moved off instead, as the weight (K^-1 z)_i: ``_by_parts``). A tensor-product
cubature in four dimensions costs 10^5 nodes a group and still converges slowly for tanh; here the four inputs are
split into two pairs A = (1, 2), B = (3, 4) and

    E[G(v_A) H(v_B)] = sum_(m, n) s_1^m s_2^n G'_mn H'_mn,

with v_A, v_B each pair's whitened coordinates (z_A = L_A v_A, K_AA = L_A L_A^T), rotated so that their cross-
covariance L_A^-1 K_AB L_B^-T = U diag(s_1, s_2) V^T is diagonal (the canonical correlations, |s| <= 1), and G'_mn
the coefficients of G(v) = f_1 f_2 on the normalized Hermite functions h_m(v'_1) h_n(v'_2). Each pair's
coefficients are computed once, in its Cholesky coordinates, by Gauss-Legendre panels in two dimensions (cut
where a preactivation crosses a kink of sigma, row by row); a rotation acts on each total degree D = m + n by a
(D + 1)-square orthogonal matrix, built by the ladder recursion of the two-dimensional oscillator. Three inputs
are a pair and a single input (a pair whose second variable is absent).

Errors, with |s_2| <= s_1 <= 1 and the rotations orthogonal (Cauchy-Schwarz): degree D of the sum is at most
s_1^D |G_D| |H_D|, so the series cut at degree D leaves at most the sum of those above it, and what lies above the
tables' degree M at most s_1^(M + 1) sqrt(T_G T_H), T = E[G^2] - sum_(d <= M) |G_d|^2 (Parseval); the coefficients
of two rule sizes differ by dG, which moves the sum by at most sum_D s_1^D (|dG_D| |H_D| + |G_D| |dH_D|). All are
relative to sqrt(E[G^2] E[H^2]), a bound on E|G H|. Each group's split is the one with the smallest canonical
correlation, where the series converges fastest, and each group is summed to the lowest degree that meets the
target (tables of degree 64 first, 128 for the groups they do not serve).
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
from numba import njit, prange

from .errors import FlowError

_OPTS = {"cache": True, "error_model": "numpy"}
EPS = float(np.finfo(float).eps)
DEGREES = (64, 128)  # the total Hermite degree of the pairs' coefficient tables: first, then for what it missed
RULES = (16, 24)  # Gauss-Legendre nodes per panel: the estimate is the tables' difference
Z = 4  # the "order" of the preactivation itself in a factor: tab[Z] = z (weight derivatives of a kinked sigma)
PAIRINGS = (((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2)))
SPLITS = (((1, 2), (0,)), ((0, 2), (1,)), ((0, 1), (2,)))  # three inputs: a pair and the single one


@cache
def factor_terms(powers: tuple, derivs: int) -> tuple:
    """d^derivs/dz^derivs of prod_i sigma^(p_i)(z) as ((coefficient, orders), ...) by Leibniz's rule."""
    terms = {tuple(sorted(powers)): 1}
    for _ in range(derivs):
        new: dict = {}
        for orders, c in terms.items():
            for i in range(len(orders)):
                o = list(orders)
                o[i] += 1
                key = tuple(sorted(o))
                new[key] = new.get(key, 0) + c
        terms = new
    if any(o > 3 for orders in terms for o in orders):
        raise FlowError(f"a Gaussian expectation needs a derivative of sigma above the third ({powers}, {derivs})")
    return tuple((c, orders) for orders, c in sorted(terms.items()))


def _factor(tab: np.ndarray, terms: tuple) -> np.ndarray:
    """A factor's values from the tabulated derivatives tab[k] = sigma^(k) at the nodes."""
    out = np.zeros(tab.shape[1:])
    for c, orders in terms:
        f = np.full(tab.shape[1:], float(c))
        for o in orders:
            f = f * tab[o]
        out += f
    return out


@cache
def legendre_panels(q: int, panels: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and probability weights for N(0, 1): Gauss-Legendre with q nodes on each of ``panels`` equal panels of
    [-13.4, 13.4] (the Gaussian weight beyond is below 1e-39)."""
    from .kernels import piecewise_rule

    R = math.sqrt(2.0) + 12.0  # piecewise_rule's range for n = 0
    x, sw = piecewise_rule(q, np.linspace(-R, R, panels + 1)[1:-1], 0)
    return x, sw * sw


@cache
def _rule(q: int, panels: int, M: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``legendre_panels`` (sigma's complex singularities sit at distance d / sqrt(K) from the real axis, and h_m
    oscillates on the scale 1 / sqrt(m): for tanh's sigma''' sigma' at K = 2, Gauss-Hermite's 128 nodes miss the
    degree-32 coefficients by 8e-6, 16 panels of 24 nodes by 2e-16), and the normalized Hermite polynomials
    h_m = He_m / sqrt(m!) at the nodes (columns m = 0..M), by their three-term recursion."""
    x, w = legendre_panels(q, panels)
    H = hermite(x, M)
    return x, w, H


def sigma(pieces, orders: set, z: np.ndarray, scale: float, params) -> np.ndarray:
    """tab[k] = sigma^(k)(scale z) for the derivative orders k < 4 the factors use (zeros elsewhere; the module's
    ``jet`` makes all four in one pass, where they share their work), and tab[Z] = scale z."""
    tab = np.zeros((5, z.size))
    if any(k in orders for k in range(4)):
        _call(pieces.jet, np.ascontiguousarray(z, dtype=np.float64), scale, params, tab[:4].reshape(-1))
        tab[[k for k in range(4) if k not in orders]] = 0.0
    tab[Z] = scale * z
    return tab


@njit(**_OPTS)
def _call(f, z, scale, params, out):
    f(z, z.size, scale, params, out)


def hermite(x: np.ndarray, M: int) -> np.ndarray:
    """h_m(x) = He_m(x) / sqrt(m!) for m = 0..M along a new last axis, by the three-term recursion."""
    H = np.zeros((*x.shape, M + 1))
    H[..., 0] = 1.0
    if M > 0:
        H[..., 1] = x
    for m in range(1, M):
        H[..., m + 1] = (x * H[..., m] - math.sqrt(m) * H[..., m - 1]) / math.sqrt(m + 1)
    return H


def cut_rule(q: int, panels: int, cuts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``cuts`` (rows, k): nodes and probability weights for N(0, 1), Gauss-Legendre with q nodes on each
    piece of ``panels`` equal panels of [-13.4, 13.4] cut again at the row's points (a kink of sigma: the pieces are
    smooth, so it costs no accuracy; points outside are moved to the ends, where they cut off nothing). Every row
    has (panels + k) q nodes."""
    R = math.sqrt(2.0) + 12.0  # legendre_panels' range
    t, w = np.polynomial.legendre.leggauss(q)
    edges = np.broadcast_to(np.linspace(-R, R, panels + 1), (cuts.shape[0], panels + 1))
    bounds = np.sort(np.concatenate([edges, np.clip(cuts, -R, R)], axis=1), axis=1)
    lo, half = bounds[:, :-1, None], 0.5 * np.diff(bounds, axis=1)[:, :, None]
    x = (lo + half * (t + 1.0)).reshape(cuts.shape[0], -1)
    weight = (half * w).reshape(cuts.shape[0], -1) * np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    return x, weight


def pair_rule(q: int, panels: int, L: np.ndarray, kinks: np.ndarray):
    """A rule for E[f(z)] over a pair z = L u, u ~ N(0, I), L lower triangular, f smooth between sigma's kinks in
    each coordinate: nodes x (Q,) and weights w (Q,) for u_1, cut where z_1 = L11 u_1 crosses a kink, and for each of
    them nodes y[i] (Q, Q') and weights v[i] for u_2, cut where z_2 = L21 x_i + L22 u_2 does."""
    x, w = cut_rule(q, panels, (kinks / L[0, 0])[None, :])
    y, v = cut_rule(q, panels, (kinks[None, :] - L[1, 0] * x[0][:, None]) / L[1, 1])
    return x[0], w[0], y, v


def _kinked_pair(pieces, orders, params, K, p, q, items, q_nodes, panels, M, kinks, out, norm2, r):
    """``tables`` of a pair for a kinked sigma: the nodes cut at the kinks, row by row (``pair_rule``)."""
    L = np.linalg.cholesky(K[np.ix_((p, q), (p, q))])  # the groups were checked
    x, w, y, v = pair_rule(q_nodes, panels, L, kinks)
    H, Hy = hermite(x, M), hermite(y, M)
    tp = sigma(pieces, orders, x, L[0, 0], params)
    zq = (L[1, 0] * x[:, None] + L[1, 1] * y).ravel()
    tq = sigma(pieces, orders, zq, 1.0, params).reshape(5, *y.shape)
    for i, (_, fp, fq) in enumerate(items):
        Fp, Fq = _factor(tp, fp), _factor(tq, fq)
        A = np.einsum("ij,ijn->in", Fq * v, Hy)
        out[r, i] = (H * (w * Fp)[:, None]).T @ A
        norm2[r, i] = (w * Fp * Fp) @ np.sum(Fq * Fq * v, axis=1)


@njit(**_OPTS)
def _degree_norms(tables, g, dg):
    """g[t, D] = the norm of degree D's block (m + n = D) of the finer rule's tables[1, t], dg[t, D] that of the two
    rules' difference."""
    M = tables.shape[2] - 1
    for t in range(tables.shape[1]):
        for D in range(M + 1):
            a, b = 0.0, 0.0
            for m in range(D + 1):
                x = tables[1, t, m, D - m]
                d = x - tables[0, t, m, D - m]
                a += x * x
                b += d * d
            g[t, D], dg[t, D] = math.sqrt(a), math.sqrt(b)


def tables(mod, params, K: np.ndarray, requests: list, M: int) -> tuple[np.ndarray, ...]:
    """Coefficient tables of the requested (p, q, terms_p, terms_q) (q = -1: a single input p), two rules.

    Returns (C, norm2, g, dg, dnorm2): C[t, m, n] the larger rule's coefficients (those with m + n <= M), norm2[t]
    its E[G^2], g[t, D] the norm of the degree-D block, dg[t, D] that of the two rules' difference, dnorm2[t] the
    difference of E[G^2]. Each pair's tables of both rules are reduced to g, dg as soon as they are made (the
    smaller rule's are not kept)."""
    pieces = mod.pieces
    kinks = np.array(mod.kinks, dtype=np.float64)
    n = len(requests)
    C = np.empty((n, M + 1, M + 1))
    norm2 = np.zeros((2, n))
    g, dg = np.zeros((n, M + 1)), np.zeros((n, M + 1))
    by_pair: dict = {}
    for t, (p, q, fp, fq) in enumerate(requests):
        by_pair.setdefault((p, q), []).append((t, fp, fq))
    for (p, q), items in by_pair.items():
        big = K[p, p] if q < 0 else max(K[p, p], K[q, q])
        panels = max(8 * math.ceil(math.sqrt(big)), M // 8)  # h_M oscillates on the scale 1 / sqrt(M)
        orders = {o for _, fp, fq in items for terms in (fp, fq) for _, os in terms for o in os}
        q_orders = {o for _, _, fq in items for _, os in fq for o in os}  # the two-dimensional grid's
        ts = np.array([t for t, _, _ in items])
        out = np.zeros((2, len(items), M + 1, M + 1))
        sq2 = np.zeros((2, len(items)))
        for r, q_nodes in enumerate(RULES):
            if q < 0:
                if kinks.size:  # the rule cut where z crosses a kink
                    x, w = (a[0] for a in cut_rule(q_nodes, panels, (kinks / math.sqrt(K[p, p]))[None, :]))
                    H = hermite(x, M)
                else:
                    x, w, H = _rule(q_nodes, panels, M)
                tab = sigma(pieces, orders, x, math.sqrt(K[p, p]), params)
                for i, (_, fp, _) in enumerate(items):
                    F = _factor(tab, fp)
                    out[r, i, :, 0] = H.T @ (w * F)
                    sq2[r, i] = w @ (F * F)
                continue
            if kinks.size:
                _kinked_pair(pieces, orders, params, K, p, q, items, q_nodes, panels, M, kinks, out, sq2, r)
                continue
            x, w, H = _rule(q_nodes, panels, M)
            L = np.linalg.cholesky(K[np.ix_((p, q), (p, q))])  # the groups were checked
            tp = sigma(pieces, orders, x, L[0, 0], params)
            zq = (L[1, 0] * x[:, None] + L[1, 1] * x[None, :]).ravel()
            tq = sigma(pieces, q_orders, zq, 1.0, params).reshape(5, x.size, x.size)
            inner: dict = {}  # per factor of q: A[i, n] = sum_j w_j Fq(x_i, x_j) h_n(x_j), and sum_j w_j Fq^2
            for i, (_, fp, fq) in enumerate(items):
                if fq not in inner:
                    Fq = _factor(tq, fq)
                    inner[fq] = ((Fq * w[None, :]) @ H, (Fq * Fq) @ w)
                A, sq = inner[fq]
                Fp = _factor(tp, fp)
                out[r, i] = (H * (w * Fp)[:, None]).T @ A
                sq2[r, i] = (w * Fp * Fp) @ sq
        C[ts] = out[1]
        norm2[:, ts] = sq2
        block_g, block_dg = np.zeros((len(items), M + 1)), np.zeros((len(items), M + 1))
        _degree_norms(out, block_g, block_dg)
        g[ts], dg[ts] = block_g, block_dg
    return C, norm2[1], g, dg, np.abs(norm2[1] - norm2[0])


@njit(**_OPTS)
def _ladder(U, prev, new, D):
    """new[m, p]: the state |m, D - m> of the coordinates v = U v' on the states |p, D - p> of v' (orthonormal
    Hermite products), from degree D - 1's prev by the raising operators v_1 = U11 a'_1 + U12 a'_2 (rows m >= 1) and
    v_2 = U21 a'_1 + U22 a'_2 (row 0)."""
    for m in range(D + 1):
        a, b = (U[0, 0], U[0, 1]) if m > 0 else (U[1, 0], U[1, 1])
        row = m - 1 if m > 0 else 0
        norm = math.sqrt(m if m > 0 else D)
        for p in range(D + 1):
            v = 0.0
            if p > 0:
                v += a * math.sqrt(p) * prev[row, p - 1]
            if p < D:
                v += b * math.sqrt(D - p) * prev[row, p]
            new[m, p] = v / norm


@njit(parallel=True, **_OPTS)
def _sums(C, gU, gV, gS, degree, start, keyG, keyH, out):
    """out[k] = sum over degrees D <= degree[g] of sum_p s_1^p s_2^(D - p) (U-rotated G)_p (V-rotated H)_p for the
    keys k of each group g (start[g] <= k < start[g + 1])."""
    M = C.shape[1] - 1
    for g in prange(gU.shape[0]):
        RU = np.zeros((2, M + 1, M + 1))
        RV = np.zeros((2, M + 1, M + 1))
        RU[0, 0, 0] = 1.0
        RV[0, 0, 0] = 1.0
        s1, s2 = gS[g, 0], gS[g, 1]
        p1 = np.ones(M + 1)
        p2 = np.ones(M + 1)
        for i in range(1, M + 1):
            p1[i] = p1[i - 1] * s1
            p2[i] = p2[i - 1] * s2
        gd = np.zeros(M + 1)
        hd = np.zeros(M + 1)
        for D in range(degree[g] + 1):
            cur = D % 2
            if D > 0:
                _ladder(gU[g], RU[1 - cur], RU[cur], D)
                _ladder(gV[g], RV[1 - cur], RV[cur], D)
            for k in range(start[g], start[g + 1]):
                G, H = keyG[k], keyH[k]
                for p in range(D + 1):
                    a = 0.0
                    b = 0.0
                    for m in range(D + 1):
                        a += C[G, m, D - m] * RU[cur, m, p]
                        b += C[H, m, D - m] * RV[cur, m, p]
                    gd[p] = a
                    hd[p] = b
                acc = 0.0
                for p in range(D + 1):
                    acc += gd[p] * hd[p] * p1[p] * p2[D - p]
                out[k] += acc


def check_groups(K: np.ndarray, labels: np.ndarray) -> None:
    """Refuse groups of inputs (rows of ``labels``) whose kernel is singular to rounding (a Cholesky factor would
    be noise)."""
    if labels.shape[0] == 0:
        return
    spectrum = np.linalg.eigvalsh(K[labels[:, :, None], labels[:, None, :]])
    bad = np.flatnonzero(~(spectrum[:, 0] > 1e-12 * spectrum[:, -1]))
    if bad.size:
        raise FlowError(
            f"the kernel of inputs {labels[bad[0]].tolist()} is singular at some layer: the inputs are linearly "
            "dependent (parallel, or more of them than input dimensions with C_b = 0, where layer 1's kernel is their "
            "Gram matrix); the NTK statistics of more than two inputs need a nonsingular one: use C_b > 0 or "
            "independent inputs"
        )


def _inverse_cholesky(K: np.ndarray, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """L^-1 of each pair's 2 x 2 kernel, K_pair = L L^T (rows of p, q)."""
    a = np.sqrt(K[p, p])
    b = K[p, q] / a
    c = np.sqrt(np.maximum(K[q, q] - b * b, 1e-300))
    out = np.zeros((p.size, 2, 2))
    out[:, 0, 0] = 1 / a
    out[:, 1, 0] = -b / (a * c)
    out[:, 1, 1] = 1 / c
    return out


def _whitened_cross(K: np.ndarray, A: tuple, B: tuple) -> np.ndarray:
    """L_A^-1 K_AB L_B^-T of each group (A, B: columns of labels, one row per group); a single input B = (k,) has a
    second, independent unit variable."""
    LA = _inverse_cholesky(K, A[0], A[1])
    cross = np.zeros((A[0].size, 2, 2))
    if len(B) == 1:
        cross[:, 0, 0] = K[A[0], B[0]] / np.sqrt(K[B[0], B[0]])
        cross[:, 1, 0] = K[A[1], B[0]] / np.sqrt(K[B[0], B[0]])
        return LA @ cross
    for i in range(2):
        for j in range(2):
            cross[:, i, j] = K[A[i], B[j]]
    LB = _inverse_cholesky(K, B[0], B[1])
    return LA @ cross @ LB.transpose(0, 2, 1)


def _terms(factor: tuple) -> tuple:
    """A factor (powers, weight derivatives, powers of z) as ((coefficient, orders), ...): Leibniz's rule for the
    derivatives (a smooth sigma), z as the order Z."""
    powers, derivs, zexp = factor
    return tuple((c, tuple(sorted(orders + (Z,) * zexp))) for c, orders in factor_terms(powers, derivs))


def _by_parts(K: np.ndarray, keys: np.ndarray, factors: dict):
    """For a kinked sigma, move each weight derivative off its factor (where Leibniz's rule would make sigma'' a
    point mass) by Price's theorem read backwards: <d_b F> = E[F w_b], w = K_group^-1 z, a sum over the group's inputs
    a of K^-1_ba E[F z_a]. Returns the expanded keys (their factors with powers of z), their factors, the key each
    one adds to and its coefficient."""
    extended = {f: (*factors[f], 0) for f in factors}
    fid = {v: k for k, v in extended.items()}
    out, into, coef = [], [], []
    inverses: dict = {}  # per group of inputs
    m_all = keys[:, 0]
    for i, row in enumerate(keys):
        m = int(m_all[i])
        per = [extended[int(f)] for f in row[5 : 5 + m]]
        derivs = [a for a in range(m) if per[a][1] > 0]
        if not derivs:
            out.append(row)
            into.append(i)
            coef.append(1.0)
            continue
        if len(derivs) > 1 or per[derivs[0]][1] > 1:
            raise FlowError("a three- or four-input expectation of a kinked sigma with more than one weight derivative")
        (b,) = derivs
        labels = tuple(int(v) for v in row[1 : 1 + m])
        if labels not in inverses:
            inverses[labels] = np.linalg.inv(K[np.ix_(labels, labels)])
        Kinv = inverses[labels]
        for a in range(m):
            new = [(p, 0, z) for p, _, z in per]
            new[a] = (new[a][0], 0, new[a][2] + 1)
            ids = [fid.setdefault(f, len(fid)) for f in new]
            out.append(np.concatenate([row[:5], ids, row[5 + m :]]))
            into.append(i)
            coef.append(Kinv[b, a])
    extended = {v: k for k, v in fid.items()}
    return np.array(out, dtype=np.int64), extended, np.array(into), np.array(coef)


def expectations(mod, params, K: np.ndarray, keys: np.ndarray, factors: dict, values: np.ndarray,
                 target: float) -> float:  # fmt: skip
    """Fill values[i] for every key i = (m, labels, factor ids) (rows of ``keys``, padded with -1) of three or four
    labels; return the worst relative error bound. ``factors``: factor id -> (powers of sigma's derivatives, weight
    derivatives). ``target``: the relative truncation error each group's degree is chosen for (degree 64 first,
    then 128 for the groups it does not serve: those whose canonical correlation is near 1)."""
    rows = np.flatnonzero(keys[:, 0] >= 3)
    if rows.size == 0:
        return 0.0
    if mod.kinks:
        expanded, terms, into, coef = _by_parts(K, keys[rows], factors)
    else:
        expanded, into, coef = keys[rows], np.arange(rows.size), np.ones(rows.size)
        terms = {f: (*factors[f], 0) for f in factors}
    got = np.zeros(expanded.shape[0])
    rel, size = _expect(mod, params, K, expanded, terms, got, target)
    total, err, scale = np.zeros(rows.size), np.zeros(rows.size), np.zeros(rows.size)
    np.add.at(total, into, coef * got)
    np.add.at(err, into, np.abs(coef) * rel * size)
    np.add.at(scale, into, np.abs(coef) * size)
    values[rows] = total
    return float(np.max(err / np.where(scale > 0, scale, 1.0), initial=0.0))


def _expect(mod, params, K, keys, factors, values, target):
    """``expectations`` for keys of three and four labels whose factors (powers, weight derivatives, powers of z)
    have tables: values[i] for each row, and per row its relative error bound and its scale sqrt(E[G^2] E[H^2])."""
    N1 = K.shape[0] + 1
    glabels, ginv = np.unique(keys[:, 1:5], axis=0, return_inverse=True)
    ginv = ginv.reshape(-1)
    rows = np.argsort(ginv, kind="stable")  # the keys by group
    ginv = ginv[rows]
    G = glabels.shape[0]
    four = glabels[:, 3] >= 0
    for m in (3, 4):
        sel = glabels[four] if m == 4 else glabels[~four][:, :3]
        check_groups(K, sel)
    # every group's best split: the smallest leading canonical correlation
    best = np.full(G, np.inf)
    gU, gV, gS = np.zeros((G, 2, 2)), np.zeros((G, 2, 2)), np.zeros((G, 2))
    split = np.zeros((G, 4), dtype=np.int64)  # positions: A0, A1, B0, B1 (-1: a single input)
    for m, options in ((4, PAIRINGS), (3, SPLITS)):
        g = np.flatnonzero(four if m == 4 else ~four)
        if g.size == 0:
            continue
        lab = glabels[g]
        for A, B in options:
            W = _whitened_cross(K, tuple(lab[:, i] for i in A), tuple(lab[:, i] for i in B))
            U, s, Vt = np.linalg.svd(W)
            better = s[:, 0] < best[g]
            h = g[better]
            best[h] = s[better, 0]
            gU[h], gV[h], gS[h] = U[better], Vt[better].transpose(0, 2, 1), s[better]
            split[h] = (*A, *B, -1) if len(B) == 1 else (*A, *B)
    # each key's two tables: (input p, input q or -1, factor of p, factor of q or -1)
    pos = split[ginv]
    lab, fid = keys[rows, 1:5], keys[rows, 5:9]
    n = np.arange(rows.size)
    F = len(factors) + 1

    def side(i, j):
        q = np.where(pos[:, j] >= 0, lab[n, pos[:, j]], -1)
        fq = np.where(pos[:, j] >= 0, fid[n, pos[:, j]], -1)
        return ((lab[n, pos[:, i]] * N1 + q + 1) * F + fid[n, pos[:, i]]) * F + fq + 1

    codes, table = np.unique(np.concatenate([side(0, 1), side(2, 3)]), return_inverse=True)
    table = table.reshape(2, rows.size)
    requests = []
    for c in codes:
        c, fq = divmod(int(c), F)
        c, fp = divmod(c, F)
        p, q = divmod(c, N1)
        requests.append((p, q - 1, _terms(factors[fp]), _terms(factors[fq - 1]) if fq else ()))
    start = np.searchsorted(ginv, np.arange(G + 1))
    rel, size = np.zeros(rows.size), np.zeros(rows.size)
    groups = np.arange(G)
    for M in DEGREES:
        last = M == DEGREES[-1]
        keep = np.concatenate([np.arange(start[g], start[g + 1]) for g in groups])
        used, local = np.unique(table[:, keep], return_inverse=True)
        local = local.reshape(2, keep.size)
        sub_start = np.zeros(groups.size + 1, dtype=np.int64)
        sub_start[1:] = np.cumsum(start[groups + 1] - start[groups])
        r, sz, missed = _series(mod, params, K, [requests[u] for u in used], gU[groups], gV[groups], gS[groups],
                                sub_start, rows[keep], local[0], local[1], M, target, values)  # fmt: skip
        done = ~np.repeat(missed, np.diff(sub_start)) | last
        rel[keep[done]], size[keep[done]] = r[done], sz[done]
        groups = groups[missed]
        if groups.size == 0:
            break
    out_rel, out_size = np.zeros(rows.size), np.zeros(rows.size)
    out_rel[rows], out_size[rows] = rel, size
    return out_rel, out_size


@njit(**_OPTS)
def _bounds(g, dg, beyond, norm2, keyG, keyH, s1, start, target, degree, rel, size, missed):
    """Per group (keys start[i] <= k < start[i + 1]): degree[i] = the lowest degree D whose truncation bound (the
    degrees above D, s_1^D |G_D| |H_D| each, and s_1^(M + 1) sqrt(T_G T_H) beyond the tables) is within ``target``
    for every key of the group (M, and missed[i], if none is); per key rel[k] = that bound at the group's degree plus
    the two rules' difference and roundoff, relative to size[k] = sqrt(E[G^2] E[H^2])."""
    M = g.shape[1] - 1
    worst = np.zeros(M + 1)
    for i in range(start.shape[0] - 1):
        worst[:] = 0.0
        for k in range(start[i], start[i + 1]):
            G, H = keyG[k], keyH[k]
            sz = math.sqrt(norm2[G] * norm2[H])
            size[k] = sz if sz > 0 else 1.0
            after = s1[k] ** (M + 1) * math.sqrt(beyond[G] * beyond[H])
            for D in range(M, -1, -1):
                worst[D] = max(worst[D], after / size[k])
                after += s1[k] ** D * g[G, D] * g[H, D]
        degree[i], missed[i] = M, True
        for D in range(M + 1):
            if worst[D] <= target:
                degree[i], missed[i] = D, False
                break
        for k in range(start[i], start[i + 1]):
            G, H = keyG[k], keyH[k]
            after = s1[k] ** (M + 1) * math.sqrt(beyond[G] * beyond[H])
            quad, power = 0.0, 1.0
            for D in range(M + 1):
                quad += power * (dg[G, D] * g[H, D] + g[G, D] * dg[H, D])
                if D > degree[i]:
                    after += power * g[G, D] * g[H, D]
                power *= s1[k]
            rel[k] = (quad + after) / size[k] + 8 * EPS * (M + 1)


def _series(mod, params, K, requests, gU, gV, gS, start, index, keyG, keyH, M, target, values):
    """The groups' sums to degree at most M into values[index]; per key its relative error bound and scale, per group
    whether degree M missed the target."""
    C, norm2, g, dg, dnorm2 = tables(mod, params, K, requests, M)
    beyond = np.maximum(norm2 - np.sum(g * g, axis=1), 0.0) + dnorm2  # what lies above degree M (Parseval)
    s1 = np.repeat(gS[:, 0], np.diff(start))  # |s_1^p s_2^(D - p)| <= s_1^D
    G = start.size - 1
    degree, missed = np.zeros(G, dtype=np.int64), np.zeros(G, dtype=np.bool_)
    rel, size = np.zeros(index.size), np.zeros(index.size)
    _bounds(g, dg, beyond, norm2, keyG, keyH, s1, start, target, degree, rel, size, missed)
    out = np.zeros(index.size)
    _sums(C, gU, gV, gS, degree, start, keyG, keyH, out)
    values[index] = out
    return rel, size, missed
