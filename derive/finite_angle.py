"""Two inputs at a finite angle for the scale-invariant class (book section 5.5, (5.158)-(5.163)).

For sigma(z) = a_+ z (z >= 0), a_- z (z < 0) and equal input norms, the kernel of two inputs is
K = K_d [[1, cos psi], [cos psi, 1]], and the infinite-width recursion closes on (K_d, psi):

    K_d'          = C_b + C_W A_2 K_d,
    K_d' cos psi' = C_b + C_W { K_d (a_+ - a_-)^2 / (2 pi) [sin psi - psi cos psi] + A_2 K_d cos psi },

with A_2 = (a_+^2 + a_-^2)/2 (5.159)-(5.160). At criticality (C_b = 0, C_W = 1/A_2) the angle obeys
cos psi' = cos psi + rho (sin psi - psi cos psi), rho = (a_+ - a_-)^2 / (pi (a_+^2 + a_-^2)) (5.162),
so psi ~ 3/(rho l) (5.166) and K_[2] ~ K_d 9/(4 rho^2 l^2) (5.168): the true p_perp is 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import sympy as sp

from .activations import Activation, ActivationError
from .errors import UserError
from .notation import z


@dataclass(frozen=True)
class FiniteAngleFlow:
    """Per layer: the diagonal kernel, the angle, and the gamma-basis components (5.17)-(5.19)."""

    K_d: list[float]
    psi: list[float]

    @property
    def K0(self) -> list[float]:
        """K_[0] = K_d (1 + cos psi) / 2."""
        return [k * (1 + math.cos(p)) / 2 for k, p in zip(self.K_d, self.psi)]

    @property
    def K2(self) -> list[float]:
        """K_[2] = K_d (1 - cos psi) / 2, the component that separates the inputs."""
        return [k * (1 - math.cos(p)) / 2 for k, p in zip(self.K_d, self.psi)]


def slopes(act: Activation) -> tuple[float, float]:
    """(a_+, a_-) of a scale-invariant activation, with parameters at their defaults."""
    expr = act.with_defaults()
    pieces = Activation(act.name, expr).pieces
    if any(p.lo not in (-sp.oo, 0) or p.hi not in (0, sp.oo) for p in pieces) or len(pieces) > 2:
        raise ActivationError(f"{act.name} is not scale-invariant (a_+ z for z >= 0, a_- z below)")
    found = {}
    for p in pieces:
        slope = sp.simplify(p.expr / z)
        if slope.has(z):
            raise ActivationError(f"{act.name} is not scale-invariant: {p.expr} is not a multiple of z")
        if p.hi == sp.oo:
            found["+"] = slope
        if p.lo == -sp.oo:
            found["-"] = slope
    return float(found["+"]), float(found["-"])


def rho(a_plus: float, a_minus: float) -> float:
    """rho = (a_+ - a_-)^2 / (pi (a_+^2 + a_-^2)) of (5.162): 1/pi for ReLU, 0 for linear."""
    return (a_plus - a_minus) ** 2 / (math.pi * (a_plus**2 + a_minus**2))


def finite_angle_flow(
    act: Activation, depth: int, psi1: float, K_d1: float = 1.0, C_b: float = 0.0, C_W: float | None = None
) -> FiniteAngleFlow:
    """Iterate (5.160) from layer 1 (angle psi1 in (0, pi], diagonal kernel K_d1); C_W defaults to
    the critical 1/A_2."""
    a_plus, a_minus = slopes(act)
    A2 = (a_plus**2 + a_minus**2) / 2
    C_W = 1 / A2 if C_W is None else C_W
    if not 0 < psi1 <= math.pi:
        raise UserError(f"psi1 must lie in (0, pi], got {psi1}")
    K_d, psi = [K_d1], [psi1]
    for _ in range(1, depth):
        k, p = K_d[-1], psi[-1]
        k_new = C_b + C_W * A2 * k
        off = C_b + C_W * (
            k * (a_plus - a_minus) ** 2 / (2 * math.pi) * (math.sin(p) - p * math.cos(p)) + A2 * k * math.cos(p)
        )
        K_d.append(k_new)
        psi.append(math.acos(max(-1.0, min(1.0, off / k_new))))
    return FiniteAngleFlow(K_d, psi)
