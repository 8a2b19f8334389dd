"""One input's NTK statistics layer by layer: the ntk sector's step with certified Gaussian expectations.

The generated step (``pdlt.generated.ntk``, derived by Wick contractions of the stochastic forward equations
in ``pdlt.derive.ntk``) needs, at each layer's kernel K, the expectations

    e[n] = <d^m/dz^m (sigma^a sigma'^b)>_K = K^(-m/2) E[sigma(sqrt(K) x)^a sigma'(sqrt(K) x)^b He_m(x)],  x ~ N(0, 1),

(the derivatives are those of the Gaussian weight, so a kink costs nothing: no sigma'' is ever evaluated).
They are integrated by Gauss-Legendre on panels of [-R, R] cut at sigma's kinks and graded geometrically
towards x = 0, where sigma(sqrt(K) x) turns over on the scale 1/sqrt(K); two rules (16 and 24 nodes a
panel) give an error estimate, the outermost panels a check that [-R, R] holds the integrand.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
from numba import njit

from . import numerics
from .errors import FlowError
from .kernels import legendre_rule, piecewise_nodes

_OPTS = {"cache": True, "error_model": "numpy"}
RULES = (16, 24)  # Gauss-Legendre nodes per panel: the estimate is their difference
RADIUS = 14.0  # [-R, R] in x = z / sqrt(K): the Gaussian weight beyond is below 1e-42
EDGE = 12.0  # the outermost panels [EDGE, R]: what they hold bounds what lies beyond R
TENSORS = ("V", "A", "B", "D", "F", "P", "Q", "R", "S", "T", "U")  # the sector's four-index tensors
TWO_SLOT = ("K", "H", "K1", "H1")  # its means and their 1/n_(l-1) parts


@cache
def sector():
    """The generated ntk module (imported on first use)."""
    from pdlt.generated import ntk

    return ntk


@njit(**_OPTS)
def _edges(K, kinks):
    """Panel edges in x: +-R, unit panels from 4 to EDGE, the kinks, 0 and +-4 2^-i down to about 0.02 / sqrt(K)."""
    sk = math.sqrt(K)
    levels = max(2, int(math.ceil(math.log2(200.0 * max(sk, 1e-300)))) + 1)
    levels = min(levels, 60)
    cuts = [-RADIUS, RADIUS, 0.0]
    for c in range(5, int(EDGE) + 1):  # unit panels in the tails
        cuts.append(float(c))
        cuts.append(-float(c))
    for i in range(levels):
        c = 4.0 * 2.0**-i
        cuts.append(c)
        cuts.append(-c)
    for k in kinks:
        x = k / sk
        if -RADIUS < x < RADIUS:
            cuts.append(x)
    return np.unique(np.array(cuts))


@njit(**_OPTS)
def _expectations(jet, table, K, params, kinks, t1, w1, t2, w2, e, err):
    """e[n], err[n]: the expectation table[n] = (a, b, c, d, m) at K and its error estimate (the two rules'
    difference, roundoff 8 eps times the integral of |integrand|, and ten times the outermost panels).
    A row that needs sigma'' or sigma''' where the module has none (a kink) is NaN with error 0.
    Per panel, the powers of sigma, ..., sigma''' and the He_m are tabulated once and shared by the rows."""
    edges = _edges(K, kinks)
    ne = table.shape[0]
    sk = math.sqrt(K)
    top = np.zeros(5, dtype=np.int64)  # the largest exponent of each factor and the largest m
    for n in range(ne):
        for k in range(5):
            top[k] = max(top[k], table[n, k])
    width = max(top[0], top[1], top[2], top[3], top[4]) + 1
    acc = np.zeros((2, ne))
    mag = np.zeros(ne)
    outer = np.zeros(ne)
    norm = 1.0 / math.sqrt(2.0 * math.pi)
    for rule in range(2):
        t, w = (t1, w1) if rule == 0 else (t2, w2)
        q = t.shape[0]
        x, wt = np.empty(q), np.empty(q)
        f = np.empty((4, q))
        powers = np.ones((5, width, q))  # powers[k, p] = (sigma^(k))^p for k < 4; powers[4, m] = He_m(x)
        for p in range(edges.shape[0] - 1):
            lo, hi = edges[p], edges[p + 1]
            half = 0.5 * (hi - lo)
            for j in range(q):
                x[j] = lo + half * (t[j] + 1.0)
                wt[j] = half * w[j] * norm * math.exp(-0.5 * x[j] * x[j])
            jet(x, q, sk, params, f.reshape(4 * q))
            for k in range(4):
                for i in range(1, top[k] + 1):
                    for j in range(q):
                        powers[k, i, j] = powers[k, i - 1, j] * f[k, j]
            for j in range(q):  # He_m by its three-term recurrence
                if top[4] >= 1:
                    powers[4, 1, j] = x[j]
                for i in range(1, top[4]):
                    powers[4, i + 1, j] = x[j] * powers[4, i, j] - i * powers[4, i - 1, j]
            edge = lo >= EDGE or hi <= -EDGE
            for n in range(ne):
                a, b, c, g, m = table[n, 0], table[n, 1], table[n, 2], table[n, 3], table[n, 4]
                total, size = 0.0, 0.0
                for j in range(q):
                    v = powers[0, a, j] * powers[1, b, j] * powers[2, c, j] * powers[3, g, j] * powers[4, m, j]
                    total += wt[j] * v
                    size += wt[j] * abs(v)
                acc[rule, n] += total
                if rule == 1:
                    mag[n] += size
                    if edge:
                        outer[n] += size
    for n in range(ne):
        scale = K ** (-0.5 * table[n, 4])
        e[n] = acc[1, n] * scale
        err[n] = (abs(acc[1, n] - acc[0, n]) + 8.0 * numerics.EPS * mag[n] + 10.0 * outer[n]) * scale
        mag[n] *= scale
        if math.isnan(e[n]):
            err[n], mag[n] = 0.0, 0.0
    return mag


@njit(**_OPTS)
def _layers(jet, step, table, t0, hyper, ratios, params, kinks, t1, w1, t2, w2, T, rel):
    """T[l] = the state of layer l + 1 (TENSORS of the generated module) from T[0] = t0; rel[l] the largest
    relative error estimate (against each expectation's size) of the expectations of step l -> l + 1."""
    L = T.shape[0]
    ne = table.shape[0]
    e, err = np.zeros(ne), np.zeros(ne)
    T[0, :] = t0
    out = np.zeros(T.shape[1])
    for l in range(L - 1):
        K = T[l, 0]
        if not (0.0 < K < 1e300):
            T[l + 1 :, :] = math.nan
            rel[l:] = math.inf
            return
        mag = _expectations(jet, table, K, params, kinks, t1, w1, t2, w2, e, err)
        worst = 0.0
        for n in range(ne):
            if mag[n] > 0.0:
                worst = max(worst, err[n] / mag[n])
            elif not err[n] == 0.0:
                worst = math.inf
        rel[l] = worst
        step(T[l], e, hyper[l + 1], ratios[l], out)
        T[l + 1, :] = out


def expectations(mod, K: float, params) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ntk sector's expectations at kernel K for a generated activation module, their error estimates and
    the integrals of their integrands' absolute values (the size errors are relative to)."""
    g = sector()
    table = np.array(g.NTK_EXPECTATIONS, dtype=np.int64)
    e, err = np.zeros(len(table)), np.zeros(len(table))
    p = mod.pieces
    kinks, rules = np.array(mod.kinks, dtype=np.float64), (*legendre_rule(RULES[0]), *legendre_rule(RULES[1]))
    mag = _expectations(p.jet, table, float(K), params, kinks, *rules, e, err)
    return e, err, mag


DDNTK = ("R", "S", "T", "U")  # need sigma'' twice or sigma''' at one input: not defined at a kink (book ∞.39-44)


def _refuse_kinked(T: np.ndarray, columns: list, wanted, activation: str) -> None:
    """Refuse a wanted ddNTK (``columns[i]`` names the tensor of column i of T) that is not finite below layer 1
    while everything else is: a kink made its sigma'' or sigma''' a point mass."""
    core = [i for i, name in enumerate(columns) if name not in DDNTK]
    for name in wanted:
        cols = [i for i, c in enumerate(columns) if c == name]
        if (
            name in DDNTK
            and T.shape[0] > 1
            and not np.all(np.isfinite(T[1:, cols]))
            and np.all(np.isfinite(T[:, core]))
        ):
            raise _kinked(name, activation)


def _kinked(name: str, activation: str) -> FlowError:
    return FlowError(
        f"{name} is not defined for {activation}: it needs sigma'' twice or sigma''' at one input, and a kink makes "
        "them point masses (book ∞.39-44, the training expansion breaks down there); smooth activations (gelu, "
        "swish, tanh, ...) have it"
    )


def ntk_flow(mod, depth: int, norm2: float, hyper: np.ndarray, ratios: np.ndarray, params, tolerance: float,
             wanted=DDNTK):  # fmt: skip
    """(state, error): state[l - 1] = (K, H, V, A, B, D, F, P, Q, R, S, T, U, K1, H1) of layer l = 1..depth for one
    input with |x|^2/n_0 = norm2; hyper[l - 1] = (C_b, C_W, lambda_b, lambda_W) of layer l; ratios as
    pdlt.runtime.finite.width_ratios; error[l - 1] the accumulated relative error bound (as KernelMatrices.error).
    Raises FlowError when an expectation misses ``tolerance``, the kernel leaves (0, 1e300), or one of the ddNTKs
    in ``wanted`` needs a sigma'' or sigma''' that a kink makes a point mass (they are NaN otherwise)."""
    if not mod.has_perp:
        raise FlowError(f"{mod.name} jumps, so sigma' and the NTK are not defined")
    g = sector()
    table = np.array(g.NTK_EXPECTATIONS, dtype=np.int64)
    T = np.zeros((depth, len(g.TENSORS)))
    rel = np.zeros(max(depth - 1, 1))
    t0 = np.zeros(len(g.TENSORS))
    t0[0] = hyper[0, 0] + hyper[0, 1] * norm2
    t0[1] = hyper[0, 2] + hyper[0, 3] * norm2
    p = mod.pieces
    rules = (*legendre_rule(RULES[0]), *legendre_rule(RULES[1]))
    kinks = np.array(mod.kinks, dtype=np.float64)
    hyper, ratios = np.ascontiguousarray(hyper), np.ascontiguousarray(ratios)
    _layers(p.jet, g._ntk_step, table, t0, hyper, ratios, params, kinks, *rules, T, rel)
    error = np.zeros(depth)
    error[1:] = np.cumsum(rel[: depth - 1])
    names = list(g.TENSORS)
    core = [i for i, name in enumerate(names) if name not in DDNTK]
    _refuse_kinked(T, list(names), wanted, mod.name)
    for l in range(depth):
        if not np.all(np.isfinite(T[l, core])) or not T[l, 0] > 0:
            raise FlowError(
                f"the NTK statistics of {mod.name} are not finite at layer {l + 1} (K = {T[l, 0]:.3g}): the inputs or "
                "C_W are too large, or the kernel collapsed to 0"
            )
        if not error[l] <= tolerance:
            raise FlowError(
                f"the Gaussian expectations of the NTK statistics of {mod.name} at layer {l} (K = {T[l - 1, 0]:.4g}) "
                f"add up to a relative error ~{error[l]:.1e}, above tolerance {tolerance:g}"
            )
    return T, error


# --------------------------------------------------------------------------------------------- two inputs

PAIR_START, PAIR_MAX = 64, 512  # Hermite coefficients per input: first try, most allowed
PROBE = 16  # layers between fresh searches for the series size once it sits on its roundoff floor


@njit(**_OPTS)
def _tabulate(jet, x, scale, params, out):
    """out[k] = the k-th derivative of sigma at scale * x, k = 0..3 (NaN where the module has none)."""
    jet(x, x.shape[0], scale, params, out.reshape(4 * x.shape[0]))


@njit(**_OPTS)
def _hermite_functions(x, sw, size):
    """H[j, k] = sw[j] h_k(x[j]) for k < size: the normalised Hermite functions times the square-root weights (which
    neither overflow nor underflow), by their three-term recurrence."""
    q = x.shape[0]
    H = np.empty((q, size))
    a, b = np.empty(size), np.empty(size)
    for k in range(1, size):
        a[k], b[k] = 1.0 / math.sqrt(k + 1.0), math.sqrt(k / (k + 1.0))
    for j in range(q):
        h0, h1 = sw[j], x[j] * sw[j]
        H[j, 0] = h0
        if size > 1:
            H[j, 1] = h1
        for k in range(1, size - 1):
            h0, h1 = h1, a[k] * x[j] * h1 - b[k] * h0
            H[j, k + 1] = h1
    return H


@njit(**_OPTS)
def _power_coefficients(table, x, sw, keys, size, coef):
    """coef[u] = the first ``size`` normalised Hermite coefficients of prod_k (sigma^(k))^keys[u, k] at the nodes x
    (table[k] = sigma^(k)(sqrt(K) x), sw the square-root weights): one matrix product for all the keys."""
    q = x.shape[0]
    v = np.empty((keys.shape[0], q))
    for u in range(keys.shape[0]):
        for j in range(q):
            f = sw[j]
            for k in range(4):
                for _ in range(keys[u, k]):
                    f *= table[k, j]
            v[u, j] = f
    coef[:, :size] = np.dot(v, _hermite_functions(x, sw, size))


@njit(**_OPTS)
def _pair_series(jet, params, roots, K, rules, keys, rows, rho, size, e):
    """The Mehler series of the both-input rows: e[n] = sum_k f_k g_k rho^k with f, g the Hermite coefficients of the
    shift-th weight derivative in z, c_{k+i} sqrt((k+i)!/k!) / K^(i/2), of rows[n] = (key of input 0, its shift, key
    of input 1, its shift); returns the largest relative error estimate (the series' last half, the coefficients'
    change from the coarse rule, and roundoff 8 eps m).
    ``rules[i][c]`` = (x, sw) of input i's coarse (c = 0) and fine (c = 1) rule; the coefficients are the fine ones."""
    coef = np.zeros((2, 2, keys.shape[1], size))  # input, rule, key, k
    for i in range(2):
        for c in range(2):
            x, sw = rules[i][c]
            table = np.empty((4, x.shape[0]))
            _tabulate(jet, x, roots[i], params, table)
            _power_coefficients(table, x, sw, keys[i], size, coef[i, c])
    worst = 0.0
    f = np.empty((2, size))
    g = np.empty((2, size))
    shifts = 1 + max(np.max(rows[:, 1]), np.max(rows[:, 3])) if rows.shape[0] else 1
    factors = np.ones((2, shifts, size))  # factors[i, s, k] = sqrt((k + s)! / k!) / K_i^(s/2)
    for i in range(2):
        for s in range(1, shifts):
            for k in range(size):
                factors[i, s, k] = factors[i, s - 1, k] * math.sqrt((k + s) / K[i])
    for n in range(rows.shape[0]):
        m = size
        for i in range(2):
            shift = rows[n, 2 * i + 1]
            m = min(m, size - shift)
            u = rows[n, 2 * i]
            for k in range(size - shift):
                factor = factors[i, shift, k]
                f[i, k] = coef[i, 1, u, k + shift] * factor
                g[i, k] = (coef[i, 1, u, k + shift] - coef[i, 0, u, k + shift]) * factor
        # the scale of the errors: sqrt(sum f^2 sum g^2) >= |sum f g rho^k| (Parseval: E|sigma.. sigma..| at most),
        # which an expectation that vanishes by symmetry (rho = 0, odd sigma) does not make 0 as sum |f g rho^k| does
        total, size_n, tail, quad, power, n0, n1 = 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0
        for k in range(m):
            term = f[0, k] * f[1, k] * power
            total += term
            n0 += f[0, k] * f[0, k]
            n1 += f[1, k] * f[1, k]
            if k >= m // 2:
                tail += term
            quad += (g[0, k] * f[1, k] + f[0, k] * g[1, k]) * power
            power *= rho
        e[n] = total
        size_n = math.sqrt(n0 * n1)
        if size_n > 0 and math.isfinite(size_n):
            worst = max(worst, (abs(tail) + abs(quad) + 8 * numerics.EPS * m * size_n) / size_n)
    return worst


def _pattern(table: np.ndarray) -> tuple[list, np.ndarray, np.ndarray, np.ndarray]:
    """How the rows of NTK_PAIR_EXPECTATIONS are computed: per input, the rows of that input alone with their
    (a, b, c, d, m); the rows that involve both inputs, each input's distinct power patterns (keys, padded), and per
    such row (key of input 0, shift, key of input 1, shift)."""
    single = []
    for label in (0, 1):
        rows = [n for n, row in enumerate(table) if not any(row[5 * (1 - label) : 5 * (1 - label) + 4])]
        single.append((np.array(rows, dtype=np.int64), np.ascontiguousarray(table[rows][:, 5 * label : 5 * label + 5])))
    both = [n for n, row in enumerate(table) if any(row[0:4]) and any(row[5:9])]
    keys = [sorted({tuple(table[n, 5 * i : 5 * i + 4]) for n in both}) for i in range(2)]
    rows = np.array(
        [
            [keys[0].index(tuple(table[n, 0:4])), table[n, 4], keys[1].index(tuple(table[n, 5:9])), table[n, 9]]
            for n in both
        ],
        dtype=np.int64,
    ).reshape(-1, 4)
    width = max(len(k) for k in keys)
    padded = np.zeros((2, width, 4), dtype=np.int64)
    for i in range(2):
        padded[i, : len(keys[i])] = keys[i]
    return single, np.array(both, dtype=np.int64), padded, rows


@njit(**_OPTS)
def _pair_rules(legendre, level, kinks, roots, size):
    """rules[i][c] = (x, sw) of input i's coarse (c = 0) and fine (c = 1) rule for ``size`` coefficients, the kinks
    (in z) moved to x = z / sqrt(K_i); ``legendre[2 level + c]`` = the Gauss-Legendre rule of 2 size + 32 (c = 0) and
    3 size + 48 nodes."""
    t0, w0 = legendre[2 * level]
    t1, w1 = legendre[2 * level + 1]
    r0 = (piecewise_nodes(t0, w0, kinks / roots[0], size), piecewise_nodes(t1, w1, kinks / roots[0], size))
    r1 = (piecewise_nodes(t0, w0, kinks / roots[1], size), piecewise_nodes(t1, w1, kinks / roots[1], size))
    return (r0, r1)


@njit(**_OPTS)
def _pair_layers(jet, step, params, kinks, t1, w1, t2, w2, legendre, sub0, rows0,
                 sub1, rows1, keys, pairs, both, width, diagonal, hyper, ratios, target, T, rel):  # fmt: skip
    """T[l] = the two-input state of layer l + 1 from T[0]; rel[l] the relative error estimate of step l -> l + 1.
    Each layer: each input's own rows (``sub0`` of ``rows0``, ``sub1`` of ``rows1``) by ``_expectations``, the rows
    that involve both (``both``) by a Mehler series (``_pair_series``) whose size doubles from PAIR_START until its
    estimate is within ``target``, stops improving (roundoff), or reaches PAIR_MAX. When it sat on its roundoff floor,
    the next layers try that size alone (the kernel changes little from layer to layer), re-probing every PROBE
    layers. ``width``: the rows of the whole table; ``diagonal``: the columns of K_00, K_01, K_11."""
    L = T.shape[0]
    e = np.zeros(width)
    ev0, err0 = np.zeros(sub0.shape[0]), np.zeros(sub0.shape[0])
    ev1, err1 = np.zeros(sub1.shape[0]), np.zeros(sub1.shape[0])
    out = np.zeros(T.shape[1])
    floor = 0
    for l in range(L - 1):
        K0, K01, K1 = T[l, diagonal[0]], T[l, diagonal[1]], T[l, diagonal[2]]
        if not (0 < K0 < 1e300 and 0 < K1 < 1e300 and abs(K01) < math.sqrt(K0 * K1)):
            T[l + 1 :, :] = math.nan
            return
        Ks = np.array([K0, K1])
        roots = np.sqrt(Ks)
        rho = K01 / (roots[0] * roots[1])
        mag0 = _expectations(jet, sub0, K0, params, kinks, t1, w1, t2, w2, ev0, err0)
        mag1 = _expectations(jet, sub1, K1, params, kinks, t1, w1, t2, w2, ev1, err1)
        worst = 0.0
        for rows, ev, err, mag in ((rows0, ev0, err0, mag0), (rows1, ev1, err1, mag1)):
            for n in range(rows.shape[0]):
                e[rows[n]] = ev[n]
                if mag[n] > 0:
                    worst = max(worst, err[n] / mag[n])
        alone = floor if l % PROBE else 0
        size, level = PAIR_START, 0
        while size < alone:
            size, level = 2 * size, level + 1
        best, chosen = math.inf, np.zeros(both.shape[0])
        while True:
            series = np.zeros(both.shape[0])
            rules = _pair_rules(legendre, level, kinks, roots, size)
            estimate = _pair_series(jet, params, roots, Ks, rules, keys, pairs, rho, size, series)
            stalled = estimate > 0.5 * best  # more terms no longer help: the estimate sits on the roundoff floor
            if estimate < best:
                best, chosen = estimate, series
            if best <= target or size >= PAIR_MAX or stalled or alone:
                floor = size // 2 if stalled else alone if best > target else 0
                break
            size, level = 2 * size, level + 1
        for n in range(both.shape[0]):
            e[both[n]] = chosen[n]
        rel[l] = max(worst, best)
        step(T[l], e, hyper[l + 1], ratios[l], out)
        T[l + 1, :] = out


@cache
def _pair_legendre() -> tuple:
    """The Gauss-Legendre rules of the pair series' sizes, coarse and fine (see ``_pair_rules``)."""
    sizes = [PAIR_START * 2**i for i in range(int(math.log2(PAIR_MAX // PAIR_START)) + 1)]
    return tuple(legendre_rule(q) for size in sizes for q in (2 * size + 32, 3 * size + 48))


def ntk_pair_flow(mod, depth: int, gram: np.ndarray, hyper: np.ndarray, ratios: np.ndarray, params,
                  tolerance: float, wanted=DDNTK):  # fmt: skip
    """(state, error) for two inputs with gram[a, b] = x_a . x_b / n_0: state[l - 1, i] = the entry
    NTK_PAIR_TENSORS[i] of layer l; the rest as ntk_flow."""
    if not mod.has_perp:
        raise FlowError(f"{mod.name} jumps, so sigma' and the NTK are not defined")
    g = sector()
    names = g.NTK_PAIR_TENSORS
    index = {entry: i for i, entry in enumerate(names)}
    table = np.array(g.NTK_PAIR_EXPECTATIONS, dtype=np.int64)
    ((rows0, sub0), (rows1, sub1)), both, keys, pairs = _pattern(table)
    T = np.zeros((depth, len(names)))
    for (name, slots), i in index.items():
        if name in ("K", "H"):  # K1, H1 start at 0: layer 1 is Gaussian at any width
            a, b = int(slots[0]), int(slots[1])
            T[0, i] = (
                (hyper[0, 0] + hyper[0, 1] * gram[a, b]) if name == "K" else (hyper[0, 2] + hyper[0, 3] * gram[a, b])
            )
    k00, k01, k11 = (index[("K", s)] for s in (("0", "0"), ("0", "1"), ("1", "1")))
    rel = np.zeros(max(depth - 1, 1))
    p = mod.pieces
    rules = (*legendre_rule(RULES[0]), *legendre_rule(RULES[1]))
    _pair_layers(p.jet, g._ntk_pair_step, params,
                 np.array(mod.kinks, dtype=np.float64), *rules, _pair_legendre(), sub0, rows0, sub1, rows1,
                 keys, pairs, both, len(table), np.array([k00, k01, k11]),
                 np.ascontiguousarray(hyper), np.ascontiguousarray(ratios, dtype=np.float64),
                 tolerance / max(depth - 1, 1) / 2, T, rel)  # fmt: skip
    error = np.zeros(depth)
    error[1:] = np.cumsum(rel[: depth - 1])
    core = [i for i, (name, _) in enumerate(names) if name not in DDNTK]
    _refuse_kinked(T, [name for name, _ in names], wanted, mod.name)
    for l in range(depth):
        if not np.all(np.isfinite(T[l, core])):
            raise FlowError(
                f"the NTK statistics of {mod.name} for two inputs are not finite at layer {l + 1}: the inputs or C_W "
                "are too large, the kernel collapsed to 0, or the inputs are parallel (correlation 1)"
            )
        if not error[l] <= tolerance:
            raise FlowError(
                f"the Gaussian expectations of the two-input NTK statistics of {mod.name} add up to a relative error "
                f"~{error[l]:.1e} by layer {l}, above tolerance {tolerance:g}; "
                + _why_slow(mod, T[l - 1, k00], T[l - 1, k11], T[l - 1, k01], rel[l - 1])
                + ": pass a larger tolerance or use fewer layers"
            )
    return T, error


def _why_slow(mod, K0: float, K1: float, K01: float, last: float) -> str:
    """What makes a layer's two-input expectations inaccurate, in words (the refusal's reason)."""
    rho = K01 / math.sqrt(K0 * K1)
    causes = []
    if abs(rho) > 0.99:
        causes.append(
            f"the inputs are nearly parallel there (correlation {rho:.6g}), where the Mehler series converges slowly"
        )
    if mod.kinks:
        causes.append("sigma has kinks, whose Hermite coefficients fall slowly")
    if min(K0, K1) < 0.01:
        causes.append(
            f"K is small there ({min(K0, K1):.3g}), where the expectations that carry K-derivatives lose digits to "
            "roundoff"
        )
    text = f"the last layer added ~{last:.1e}"
    return text + (" (" + "; ".join(causes) + ")" if causes else "")


def orbits() -> dict:
    """tensor name -> the slot permutations under which it is symmetric (the generated module spells them "0123")."""
    return {name: [tuple(int(c) for c in q) for q in perms] for name, perms in sector().NTK_ORBITS}


def canonical(name: str, slots: tuple, perms: dict) -> tuple:
    """(name, slots) with the slots (as strings) in the order the state stores: the least over the tensor's orbit."""
    keys = tuple(str(s) for s in slots)
    return name, min(tuple(keys[i] for i in p) for p in perms[name])


def state_arrays(T: np.ndarray, index: dict, N: int) -> dict[str, np.ndarray]:
    """A state over N inputs as arrays: name -> (layers, N, N, N, N) for the four-index tensors, (layers, N, N) for
    K, H, K1, H1; ``index`` maps each stored (name, canonical slots) to its column of T."""
    perms = orbits()
    out = {}
    for name in (*TWO_SLOT, *TENSORS):
        shape = (N,) * (2 if name in TWO_SLOT else 4)
        arr = np.zeros((T.shape[0], *shape))
        for slots in np.ndindex(*shape):
            arr[(slice(None), *slots)] = T[:, index[canonical(name, slots, perms)]]
        out[name] = arr
    return out


def pair_arrays(T: np.ndarray, names: tuple) -> dict[str, np.ndarray]:
    """The two-input state (entries NTK_PAIR_TENSORS) as arrays, see ``state_arrays``."""
    return state_arrays(T, {entry: i for i, entry in enumerate(names)}, 2)
