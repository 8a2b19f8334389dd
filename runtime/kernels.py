"""N x N kernel matrices at infinite width: the NNGP kernel K and the NTK Theta (book ch. 4-5 and 8, DESIGN §9).

For inputs x_1..x_N the infinite-width recursions are, layer by layer (l = 1..L-1),

    K_ab(l+1)     = C_b(l+1) + C_W(l+1) <sigma_a sigma_b>
    Theta_ab(l+1) = lambda_b(l+1) + lambda_W(l+1) <sigma_a sigma_b> + C_W(l+1) <sigma'_a sigma'_b> Theta_ab(l)

with K_ab(1) = C_b(1) + C_W(1) x_a.x_b / n_0 and Theta_ab(1) = lambda_b(1) + lambda_W(1) x_a.x_b / n_0, the
expectations over (u_a, u_b) ~ N(0, [[K_aa, K_ab], [K_ab, K_bb]]) of layer l.

The diagonal K_aa, Theta_aa is the single-input flow (the module's own certified expectations), once per
distinct input norm. Then every pair runs through all layers on its own (numba ``prange``). A pair carries
K_ab, Theta_ab, its distance D = K_aa + K_bb - 2 K_ab and its sum S = K_aa + K_bb + 2 K_ab, with

    D(l+1) = C_W <(sigma_a - sigma_b)^2>,   S(l+1) = 4 C_b + C_W <(sigma_a + sigma_b)^2>,

evaluated without subtracting nearly equal numbers; the angle theta = 2 atan2(sqrt(1 - rho), sqrt(1 + rho))
comes from D and S, so nearly equal and nearly antiparallel inputs keep their relative accuracy.

The pair expectations are either the module's closed forms (``PAIR``, derived in ``pdlt.derive.pairs``)
or the Mehler series: with f_k(K) = E[sigma(sqrt(K) X) h_k(X)] (h_k = He_k / sqrt(k!), X ~ N(0, 1)),

    <sigma_a sigma_b> = sum_k f_k(K_aa) f_k(K_bb) rho^k,
    <sigma'_a sigma'_b> = sum_k (k+1) f_{k+1}(K_aa) f_{k+1}(K_bb) rho^k / sqrt(K_aa K_bb)   (Stein),

truncated after M terms, where M (per layer) is the smallest power of two for which the Parseval tails
<sigma^2> - sum_{k<M} f_k^2 and <sigma'^2> - sum_{k<M-1} (k+1) f_{k+1}^2 / K are below the tolerance
relative to <sigma^2> and <sigma'^2>: by Cauchy-Schwarz they bound the truncation error of every pair.
The f_k are Gauss-Hermite sums with 3M + 48 nodes; their change from 2M + 32 nodes enters the bound too.
"""

from __future__ import annotations

import inspect
import math
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, NamedTuple

import numpy as np
from numba import njit, prange

from . import MANY_MAX, numerics
from .errors import FlowError

_OPTS = {"cache": True, "error_model": "numpy"}
M_START, M_MAX = 32, 2048  # terms of the Mehler series: first try, most allowed
KINKED_MAX = 256  # most terms for a kinked sigma (its pairs near coincidence are refused, not summed for ever)
TENSORS = ("K", "Theta", "G", "H1", "V", "A", "B", "D", "F", "P", "Q", "R", "S", "T", "U")
FOUR = ("H1", "V", "A", "B", "D", "F", "P", "Q", "R", "S", "T", "U")  # the NTK sector's tensors


@njit(**_OPTS)
def _diagonals(
    exact, integrands, dims, qcount, rule, gl, breaks, k1, t1, cb, cw, lb, lw, params, perp, K, T, s2, d2, err
):
    """K[l, i], T[l, i]: the single-input kernel and NTK of layer l + 1 from k1, t1 (layer 1); s2[l, i] and
    d2[l, i]: <sigma^2> and <sigma'^2> at K[l, i] (l < L - 1); err[l, i] their largest relative error estimate."""
    L, N = K.shape
    nrows = dims[numerics.NROWS]
    mu = np.zeros((nrows, dims[numerics.MAX_I] + 1))
    e, m = np.zeros_like(mu), np.zeros_like(mu)
    last = nrows - 1
    for i in range(N):
        K[0, i], T[0, i] = k1[i], t1[i]
    for l in range(L - 1):
        for i in range(N):
            if not (0.0 < K[l, i] < 1e300):  # overflowed or collapsed: no expectation to take; refused by the caller
                K[l + 1 :, i], T[l + 1 :, i], err[l:, i] = math.nan, math.nan, math.inf
                continue
            numerics.moments_unchecked(
                exact, integrands, dims, qcount, rule, gl, breaks, K[l, i], params, True, perp, mu, e, m
            )
            s2[l, i] = mu[1, 0]
            rel = e[1, 0] / abs(mu[1, 0])
            d = math.nan
            if perp:
                d = mu[last, 0]
                rel = max(rel, e[last, 0] / abs(d))
            d2[l, i], err[l, i] = d, rel
            K[l + 1, i] = cb[l + 1] + cw[l + 1] * mu[1, 0]
            T[l + 1, i] = lb[l + 1] + lw[l + 1] * mu[1, 0] + cw[l + 1] * d * T[l, i]


@njit(parallel=True, **_OPTS)
def _hermite_coefficients(values, x, sw, Ks, params, out):
    """out[i, k] = E[sigma(sqrt(Ks[i]) X) h_k(X)] for k < out.shape[1] by the Gauss-Hermite rule with nodes x
    and weights sw^2 (the normalised h_k are run on sqrt(weight) h_k, which neither overflows nor underflows)."""
    Q = x.shape[0]
    for i in prange(Ks.shape[0]):
        v = np.empty(Q)
        values(x, Q, math.sqrt(Ks[i]), params, v)
        for j in range(Q):
            v[j] = v[j] * sw[j] if sw[j] > 0.0 else 0.0
        project_hermite(v, x, sw, out[i])


@njit(**_OPTS)
def project_hermite(v, x, sw, out):
    """out[k] = sum_j v[j] sw[j] h_k(x[j]): the normalised Hermite coefficients of f from v = f(x) sw (the h_k run on
    sqrt(weight) h_k, which neither overflows nor underflows)."""
    Q, M = x.shape[0], out.shape[0]
    h0, h1 = sw.copy(), x * sw
    out[0] = np.dot(v, h0)
    if M > 1:
        out[1] = np.dot(v, h1)
    for k in range(1, M - 1):
        a, b = 1.0 / math.sqrt(k + 1.0), math.sqrt(k / (k + 1.0))
        for j in range(Q):
            h0[j], h1[j] = h1[j], a * x[j] * h1[j] - b * h0[j]
        out[k + 1] = np.dot(v, h1)


@njit(**_OPTS)
def _angle(ka, kb, dist, total):
    """(theta, rho, 1 - |rho|) of a pair from its diagonal, distance and sum, without cancellation."""
    sa, sb = math.sqrt(ka), math.sqrt(kb)
    s = sa * sb
    r2 = (ka - kb) ** 2 / (sa + sb) ** 2  # (sqrt K_aa - sqrt K_bb)^2
    wm = max((dist - r2) / (2.0 * s), 0.0)  # 1 - rho
    wp = max((total - r2) / (2.0 * s), 0.0)  # 1 + rho
    theta = 2.0 * math.atan2(math.sqrt(wm), math.sqrt(wp))
    if wm <= wp:
        return theta, 1.0 - wm, min(wm, 1.0)
    return theta, wp - 1.0, min(wp, 1.0)


@njit(**_OPTS)
def _mehler(f, g, M, rho, q, s, ta, tb, eta, with_theta, out):
    """out = <sigma_a sigma_b>, <sigma'_a sigma'_b>, <(sigma_a - sigma_b)^2>, <(sigma_a + sigma_b)^2> from the
    Hermite coefficients f, g of the two inputs, M terms; q = 1 - |rho|. Each term of the last two is written
    as (f_k -+ e g_k)^2 +- 2 e f_k g_k (1 - |rho|^k), e = sign(rho)^k, with 1 - |rho|^k by recurrence.

    ta, tb: [k, 0] = sum_{j >= k} f_j^2 and [k, 1] = sum_{j >= k} (j+1) f_{j+1}^2 / K (each with the Parseval
    tail beyond M), relative ([k, 2], [k, 3]) to <sigma^2> and <sigma'^2>. Every 8 terms the sum stops once
    |rho|^k bounds what is left below ``eta`` of those sizes (Cauchy-Schwarz); the rest of the distance
    and sum is then the exact suffix sums f^2 + g^2. Returns that bound where the sums stopped (early, or
    after all M terms): this pair's truncation error, relative to those sizes."""
    a = abs(rho)
    flip = rho < 0.0
    sig, dsig, minus, plus = 0.0, 0.0, 0.0, 0.0
    pk, tk, ek = 1.0, 0.0, 1.0
    stop = M
    for k in range(M):
        if k % 8 == 0 and k > 0:
            m = abs(pk)
            if m * math.sqrt(ta[k, 2] * tb[k, 2]) <= eta and (
                not with_theta or m * math.sqrt(ta[k, 3] * tb[k, 3]) <= eta
            ):
                rest = ta[k, 0] + tb[k, 0]
                minus += rest
                plus += rest
                stop = k
                break
        fk, gk = f[k], g[k]
        fg = fk * gk
        sig += fg * pk
        if k + 1 < M:
            dsig += (k + 1.0) * (f[k + 1] * g[k + 1]) * pk
        d, p = fk - ek * gk, fk + ek * gk
        c2 = 2.0 * ek * fg * tk
        minus += d * d + c2
        plus += p * p - c2
        pk *= rho
        tk = q + a * tk
        if flip:
            ek = -ek
    out[0], out[1], out[2], out[3] = sig, dsig / s, minus, plus
    m = abs(rho) ** stop  # what is left of the two sums, relative to sqrt(<sigma_a^2><sigma_b^2>) (and of sigma')
    rem = m * math.sqrt(ta[stop, 2] * tb[stop, 2])
    if with_theta:
        rem = max(rem, m * math.sqrt(ta[stop, 3] * tb[stop, 3]))
    return rem


# The arrays every pair reads, passed to numba as one tuple (see Plan, whose fields from K on they are):
# (K, T, cls, coef, Ms, tails, eta, norms, x, cb, cw, lb, lw, params, store)


@njit(**_OPTS)
def _pair_start(data, i, j):
    """Layer 1 of pair (i, j): (K_ab, D, S, Theta_ab), the distance and sum from x itself when they are small."""
    x, norms, cb, cw, lb, lw = data[8], data[7], data[9], data[10], data[11], data[12]
    n0 = x.shape[1]
    g_ab = 0.0
    for c in range(n0):
        g_ab += x[i, c] * x[j, c]
    g_ab /= n0
    gsum = norms[i] + norms[j]
    dist, total = gsum - 2.0 * g_ab, gsum + 2.0 * g_ab
    if dist < 1e-3 * gsum or total < 1e-3 * gsum:  # nearly equal or antiparallel: from x itself
        dist, total = 0.0, 0.0
        for c in range(n0):
            dist += (x[i, c] - x[j, c]) ** 2
            total += (x[i, c] + x[j, c]) ** 2
        dist, total = dist / n0, total / n0
    return cb[0] + cw[0] * g_ab, cw[0] * dist, 4.0 * cb[0] + cw[0] * total, lb[0] + lw[0] * g_ab


@njit(**_OPTS)
def _pair_advance(pair, closed, data, l, a, b, kab, dist, total, tab, with_theta, buf):
    """One layer l -> l + 1 of a pair of norm classes a, b: (K_ab, D, S, Theta_ab) of layer l + 1, and the truncation
    bound of its Mehler sums (0 for a closed form)."""
    K, coef, Ms, tails, eta = data[0], data[3], data[4], data[5], data[6]
    cb, cw, lb, lw, params = data[9], data[10], data[11], data[12], data[13]
    ka, kb = K[l, a], K[l, b]
    theta, rho, q = _angle(ka, kb, dist, total)
    rem = 0.0
    if closed:
        pair(ka, kb, kab, dist, total, theta, params, buf)
    else:
        root = math.sqrt(ka * kb)
        rem = _mehler(coef[l, a], coef[l, b], Ms[l], rho, q, root, tails[l, a], tails[l, b], eta[l], with_theta, buf)
    kab, dist = cb[l + 1] + cw[l + 1] * buf[0], cw[l + 1] * buf[2]
    total = 4.0 * cb[l + 1] + cw[l + 1] * buf[3]
    tab = lb[l + 1] + lw[l + 1] * buf[0] + cw[l + 1] * buf[1] * tab
    return kab, dist, total, tab, rem


@njit(**_OPTS)
def _pair_through(pair, closed, data, i, j, Kout, Tout, oi, oj, mirror, with_theta, buf, err):
    """Run pair (i, j) from layer 1 through every layer, storing K_ij (and Theta_ij) at [slot, oi, oj] (and at
    [slot, oj, oi] with ``mirror``) for the layers ``store`` gives a slot; err[l] keeps the largest truncation
    bound of the update from layer l + 1. Independent of how pairs are grouped into blocks (the dot product
    runs in a fixed order)."""
    K, T, cls, store = data[0], data[1], data[2], data[14]
    L = K.shape[0]
    kab, dist, total, tab = _pair_start(data, i, j)
    same = dist == 0.0  # the same input twice: the single-input flow, exactly, at every layer
    for l in range(L):
        if same:
            kab, tab = K[l, cls[i]], T[l, cls[i]]
        s = store[l]
        if s >= 0:
            Kout[s, oi, oj] = kab
            if with_theta:
                Tout[s, oi, oj] = tab
            if mirror:
                Kout[s, oj, oi] = kab
                if with_theta:
                    Tout[s, oj, oi] = tab
        if l == L - 1 or same:
            continue
        kab, dist, total, tab, rem = _pair_advance(pair, closed, data, l, cls[i], cls[j], kab, dist, total, tab,
                                                   with_theta, buf)  # fmt: skip
        err[l] = max(err[l], rem)


@njit(parallel=True, **_OPTS)
def _pairs(pair, closed, data, r0, r1, Kout, Tout, with_theta, err):
    """Rows r and N - 1 - r for r0 <= r < r1 (so that every task has about N pairs), every j > row; err[row, l]
    the largest truncation bound of the row's pairs."""
    N = Kout.shape[1]
    for r in prange(r0, r1):
        buf = np.zeros(4)
        for j in range(r + 1, N):
            _pair_through(pair, closed, data, r, j, Kout, Tout, r, j, True, with_theta, buf, err[r])
        i = N - 1 - r
        if i != r:
            for j in range(i + 1, N):
                _pair_through(pair, closed, data, i, j, Kout, Tout, i, j, True, with_theta, buf, err[i])


@njit(parallel=True, **_OPTS)
def _block(pair, closed, data, r0, r1, c0, c1, Kb, Tb, with_theta, err):
    """The block of rows r0..r1-1 and columns c0..c1-1 (diagonal entries from the single-input flows); err as
    in ``_pairs``, per row of the block."""
    K, T, cls = data[0], data[1], data[2]
    store = data[14]
    for i in prange(r0, r1):
        buf = np.zeros(4)
        for j in range(c0, c1):
            if i != j:  # always as (smaller, larger), as the triangle does
                lo, hi = min(i, j), max(i, j)
                _pair_through(pair, closed, data, lo, hi, Kb, Tb, i - r0, j - c0, False, with_theta, buf, err[i - r0])
                continue
            for l in range(K.shape[0]):
                if store[l] >= 0:
                    Kb[store[l], i - r0, j - c0] = K[l, cls[i]]
                    if with_theta:
                        Tb[store[l], i - r0, j - c0] = T[l, cls[i]]


class Plan(NamedTuple):
    """Everything a block of pairs needs once the diagonal flows are known (picklable, for Dask workers)."""

    module: str  # import name of the generated module
    path: str | None  # its file, for modules outside the import path (the user cache)
    closed: bool
    K: np.ndarray  # [layer - 1, norm class]
    T: np.ndarray
    cls: np.ndarray  # norm class of every input
    coef: np.ndarray  # Hermite coefficients [layer - 1, class, k]
    Ms: np.ndarray  # Mehler terms per layer
    tails: np.ndarray  # suffix sums of the Hermite coefficients [layer - 1, class, k, 4] (see _mehler)
    eta: np.ndarray  # relative size below which a Mehler sum stops early, per layer
    norms: np.ndarray  # |x|^2 / n_0
    x: np.ndarray
    cb: np.ndarray
    cw: np.ndarray
    lb: np.ndarray
    lw: np.ndarray
    params: np.ndarray
    store: np.ndarray  # slot of each layer (-1: not stored)
    n_store: int
    theta: bool


def plan_data(plan: Plan) -> tuple:
    """The tuple of arrays the numba pair loops read (the fields of Plan from K to store)."""
    return tuple(plan[plan._fields.index("K") : plan._fields.index("store") + 1])


def plan_pieces(plan: Plan):
    """The module's numba pieces, imported in this process (a Dask worker imports it on first use)."""
    import importlib
    import importlib.util

    mod = sys.modules.get(plan.module)
    if mod is None:
        try:
            mod = importlib.import_module(plan.module)
        except ImportError:
            if plan.path is None:
                raise
            spec = importlib.util.spec_from_file_location(plan.module, plan.path)
            mod = importlib.util.module_from_spec(spec)
            sys.modules[plan.module] = mod
            spec.loader.exec_module(mod)
    return mod._MODULE.pieces


def compute_block(plan: Plan, r0: int, r1: int, c0: int, c1: int):
    """K (and Theta) of rows r0..r1-1 and columns c0..c1-1 at the stored layers, (stored, rows, columns), and the
    largest truncation bound of the block's Mehler sums per layer."""
    pieces = plan_pieces(plan)
    Kb = np.zeros((plan.n_store, r1 - r0, c1 - c0))
    Tb = np.zeros_like(Kb) if plan.theta else np.zeros((1, 1, 1))
    err = np.zeros((r1 - r0, plan.K.shape[0]))
    _block(pieces.pair, plan.closed, plan_data(plan), r0, r1, c0, c1, Kb, Tb, plan.theta, err)
    return Kb, (Tb if plan.theta else None), np.max(err, axis=0, initial=0.0)


def compute_triangle(plan: Plan, progress: Callable | None):
    """Every pair in this process, balanced over the cores; the same numbers as ``compute_block``."""
    pieces = plan_pieces(plan)
    N = plan.x.shape[0]
    Kout = np.zeros((plan.n_store, N, N))
    Tout = np.zeros_like(Kout) if plan.theta else np.zeros((1, 1, 1))
    idx = np.arange(N)
    for l in range(plan.K.shape[0]):
        if plan.store[l] >= 0:
            Kout[plan.store[l], idx, idx] = plan.K[l, plan.cls]
            if plan.theta:
                Tout[plan.store[l], idx, idx] = plan.T[l, plan.cls]
    rows = (N + 1) // 2
    data = plan_data(plan)
    chunks = max(1, min(rows, 50))
    edges = np.linspace(0, rows, chunks + 1).astype(np.int64)
    err = np.zeros((N, plan.K.shape[0]))
    for c in range(chunks):
        _pairs(pieces.pair, plan.closed, data, int(edges[c]), int(edges[c + 1]), Kout, Tout, plan.theta, err)
        if progress is not None:
            progress(int(edges[c + 1]), rows)
    return Kout, (Tout if plan.theta else None), np.max(err, axis=0)


@dataclass
class KernelMatrices:
    """Infinite-width kernel matrices of one network for N inputs.

    ``layers``: the stored layer numbers (1-based); ``K[s]``, ``Theta[s]`` (N, N): the NNGP kernel and NTK at
    layer ``layers[s]`` (``Theta`` is None when not asked for). ``method``: how the pair expectations were
    computed ("closed", "hermite", or "pair flow": two inputs with four-index tensors, where K and Theta come with
    them from the two-input NTK flow); ``terms[l-1]``: Mehler terms used at layer l (0: closed form or pair flow);
    ``error[l-1]``: the sum over layers 2..l of the largest relative error bound of the expectations each
    update used (certified single-input expectations, the Parseval tail and quadrature error of the Mehler
    series): the accumulated error where the recursion does not amplify errors (susceptibilities <= 1).
    ``G[s]`` (order + 1, N, N), when asked for: the finite-width mean kernel at layer ``layers[s]``,
    E[G_ab] = sum_k G[s, k, a, b] / n_(l-1)^k with G[s, 0] = K[s] (``mean_kernel`` sums it at given widths);
    ``G_error[l-1]`` is its accumulated relative error bound, like ``error``.
    ``V``, ``A``, ``B``, ``D``, ``F``, ``P``, ``Q``, ``R``, ``S``, ``T``, ``U`` (stored layers, N, N, N, N), when asked
    for (up to MANY_MAX inputs; on three or more, R, S, T, U for smooth activations only, the expectations over
    three and four inputs by Hermite series across a split into pairs, ``pdlt.runtime.ntk_mehler``): the coefficients of
    1/n_(l-1) of the four-point vertex, the NTK variance (8.82),
    the NTK-preactivation cross-correlation (8.67), the dNTK-preactivation cross-correlation (11.30) and the ddNTK
    means (∞.171, ∞.173), axes in the book's subscript order; ``H1`` (stored layers, N, N): the coefficient of
    1/n_(l-1) of the NTK mean, E[H_ab] = Theta_ab + H1_ab / n_(l-1) + O(1/n^2) (the book leaves it uncomputed);
    ``four_error[l-1]`` their accumulated error bound."""

    activation: str
    layers: np.ndarray
    K: Any  # numpy arrays, or zarr arrays when written to a .zarr store
    Theta: Any
    method: str
    terms: np.ndarray
    error: np.ndarray
    hyper: dict = field(default_factory=dict)
    G: Any = None
    G_error: Any = None
    four: dict = field(default_factory=dict)  # name -> (stored layers, N, N, N, N), H1 (stored layers, N, N)
    four_error: Any = None

    def __getattr__(self, name):
        if name in FOUR:
            return self.__dict__.get("four", {}).get(name)
        raise AttributeError(name)

    @property
    def order(self) -> int | None:
        """The order in 1/n of G (None without G)."""
        return None if self.G is None else self.G.shape[1] - 1

    def mean_kernel(self, width=None, widths=None) -> np.ndarray:
        """E[G_ab] at the stored layers for hidden widths ``width`` (all alike) or ``widths`` (n_1..n_(L-1)):
        sum_k G[k] / n_(l-1)^k, truncated at ``order`` (layer 1 is exactly K)."""
        if self.G is None:
            raise FlowError("mean_kernel needs G: compute with tensors including 'G'")
        depth = len(self.error)
        if (width is None) == (widths is None):
            raise FlowError("give exactly one of width and widths")
        n = np.full(depth - 1, float(width)) if widths is None else np.asarray(widths, dtype=np.float64)
        if n.shape != (depth - 1,) or not np.all(np.isfinite(n) & (n >= 1)):
            raise FlowError(
                f"widths needs {depth - 1} values >= 1 (n_1..n_(L-1)), got {np.atleast_1d(widths).tolist()}"
            )
        out = np.array(self.G[:, 0], dtype=np.float64)
        for s, layer in enumerate(self.layers):
            if layer > 1:
                for k in range(1, self.order + 1):
                    out[s] += self.G[s, k] / n[layer - 2] ** k
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"layers": self.layers, "K": self.K}
        if self.Theta is not None:
            out["Theta"] = self.Theta
        if self.G is not None:
            out["G"] = self.G
        out.update(self.four)
        return out

    def save(self, path: str) -> None:
        """Write ``layers`` and the tensors to ``path`` (.npz), atomically (a temporary file, then os.replace)."""
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(suffix=".npz", dir=folder)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **self.arrays())
            mask = os.umask(0)
            os.umask(mask)
            os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600; a written file gets the mode open would give it
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise

    def __repr__(self):
        n = self.K.shape[-1]
        stored = ", ".join(map(str, self.layers[:8])) + (", ..." if len(self.layers) > 8 else "")
        theta = ", Theta" if self.Theta is not None else ""
        theta += f", G (order {self.order})" if self.G is not None else ""
        theta += "".join(f", {name}" for name in self.four)
        return (
            f"KernelMatrices({self.activation}, N={n}, layers=[{stored}], tensors=K{theta}, "
            f"method={self.method}, max error bound={float(np.max(self.error, initial=0.0)):.1e})"
        )


def per_layer(name: str, value, depth: int, strict: bool) -> np.ndarray:
    """One number for every layer, or one per layer 1..depth, checked (> 0 if ``strict``, else >= 0)."""
    values = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if values.ndim != 1 or values.size not in (1, depth):
        raise FlowError(f"{name} takes one value or one per layer 1..{depth}, got {values.size}")
    bad = values[~(np.isfinite(values) & ((values > 0) if strict else (values >= 0)))]
    if bad.size:
        raise FlowError(f"{name} must be {'> 0' if strict else '>= 0'} and finite, got {bad[0]:g}")
    return np.broadcast_to(values, (depth,)).copy()


def _parametrization(name, widths, lambda_b, lambda_W, n0: int, depth: int):
    """(lambda_b, lambda_W) of a parametrization. "ntk": the book's, as given (default C_b, C_W). "standard":
    plain gradient descent on W ~ N(0, C_W/n_{l-1}), b ~ N(0, C_b), i.e. lambda_b = 1, lambda_W = n_{l-1}
    (book p. 202; neural-tangents' parameterization='standard' with those widths), which needs the widths."""
    if widths is not None:
        widths = [] if depth == 1 and len(widths) == 0 else widths
        if len(widths) != depth - 1 or any(int(n) != n or n < 1 for n in widths):
            raise FlowError(f"widths needs depth - 1 = {depth - 1} integers >= 1 (n_1..n_(L-1)), got {list(widths)}")
    if name == "ntk":
        return lambda_b, lambda_W
    if name != "standard":
        raise FlowError(f"parametrization must be 'ntk' or 'standard', got {name!r}")
    if lambda_b is not None or lambda_W is not None:
        raise FlowError("the standard parametrization fixes lambda_b = 1 and lambda_W = n_(l-1): give neither")
    widths = [] if widths is None and depth == 1 else widths
    if widths is None:
        raise FlowError(f"the standard parametrization needs the hidden widths n_1..n_(L-1) ({depth - 1} values)")
    return 1.0, [float(n0), *map(float, widths)]


def _inputs(inputs) -> np.ndarray:
    x = np.asarray(inputs)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise FlowError(f"inputs must be a 2-d array (N inputs, n_0 features) with N, n_0 >= 1, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise FlowError(f"inputs must be real numbers, got dtype {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise FlowError("inputs contain NaN or infinite values")
    norms = np.einsum("ij,ij->i", x, x)
    if not np.all(np.isfinite(norms)):
        raise FlowError(f"input {int(np.flatnonzero(~np.isfinite(norms))[0])} is too large: |x|^2 overflows")
    if np.any(norms == 0):
        i = int(np.flatnonzero(norms == 0)[0])
        if np.any(x[i] != 0):
            raise FlowError(f"input {i} is too small: |x|^2 underflows to 0")
        raise FlowError(f"input {i} is zero: its kernel has no angle to other inputs")
    return x


def _stored(layers, depth: int) -> np.ndarray:
    if layers is None:
        return np.arange(1, depth + 1)
    chosen = np.unique(np.asarray(layers, dtype=np.int64))
    if chosen.size == 0 or chosen[0] < 1 or chosen[-1] > depth:
        raise FlowError(f"layers must be between 1 and depth = {depth}, got {list(map(int, np.atleast_1d(layers)))}")
    return chosen


@cache
def _gauss_hermite(Q: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and square-root weights of the Q-point rule for N(0, 1), computed once per Q (shared: read them only)."""
    from scipy.special import roots_hermitenorm

    x, w = roots_hermitenorm(Q)
    return x, np.sqrt(w / math.sqrt(2.0 * math.pi))


def _coefficients(values, K: np.ndarray, M: int, params, kinks=()) -> tuple[np.ndarray, np.ndarray]:
    """The first M + 1 Hermite coefficients of sigma(sqrt(K) x) for every K, by Gauss-Hermite with 3M + 48 nodes
    (Gauss-Legendre on the pieces between the kinks, as many per piece, where sigma has kinks), and the size of
    their change from 2M + 32 nodes (the quadrature error estimate)."""
    out = []
    for Q in (2 * M + 32, 3 * M + 48):
        coef = np.zeros((K.size, M + 1))
        if kinks:
            for u in range(K.size):
                x, sw = piecewise_rule(Q, np.asarray(kinks) / math.sqrt(K[u]), M + 1)
                _hermite_coefficients(values, x, sw, K[u : u + 1], params, coef[u : u + 1])
        else:
            x, sw = _gauss_hermite(Q)
            _hermite_coefficients(values, x, sw, K, params, coef)
        out.append(coef)
    return out[1], out[1] - out[0]


@njit(**_OPTS)
def piecewise_nodes(t, w, kinks, n):
    """``piecewise_rule`` with the Gauss-Legendre rule (t, w) on each piece (compiled: the NTK pair flow builds its
    rules inside its loop over the layers)."""
    R = math.sqrt(4.0 * n + 2.0) + 12.0
    cuts = [-R]
    for k in np.sort(kinks):
        if -R < k < R:
            cuts.append(k)
    cuts.append(R)
    q = t.shape[0]
    x, sw = np.empty(q * (len(cuts) - 1)), np.empty(q * (len(cuts) - 1))
    norm = 1.0 / math.sqrt(2.0 * math.pi)
    for p in range(len(cuts) - 1):
        half = 0.5 * (cuts[p + 1] - cuts[p])
        for j in range(q):
            y = cuts[p] + half * (t[j] + 1.0)
            x[p * q + j] = y
            sw[p * q + j] = math.sqrt(half * w[j] * math.exp(-0.5 * y * y) * norm)
    return x, sw


@cache
def legendre_rule(m: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights of m points on [-1, 1]."""
    from scipy.special import roots_legendre  # asymptotic nodes for large m: O(m), where numpy's leggauss is O(m^3)

    return roots_legendre(m)


def piecewise_rule(Q: int, kinks: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes x and square-root weights sw of a rule for E[f(X)] with X ~ N(0, 1) and f smooth between ``kinks``
    (in x): Gauss-Legendre with Q nodes on each piece of [-R, R], R = sqrt(4 n + 2) + 12 (beyond which the
    first n Hermite functions and the Gaussian are below 1e-31), so that the kinks cost no accuracy."""
    return piecewise_nodes(*legendre_rule(Q), np.asarray(kinks, dtype=np.float64), n)


def _check_memory(name: str, N: int, n_store: int, n_tensors: int, coef_bytes: int) -> None:
    from .api import available_memory

    need = 8 * N * N * (n_store * n_tensors + 1) + coef_bytes
    have = available_memory()
    if have is not None and need > have // 2:
        raise FlowError(
            f"{n_store} stored layer(s) of {n_tensors} N x N tensor(s) for N = {N} need about {need / 2**30:.1f} GiB, "
            f"more than half of the {have / 2**30:.1f} GiB available: store fewer layers (layers=... / --layers)"
        )


def _series(mod, values, K: np.ndarray, s2: np.ndarray, d2: np.ndarray, params, tolerance: float, theta: bool):
    """Per layer l < L: the Hermite coefficients of every distinct input at K[l], the terms M_l, their suffix
    sums (``_mehler``), the early-stopping size eta_l and the coefficients' quadrature bound (with roundoff,
    4 M eps). Each layer aims at tolerance / (L - 1), so that the bounds of all layers add up to the tolerance:
    a thousandth of it for stopping early (a few terms more than a looser budget, and digits that a looser one
    would give away), the rest for the truncation at M_l and the quadrature. M_l doubles until the truncation
    is within budget even at correlation 1, up to M_MAX (KINKED_MAX where sigma has a kink: its coefficients
    fall like a power, and pairs away from coincidence need far fewer, |rho|^k); each pair then reports its
    own truncation bound (``_mehler``), and the caller refuses pairs that miss. Coefficients of a kinked sigma
    are integrated piece by piece between its kinks."""
    target = tolerance / max(len(K), 1)
    L1, U = s2.shape
    Ms = np.zeros(L1 + 1, dtype=np.int64)
    quads, eta = np.zeros(L1 + 1), np.full(L1 + 1, max(target * 1e-3, 1e-16))
    tables = []
    top = KINKED_MAX if mod.kinks else M_MAX
    for l in range(L1):
        M = M_START
        while True:
            coef, change = _coefficients(values, K[l], M, params, mod.kinks)
            # Parseval tails bound the truncation; the coefficients' quadrature error enters the sums by
            # Cauchy-Schwarz, relative to sqrt(<sigma^2>) of each input (and likewise for sigma')
            rest = np.abs(s2[l] - np.sum(coef[:, :M] ** 2, axis=1))
            tail = np.max(rest / s2[l])
            quad = np.max(2.0 * np.sqrt(np.sum(change[:, :M] ** 2, axis=1) / s2[l]))
            k = np.arange(1, M + 1)
            drest = np.abs(d2[l] - np.sum(k * coef[:, 1:] ** 2, axis=1) / K[l]) if theta else np.zeros(U)
            if theta:
                dtail = np.max(drest / d2[l])
                dquad = np.max(2.0 * np.sqrt(np.sum(k * change[:, 1:] ** 2, axis=1) / (K[l] * d2[l])))
                tail, quad = max(tail, dtail), max(quad, dquad)
            floor = 4 * M * numerics.EPS
            bound = max(tail + quad, floor)
            if bound <= 0.999 * target or bound <= 4 * floor or M >= top:
                break
            M *= 2
        if not quad + floor <= tolerance:  # no pair can do better than the coefficients it is summed from
            worst = float(np.max(K[l]))
            raise FlowError(
                f"the Hermite coefficients of {mod.name} at layer {l + 1} (K up to {worst:.4g}) are not resolved to "
                f"relative accuracy {tolerance:g} (bound {quad + floor:.1e}): K is large; pass a larger tolerance"
            )
        Ms[l] = M + 1
        quads[l] = quad + floor
        suffix = np.zeros((U, M + 2, 4))
        suffix[:, : M + 1, 0] = np.cumsum((coef[:, : M + 1] ** 2)[:, ::-1], axis=1)[:, ::-1]
        suffix[:, :M, 1] = np.cumsum((k * coef[:, 1:] ** 2 / K[l][:, None])[:, ::-1], axis=1)[:, ::-1]
        suffix[:, :, 0] += rest[:, None]
        suffix[:, :, 1] += drest[:, None]
        suffix[:, :, 2] = suffix[:, :, 0] / s2[l][:, None]
        suffix[:, :, 3] = suffix[:, :, 1] / d2[l][:, None] if theta else 0.0
        tables.append((coef, suffix))
    width = int(max(Ms.max(), 1))
    coef = np.zeros((L1 + 1, U, width))
    tails = np.zeros((L1 + 1, U, width + 1, 4))
    for l, (table, suffix) in enumerate(tables):
        coef[l, :, : table.shape[1]] = table
        tails[l, :, : suffix.shape[1]] = suffix
    return coef, Ms, quads, tails, eta


def _stage(progress: Callable | None, what: str) -> Callable | None:
    """``progress`` for a stage that counts something other than pairs: told what, where it takes a third argument."""
    if progress is None:
        return None
    try:
        params = inspect.signature(progress).parameters.values()
    except (TypeError, ValueError):  # pragma: no cover - a builtin without a signature
        return progress
    if any(p.kind == p.VAR_POSITIONAL for p in params) or len(params) >= 3:
        return lambda done, total: progress(done, total, what)
    return progress


def kernel_matrices(
    mod,
    inputs,
    depth,
    C_b=0.0,
    C_W=1.0,
    lambda_b=None,
    lambda_W=None,
    layers=None,
    tensors: Sequence[str] = TENSORS,
    tolerance=1e-10,
    progress: Callable | None = None,
    out=None,
    scheduler=None,
    chunk_size=None,
    parametrization="ntk",
    widths=None,
    order=1,
    **params,
) -> KernelMatrices:
    from .api import check_depth

    check_depth(depth)
    x = _inputs(inputs)
    tensors = tuple(tensors)
    for t in tensors:
        if t not in TENSORS:
            raise FlowError(f"unknown tensor {t!r}; available: {', '.join(TENSORS)}")
    four = tuple(t for t in FOUR if t in tensors)
    if four and x.shape[0] > MANY_MAX:
        raise FlowError(
            f"{', '.join(four)} {'is' if len(four) == 1 else 'are'} computed for at most {MANY_MAX} inputs "
            f"(N = {x.shape[0]}: N^4 entries a tensor and layer, C(N, 4) groups of four inputs a layer)"
        )
    if four and (scheduler is not None or str(out).endswith(".zarr")):
        raise FlowError(f"{', '.join(four)} of one input are computed in process: write a .npz file, no scheduler")
    if "K" not in tensors:
        tensors = ("K", *tensors)
    theta, with_g = "Theta" in tensors, "G" in tensors
    if with_g:
        from .finite import check_order

        order = check_order(mod, order)
    if (theta or set(four) - {"V"}) and not mod.has_perp:
        raise FlowError(f"{mod.name} jumps, so sigma' and the NTK are not defined")
    if not (0 < float(tolerance) < 1):
        raise FlowError(f"tolerance must be between 0 and 1, got {tolerance}")
    cb, cw = per_layer("C_b", C_b, depth, strict=False), per_layer("C_W", C_W, depth, strict=True)
    lambda_b, lambda_W = _parametrization(parametrization, widths, lambda_b, lambda_W, x.shape[1], depth)
    lb = per_layer("lambda_b", cb if lambda_b is None else lambda_b, depth, strict=False)
    lw = per_layer("lambda_W", cw if lambda_W is None else lambda_W, depth, strict=False)
    pvals = mod.param_values(params)
    store = _stored(layers, depth)
    N, n0 = x.shape
    if not (out is not None and str(out).endswith(".zarr")):
        _check_memory(mod.name, N, store.size, 1 + theta + with_g * (order + 1), 0)

    # the diagonal: one single-input flow per distinct input norm
    norms = np.einsum("ij,ij->i", x, x) / n0
    if out is not None and not str(out).endswith((".npz", ".zarr")):
        raise FlowError(f"out must name a .npz file or a .zarr store, got {str(out)!r}")
    if chunk_size is not None and (int(chunk_size) != chunk_size or chunk_size < 1):
        raise FlowError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    distinct, cls = np.unique(norms, return_inverse=True)
    U = distinct.size
    K, T = np.zeros((depth, U)), np.zeros((depth, U))
    s2, d2, err = (np.zeros((max(depth - 1, 1), U)) for _ in range(3))
    p = mod.pieces
    _diagonals(
        p.exact,
        p.integrands,
        *mod.description,
        cb[0] + cw[0] * distinct,
        lb[0] + lw[0] * distinct,
        cb,
        cw,
        lb,
        lw,
        pvals,
        theta,
        K,
        T,
        s2,
        d2,
        err,
    )
    for l in range(depth):
        bad = ~(np.isfinite(K[l]) & (K[l] > 0) & (np.isfinite(T[l]) | (not theta)))
        if np.any(bad):
            value = K[l][bad][0]
            raise FlowError(
                f"the kernel of {mod.name} is not a positive finite number at layer {l + 1} (K = {value:.3g}, or "
                f"Theta overflows): the inputs or C_W are too large, or the kernel collapsed to 0"
            )
    errors = np.zeros(depth)
    errors[1:] = np.max(err, axis=1)[: depth - 1] if depth > 1 else errors[1:]
    bad = np.flatnonzero(~(errors <= tolerance))
    if bad.size:
        l = int(bad[0])
        raise FlowError(
            f"Gaussian expectations of {mod.name} at layer {l} (K up to {np.max(K[l - 1]):.4g}) have relative error "
            f"~{errors[l]:.1e}, above tolerance {tolerance:g}"
        )

    method = "closed" if mod.pair_exact else "hermite"
    # two inputs with the NTK sector in process: the pair flow carries K and Theta along with the four-index tensors,
    # to its own tolerance, so the kernel-matrix series would compute them a second time
    pair = bool(four) and N == 2 and not with_g and out is None and scheduler is None
    if pair and method == "hermite":
        method = "pair flow"
    quads = np.zeros(depth)
    if method == "hermite" and depth > 1 and N > 1:  # one input has no pairs: no series to sum
        coef, Ms, quads, tails, eta = _series(
            mod, p.values, K[:-1], s2[: depth - 1], d2[: depth - 1], pvals, tolerance, theta
        )
        terms = np.concatenate(([0], Ms[: depth - 1]))
    else:
        coef, Ms, terms = np.zeros((1, 1, 1)), np.zeros(depth, dtype=np.int64), np.zeros(depth, dtype=np.int64)
        tails, eta = np.zeros((1, 1, 1, 4)), np.zeros(depth)

    def layer_errors(worst):
        """Per layer, the accumulated bound: the diagonal's, and the pairs' quadrature plus their own truncation."""
        per = errors.copy()
        per[1:] = np.maximum(per[1:], quads[: depth - 1] + worst[: depth - 1])
        return np.cumsum(per)

    if not layer_errors(np.zeros(depth))[-1] <= tolerance:
        raise FlowError(
            f"the error bounds of the {depth} layers of {mod.name} add up to {layer_errors(np.zeros(depth))[-1]:.1e}, "
            f"above tolerance {tolerance:g}: pass a larger tolerance or use fewer layers"
        )

    def truncation(worst):
        """Refuse the run if the pairs' own truncation bounds (the most correlated pairs first) miss the budget."""
        result.error = layer_errors(worst)
        bad = np.flatnonzero(~(result.error <= tolerance))
        if bad.size:
            l = int(bad[0])
            raise FlowError(
                f"the Mehler (Hermite) series of {mod.name} at layer {l} do not reach relative accuracy {tolerance:g} "
                f"for every pair with {int(terms[l])} terms (bound {result.error[l]:.1e}): they converge slowly for "
                f"nearly equal inputs where sigma or sigma' has a kink, or K is large; pass a larger tolerance"
            )

    slot = np.full(depth, -1, dtype=np.int64)
    slot[store - 1] = np.arange(store.size)
    path = getattr(sys.modules.get(mod.module), "__file__", None)
    plan = Plan(
        mod.module,
        path,
        mod.pair_exact,
        K,
        T,
        cls.astype(np.int64),
        coef,
        Ms,
        tails,
        eta,
        norms,
        x,
        cb,
        cw,
        lb,
        lw,
        pvals,
        slot,
        int(store.size),
        theta,
    )
    hyper = {"C_b": cb, "C_W": cw, "lambda_b": lb, "lambda_W": lw}
    result = KernelMatrices(mod.name, store, None, None, method, terms, layer_errors(np.zeros(depth)), hyper)
    finite = None
    if with_g:
        from .finite import mean_kernel, width_ratios

        ratios = width_ratios(widths, depth)

        def finite(run):  # the finite-width pass, with the way its blocks of pairs run
            result.G, G_error = mean_kernel(mod, plan, order, ratios, tolerance, run)
            result.G_error = np.maximum(G_error, result.error)

    if four:
        from .finite import width_ratios
        from .ntk import ntk_flow, ntk_pair_flow, pair_arrays, sector

        hyper4, ratios = np.stack([cb, cw, lb, lw], axis=1), width_ratios(widths, depth)
        if N == 1:
            state, result.four_error = ntk_flow(mod, depth, float(norms[0]), hyper4, ratios, pvals, tolerance, four)
            names = sector().TENSORS
            for t in four:
                result.four[t] = state[store - 1, names.index(t)].reshape(store.size, *(1,) * (2 if t == "H1" else 4))
        elif N == 2:
            gram = x @ x.T / n0
            state, result.four_error = ntk_pair_flow(mod, depth, gram, hyper4, ratios, pvals, tolerance, four)
            arrays = pair_arrays(state, sector().NTK_PAIR_TENSORS)
            for t in four:
                result.four[t] = arrays[t][store - 1]
            if pair and method == "pair flow":
                result.K = arrays["K"][store - 1]
                result.Theta = arrays["H"][store - 1] if theta else None
                result.error = np.maximum(result.error, result.four_error)
                return result
        else:
            from .api import available_memory
            from .ntk_many import many_flow, plan_bytes

            need, have = plan_bytes(N, four, depth, store.size), available_memory()
            if have is not None and need > have // 2:
                raise FlowError(
                    f"{', '.join(four)} for N = {N} inputs through {depth} layers need about {need / 2**30:.1f} GiB, "
                    f"more than half of the {have / 2**30:.1f} GiB available: fewer inputs, tensors or stored layers"
                )
            arrays, result.four_error = many_flow(mod, depth, x @ x.T / n0, hyper4, ratios, pvals, tolerance, four,
                                                  store, _stage(progress, "layers"))  # fmt: skip
            result.four.update(arrays)
    if out is not None and str(out).endswith(".zarr") or scheduler is not None:
        from .scaleout import run_blocks

        return run_blocks(plan, result, out, scheduler, chunk_size, progress, truncation, finite)
    _check_memory(mod.name, N, store.size, 1 + theta + with_g * (order + 1), coef.nbytes + tails.nbytes)
    result.K, result.Theta, worst = compute_triangle(plan, progress)
    truncation(worst)
    if finite is not None:
        from .finite import in_process

        finite(in_process(mod, plan, order, progress))
    if out is not None:
        result.save(str(out))
    return result
