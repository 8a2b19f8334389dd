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

_OPTS = {"cache": True, "error_model": "numpy"}
RULES = (16, 24)  # Gauss-Legendre nodes per panel: the estimate is their difference
RADIUS = 14.0  # [-R, R] in x = z / sqrt(K): the Gaussian weight beyond is below 1e-42
EDGE = 12.0  # the outermost panels [EDGE, R]: what they hold bounds what lies beyond R
TENSORS = ("V", "A", "B", "D", "F", "P", "Q", "R", "S", "T", "U")  # the sector's four-index tensors


@cache
def sector():
    """The generated ntk module (imported on first use)."""
    from pdlt.generated import ntk

    return ntk


@cache
def _legendre(q: int) -> tuple[np.ndarray, np.ndarray]:
    t, w = np.polynomial.legendre.leggauss(q)
    return t, w


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
def _expectations(values, dvalues, d2values, d3values, table, K, params, kinks, t1, w1, t2, w2, e, err):
    """e[n], err[n]: the expectation table[n] = (a, b, c, d, m) at K and its error estimate (the two rules'
    difference, roundoff 8 eps times the integral of |integrand|, and ten times the outermost panels).
    A row that needs sigma'' or sigma''' where the module has none (a kink) is NaN with error 0."""
    edges = _edges(K, kinks)
    ne = table.shape[0]
    sk = math.sqrt(K)
    acc = np.zeros((2, ne))
    mag = np.zeros(ne)
    outer = np.zeros(ne)
    norm = 1.0 / math.sqrt(2.0 * math.pi)
    for rule in range(2):
        t, w = (t1, w1) if rule == 0 else (t2, w2)
        q = t.shape[0]
        x, wt, s, d = np.empty(q), np.empty(q), np.empty(q), np.empty(q)
        d2, d3 = np.empty(q), np.empty(q)
        for p in range(edges.shape[0] - 1):
            lo, hi = edges[p], edges[p + 1]
            half = 0.5 * (hi - lo)
            for j in range(q):
                x[j] = lo + half * (t[j] + 1.0)
                wt[j] = half * w[j] * norm * math.exp(-0.5 * x[j] * x[j])
            values(x, q, sk, params, s)
            dvalues(x, q, sk, params, d)
            d2values(x, q, sk, params, d2)
            d3values(x, q, sk, params, d3)
            edge = lo >= EDGE or hi <= -EDGE
            for n in range(ne):
                a, b, c, g, m = table[n, 0], table[n, 1], table[n, 2], table[n, 3], table[n, 4]
                total, size = 0.0, 0.0
                for j in range(q):
                    he = 1.0 if m == 0 else (x[j] if m == 1 else x[j] * x[j] - 1.0)
                    f = s[j] ** a * d[j] ** b * he
                    if c:
                        f *= d2[j] ** c
                    if g:
                        f *= d3[j] ** g
                    total += wt[j] * f
                    size += wt[j] * abs(f)
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
def _layers(values, dvalues, d2values, d3values, step, table, t0, hyper, ratios, params, kinks, t1, w1, t2, w2, T, rel):
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
        mag = _expectations(values, dvalues, d2values, d3values, table, K, params, kinks, t1, w1, t2, w2, e, err)
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
    kinks, rules = np.array(mod.kinks, dtype=np.float64), (*_legendre(RULES[0]), *_legendre(RULES[1]))
    mag = _expectations(p.values, p.dvalues, p.d2values, p.d3values, table, float(K), params, kinks, *rules, e, err)
    return e, err, mag


DDNTK = ("R", "S", "T", "U")  # need sigma'' twice or sigma''' at one input: not defined at a kink (book ∞.39-44)


def ntk_flow(mod, depth: int, norm2: float, hyper: np.ndarray, ratios: np.ndarray, params, tolerance: float,
             wanted=DDNTK):  # fmt: skip
    """(state, error): state[l - 1] = (K, H, V, A, B, D, F, P, Q, R, S, T, U) of layer l = 1..depth for one input
    with |x|^2/n_0 = norm2; hyper[l - 1] = (C_b, C_W, lambda_b, lambda_W) of layer l; ratios as
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
    rules = (*_legendre(RULES[0]), *_legendre(RULES[1]))
    kinks = np.array(mod.kinks, dtype=np.float64)
    hyper, ratios = np.ascontiguousarray(hyper), np.ascontiguousarray(ratios)
    _layers(p.values, p.dvalues, p.d2values, p.d3values, g._ntk_step, table, t0, hyper, ratios, params, kinks,
            *rules, T, rel)  # fmt: skip
    error = np.zeros(depth)
    error[1:] = np.cumsum(rel[: depth - 1])
    names = list(g.TENSORS)
    core = [i for i, name in enumerate(names) if name not in DDNTK]
    for name in wanted:
        if (
            name in DDNTK
            and depth > 1
            and not np.all(np.isfinite(T[1:, names.index(name)]))
            and np.all(np.isfinite(T[:, core]))
        ):
            raise FlowError(
                f"{name} is not defined for {mod.name}: it needs sigma'' twice or sigma''' at one input, and a kink "
                "makes them point masses (book ∞.39-44, the training expansion breaks down there); smooth activations "
                "(gelu, swish, tanh, ...) have it"
            )
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
