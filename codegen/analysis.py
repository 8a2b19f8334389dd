"""Criticality put to work with the generated kernels: nu from the flow, the aspect ratio, laws to overlay.

``pdlt.derive.criticality`` finds critical points and classes analytically; here the generated
flow supplies what only iteration can: nu at large depth (book 5.128-5.131, A.68-A.70), the size
of finite-width corrections at a given depth and width, and the verdict of appendix A.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pdlt.derive.activations import Activation
from pdlt.derive.criticality import CriticalityReport, CriticalPoint, critical_points
from pdlt.derive.errors import UserError

from .plots import Overlay

NU_DEPTH = 4000


def usable_point(report: CriticalityReport) -> CriticalPoint | None:
    """The critical point a user would initialize at: stable first, then half-stable."""
    points = [p for p in report.critical_points if p.stable]
    points = points or [p for p in report.critical_points if p.K_star not in (None, 0.0)]
    return points[0] if points else None


def start_norm(point: CriticalPoint, kernel: float = 1.0) -> float:
    """|x|^2/n_0 that puts layer 1 at K* (or at ``kernel`` on a line or at K* = 0)."""
    target = point.K_star if point.K_star not in (None, 0.0) else kernel
    return (target - point.C_b) / point.C_W


def nu_from_flow(module, point: CriticalPoint, depth: int = NU_DEPTH, params: dict | None = None) -> float:
    """nu with V/(n K^2) ~ nu l / n, read off the generated flow at large depth:
    V(L) / (K(L)^2 (L - 1)) at infinite-width bookkeeping (the coefficients do not depend on n)."""
    flow = module.flow(
        depth, width=1000, C_b=point.C_b, C_W=point.C_W, input_norm2=start_norm(point), check=False, **(params or {})
    )
    K, V = flow.K[-1], flow.V[-1]
    return float(V / (K * K * (depth - 1)))


def exponents_from_flow(module, point: CriticalPoint, depth: int = NU_DEPTH, params: dict | None = None) -> dict:
    """Critical exponents O ~ l^(-p_O) read off the generated flows as local log-slopes between
    l = depth/2 and depth: p_0 (K, or K - K* when K* > 0 is approached), p_V, p_1 (G{1}) from the
    single-input flow, p_parallel and p_perp from the two-input delta expansion. Corrections are
    O(log l / l) for the K* = 0 class; a quantity that does not move gives 0."""
    params = params or {}
    norm = start_norm(point)
    flow = module.flow(depth, width=1000, C_b=point.C_b, C_W=point.C_W, input_norm2=norm, check=False, **params)
    pair = module.two_input_flow(
        depth, C_b=point.C_b, C_W=point.C_W, input_norm2=norm, input_dot=1e-3 * norm, input_delta2=1e-6 * norm, **params
    )
    half, last = depth // 2 - 1, depth - 1
    span = math.log((last + 1) / (half + 1))

    def slope(values) -> float:
        a, b = abs(float(values[half])), abs(float(values[last]))
        if a == 0.0 or b == 0.0 or math.isclose(a, b, rel_tol=1e-9):
            return 0.0
        return round(-math.log(b / a) / span, 3)

    return {
        "p_0": slope(flow.K),
        "p_parallel": slope(pair["dK1"]),
        "p_perp": slope(pair["ddK2"]),
        "p_V": slope(flow.V),
        "p_1": slope(flow.G1),
    }


@dataclass
class AspectRatio:
    activation: str
    depth: int
    width: int
    outputs: int
    C_b: float
    C_W: float
    r: float
    nu: float
    r_star: float
    vertex: float  # V/(n K^2) at the output
    nlo_metric: float  # G{1}/(n K) at the output
    next_vertex: float  # V{1}/(n^2 K^2): the 1/n^2 term, computed
    neglected: float  # estimated size of the first term not computed, relative
    verdict: str

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def aspect_ratio(
    act: Activation,
    module,
    depth: int,
    width: int,
    outputs: int,
    C_b: float | None = None,
    C_W: float | None = None,
    params: dict | None = None,
) -> AspectRatio:
    """r = L/n, the predicted finite-width effects at the output, and appendix A's optimum
    r* = 4 / ((20 + 3 n_L) nu) (A.73); hyperparameters default to the activation's critical point."""
    report = critical_points(act)
    point = usable_point(report)
    if C_b is None or C_W is None:
        if point is None:
            raise UserError(f"{act.name} has no critical initialization ({report.reason}); give --C-b and --C-W")
        C_b, C_W = point.C_b, point.C_W
        norm = start_norm(point)
    else:
        norm = 1.0
    nu = report.nu if report.nu is not None else (nu_from_flow(module, point, params=params) if point else None)
    flow = module.flow(depth, width=width, C_b=C_b, C_W=C_W, input_norm2=norm, **(params or {}))
    n = float(width)
    K, V, G1 = flow.K[-1], flow.V[-1], flow.G1[-1]
    V1 = flow.coefficient(2, 2)[-1] if module.ORDER >= 2 else 0.0
    vertex = V / (n * K * K)
    nlo = G1 / (n * K)
    second = V1 / (n * n * K * K)
    # the series in 1/n is roughly geometric: the next term ~ (second)^2 / (first)
    neglected = abs(second) ** 2 / abs(vertex) if vertex else 0.0
    r = depth / n
    r_star = 4 / ((20 + 3 * outputs) * nu) if nu else math.nan
    return AspectRatio(
        act.name,
        depth,
        width,
        outputs,
        float(C_b),
        float(C_W),
        r,
        float(nu) if nu else math.nan,
        r_star,
        float(vertex),
        float(nlo),
        float(second),
        float(neglected),
        verdict(r, r_star, vertex, neglected),
    )


def verdict(r: float, r_star: float, vertex: float, neglected: float) -> str:
    """Plain language, after the book's appendix A and (eps.24)."""
    size = f"V/(nK^2) = {vertex:.3g} at the output"
    if r >= 1:
        return (
            f"r = {r:.3g} >= 1: the 1/n expansion breaks down (the error of order p grows like r^(p+1)); "
            f"{size}. The network is strongly coupled: use a wider or shallower one."
        )
    if not math.isfinite(r_star):
        return f"r = {r:.3g}; {size}; no critical nu, so no optimal aspect ratio."
    ratio = r / r_star
    if ratio < 0.5:
        return (
            f"r = {r:.3g} is well below the optimal r* = {r_star:.3g}: close to the infinite-width "
            f"(kernel) limit, {size}; little representation learning."
        )
    if ratio <= 2:
        return (
            f"r = {r:.3g} is near the optimal r* = {r_star:.3g} (appendix A): finite-width effects are "
            f"real but controlled, {size}, next order ~{neglected:.1g}."
        )
    return (
        f"r = {r:.3g} is {ratio:.1f} x the optimal r* = {r_star:.3g}: fluctuations dominate, {size}; "
        f"the next order is ~{neglected:.1g}, so trust the order-2 numbers only roughly."
    )


def overlays(act: Activation, module, flow, C_b: float, C_W: float) -> tuple[list[Overlay], str]:
    """Asymptotic laws for the flow figure when (C_b, C_W) is the activation's critical point."""
    report = critical_points(act)
    point = next(
        (
            p
            for p in report.critical_points
            if math.isclose(p.C_b, C_b, rel_tol=1e-6, abs_tol=1e-9) and math.isclose(p.C_W, C_W, rel_tol=1e-6)
        ),
        None,
    )
    if point is None:
        return [], "not at a critical point: no asymptotic law overlaid"
    layers = np.arange(2, flow.depth + 1, dtype=float)
    n = flow.widths.astype(float)
    out: list[Overlay] = []
    nu = report.nu
    if report.klass == "K*=0" and point.minus_a1:
        a1 = -point.minus_a1
        out.append(Overlay("K", f"1/((-a_1) l), -a_1 = {-a1:.3g} (5.92)", layers, 1 / (-a1 * layers)))
        out.append(Overlay("V", "(2/3) l/n (5.131)", layers, (2 / 3) * layers / n))
        out.append(Overlay("G1", "-1/(3(-a_1)) (5.134)", layers, np.full_like(layers, -1 / (3 * -a1))))
    elif report.klass == "scale-invariant" and nu:
        out.append(Overlay("K", "K constant (5.66)", layers, np.full_like(layers, flow.K[0])))
        out.append(Overlay("V", f"{nu:.3g} (l-1)/n (5.120)", layers, nu * (layers - 1) / n))
        out.append(Overlay("G1", "G{1} = 0 (5.117)", layers, np.zeros_like(layers)))
    else:
        nu = nu or nu_from_flow(module, point)
        out.append(Overlay("V", f"nu (l-1)/n, nu = {nu:.4g} from the flow", layers, nu * (layers - 1) / n))
    return out, f"critical point of class {report.klass}"


def renormalized_initialization(klass: str, point: CriticalPoint) -> dict | None:
    """The 1/n-corrected initialization of the K* = 0 class (book 5.141-5.142): with
    C_W = C_W* (1 + 2/(3n)) the NLO metric's leading growth cancels; None for other classes."""
    if klass != "K*=0":
        return None
    return {
        "C_b_n": [0.0],
        "C_W_n": [2 * point.C_W / 3],
        "note": "book 5.141-5.142: C_W = (1 + 2/(3n)) / sigma_1^2; pass --C-W-n to pdlt flow",
    }
