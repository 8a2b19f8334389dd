"""How conservative the two-input NTK flow's error bound is where K is small (docs/ntk-fluctuations.md, "Limits").

    python docs/examples/pair_roundoff_mpmath.py [K ...]

Deep in a tanh network at criticality K falls towards 0 and the both-input expectations, Mehler series of Hermite
coefficients divided by K^(i/2), sit on a floor of their error bound that more terms cannot lower. For each K
(default 0.1, 1e-3, 5e-4; the second input's K is 1.0005 times it, the correlation 0.0785, as at layer ~900 of
the flow in tests/generated/test_ntk_pair.py) this sums the same series twice at 64 terms: in double precision
by ``pdlt.runtime.ntk._pair_series``, which also returns the bound, and with every coefficient in 40-digit
arithmetic (mpmath, tanh and its derivatives exact, at the same nodes of the finer rule). Printed: the bound
and the largest actual roundoff, both relative to each series' Parseval scale sqrt(sum f^2 sum g^2).
"""

from __future__ import annotations

import sys

import mpmath as mpm
import numpy as np

from pdlt.generated import load
from pdlt.runtime import ntk

SIZE = 64
RHO = 0.0785


def coefficients(x, sw, K: float, keys: np.ndarray) -> list:
    """C[u][k]: the normalised Hermite coefficients of key u's product of tanh's derivatives, in mpmath."""
    sk = mpm.sqrt(mpm.mpf(K))
    C = [[mpm.mpf(0)] * SIZE for _ in range(keys.shape[0])]
    for xj, sj in zip(x, sw):
        xj, s = mpm.mpf(xj), mpm.mpf(sj)
        t = mpm.tanh(sk * xj)
        d1 = 1 - t * t
        factors = (t, d1, -2 * t * d1, -2 * d1 * (1 - 3 * t * t))
        h = [s, xj * s]
        for k in range(1, SIZE - 1):
            h.append(xj * h[k] / mpm.sqrt(k + 1) - mpm.sqrt(mpm.mpf(k) / (k + 1)) * h[k - 1])
        for u in range(keys.shape[0]):
            f = s
            for order in range(4):
                f *= factors[order] ** int(keys[u, order])
            for k in range(SIZE):
                C[u][k] += f * h[k]
    return C


def main(Ks: list[float]) -> None:
    mpm.mp.dps = 40
    pieces = load("tanh")._MODULE.pieces
    table = np.array(ntk.sector().NTK_PAIR_EXPECTATIONS, dtype=np.int64)
    _, _, keys, pairs = ntk._pattern(table)
    for K0 in Ks:
        Ks_ = np.array([K0, 1.0005 * K0])
        roots = np.sqrt(Ks_)
        rules = ntk._pair_rules(ntk._pair_legendre(), 0, np.zeros(0), roots, SIZE)
        got = np.zeros(pairs.shape[0])
        bound = ntk._pair_series(pieces.jet, np.array([0.0]), roots, Ks_, rules, keys, pairs, RHO, SIZE, got)
        C = [coefficients(*rules[i][1], Ks_[i], keys[i]) for i in range(2)]
        worst = 0.0
        for n in range(pairs.shape[0]):
            f = []
            for i in range(2):
                u, s = int(pairs[n, 2 * i]), int(pairs[n, 2 * i + 1])
                scale = mpm.mpf(Ks_[i]) ** (mpm.mpf(s) / 2)
                f.append([C[i][u][k + s] * mpm.sqrt(mpm.factorial(k + s) / mpm.factorial(k)) / scale
                          for k in range(SIZE - s)])  # fmt: skip
            m = min(len(f[0]), len(f[1]))
            exact = sum(f[0][k] * f[1][k] * mpm.mpf(RHO) ** k for k in range(m))
            size = mpm.sqrt(sum(a * a for a in f[0][:m]) * sum(a * a for a in f[1][:m]))
            worst = max(worst, abs(float((got[n] - exact) / size)))
        print(f"K = {K0:g}: bound {bound:.2e}, actual roundoff {worst:.2e} ({bound / max(worst, 1e-300):.0f}x)")


if __name__ == "__main__":
    main([float(a) for a in sys.argv[1:]] or [0.1, 1e-3, 5e-4])
