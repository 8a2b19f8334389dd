"""Independent references for kernel matrices (tests/generated/test_kernel_matrices.py, pdlt bench --kernels).

- ``scale_invariant``: the book's finite-angle forms (5.159), (5.161) for sigma = a_+ z (z > 0), a_- z (z < 0),
  with sqrt(K_aa K_bb) in place of K_d, iterated in mpmath at 30 digits from the inputs themselves (the angle
  by mpmath's acos at 30 digits, which keeps 15 digits even 1e-14 from a coincidence).
- ``gauss_hermite``: the bivariate expectations by a tensor-product Gauss-Hermite rule of n x n nodes in
  double precision, u_a = sqrt(K_aa) x, u_b = sqrt(K_bb) (rho x + sqrt(1 - rho^2) y); its error estimate is
  the change from n to 3n/2 nodes. It shares nothing with the Mehler series it checks.
"""

from __future__ import annotations

import functools
import math

import mpmath
import numpy as np
from scipy.special import roots_hermitenorm


def scale_invariant(x, depth, C_b, C_W, lam_b, lam_W, a_minus, a_plus, dps=30):
    """K[l][a][b], Theta[l][a][b] (mpf) for l = 0..depth-1 (lists of per-layer hyperparameters)."""
    with mpmath.workdps(dps):
        X = [[mpmath.mpf(float(v)) for v in row] for row in np.asarray(x)]
        n0, N = len(X[0]), len(X)
        am, ap = mpmath.mpf(a_minus), mpmath.mpf(a_plus)
        A2 = (ap**2 + am**2) / 2
        dot = [[mpmath.fsum(p * q for p, q in zip(X[a], X[b])) / n0 for b in range(N)] for a in range(N)]
        K = [[[C_b[0] + C_W[0] * dot[a][b] for b in range(N)] for a in range(N)]]
        T = [[[lam_b[0] + lam_W[0] * dot[a][b] for b in range(N)] for a in range(N)]]
        for l in range(1, depth):
            Kp, Tp = K[-1], T[-1]
            Kn = [[None] * N for _ in range(N)]
            Tn = [[None] * N for _ in range(N)]
            for a in range(N):
                for b in range(N):
                    s = mpmath.sqrt(Kp[a][a] * Kp[b][b])
                    rho = max(min(Kp[a][b] / s, mpmath.mpf(1)), mpmath.mpf(-1))
                    psi = mpmath.acos(rho)
                    sig = s / (2 * mpmath.pi) * (ap - am) ** 2 * (mpmath.sin(psi) - psi * rho) + A2 * s * rho  # (5.159)
                    dsig = A2 - psi / (2 * mpmath.pi) * (ap - am) ** 2  # (5.161)
                    Kn[a][b] = C_b[l] + C_W[l] * sig
                    Tn[a][b] = lam_b[l] + lam_W[l] * sig + C_W[l] * dsig * Tp[a][b]
            K.append(Kn)
            T.append(Tn)
        return K, T


@functools.cache
def _rule(n):
    x, w = roots_hermitenorm(n)
    return x, w / math.sqrt(2 * math.pi)


def pair_expectations(sigma, dsigma, Ka, Kb, Kab, n):
    """(<sigma_a sigma_b>, <sigma'_a sigma'_b>) by n x n Gauss-Hermite: the inner sum over the second node for
    each first one (a matrix-vector product), then the outer."""
    x, w = _rule(n)
    rho = max(min(Kab / math.sqrt(Ka * Kb), 1.0), -1.0)
    c = math.sqrt(max(1.0 - rho * rho, 0.0))
    ua = math.sqrt(Ka) * x
    ub = math.sqrt(Kb) * (rho * x[:, None] + c * x[None, :])
    return float((w * sigma(ua)) @ (sigma(ub) @ w)), float((w * dsigma(ua)) @ (dsigma(ub) @ w))


def gauss_hermite(sigma, dsigma, x, depth, C_b, C_W, lam_b, lam_W, n=160):
    """(K, Theta, err) as arrays [layer, a, b]; err: the largest change of any expectation from n to 3n/2 nodes."""
    x = np.asarray(x, dtype=np.float64)
    N, n0 = x.shape
    dot = x @ x.T / n0
    K = np.zeros((depth, N, N))
    T = np.zeros((depth, N, N))
    K[0], T[0] = C_b[0] + C_W[0] * dot, lam_b[0] + lam_W[0] * dot
    err = 0.0
    for l in range(1, depth):
        for a in range(N):
            for b in range(a, N):
                args = (K[l - 1, a, a], K[l - 1, b, b], K[l - 1, a, b])
                s1, d1 = pair_expectations(sigma, dsigma, *args, n)
                s2, d2 = pair_expectations(sigma, dsigma, *args, 3 * n // 2)
                err = max(err, abs(s1 - s2) / math.sqrt(args[0] * args[1]), abs(d1 - d2))
                K[l, a, b] = K[l, b, a] = C_b[l] + C_W[l] * s2
                T[l, a, b] = T[l, b, a] = lam_b[l] + lam_W[l] * s2 + C_W[l] * d2 * T[l - 1, a, b]
    return K, T, err
