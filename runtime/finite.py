"""The finite-width mean kernel of N inputs to order p in 1/n (issue 7, item 2; DESIGN §9).

``E[G_ab(l)] = sum_k G[k]_ab / n_{l-1}^k``. The joint law of (z(x_a), z(x_b)) involves those two inputs only,
so each pair runs on its own through the layers with the state of its metric (G_aa, G_ab, G_bb): the joint
cumulants ``c[gamma][k]`` of ``pdlt.derive.pair_metric``. The entries of one input alone are that input's
single-input flow (the module's certified moments and step, once per distinct norm); the shared generated
module ``pdlt.generated.pair_metric`` steps the others. What it needs of the activation is the moments
``m[p, q, (i, k, j)] = d^i/dK_aa^i d^k/dK_ab^k d^j/dK_bb^j <sigma_a^p sigma_b^q>``, summed here as Mehler
series in which a metric derivative is a shift of the Hermite coefficients (Price's theorem):

    m = 2^(-i-j) K_aa^(-s/2) K_bb^(-t/2) sum_n rho^n sqrt((n+s)! (n+t)!) / n! f_{n+s} g_{n+t},

s = k + 2i, t = k + 2j, with f_n, g_n the normalised Hermite coefficients of sigma^p(sqrt(K_aa) X) and
sigma^q(sqrt(K_bb) X). The remainder after n terms is at most ``|rho|^n W_n sqrt(T_f(n+s) T_g(n+t))``
(Cauchy-Schwarz, once |rho| W_{n+1}/W_n <= 1, after which the weights only fall), with the Parseval tails
T of <sigma^(2p)>: the sums of the squared coefficients from n on that a Q-node Gauss-Hermite rule gives
(what lies beyond the computed ones as the squared norm of the residual at the nodes, so no cancellation),
plus their change from 2n+32 to 3n+48 nodes. The coefficients'
own quadrature error (the same change) is summed with the same weights. Both are relative to the larger of
the sum of |terms| and the Cauchy-Schwarz size sqrt(sum W_(n,s,s) f_(n+s)^2 sum W_(n,t,t) g_(n+t)^2) of the
moment (what it can be at |rho| = 1), like the quadrature estimates of the single-input flow relative to the
L1 size of their integrands; the layer's figure is the worst over every
moment of every pair; a layer whose pairs miss their budget is summed again with twice the terms.
The mean kernel K_ab itself (k = 0) comes from the infinite-width path of ``kernels`` (closed forms
where they exist, the carried distance), so that G[0] is K to the digit.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from . import numerics
from .errors import FlowError
from .kernels import M_MAX, M_START, _gauss_hermite, _pair_advance, _pair_start, piecewise_rule, plan_data

_OPTS = {"cache": True, "error_model": "numpy"}
ORDERS = (1, 2)  # the orders of pdlt.generated.pair_metric
KINK_START = 128  # the most terms a kinked sigma's first pass asks for (then twice that in the tables)


def pair_module():
    """The shared generated pair sector (compiled on first use, about 10 s, then cached)."""
    from pdlt.generated import pair_metric

    return pair_metric


@njit(**_OPTS)
def _single_flows(
    exact, integrands, cumulants_fn, step_fn, dims, qcount, rule, gl, breaks, K, cb, cw, r, params, C, MU, err
):
    """C[l, u] (the module's single-input state c[m, k]) and MU[l, u] (its moments mu[a, i]) of every norm class
    u at layer l + 1, from K[0, u] and the per-layer hyperparameters; err[l, u] the moments' relative error."""
    L, U = K.shape
    nrows, cols = dims[numerics.NROWS], dims[numerics.MAX_I] + 1
    top, order = dims[numerics.TOP], dims[numerics.ORDER]
    mu, e, mag, s = np.zeros((nrows, cols)), np.zeros((nrows, cols)), np.zeros((nrows, cols)), np.zeros((nrows, cols))
    cbl, cwl = np.zeros(order + 1), np.zeros(order + 1)
    for u in range(U):
        C[0, u, 1, 0] = K[0, u]
        for l in range(L - 1):
            numerics.moments_unchecked(
                exact, integrands, dims, qcount, rule, gl, breaks, C[l, u, 1, 0], params, True, False, mu, e, mag
            )
            err[l, u] = numerics.worst_relative_error(mu, e, mag, qcount, top)
            MU[l, u] = mu
            cumulants_fn(mu, s)
            cbl[0], cwl[0] = cb[l + 1], cw[l + 1]
            step_fn(C[l, u], s, cbl, cwl, r[l], C[l + 1, u])


@njit(parallel=True, **_OPTS)
def _power_coefficients(values, x, sw, Ks, params, top, out, rest):
    """out[i, p, k] = E[sigma(sqrt(Ks[i]) X)^p h_k(X)] for p = 1..top, k < out.shape[2], by the Gauss-Hermite rule
    with nodes x and weights sw^2; rest[i, p] = the rule's Parseval sum beyond the last coefficient, as the squared
    norm of what the coefficients leave unexplained at the nodes (no cancellation: about eps^2, not eps)."""
    Q, M = x.shape[0], out.shape[2]
    for i in prange(Ks.shape[0]):
        v = np.empty(Q)
        values(x, Q, math.sqrt(Ks[i]), params, v)
        for p in range(1, top + 1):
            w = np.empty(Q)
            for j in range(Q):
                w[j] = v[j] ** p * sw[j] if sw[j] > 0.0 else 0.0
            h0, h1 = sw.copy(), x * sw
            c = np.dot(w, h0)
            out[i, p, 0] = c
            resid = w - c * h0
            if M > 1:
                c = np.dot(w, h1)
                out[i, p, 1] = c
                resid -= c * h1
            for k in range(1, M - 1):
                a, b = 1.0 / math.sqrt(k + 1.0), math.sqrt(k / (k + 1.0))
                for j in range(Q):
                    h0[j], h1[j] = h1[j], a * x[j] * h1[j] - b * h0[j]
                c = np.dot(w, h1)
                out[i, p, k + 1] = c
                for j in range(Q):
                    resid[j] -= c * h1[j]
            rest[i, p] = np.dot(resid, resid)


NEVER = 1 << 40  # a turning point that never comes (|rho| = 1 with s + t > 0)


@njit(**_OPTS)
def _turn(a, s, t):
    """The first n from which the weights a^n sqrt((n+s)! (n+t)!) / n! (a = |rho|) stop rising: they rise while
    a^2 (n+s+1)(n+t+1) > (n+1)^2, i.e. up to the larger root of (1 - a^2) x^2 + (2 - a^2 (s+t+2)) x +
    1 - a^2 (s+1)(t+1), and fall after; so their supremum from any n on is their value at max(n, turn)."""
    A, B, Cq = 1.0 - a * a, 2.0 - a * a * (s + t + 2.0), 1.0 - a * a * (s + 1.0) * (t + 1.0)
    if Cq >= 0.0:
        return 0
    if A <= 0.0:
        return NEVER
    return int(min(math.ceil((-B + math.sqrt(B * B - 4.0 * A * Cq)) / (2.0 * A)), NEVER))


@njit(**_OPTS)
def _weight(a, n, s, t):
    """a^n sqrt((n+s)! (n+t)!) / n! by log-gamma, for n beyond the table of weights (infinite at NEVER)."""
    if n >= NEVER:
        return math.inf
    x = float(n)
    return math.exp(
        0.5 * (math.lgamma(x + s + 1.0) + math.lgamma(x + t + 1.0)) - math.lgamma(x + 1.0) + x * math.log(a)
    )


@njit(**_OPTS)
def _moment_series(f, df, g, dg, tf, tg, M, rho, ka, kb, table, W, eta, m, powers):
    """m[e] for every row (p, q, i, k, j) of ``table`` (see the module docstring); returns the largest relative
    error bound. f, g: [p, n] coefficients of the two inputs, df, dg their quadrature change, tf, tg: [p, n] the
    Parseval suffix sums. Each sum stops, checked every 8 terms, once its remainder is below ``eta`` of its sum
    of |terms|. ``powers`` is workspace for rho^n."""
    a = abs(rho)
    pk = 1.0
    for n in range(M + 1):
        powers[n] = pk
        pk *= rho
    worst = 0.0
    for e in range(table.shape[0]):
        p, q, i, k, j = table[e, 0], table[e, 1], table[e, 2], table[e, 3], table[e, 4]
        s, t = k + 2 * i, k + 2 * j
        fp, gq, dfp, dgq, Wst = f[p, s:], g[q, t:], df[p, s:], dg[q, t:], W[:, s, t]
        Wss, Wtt = W[:, s, s], W[:, t, t]
        acc, l1, qe, na, nb = 0.0, 0.0, 0.0, 0.0, 0.0
        # the weights |rho|^n W_n rise until ``turn`` and fall after: before it the supremum is its value there
        turn = _turn(a, s, t)
        top = abs(powers[turn]) * Wst[turn] if turn <= M else _weight(a, turn, s, t)
        stop = M
        for n in range(M):
            if n % 8 == 0 and n > 0:
                peak = top if n < turn else abs(powers[n]) * Wst[n]
                if peak * math.sqrt(tf[p, n + s] * tg[q, n + t]) <= eta * max(l1, math.sqrt(na * nb)):
                    stop = n
                    break
            w = powers[n] * Wst[n]
            term = w * fp[n] * gq[n]
            acc += term
            l1 += abs(term)
            na += Wss[n] * fp[n] * fp[n]
            nb += Wtt[n] * gq[n] * gq[n]
            qe += abs(w) * (abs(dfp[n] * gq[n]) + abs(fp[n] * dgq[n]))
        peak = top if stop < turn else abs(powers[stop]) * Wst[stop]
        tail = peak * math.sqrt(tf[p, stop + s] * tg[q, stop + t])
        # relative to the larger of the sum of |terms| and its Cauchy-Schwarz size at |rho| = 1, so that a moment
        # that nearly vanishes at this rho (a pair far from coincident) is judged by the size it can have
        size = max(l1, math.sqrt(na * nb), 1e-300)
        worst = max(worst, (tail + qe) / size + 4.0 * (stop + 1) * numerics.EPS)
        m[e] = acc * 0.5 ** (i + j) * ka ** (-0.5 * s) * kb ** (-0.5 * t)
    return worst


# the arrays of the finite-width pass, one tuple for numba (see Plan.metric):
# (C, MU, F, dF, TF, Mg, W, table, rows, hyper_b, hyper_w, r, eta, number of cumulants)


@njit(**_OPTS)
def _metric_through(pair, closed, data, gdata, cumulants_fn, step_fn, i, j, Gout, err, oi, oj, mirror, buf):
    """Pair (i, j) through every layer: G[k]_ij of the stored layers at Gout[slot, k, oi, oj]; returns the
    largest relative error bound of its moments. K_ij from the infinite-width path (_pair_advance)."""
    K, cls, store = data[0], data[2], data[14]
    C, MU, F, dF, TF, Mg, W, table, rows, hb, hw, r, eta, ns = gdata
    L = K.shape[0]
    nr, P1 = rows.shape[0], Gout.shape[1]
    c, out = np.zeros((nr, P1)), np.zeros((nr, P1))
    s = np.zeros(ns)
    m = np.zeros(table.shape[0])
    powers = np.zeros(W.shape[0] + 1)
    a_, b_ = cls[i], cls[j]
    kab, dist, total, tab = _pair_start(data, i, j)
    worst = 0.0
    if dist == 0.0:  # the same input twice: G_ab is G_aa, at every layer and order
        for l in range(L):
            slot = store[l]
            if slot >= 0:
                for k in range(P1):
                    Gout[slot, k, oi, oj] = C[l, a_, 1, k]
                    if mirror:
                        Gout[slot, k, oj, oi] = C[l, a_, 1, k]
        return worst
    for l in range(L):
        # the entries of one input alone from the single-input flows, K_ab from the infinite-width path
        for row in range(nr):
            g0, g1, g2 = rows[row, 0], rows[row, 1], rows[row, 2]
            if g1 == 0 and g2 == 0:
                for k in range(P1):
                    c[row, k] = C[l, a_, g0, k]
            elif g0 == 0 and g1 == 0:
                for k in range(P1):
                    c[row, k] = C[l, b_, g2, k]
        c[1, 0] = kab
        slot = store[l]
        if slot >= 0:
            for k in range(P1):
                Gout[slot, k, oi, oj] = c[1, k]
                if mirror:
                    Gout[slot, k, oj, oi] = c[1, k]
        if l == L - 1:
            break
        ka, kb = K[l, a_], K[l, b_]
        rho = kab / math.sqrt(ka * kb)
        e = _moment_series(F[l, a_], dF[l, a_], F[l, b_], dF[l, b_], TF[l, a_], TF[l, b_], Mg[l], rho, ka, kb,
                           table, W, eta[l], m, powers)  # fmt: skip
        worst = max(worst, e)
        err[l] = max(err[l], e)
        cumulants_fn(m, MU[l, a_], MU[l, b_], s)
        step_fn(c, s, hb[l + 1], hw[l + 1], r[l], out)
        for row in range(nr):
            g0, g1, g2 = rows[row, 0], rows[row, 1], rows[row, 2]
            if not (g1 == 0 and (g0 == 0 or g2 == 0)):
                for k in range(P1):
                    c[row, k] = out[row, k]
        kab, dist, total, tab, _ = _pair_advance(pair, closed, data, l, a_, b_, kab, dist, total, tab, False, buf)
    return worst


@njit(parallel=True, **_OPTS)
def _metric_pairs(pair, closed, data, gdata, cumulants_fn, step_fn, r0, r1, Gout, err):
    """Rows r and N - 1 - r for r0 <= r < r1, every j > row (as kernels._pairs); err[row, l] per row."""
    N = Gout.shape[2]
    for r in prange(r0, r1):
        buf = np.zeros(4)
        for j in range(r + 1, N):
            _metric_through(pair, closed, data, gdata, cumulants_fn, step_fn, r, j, Gout, err[r], r, j, True, buf)
        i = N - 1 - r
        if i != r:
            for j in range(i + 1, N):
                _metric_through(pair, closed, data, gdata, cumulants_fn, step_fn, i, j, Gout, err[i], i, j, True, buf)


def _weights(M: int, smax: int) -> np.ndarray:
    """W[n, s, t] = sqrt((n+s)! (n+t)!) / n!, n <= M, s, t <= smax (through log-gamma, no overflow)."""
    from scipy.special import gammaln

    n = np.arange(M + 1)[:, None, None]
    s = np.arange(smax + 1)[None, :, None]
    t = np.arange(smax + 1)[None, None, :]
    return np.exp(0.5 * (gammaln(n + s + 1) + gammaln(n + t + 1)) - gammaln(n + 1))


def _hermite_tables(mod, K: np.ndarray, top: int, smax: int, pvals, target: float, least: np.ndarray):
    """Per layer: the Hermite coefficients of sigma^p (p = 1..top) of every norm class, their quadrature change
    and Parseval suffix sums, and the terms M_l (from ``least[l]``, doubling until every relative tail is below
    ``target``)."""
    L1, U = K.shape
    tables, Ms = [], np.zeros(L1 + 1, dtype=np.int64)
    for l in range(L1):
        M, ready = int(least[l]), False
        while True:
            n = M + smax + 1
            out = []
            for Q in (2 * n + 32, 3 * n + 48):
                coef, rest = np.zeros((U, top + 1, n)), np.zeros((U, top + 1))
                if mod.kinks:  # Gauss-Legendre on the pieces between the kinks, one rule per kernel
                    for u in range(U):
                        x, sw = piecewise_rule(Q, np.asarray(mod.kinks) / np.sqrt(K[l, u]), n)
                        _power_coefficients(mod.pieces.values, x, sw, K[l, u : u + 1], pvals, top, coef[u : u + 1],
                                            rest[u : u + 1])  # fmt: skip
                else:
                    x, sw = _gauss_hermite(Q)
                    _power_coefficients(mod.pieces.values, x, sw, K[l], pvals, top, coef, rest)
                # the tail from k on of the rule's own Parseval sum: the squares from k, and the rest beyond
                tail = np.cumsum((coef**2)[:, :, ::-1], axis=2)[:, :, ::-1] + rest[:, :, None]
                out.append((coef, np.concatenate([tail, rest[:, :, None]], axis=2)))
            (coef, tail), (coarse, ctail) = out[1], out[0]
            suffix = tail + np.abs(tail - ctail)  # the two rules' disagreement on the tail is its error
            rel = np.max(suffix[:, 1:, M] / np.maximum(suffix[:, 1:, 0], 1e-300))
            # once the diagonal's tails are small, twice the terms: each pair's sums stop when they have enough,
            # so the spare ones cost only where a pair needs them (a retry would redo every pair)
            if M >= M_MAX or ready:
                break
            # a kink's coefficients fall like a power, so the diagonal's tail would ask for M_MAX at once; pairs
            # away from coincidence need far fewer (|rho|^n), and those that need more ask on a retry
            ready = rel <= max(target, 1e-6) or (bool(mod.kinks) and M >= KINK_START)
            M *= 2
        tables.append((coef, coef - coarse, suffix))
        Ms[l] = M
    width = max(t[0].shape[2] for t in tables) if tables else 1
    F = np.zeros((L1 + 1, U, top + 1, width))
    dF, TF = np.zeros_like(F), np.zeros((L1 + 1, U, top + 1, width + 1))
    for l, (coef, change, suffix) in enumerate(tables):
        F[l, :, :, : coef.shape[2]], dF[l, :, :, : coef.shape[2]] = coef, change
        TF[l, :, :, : suffix.shape[2]] = suffix
    return F, dF, TF, Ms


def check_order(mod, order) -> int:
    if not isinstance(order, (int, np.integer)) or isinstance(order, bool) or order not in ORDERS:
        raise FlowError(
            f"order must be one of {', '.join(map(str, ORDERS))} for the finite-width mean kernel G, got {order!r} "
            "(order 3 derives to about a million operations; see docs/kernel-matrices.md)"
        )
    if mod.order < order:
        raise FlowError(
            f"the {mod.name} module was generated at order {mod.order}; G at order {order} needs its single-input "
            f"flow at order {order} or more (pdlt.codegen.usercache.kernels(activation, {order}))"
        )
    return int(order)


def width_ratios(widths, depth: int) -> np.ndarray:
    """r[l] = n_(l+1) / n_l for the step from layer l + 1 (1 where layer 1's state has no 1/n part)."""
    r = np.ones(max(depth, 1))
    if widths is not None:
        w = np.asarray(widths, dtype=np.float64)
        for l in range(1, depth - 1):
            r[l] = w[l] / w[l - 1]
    return r


class Metric(NamedTuple):
    """What every block of the finite-width pass needs besides the Plan (picklable, for Dask workers)."""

    order: int
    gdata: tuple  # see the comment above _metric_through


def _pair_functions(order: int):
    pm = pair_module()
    return getattr(pm, f"_pair_cumulants_{order}"), getattr(pm, f"_pair_step_{order}")


@njit(parallel=True, **_OPTS)
def _metric_block(pair, closed, data, gdata, cumulants_fn, step_fn, r0, r1, c0, c1, Gb, err):
    """G of rows r0..r1-1 and columns c0..c1-1 (each pair as (smaller, larger), as the triangle computes it);
    err[row - r0, l] the largest relative error bound of each row's moments."""
    C, cls, store = gdata[0], data[2], data[14]
    P1 = Gb.shape[1]
    for i in prange(r0, r1):
        buf = np.zeros(4)
        for j in range(c0, c1):
            if i != j:
                lo, hi = min(i, j), max(i, j)
                _metric_through(pair, closed, data, gdata, cumulants_fn, step_fn, lo, hi, Gb, err[i - r0], i - r0,
                                j - c0, False, buf)  # fmt: skip
                continue
            for l in range(C.shape[0]):
                if store[l] >= 0:
                    for k in range(P1):
                        Gb[store[l], k, i - r0, j - c0] = C[l, cls[i], 1, k]


def compute_metric_block(plan, metric: Metric, r0: int, r1: int, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray]:
    """(G block (stored, order + 1, rows, columns), the largest error bound per layer) of one block of pairs."""
    from .kernels import plan_pieces

    pieces = plan_pieces(plan)
    cumulants_fn, step_fn = _pair_functions(metric.order)
    L = plan.K.shape[0]
    Gb = np.zeros((plan.n_store, metric.order + 1, r1 - r0, c1 - c0))
    err = np.zeros((r1 - r0, L))
    _metric_block(pieces.pair, plan.closed, plan_data(plan), metric.gdata, cumulants_fn, step_fn, r0, r1, c0, c1,
                  Gb, err)  # fmt: skip
    return Gb, np.max(err, axis=0, initial=0.0)


def in_process(mod, plan, order: int, progress=None):
    """The pass over every pair in this process: a function of the Metric returning (G, the largest error bound
    per layer), G (stored, order + 1, N, N) with the diagonal from the single-input flows."""
    cumulants_fn, step_fn = _pair_functions(order)
    N, L = plan.x.shape[0], plan.K.shape[0]
    half = (N + 1) // 2
    chunks = max(1, min(half, 50))
    edges = np.linspace(0, half, chunks + 1).astype(np.int64)

    def run(metric: Metric):
        C = metric.gdata[0]
        G = np.zeros((plan.n_store, order + 1, N, N))
        idx = np.arange(N)
        for l in range(L):
            if plan.store[l] >= 0:
                G[plan.store[l]][:, idx, idx] = C[l, plan.cls, 1, : order + 1].T
        err = np.zeros((N, L))
        for c in range(chunks):
            _metric_pairs(mod.pieces.pair, plan.closed, plan_data(plan), metric.gdata, cumulants_fn, step_fn,
                          int(edges[c]), int(edges[c + 1]), G, err)  # fmt: skip
            if progress is not None:
                progress(int(edges[c + 1]), half)
        return G, np.max(err, axis=0)

    return run


def mean_kernel(mod, plan, order: int, ratios: np.ndarray, tolerance: float, run):
    """(G, errors): the finite-width mean kernel from ``run(metric) -> (G, worst error per layer)`` (``in_process``
    or ``scaleout``'s blocks) and per layer the accumulated relative error bound. A layer whose pairs miss the
    budget is summed again with twice the terms, until it meets it or more terms stop helping (then FlowError)."""
    pm = pair_module()
    table = np.asarray(getattr(pm, f"MOMENTS_{order}"), dtype=np.int64)
    rows = np.asarray(getattr(pm, f"STATE_{order}"), dtype=np.int64)
    p = mod.pieces
    L, U = plan.K.shape
    C = np.zeros((L, U, mod.top + 1, mod.order + 1))
    nrows, cols = mod.shape
    MU = np.zeros((max(L - 1, 1), U, nrows, cols))
    serr = np.zeros((max(L - 1, 1), U))
    _single_flows(p.exact, p.integrands, p.cumulants, p.step, *mod.description, plan.K, plan.cb, plan.cw, ratios,
                  plan.params, C, MU, serr)  # fmt: skip
    errors = np.zeros(L)
    if L > 1:
        errors[1:] = np.max(serr, axis=1)[: L - 1]
    pmax = int(max(table[:, 0].max(), table[:, 1].max()))
    smax = int(max((table[:, 3] + 2 * np.maximum(table[:, 2], table[:, 4])).max(), 0))
    target = tolerance / max(L - 1, 1)
    hb, hw = np.zeros((L, order + 1)), np.zeros((L, order + 1))
    hb[:, 0], hw[:, 0] = plan.cb, plan.cw
    eta = np.full(L, max(target * 0.1, 1e-16))  # a pair's sums stop once what is left is a tenth of the budget
    ns = int(getattr(pm, f"_DIMS_{order}")[2])
    least = np.full(max(L - 1, 1), M_START)
    before = np.full(max(L - 1, 1), np.inf)
    while True:
        F, dF, TF, Ms = _hermite_tables(mod, plan.K[:-1], pmax, smax, plan.params, target, least)
        W = _weights(int(max(Ms.max(), 1)), smax)
        G, err = run(Metric(order, (C, MU, F, dF, TF, Ms, W, table, rows, hb, hw, ratios, eta, ns)))
        worst = err[: L - 1]
        short = (worst > target) & (Ms[: L - 1] < M_MAX)
        if not np.any(short) or np.any(worst[short] > 0.5 * before[short]):  # done, or more terms do not help
            break
        before = np.where(short, worst, before)
        least[short] = 2 * Ms[: L - 1][short]
    errors[1:] = np.maximum(errors[1:], err[: L - 1]) if L > 1 else errors[1:]
    errors = np.cumsum(errors)
    bad = np.flatnonzero(~(errors <= tolerance))
    if bad.size:
        l = int(bad[0])
        raise FlowError(
            f"the finite-width mean kernel of {mod.name} at layer {l + 1} has relative error bound ~{errors[l]:.1e}, "
            f"above tolerance {tolerance:g}: its Mehler series converge slowly for nearly equal inputs when sigma "
            f"has a kink, or K is large; pass a larger tolerance or fewer layers"
        )
    return G, errors
