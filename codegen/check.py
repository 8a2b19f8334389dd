"""``pdlt check``: sample real networks and hold the 1/n expansion against them, order by order.

For one input, the preactivations of layer l+1 given layer l are iid N(0, G(l+1)) with
``G(l+1) = C_b + C_W mean_j sigma(z_j(l))^2`` (book 4.1-4.4): a network's metric can be sampled
layer by layer without its weight matrices, exactly. The cumulants of G(L) over many networks are
estimated with unbiased k-statistics; their standard errors come from the spread over 50 groups.
The flow's coefficients give the order-p prediction ``kappa_m = sum_{k <= p} c[m][k] / n_{L-1}^k`` for
every p up to the order asked for, and each is printed with its residual in standard errors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp

from pdlt.derive.activations import Activation
from pdlt.derive.notation import z

GROUPS = 50
NAMES = {1: "E[G]", 2: "Var G", 3: "kappa_3"}


def sample_metric(
    act: Activation, widths: list[int], C_b: float, C_W: float, input_norm2: float, samples: int, seed: int
) -> np.ndarray:
    """G(L) of ``samples`` independent networks with hidden widths n_1..n_{L-1} (L = len(widths) + 1)."""
    sigma = _vectorized(act)
    rng = np.random.default_rng(seed)
    out = np.empty(samples)
    batch = max(1, min(samples, 2**22 // max(max(widths, default=1), 1)))
    for start in range(0, samples, batch):
        count = min(batch, samples - start)
        G = np.full(count, C_b + C_W * input_norm2)
        for n in widths:
            zs = np.sqrt(G)[:, None] * rng.standard_normal((count, n))
            G = C_b + C_W * np.mean(sigma(zs) ** 2, axis=1)
        out[start : start + count] = G
    return out


def _vectorized(act: Activation):
    """sigma on numpy arrays, piece by piece between breakpoints, parameters at their values."""
    values = dict(act.params)
    pieces = [(float(p.lo), float(p.hi), sp.lambdify(z, p.expr.subs(values), ["scipy", "numpy"])) for p in act.pieces]

    def sigma(x: np.ndarray) -> np.ndarray:
        out = np.empty_like(x)
        for lo, hi, f in pieces:
            where = (x >= lo) & (x < hi)
            out[where] = np.broadcast_to(f(x[where]), x[where].shape)
        return out

    return sigma


def k_statistics(x: np.ndarray) -> np.ndarray:
    """Unbiased estimates of the first three cumulants (k-statistics) of the sample ``x``."""
    n = x.size
    d = x - x.mean()
    m2, m3 = np.mean(d**2), np.mean(d**3)
    return np.array([x.mean(), n / (n - 1) * m2, n**2 / ((n - 1) * (n - 2)) * m3])


@dataclass(frozen=True)
class Row:
    m: int
    measured: float
    standard_error: float
    predicted: tuple[float, ...]  # order 0, 1, ..., P

    def residuals(self) -> tuple[float, ...]:
        return tuple((self.measured - p) / self.standard_error for p in self.predicted)


@dataclass(frozen=True)
class Check:
    activation: str
    depth: int
    widths: list[int]
    C_b: float
    C_W: float
    samples: int
    seed: int
    order: int
    rows: tuple[Row, ...]

    def as_dict(self) -> dict:
        return {
            "activation": self.activation,
            "depth": self.depth,
            "widths": self.widths,
            "C_b": self.C_b,
            "C_W": self.C_W,
            "samples": self.samples,
            "seed": self.seed,
            "order": self.order,
            "cumulants": {
                str(r.m): {
                    "measured": r.measured,
                    "standard_error": r.standard_error,
                    "predicted": list(r.predicted),
                    "residual_in_se": list(r.residuals()),
                }
                for r in self.rows
            },
        }

    def text(self) -> str:
        head = (
            f"{self.activation}: depth {self.depth}, widths {_widths(self.widths)}, C_b = {self.C_b:g}, "
            f"C_W = {self.C_W:g}; {self.samples} sampled networks (seed {self.seed}), the metric G({self.depth})"
        )
        columns = "".join(f"{f'order {p} (res/SE)':>24}" for p in range(self.order + 1))
        lines = [head, "", f"{'':10}{'measured +- SE':>26}{columns}"]
        for r in self.rows:
            cells = "".join(f"{p:>15.6g} ({res:+6.1f})" for p, res in zip(r.predicted, r.residuals()))
            lines.append(f"{NAMES[r.m]:10}{r.measured:>14.6g} +- {r.standard_error:<8.2g}{cells}")
        lines.append("")
        lines.append(
            "res/SE: (measured - predicted) / SE. Once the truncation error is below the SE, the residual is a"
        )
        lines.append("standard normal draw: |res/SE| > 3 at the highest order means the expansion does not hold here.")
        return "\n".join(lines)


def _widths(widths: list[int]) -> str:
    return f"{widths[0]} (all)" if widths and len(set(widths)) == 1 else ",".join(map(str, widths)) or "none"


def check(act: Activation, flow, samples: int, seed: int) -> Check:
    """Measure kappa_1..3 of G(L) on sampled networks and compare with ``flow`` order by order."""
    widths = [int(n) for n in flow.widths]
    if not widths:
        raise ValueError("pdlt check needs depth >= 2: G(1) is not random")
    G = sample_metric(act, widths, flow.C_b, flow.C_W, flow.input_norm2, samples, seed)
    groups = np.array([k_statistics(part) for part in np.array_split(G, GROUPS)])
    measured = k_statistics(G)
    se = groups.std(axis=0, ddof=1) / np.sqrt(GROUPS)
    order, n = flow.order, float(widths[-1])
    c = flow.coefficients[-1]
    rows = []
    for m in range(1, min(3, order + 1) + 1):
        predicted = tuple(
            float(sum(c[m, k] / n**k for k in range(m - 1, p + 1))) if p >= m - 1 else 0.0 for p in range(order + 1)
        )
        rows.append(Row(m, float(measured[m - 1]), float(se[m - 1]), predicted))
    return Check(act.name, flow.depth, widths, flow.C_b, flow.C_W, samples, seed, order, tuple(rows))
