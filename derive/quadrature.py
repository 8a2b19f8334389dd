"""Parameters of the quadrature rules used by generated code, fixed here with mpmath.

Everything is computed in mpmath (pure Python, bit-for-bit deterministic), so that the constants
printed into generated modules are the same on every machine.

* Smooth sigma: trapezoid rule in ``x = z/sqrt(K)`` on ``[-x_max, x_max]`` with spacing
  ``h = min(h_max, beta/sqrt(K))``. For an integrand analytic in a strip ``|Im x| < d`` the error
  falls like ``exp(-2 pi d / h)``; sigma's singularities sit at a fixed distance in z, so d shrinks
  like ``1/sqrt(K)`` and h must too. ``beta`` is calibrated per activation against a finer rule.
* Piecewise sigma: Gauss-Legendre on every piece between breakpoints (two degrees, compared).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import mpmath
import sympy as sp

from .activations import Activation
from .notation import z

H_MAX = 0.5
BETA_GRID = (1.0, 0.8, 0.65, 0.5, 0.4, 0.32, 0.26, 0.2, 0.16, 0.13, 0.1, 0.08, 0.065, 0.05)
CALIBRATION_KERNELS = ("0.01", "1", "4", "16")
SAFETY = mpmath.mpf("0.85")
TOLERANCE = mpmath.mpf("1e-13")
GL_DEGREES = (40, 60)


@dataclass(frozen=True)
class TrapezoidRule:
    beta: float
    h_max: float
    x_max: float


def truncation_radius(max_degree: int) -> float:
    """Smallest x (a multiple of 0.5) with x^D exp(-x^2/2) <= 1e-17 (D-1)!!, D = max_degree.

    Beyond it the Gaussian tail of a degree-D polynomial integrand is negligible in double
    precision relative to its mean.
    """
    d = max(max_degree, 2)
    scale = mpmath.fac2(d - 1) if d % 2 == 0 else mpmath.fac2(d)
    x = mpmath.mpf(6)
    while x**d * mpmath.exp(-x * x / 2) > mpmath.mpf("1e-17") * scale:
        x += mpmath.mpf("0.5")
    return float(x)


def _integrand_values(f, pairs, kernel, nodes):
    """sigma(sqrt(K) x)^(2a) He_2i(x) exp(-x^2/2) at each node, for each (a, i) in pairs."""
    sk = mpmath.sqrt(kernel)
    out = []
    for x in nodes:
        base = f(sk * x)
        weight = mpmath.exp(-x * x / 2)
        out.append([base ** (2 * a) * mpmath.hermite(2 * i, x / mpmath.sqrt(2)) / 2**i * weight for a, i in pairs])
    return out


def _trapezoid(f, pairs, kernel, h, x_max):
    n = int(mpmath.ceil(x_max / h))
    vals = _integrand_values(f, pairs, kernel, [k * h for k in range(-n, n + 1)])
    sums = [h * sum(v[j] for v in vals) for j in range(len(pairs))]
    scale = [h * sum(abs(v[j]) for v in vals) for j in range(len(pairs))]
    return sums, scale


@cache
def calibrate_trapezoid(act: Activation, pairs: tuple[tuple[int, int], ...]) -> TrapezoidRule:
    """Largest grid beta (times a safety factor) whose rule meets ``TOLERANCE`` (relative to the
    sum of absolute values) against a rule three times finer, at every calibration kernel, for
    each (a, i) in ``pairs``: the integrands sigma^(2a) He_2i of the quadrature expectations."""
    top = {}
    for a, i in pairs:
        top[a] = max(top.get(a, 0), i)
    check = tuple(sorted({(a, 0) for a in top} | set(top.items())))
    x_max = truncation_radius(max(2 * a + 2 * i for a, i in check))
    subs = {sym: val for sym, val in act.params}
    with mpmath.workdps(25):
        f = sp.lambdify(z, act.expr.subs(subs), "mpmath")
        xm = mpmath.mpf(x_max)
        chosen = BETA_GRID[-1]
        for beta in BETA_GRID:
            ok = True
            for k_text in CALIBRATION_KERNELS:
                kernel = mpmath.mpf(k_text)
                h = min(mpmath.mpf(H_MAX), mpmath.mpf(beta) / mpmath.sqrt(kernel))
                coarse, scale = _trapezoid(f, check, kernel, h, xm)
                fine, _ = _trapezoid(f, check, kernel, h / 3, xm)
                if any(abs(c - r) > TOLERANCE * s for c, r, s in zip(coarse, fine, scale)):
                    ok = False
                    break
            if ok:
                chosen = beta
                break
        beta_final = float(mpmath.nstr(mpmath.mpf(chosen) * SAFETY, 3))
    return TrapezoidRule(beta=beta_final, h_max=H_MAX, x_max=x_max)


@cache
def gauss_legendre(n: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Nodes and weights of the n-point Gauss-Legendre rule on [-1, 1], by Newton in mpmath."""
    with mpmath.workdps(40):
        nodes, weights = [], []
        for k in range(1, n + 1):
            x = mpmath.cos(mpmath.pi * (k - mpmath.mpf("0.25")) / (n + mpmath.mpf("0.5")))
            for _ in range(100):
                p0, p1 = mpmath.mpf(1), x
                for j in range(2, n + 1):
                    p0, p1 = p1, ((2 * j - 1) * x * p1 - (j - 1) * p0) / j
                dp = n * (x * p1 - p0) / (x * x - 1)
                dx = p1 / dp
                x -= dx
                if abs(dx) < mpmath.mpf(10) ** -38:
                    break
            nodes.append(x)
            weights.append(2 / ((1 - x * x) * dp * dp))
        pairs = sorted(zip(nodes, weights))
        return tuple(float(x) for x, _ in pairs), tuple(float(w) for _, w in pairs)
