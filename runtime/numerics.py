"""The numba side of the runtime: quadrature rules, the expectations, the layer loops.

A generated module provides its derived pieces as numba C callbacks (``numba.cfunc``) with the
signatures below, and describes itself with five small arrays:

- ``dims`` (int64): ``DIMS_FIELDS``, i.e. order p, top cumulant p + 1, rows of ``mu``, largest
  K-derivative, number of activation parameters, the quadrature row whose tail is checked;
- ``qcount`` (int64, one entry per row of ``mu``): how many K-derivatives of that row the quadrature
  computes (0: none, the row has a closed form or is unused); the last row is <sigma'^2>;
- ``rule`` (float64): ``RULE_FIELDS``, the quadrature rule chosen and calibrated by derive, with
  ``gl`` (the two Gauss-Legendre rules, nodes then weights, concatenated) and ``breaks`` (the
  breakpoints of sigma in z).

Every function here takes the module's callbacks as numba first-class functions
(``types.FunctionType`` of those signatures), so it is compiled the first time it is used, once for
every module, and cached on disk.

Layout of ``mu`` (and ``err``, ``mag``): ``mu[a, i] = d^i/dK^i <sigma^(2a)>_K`` for a = 1..p+1 and
``mu[p+2, i] = d^i/dK^i <sigma'^2>_K`` (computed only when asked for with ``perp``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types

EPS = 2.220446049250313e-16
TRAPEZOID_MAX = 2**20  # most nodes on each side of the trapezoid rule (K up to ~1e10 for the registry)
REFINE, REFINEMENTS = 1e-13, 3  # the trapezoid halves h while its error estimate is above REFINE of the scale
INV_SQRT_2PI = 0.3989422804014327

DIMS_FIELDS = ("order", "top", "nrows", "max_i", "n_params", "qtop")
ORDER, TOP, NROWS, MAX_I, NP, QTOP = range(len(DIMS_FIELDS))
RULE_FIELDS = ("kind", "x_max", "h_max", "beta", "even", "n1", "n2", "fallback")
KIND, X_MAX, H_MAX, BETA, EVEN, N1, N2, FALLBACK = range(len(RULE_FIELDS))
FALLBACK_REL = 1e-13  # a closed form whose error estimate exceeds this of its value is checked by quadrature
KINDS = {"none": 0, "trapezoid": 1, "gauss-legendre": 2}

_F8, _B1 = types.float64, types.boolean
_V1, _V2 = types.float64[::1], types.float64[:, ::1]

# what a generated module provides (its callbacks are compiled for these signatures)
# (x, count, sqrt K, params, perp, values[node, row]) at z = sqrt(K) x for the first count nodes
INTEGRANDS = types.void(_V1, types.int64, _F8, _V1, _B1, _V2)
EXACT = types.void(_F8, _V1, _B1, _B1, _V2, _V2, _V2)  # (K, params, check, perp, mu, err, mag)
CUMULANTS = types.void(_V2, _V2)  # (mu, s)
STEP = types.void(_V2, _V2, _V1, _V1, _F8, _V2)  # (c, s, cb, cw, r, out)
SUSCEPTIBILITIES = types.void(_V2, _F8, _V1)  # (mu, C_W, chi)
DELTA_STEP = types.void(_V1, _V1, _F8, _F8, _V2, _V1)  # (state, chi, C_b, C_W, mu, next state)
VALUES = types.void(_V1, types.int64, _F8, _V1, _V1)  # (x, count, scale, params, out): sigma(scale x)
# (K_aa, K_bb, K_ab, D, S, theta, params, out): the closed-form pair expectations (pdlt.runtime.kernels)
PAIR = types.void(_F8, _F8, _F8, _F8, _F8, _F8, _V1, _V1)
# what the shared pdlt.generated.pair_metric provides: (m, mu_a, mu_b, s) and (c, s, cb, cw, r, out)
PAIR_CUMULANTS = types.void(_V1, _V2, _V2, _V1)
PAIR_STEP = types.void(_V2, _V1, _V1, _V1, _F8, _V2)
NTK_STEP = types.void(_V1, _V1, _V1, _F8, _V1)  # (t, e, hyper, r, out): the ntk sector's layer step

_OPTS = {"cache": True, "error_model": "numpy"}


@njit(**_OPTS)
def check_rows(a, rows, cols):
    if a.shape[0] < rows or a.shape[1] < cols:
        raise ValueError("array too small: use workspace() for mu, err, mag and s")


@njit(**_OPTS)
def _hermite_table(x, count, he):
    """he[j, i] = He_2i(x_j), the probabilists' Hermite polynomials of even degree (d^i/dK^i of the
    Gaussian weight is He_2i(x) / (2K)^i), for the first ``count`` nodes."""
    top = 2 * (he.shape[1] - 1)
    for j in range(count):
        p0, p1 = 1.0, x[j]
        he[j, 0] = 1.0
        for d in range(1, top):
            p0, p1 = p1, x[j] * p1 - d * p0
            if d % 2 == 1:
                he[j, (d + 1) // 2] = p1


@njit(**_OPTS)
def _accumulate(w, count, values, qcount, perp, he, target, scale, with_scale):
    """target[a, i] += sum_j w_j values[j, a] He_2i(x_j) over the first ``count`` nodes, in node order,
    for the rows and K-derivatives the quadrature computes (the last row, sigma'^2, only with ``perp``)."""
    last = qcount.shape[0] - 1
    for a in range(qcount.shape[0]):
        for i in range(qcount[a] if (perp or a != last) else 0):
            total, size = target[a, i], scale[a, i]
            for j in range(count):
                term = w[j] * values[j, a] * he[j, i]
                total += term
                size += abs(term)
            target[a, i] = total
            if with_scale:
                scale[a, i] = size


@njit(**_OPTS)
def _trapezoid_nodes(n, h, shift, even, x, w):
    """Nodes x = (k + shift/2) h and weights exp(-x^2/2) of the trapezoid (shift 0) or midpoint (1)
    rule on |x| <= n h, into x and w; for an even integrand the nodes x >= 0 only, the ones off 0
    counted twice. Returns how many."""
    if even:
        for k in range(n + 1):
            x[k] = (k + 0.5 * shift) * h
            w[k] = (1.0 if x[k] == 0.0 else 2.0) * math.exp(-0.5 * x[k] * x[k])
        return n + 1
    count = 2 * n + 1 - shift
    for j in range(count):
        x[j] = (j - n + 0.5 * shift) * h
        w[j] = math.exp(-0.5 * x[j] * x[j])
    return count


@njit(**_OPTS)
def _trapezoid(integrands, K, params, check, perp, dims, qcount, rule, mu, err, mag):
    """Trapezoid rule T(h) in x = z/sqrt(K), h = min(h_max, beta/sqrt(K)), |x| <= x_max.

    With ``check``, the midpoint rule M(h) on the same spacing is computed too and err gets
    |T(h) - M(h)|/2, which estimates T's error sharply for both the Gaussian-aliasing and the
    complex-singularity limited regimes, plus roundoff 8 eps * scale. Without, err gets roundoff.
    Where that estimate is above REFINE of the scale (high K-derivatives, whose Hermite factors
    He_2i have many oscillations, at small K where h is h_max), h is halved and the rule redone,
    up to REFINEMENTS times: the trapezoid's error falls like exp(-2 pi^2 / h^2) on halving.
    """
    nrows, cols, qtop = dims[NROWS], dims[MAX_I] + 1, dims[QTOP]
    sk = math.sqrt(K)
    h = min(rule[H_MAX], rule[BETA] / sk)
    even = rule[EVEN] != 0.0
    for refinement in range(REFINEMENTS + 1):
        if rule[X_MAX] / h > TRAPEZOID_MAX:  # K so large that the spacing would need more nodes than memory holds:
            mu[:, :] = math.nan  # not resolved (callers refuse with the reason), rather than allocating gigabytes
            err[:, :] = math.inf
            return
        n = int(math.ceil(rule[X_MAX] / h))
        acc = np.zeros((nrows, cols))
        accm = np.zeros((nrows, cols))
        scale = np.zeros((nrows, cols))
        he = np.empty((2 * n + 1, cols))
        x = np.empty(2 * n + 1)
        w = np.empty(2 * n + 1)
        values = np.zeros((2 * n + 1, nrows))
        edge = 0.0
        for shift in range(2 if check else 1):
            count = _trapezoid_nodes(n, h, shift, even, x, w)
            integrands(x, count, sk, params, perp, values)
            _hermite_table(x, count, he)
            _accumulate(w, count, values, qcount, perp, he, acc if shift == 0 else accm, scale, shift == 0)
            if shift == 0:
                for j in (0, count - 1):
                    if j == count - 1 or not even:  # the ends x = -n h and x = n h
                        tail = w[j] * abs(values[j, qtop])
                        if not tail <= edge:  # also catches inf and nan
                            edge = tail
        coarse = False
        if check and refinement < REFINEMENTS:
            for a in range(nrows):
                for i in range(qcount[a] if (perp or a != nrows - 1) else 0):
                    if 0.5 * abs(acc[a, i] - accm[a, i]) > REFINE * scale[a, i]:
                        coarse = True
        if not coarse:
            break
        h *= 0.5
    norm = h * INV_SQRT_2PI
    bad = not (edge * norm <= 1e-14 * max(1.0, abs(acc[qtop, 0]) * norm))
    for a in range(nrows):
        for i in range(qcount[a] if (perp or a != nrows - 1) else 0):
            f = 1.0 / (2.0 * K) ** i
            sc = scale[a, i] * norm * f
            mu[a, i] = acc[a, i] * norm * f
            mag[a, i] = sc
            if bad or not math.isfinite(mu[a, i]):
                err[a, i] = math.inf
            else:
                diff = 0.5 * abs(acc[a, i] - accm[a, i]) * norm * f if check else 0.0
                err[a, i] = diff + 8.0 * EPS * sc


@njit(**_OPTS)
def _gauss_legendre_piece(integrands, lo, hi, sk, params, perp, xs, ws, qcount, he, x, w, values, acc, scale):
    """Gauss-Legendre rule (xs, ws) on [lo, hi] in x = z/sqrt(K)."""
    half = 0.5 * (hi - lo)
    mid = 0.5 * (hi + lo)
    for k in range(xs.shape[0]):
        x[k] = mid + half * xs[k]
        w[k] = half * ws[k] * math.exp(-0.5 * x[k] * x[k])
    integrands(x, xs.shape[0], sk, params, perp, values)
    _hermite_table(x, xs.shape[0], he)
    _accumulate(w, xs.shape[0], values, qcount, perp, he, acc, scale, True)


@njit(**_OPTS)
def _gauss_legendre(integrands, K, params, check, perp, dims, qcount, rule, gl, breaks, mu, err, mag):
    """Gauss-Legendre on each piece between breakpoints, |x| <= x_max, two degrees compared.

    With ``check`` err gets |Q_{n1} - Q_{n2}| (a conservative estimate for the finer rule) plus
    roundoff 8 eps * scale; without, roundoff only. The breakpoints in x = z/sqrt(K) move with K.
    """
    nrows, cols, qtop = dims[NROWS], dims[MAX_I] + 1, dims[QTOP]
    n1, n2 = int(rule[N1]), int(rule[N2])
    x1, w1, x2, w2 = gl[:n1], gl[n1 : 2 * n1], gl[2 * n1 : 2 * n1 + n2], gl[2 * n1 + n2 : 2 * n1 + 2 * n2]
    sk = math.sqrt(K)
    xm = rule[X_MAX]
    acc1 = np.zeros((nrows, cols))
    acc2 = np.zeros((nrows, cols))
    scale = np.zeros((nrows, cols))
    scratch = np.zeros((nrows, cols))
    size = max(n1, n2)
    he = np.empty((size, cols))
    x = np.empty(size)
    w = np.empty(size)
    values = np.zeros((size, nrows))
    lo = -xm
    for j in range(breaks.shape[0] + 1):
        hi = xm if j == breaks.shape[0] else min(xm, max(-xm, breaks[j] / sk))
        if hi > lo:
            if check:
                _gauss_legendre_piece(integrands, lo, hi, sk, params, perp, x1, w1, qcount, he, x, w, values, acc1,
                                      scratch)  # fmt: skip
            _gauss_legendre_piece(integrands, lo, hi, sk, params, perp, x2, w2, qcount, he, x, w, values, acc2, scale)
        lo = max(lo, hi)
    for a in range(nrows):
        for i in range(qcount[a] if (perp or a != nrows - 1) else 0):
            f = 1.0 / (2.0 * K) ** i
            mu[a, i] = acc2[a, i] * INV_SQRT_2PI * f
            if not math.isfinite(mu[a, i]):
                err[a, i] = math.inf
            else:
                d = abs(acc2[a, i] - acc1[a, i]) * INV_SQRT_2PI if check else 0.0
                err[a, i] = (d + 8.0 * EPS * scale[a, i] * INV_SQRT_2PI) * f
            mag[a, i] = scale[a, i] * INV_SQRT_2PI * f
    tail = 0.0
    for side in (1.0, -1.0):
        x[0] = side * xm
        integrands(x, 1, sk, params, True, values)
        tail += abs(values[0, qtop])
    if not (tail * math.exp(-0.5 * xm * xm) <= 1e-14 * max(1.0, abs(acc2[qtop, 0]))):
        err[:, :] = math.inf


@njit(**_OPTS)
def moments_unchecked(exact, integrands, dims, qcount, rule, gl, breaks, K, params, check, perp, mu, err, mag):
    """``moments`` without the shape checks; the <sigma'^2> row only with ``perp`` (the single-input
    flow does not need it, the susceptibilities do)."""
    err[:, :] = 0.0
    mag[:, :] = 0.0
    exact(K, params, check, perp, mu, err, mag)
    if check:
        for a in range(err.shape[0]):
            for i in range(err.shape[1]):
                err[a, i] = 8.0 * EPS * mag[a, i]
    kind = int(rule[KIND])
    if kind == 1:
        _trapezoid(integrands, K, params, check, perp, dims, qcount, rule, mu, err, mag)
    elif kind == 2:
        _gauss_legendre(integrands, K, params, check, perp, dims, qcount, rule, gl, breaks, mu, err, mag)
    if check and rule[FALLBACK] > 0.0:
        _fallback(integrands, dims, qcount, rule, gl, breaks, K, params, perp, mu, err, mag)


@njit(**_OPTS)
def _fallback(integrands, dims, qcount, rule, gl, breaks, K, params, perp, mu, err, mag):
    """Where a closed form's error estimate is above FALLBACK_REL of its value (it cancels), Gauss-Legendre on
    the pieces of sigma recomputes it, and whichever has the smaller error estimate is kept."""
    nrows, cols = dims[NROWS], dims[MAX_I] + 1
    rows = nrows if perp else nrows - 1
    bad = False
    for a in range(1, rows):
        for i in range(qcount[a], cols):
            if err[a, i] > FALLBACK_REL * abs(mu[a, i]):
                bad = True
    if not bad:
        return
    every = np.full(nrows, cols, dtype=np.int64)
    every[0] = 0
    whole = dims.copy()
    whole[QTOP] = dims[TOP]  # the tail check on the highest power of sigma
    mu2, err2, mag2 = np.zeros((nrows, cols)), np.zeros((nrows, cols)), np.zeros((nrows, cols))
    _gauss_legendre(integrands, K, params, True, perp, whole, every, rule, gl, breaks, mu2, err2, mag2)
    for a in range(1, rows):
        for i in range(qcount[a], cols):
            if err[a, i] > FALLBACK_REL * abs(mu[a, i]) and err2[a, i] < err[a, i]:
                mu[a, i], err[a, i], mag[a, i] = mu2[a, i], err2[a, i], mag2[a, i]


@njit(**_OPTS)
def _check_params(params, dims):
    if params.shape[0] < max(dims[NP], 1):
        raise ValueError("params needs one value per activation parameter (PARAMS)")


@njit(**_OPTS)
def moments(exact, integrands, dims, qcount, rule, gl, breaks, K, params, check, perp, mu, err, mag):
    """mu[a, i] = d^i/dK^i <sigma^(2a)>_K; err[a, i] estimates its absolute error and mag[a, i]
    the size of what was summed (the integral of |integrand| for quadrature, the sum of the
    absolute values of the closed form's terms for exact rules); with ``check`` only."""
    for a in (mu, err, mag):
        check_rows(a, dims[NROWS], dims[MAX_I] + 1)
    _check_params(params, dims)
    moments_unchecked(exact, integrands, dims, qcount, rule, gl, breaks, K, params, check, perp, mu, err, mag)


@njit(**_OPTS)
def cumulants(cumulants_fn, dims, mu, s):
    """s[m, j] = d^j/dK^j of the m-th cumulant of sigma(z)^2 under z ~ N(0, K)."""
    check_rows(mu, dims[TOP] + 1, dims[MAX_I] + 1)
    check_rows(s, dims[TOP] + 1, dims[MAX_I] + 1)
    cumulants_fn(mu, s)


@njit(**_OPTS)
def check_hyper(cb, cw, order):
    if cb.shape[0] < order + 1 or cw.shape[0] < order + 1:
        raise ValueError("cb and cw need ORDER + 1 entries (the 1/n^k parts, k = 0..ORDER)")


@njit(**_OPTS)
def step(step_fn, dims, c, s, cb, cw, r, out):
    """One layer: c (layer l) -> out (layer l+1); cb[k], cw[k] are the 1/n_l^k parts of C_b, C_W
    (book 5.138-5.139) and r = n_l / n_{l-1}."""
    check_rows(c, dims[TOP] + 1, dims[ORDER] + 1)
    check_rows(out, dims[TOP] + 1, dims[ORDER] + 1)
    check_rows(s, dims[TOP] + 1, dims[MAX_I] + 1)
    check_hyper(cb, cw, dims[ORDER])
    step_fn(c, s, cb, cw, r, out)


@njit(**_OPTS)
def worst_relative_error(mu, err, mag, qcount, top):
    """The largest relative error estimate of the moments mu[a, i], a = 1..top (infinite if one is not finite):
    a quadrature's relative to the integral of |integrand|, a closed form's to its value, so that one which
    cancels (hard tanh's <sigma^6> at large K) is not passed silently."""
    worst = 0.0
    for a in range(1, top + 1):
        for i in range(mu.shape[1]):
            if err[a, i] > 0.0:
                size = mag[a, i] if i < qcount[a] else abs(mu[a, i])
                worst = max(worst, err[a, i] / max(size, 1e-300))
            if not math.isfinite(mu[a, i]):
                worst = math.inf
    return worst


@njit(**_OPTS)
def flow_coefficients(
    exact, integrands, cumulants_fn, step_fn, dims, qcount, rule, gl, breaks, widths, cb, cw, input_norm2, params,
    check, coeffs, errors,
):  # fmt: skip
    """Fill coeffs[l-1] with the state of layer l = 1..depth; widths[j] = n_{j+1}.

    errors[l-1] is the largest error estimate of the expectations used to reach layer l, relative
    to the integral of the integrand's absolute value for quadrature and to the value for a closed
    form (``check`` makes it an error estimate; without it only divergence is caught).
    """
    top, order, nrows, cols = dims[TOP], dims[ORDER], dims[NROWS], dims[MAX_I] + 1
    depth = coeffs.shape[0]
    if coeffs.shape[1] < top + 1 or coeffs.shape[2] < order + 1:
        raise ValueError("coeffs must have shape (depth, ORDER + 2, ORDER + 1)")
    if errors.shape[0] < depth or widths.shape[0] < depth - 1:
        raise ValueError("errors needs depth entries and widths depth - 1")
    check_hyper(cb, cw, order)
    _check_params(params, dims)
    mu = np.zeros((nrows, cols))
    err = np.zeros((nrows, cols))
    mag = np.zeros((nrows, cols))
    s = np.zeros((nrows, cols))
    coeffs[:, :, :] = 0.0
    errors[:] = 0.0
    coeffs[0, 1, 0] = cb[0] + cw[0] * input_norm2
    for l in range(1, depth):
        K = coeffs[l - 1, 1, 0]
        if not K > 1e-100:  # the kernel vanished (1/K^i would overflow) or went bad: flag with nan
            errors[l] = math.nan
            break
        moments_unchecked(exact, integrands, dims, qcount, rule, gl, breaks, K, params, check, False, mu, err, mag)
        errors[l] = worst_relative_error(mu, err, mag, qcount, top)
        cumulants_fn(mu, s)
        r = 1.0 if l == 1 else widths[l - 1] / widths[l - 2]
        step_fn(coeffs[l - 1], s, cb, cw, r, coeffs[l])


@njit(**_OPTS)
def susceptibilities(exact, integrands, chi_fn, dims, qcount, rule, gl, breaks, K, C_W, params, out):
    """out = (chi_parallel, chi_perp, h) at kernel K (book 5.50-5.52), infinite width."""
    if out.shape[0] < 3:
        raise ValueError("out needs 3 entries")
    _check_params(params, dims)
    mu = np.zeros((dims[NROWS], dims[MAX_I] + 1))
    err = np.zeros_like(mu)
    mag = np.zeros_like(mu)
    moments_unchecked(exact, integrands, dims, qcount, rule, gl, breaks, K, params, False, True, mu, err, mag)
    chi_fn(mu, C_W, out)


@njit(**_OPTS)
def two_input_coefficients(
    exact, integrands, chi_fn, delta_fn, dims, qcount, rule, gl, breaks, C_b, C_W, K00, dK1, ddK2, params, out
):
    """The delta expansion of two nearby inputs, book (5.46)-(5.48), layer by layer:
    out[l-1] = (K00, dK[1], ddK[2], chi_parallel, chi_perp, h, ddK[0]) with the susceptibilities at
    K00(l); ddK[0] = K_[0] - K00 is the second-order shift of the gamma-basis mean (0 at layer 1)."""
    if out.shape[1] < 7:
        raise ValueError("out must have shape (depth, 7)")
    _check_params(params, dims)
    chi = np.zeros(3)
    mu = np.zeros((dims[NROWS], dims[MAX_I] + 1))
    err = np.zeros_like(mu)
    mag = np.zeros_like(mu)
    state = np.zeros(4)  # K00, dK[1], ddK[2], ddK[0]
    following = np.zeros(4)
    out[0, 0], out[0, 1], out[0, 2], out[0, 6] = K00, dK1, ddK2, 0.0
    for l in range(out.shape[0]):
        K = out[l, 0]
        if not K > 1e-100:
            out[l:, :] = math.nan
            return
        moments_unchecked(exact, integrands, dims, qcount, rule, gl, breaks, K, params, False, True, mu, err, mag)
        chi_fn(mu, C_W, chi)
        out[l, 3], out[l, 4], out[l, 5] = chi[0], chi[1], chi[2]
        if l + 1 < out.shape[0]:
            state[0], state[1], state[2], state[3] = out[l, 0], out[l, 1], out[l, 2], out[l, 6]
            delta_fn(state, chi, C_b, C_W, mu, following)
            out[l + 1, 0], out[l + 1, 1], out[l + 1, 2], out[l + 1, 6] = (
                following[0],
                following[1],
                following[2],
                following[3],
            )
