"""Monte Carlo ensembles of real finite-width networks, for checking the 1/n flow.

Each network is sampled as it is initialised: Gaussian weight matrices W(l) with variance
C_W/n_{l-1} and biases with variance C_b, applied to one fixed input x with |x|^2/n_0 =
input_norm2. Per network we record the stochastic metric of layer L,

    G(L) = C_b + C_W * mean_j sigma(z_j(L-1))^2        (book 4.70),

computed from that network's actual layer-(L-1) preactivations: it is the conditional variance of
z(L), so its cumulants are exactly the kappa_m(G(L)) the flow predicts, with less noise than z(L)^2.

Networks are drawn in chunks of bounded memory (CHUNK_ENTRIES), each chunk from its own
generator (SFC64, the fastest of numpy's bit generators for normals) seeded by a child of one
``SeedSequence``: a result depends on the seed, the ensemble and CHUNK_ENTRIES, not on the order
the chunks run in or the number of threads. ``estimate`` turns the samples into k-statistics with
jackknife errors.

Control variates (``controls=True``): given the layers below, the preactivations z_j(l) of layer
l are iid N(0, G(l)) exactly (Gaussian weights and biases), with G(l) = C_b + C_W mean sigma(z(l-1))^2
(G(1) = K(1)). So u_j = z_j(l)/sqrt(G(l)) are iid N(0, 1) given the past, and every Hermite average
mean_j He_k(u_j) (k >= 1), also multiplied by G(l) (known given the past), has mean exactly zero,
whatever the activation and the theory. ``estimate`` regresses G(L) on them to remove the part
of its fluctuations they explain from the estimate of kappa_1 (the regression estimator of a
mean); kappa_2 and kappa_3 stay plain k-statistics.
Their values are stored as float32 (N x control_count(L) of them; rounding moves their means by
less than 1e-7 of their spread) and summed in float64.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numba import njit

#: largest weight tensor of one chunk, in float64 entries (16 MiB); bounds the memory per thread
CHUNK_ENTRIES = 1 << 21

#: Hermite polynomials He_1..He_HERMITE of the standardised preactivations serve as control variates
HERMITE = 8


@njit(nogil=True)
def _apply(sigma, z, params):  # pragma: no cover - compiled
    """sigma applied elementwise to a 2-D array (sigma is a generated numba kernel)."""
    out = np.empty_like(z)
    for i in range(z.shape[0]):
        for j in range(z.shape[1]):
            out[i, j] = sigma(z[i, j], params)
    return out


@njit(nogil=True)
def _hermite_controls(z, G, top, interact, out, col):  # pragma: no cover - compiled
    """out[i, col + k - 1] = mean_j He_k(z[i, j] / sqrt(G[i])) for k = 1..top (probabilists'
    Hermite polynomials, He_{k+1} = u He_k - k He_{k-1}); with ``interact`` also the same times
    G[i] in the next ``top`` columns. Returns the next free column."""
    n = z.shape[1]
    acc = np.empty(top + 1)
    for i in range(z.shape[0]):
        acc[:] = 0.0
        scale = 1.0 / np.sqrt(G[i])
        for j in range(n):
            u = z[i, j] * scale
            h_prev, h = 1.0, u
            acc[1] += h
            for k in range(1, top):
                h_prev, h = h, u * h - k * h_prev
                acc[k + 1] += h
        for k in range(1, top + 1):
            out[i, col + k - 1] = acc[k] / n
            if interact:
                out[i, col + top + k - 1] = acc[k] / n * G[i]
    return col + (2 * top if interact else top)


def control_count(depth: int) -> int:
    """How many control variates a network of this depth carries (HERMITE at layer 1, where G(1)
    is a constant, and 2 HERMITE at each of layers 2..L-1)."""
    return HERMITE + 2 * HERMITE * (depth - 2)


def _forward(
    rng: np.random.Generator,
    count: int,
    sigma: Callable,
    params: np.ndarray,
    widths: Sequence[int],
    C_b: float,
    C_W: float,
    x: np.ndarray,
    controls: np.ndarray | None = None,
) -> np.ndarray:
    """G(L) of ``count`` fresh networks: the forward pass of x through layers 1..L-1.

    With ``controls`` (shape (count, control_count(L))), fill it with the Hermite control variates.
    """
    n_prev = x.size
    a = np.broadcast_to(x, (count, n_prev))  # the input, the same for every network
    G = np.full(count, C_b + C_W * float(np.mean(x * x)))  # G(1) = K(1)
    z = None
    col = 0
    for n in widths:
        if z is not None:
            a = _apply(sigma, z, params)
            if controls is not None:
                G = C_b + C_W * np.mean(a * a, axis=1)
        W = rng.standard_normal((count, n, n_prev))
        z = np.matmul(W, a[:, :, None])[:, :, 0]
        z *= np.sqrt(C_W / n_prev)  # scales W; cheaper on the (count, n) product
        if C_b > 0.0:
            z += np.sqrt(C_b) * rng.standard_normal((count, n))
        if controls is not None:  # z_j | past ~ N(0, G) exactly
            col = _hermite_controls(z, G, HERMITE, col > 0, controls, col)
        n_prev = n
    s = _apply(sigma, z, params)
    return C_b + C_W * np.mean(s * s, axis=1)


def sample_metric(
    sigma: Callable,
    widths: Sequence[int],
    C_b: float,
    C_W: float,
    input_norm2: float,
    networks: int,
    seed: int | Sequence[int],
    params: np.ndarray | None = None,
    n0: int = 4,
    workers: int | None = None,
    controls: bool = False,
):
    """G(L) for ``networks`` independent networks with hidden widths n_1..n_{L-1} = ``widths``.

    ``sigma(z, params)`` is a numba activation (``pdlt.generated.<name>.sigma``); the input is
    x = sqrt(input_norm2) (1, ..., 1) in n0 dimensions, so K(1) = C_b + C_W input_norm2.
    ``seed`` is the entropy of the ``SeedSequence`` (an int or a sequence of ints).
    Chunks run on ``workers`` threads (numpy's generators and matmul release the GIL); the result
    does not depend on ``workers``. With ``controls``, returns (G(L), C) where C[i] holds the
    control variates of network i (module docstring; the same random numbers, so the same G(L)).
    """
    widths = [int(n) for n in widths]
    if not widths or min(widths) < 1 or networks < 1 or C_W <= 0 or C_b < 0 or input_norm2 <= 0:
        raise ValueError(
            "need widths >= 1 (at least one hidden layer), networks >= 1, C_W > 0, C_b >= 0 and input_norm2 > 0"
        )
    params = np.zeros(1) if params is None else np.asarray(params, dtype=np.float64)
    x = np.full(n0, np.sqrt(input_norm2))
    largest = max(a * b for a, b in zip(widths, [n0, *widths[:-1]]))
    chunk = max(1, CHUNK_ENTRIES // largest)
    starts = list(range(0, networks, chunk))
    seeds = np.random.SeedSequence(seed).spawn(len(starts))
    out = np.empty(networks)
    # float32 halves the memory (module docstring)
    ctrl = np.empty((networks, control_count(len(widths) + 1)), dtype=np.float32) if controls else None

    def run(i: int) -> None:
        lo = starts[i]
        hi = min(lo + chunk, networks)
        rng = np.random.Generator(np.random.SFC64(seeds[i]))
        part = None if ctrl is None else ctrl[lo:hi]
        out[lo:hi] = _forward(rng, hi - lo, sigma, params, widths, float(C_b), float(C_W), x, part)

    workers = workers or min(2, os.cpu_count() or 1)
    if workers == 1 or len(starts) == 1:
        for i in range(len(starts)):
            run(i)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(run, range(len(starts))))
    return out if ctrl is None else (out, ctrl)


@dataclass(frozen=True)
class Estimate:
    """k-statistics kappa[m] (m = 1, 2, 3; unbiased for the cumulants) and their standard errors.

    ``reduction`` is Var(G(L)) over the variance left after the control variates (1 without them):
    the factor by which they cut the variance of the kappa_1 estimate.
    """

    kappa: dict[int, float]
    se: dict[int, float]
    networks: int
    reduction: float = 1.0


def _k_statistics(n: np.ndarray, s1: np.ndarray, s2: np.ndarray, s3: np.ndarray) -> np.ndarray:
    """Fisher's k1, k2, k3 from the power sums S_r = sum x^r of n samples (stacked on axis 0)."""
    k1 = s1 / n
    k2 = (n * s2 - s1 * s1) / (n * (n - 1))
    k3 = (2 * s1**3 - 3 * n * s1 * s2 + n * n * s3) / (n * (n - 1) * (n - 2))
    return np.stack([k1, k2, k3])


def _regression_mean(n, sy, sc, scc, scy) -> np.ndarray:
    """mean(y) - beta . mean(c) with beta the least-squares regression of y on the controls c, from
    the sums n, sum y, sum c, sum c c^T, sum c y (stacked on the last axes, one row per replicate)."""
    ybar = sy / n
    cbar = sc / n[:, None]
    Scc = scc - n[:, None, None] * cbar[:, :, None] * cbar[:, None, :]
    Scy = scy - n[:, None] * cbar * ybar[:, None]
    beta = np.linalg.solve(Scc, Scy[:, :, None])[:, :, 0]
    return ybar - np.sum(beta * cbar, axis=1)


def estimate(samples: np.ndarray, groups: int = 100, controls: np.ndarray | None = None) -> Estimate:
    """k1, k2, k3 of ``samples`` with delete-one-group jackknife standard errors.

    The errors of all three come from the jackknife over ``groups`` contiguous groups of networks
    (every network is independent, so contiguous groups are exchangeable), not from the delta
    method: no variance formula for k2 and k3 (4th to 6th cumulants) is needed, and the same code
    serves heavy-tailed G(L) (products of chi-squares for ReLU and linear nets). Power sums are
    taken about the sample mean, so k2 and k3 lose no digits.

    With ``controls`` (mean-zero control variates, one row per sample, from ``sample_metric``),
    kappa_1 is the regression estimator mean(G) - beta . mean(C), beta fitted on the same data; its
    O(1/N) bias (from fitting beta) is removed by the jackknife's bias correction, and its error is
    the jackknife's, beta refitted in every replicate.
    """
    x = np.asarray(samples, dtype=np.float64)
    groups = min(groups, x.size // 3)
    if groups < 2:
        raise ValueError("need at least 6 samples")
    shift = float(np.mean(x))
    parts = np.array_split(x - shift, groups)
    sums = np.array([[p.size, p.sum(), (p * p).sum(), (p**3).sum()] for p in parts])
    total = sums.sum(axis=0)
    full = _k_statistics(*total)
    loo = _k_statistics(*(total - sums).T)  # shape (3, groups): each group left out in turn
    se = np.sqrt((groups - 1) / groups * np.sum((loo - loo.mean(axis=1, keepdims=True)) ** 2, axis=1))
    kappa = {1: float(full[0]) + shift, 2: float(full[1]), 3: float(full[2])}
    errors = {m: float(se[m - 1]) for m in (1, 2, 3)}
    if controls is None:
        return Estimate(kappa, errors, x.size)
    c = np.asarray(controls)
    if c.ndim != 2 or c.shape[0] != x.size:
        raise ValueError("controls need one row per sample")
    y = x - shift
    bounds = np.cumsum([0] + [p.size for p in parts])
    csums = [
        np.zeros(groups),
        np.zeros(groups),
        np.zeros((groups, c.shape[1])),
        np.zeros((groups, c.shape[1], c.shape[1])),
        np.zeros((groups, c.shape[1])),
    ]
    for g, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        cg, yg = c[lo:hi].astype(np.float64), y[lo:hi]
        csums[0][g], csums[1][g], csums[2][g] = hi - lo, yg.sum(), cg.sum(axis=0)
        # einsum, not BLAS: threaded OpenBLAS stalls on a busy machine (~50x slower here)
        csums[3][g] = np.einsum("ij,ik->jk", cg, cg)
        csums[4][g] = np.einsum("ij,i->j", cg, yg)
    scale = 1.0 / np.sqrt(np.maximum(csums[3].sum(axis=0).diagonal(), 1e-300))  # unit scale: conditioning
    csums[2] *= scale
    csums[3] *= scale[:, None] * scale[None, :]
    csums[4] *= scale
    total = [a.sum(axis=0) for a in csums]
    whole = _regression_mean(*(np.asarray(t)[None] for t in total))[0]
    drop = _regression_mean(*(t[None] - a for t, a in zip(total, csums)))  # each group left out in turn
    kappa[1] = float(groups * whole - (groups - 1) * drop.mean()) + shift  # jackknife bias correction
    errors[1] = float(np.sqrt((groups - 1) / groups * np.sum((drop - drop.mean()) ** 2)))
    # variance left after the regression, over Var(G): (S_yy - S_cy . beta) / S_yy about the means
    n, sy, sc, scc, scy = total
    Scc = scc - np.outer(sc, sc) / n
    Scy = scy - sc * sy / n
    Syy = float(np.sum(y * y) - sy * sy / n)
    left = Syy - float(Scy @ np.linalg.solve(Scc, Scy))
    return Estimate(kappa, errors, x.size, Syy / left)


def weighted_slope(n: np.ndarray, y: np.ndarray, sigma_y: np.ndarray) -> tuple[float, float]:
    """Weighted least-squares slope of y against log n, and its standard error."""
    x = np.log(n)
    w = 1.0 / sigma_y**2
    xm = np.sum(w * x) / np.sum(w)
    sxx = np.sum(w * (x - xm) ** 2)
    slope = float(np.sum(w * (x - xm) * y) / sxx)
    return slope, float(1.0 / np.sqrt(sxx))
