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


@njit(nogil=True)
def _apply(sigma, z, params):  # pragma: no cover - compiled
    """sigma applied elementwise to a 2-D array (sigma is a generated numba kernel)."""
    out = np.empty_like(z)
    for i in range(z.shape[0]):
        for j in range(z.shape[1]):
            out[i, j] = sigma(z[i, j], params)
    return out


def _forward(rng: np.random.Generator, count: int, sigma: Callable, params: np.ndarray,
             widths: Sequence[int], C_b: float, C_W: float, x: np.ndarray) -> np.ndarray:
    """G(L) of ``count`` fresh networks: the forward pass of x through layers 1..L-1."""
    n_prev = x.size
    a = np.broadcast_to(x, (count, n_prev))  # the input, the same for every network
    z = None
    for n in widths:
        if z is not None:
            a = _apply(sigma, z, params)
        W = rng.standard_normal((count, n, n_prev))
        z = np.matmul(W, a[:, :, None])[:, :, 0]
        z *= np.sqrt(C_W / n_prev)  # scales W; cheaper on the (count, n) product
        if C_b > 0.0:
            z += np.sqrt(C_b) * rng.standard_normal((count, n))
        n_prev = n
    s = _apply(sigma, z, params)
    return C_b + C_W * np.mean(s * s, axis=1)


def sample_metric(sigma: Callable, widths: Sequence[int], C_b: float, C_W: float, input_norm2: float,
                  networks: int, seed: int | Sequence[int], params: np.ndarray | None = None, n0: int = 4,
                  workers: int | None = None) -> np.ndarray:
    """G(L) for ``networks`` independent networks with hidden widths n_1..n_{L-1} = ``widths``.

    ``sigma(z, params)`` is a numba activation (``pdlt.generated.<name>.sigma``); the input is
    x = sqrt(input_norm2) (1, ..., 1) in n0 dimensions, so K(1) = C_b + C_W input_norm2.
    ``seed`` is the entropy of the ``SeedSequence`` (an int or a sequence of ints).
    Chunks run on ``workers`` threads (numpy's generators and matmul release the GIL); the result
    does not depend on ``workers``.
    """
    widths = [int(n) for n in widths]
    if not widths or min(widths) < 1 or networks < 1 or C_W <= 0 or C_b < 0 or input_norm2 <= 0:
        raise ValueError("need widths >= 1 (at least one hidden layer), networks >= 1, C_W > 0, "
                         "C_b >= 0 and input_norm2 > 0")
    params = np.zeros(1) if params is None else np.asarray(params, dtype=np.float64)
    x = np.full(n0, np.sqrt(input_norm2))
    largest = max(a * b for a, b in zip(widths, [n0, *widths[:-1]]))
    chunk = max(1, CHUNK_ENTRIES // largest)
    starts = list(range(0, networks, chunk))
    seeds = np.random.SeedSequence(seed).spawn(len(starts))
    out = np.empty(networks)

    def run(i: int) -> None:
        lo = starts[i]
        hi = min(lo + chunk, networks)
        rng = np.random.Generator(np.random.SFC64(seeds[i]))
        out[lo:hi] = _forward(rng, hi - lo, sigma, params, widths, float(C_b), float(C_W), x)

    workers = workers or min(2, os.cpu_count() or 1)
    if workers == 1 or len(starts) == 1:
        for i in range(len(starts)):
            run(i)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(run, range(len(starts))))
    return out


@dataclass(frozen=True)
class Estimate:
    """k-statistics kappa[m] (m = 1, 2, 3; unbiased for the cumulants) and their standard errors."""

    kappa: dict[int, float]
    se: dict[int, float]
    networks: int


def _k_statistics(n: np.ndarray, s1: np.ndarray, s2: np.ndarray, s3: np.ndarray) -> np.ndarray:
    """Fisher's k1, k2, k3 from the power sums S_r = sum x^r of n samples (stacked on axis 0)."""
    k1 = s1 / n
    k2 = (n * s2 - s1 * s1) / (n * (n - 1))
    k3 = (2 * s1**3 - 3 * n * s1 * s2 + n * n * s3) / (n * (n - 1) * (n - 2))
    return np.stack([k1, k2, k3])


def estimate(samples: np.ndarray, groups: int = 100) -> Estimate:
    """k1, k2, k3 of ``samples`` with delete-one-group jackknife standard errors.

    The errors of all three come from the jackknife over ``groups`` contiguous groups of networks
    (every network is independent, so contiguous groups are exchangeable), not from the delta
    method: no variance formula for k2 and k3 (4th to 6th cumulants) is needed, and the same code
    serves heavy-tailed G(L) (products of chi-squares for ReLU and linear nets). Power sums are
    taken about the sample mean, so k2 and k3 lose no digits.
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
    return Estimate(kappa, {m: float(se[m - 1]) for m in (1, 2, 3)}, x.size)
