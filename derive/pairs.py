"""Two-input Gaussian expectations at any angle: what kernel matrices need (book ch. 5 and 8, DESIGN §9).

For a pair of inputs with layer-l kernel ``[[K_aa, K_ab], [K_ab, K_bb]]`` the infinite-width recursions

    K_ab(l+1) = C_b + C_W <sigma_a sigma_b>,   Theta_ab(l+1) = lambda_b + lambda_W <sigma_a sigma_b>
                                                                + C_W <sigma'_a sigma'_b> Theta_ab(l)

need three expectations; to stay accurate as the inputs coincide (or are antiparallel) the pair also
carries its distance ``D = K_aa + K_bb - 2 K_ab`` and its sum ``S = K_aa + K_bb + 2 K_ab``, which need
``<(sigma_a - sigma_b)^2>`` and ``<(sigma_a + sigma_b)^2>`` computed without subtracting nearly equal
numbers. The angle ``theta = arccos(K_ab / sqrt(K_aa K_bb))`` is recovered from D and S, never from
K_ab (``runtime.kernels``).

``pair_rule(act)`` decides how:

- **closed form** when sigma is piecewise linear with its only kink at 0 (relu, leaky relu, abs,
  linear): ``sigma = a_- z + (a_+ - a_-) relu(z)``. The relu pair expectation is *derived* here by
  Price's theorem (d/dK_ab <f_a g_b> = <f'_a g'_b>): the step-function pair is the integral of the
  bivariate density at the origin, and the relu pair is the integral of the step pair, both in theta
  from the independent point theta = pi/2. The result is the arc-cosine kernel, which the tests compare
  with its printed form. The distance part, which cancels as theta -> 0, gets a Taylor branch.
- **Hermite (Mehler) series** otherwise: the runtime expands sigma(sqrt(K) x) in normalised Hermite
  polynomials, and the Parseval tail bounds the truncation error (``runtime.kernels``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import sympy as sp

from .activations import Activation
from .notation import z
from .stability import SmallK, small_k_branch

theta = sp.Symbol("theta", positive=True)
K_a, K_b = sp.symbols("K_aa K_bb", positive=True)
s = sp.sqrt(K_a * K_b)


@dataclass(frozen=True)
class PairRule:
    """How a pair's expectations are computed.

    ``kind`` is "closed" or "hermite". For "closed": ``slopes`` = (a_-, a_+) and the unit functions of
    theta: ``step`` = <H(u_a) H(u_b)>, ``relu`` = <relu_a relu_b> / sqrt(K_aa K_bb), ``gap`` =
    1 - 2 * relu (so that <(relu_a - relu_b)^2> = (sqrt K_aa - sqrt K_bb)^2 / 2 + sqrt(K_aa K_bb) gap),
    with ``gap_branch`` its Taylor branch at theta = 0."""

    kind: str
    reason: str
    slopes: tuple[sp.Expr, sp.Expr] | None = None
    step: sp.Expr | None = None
    relu: sp.Expr | None = None
    gap: sp.Expr | None = None
    gap_branch: SmallK | None = None

    @property
    def exact(self) -> bool:
        return self.kind == "closed"


@cache
def relu_pair() -> tuple[sp.Expr, sp.Expr]:
    """(<H_a H_b>, <relu_a relu_b> / sqrt(K_aa K_bb)) as functions of theta, by Price's theorem.

    With K_ab = s cos(theta), d/dK_ab <H_a H_b> is the bivariate Gaussian density at the origin,
    1 / (2 pi s sin theta), and dK_ab = -s sin(theta) dtheta; at theta = pi/2 the inputs are independent,
    so <H_a H_b> = 1/4 and <relu_a relu_b> = <relu>_{K_aa} <relu>_{K_bb}."""
    t = sp.Symbol("t", positive=True)
    density = 1 / (2 * sp.pi * s * sp.sin(t))
    step = sp.Rational(1, 4) + sp.integrate(density * (-s * sp.sin(t)), (t, sp.pi / 2, theta))
    K = sp.Symbol("K", positive=True)
    mean = sp.integrate(z * sp.exp(-(z**2) / (2 * K)) / sp.sqrt(2 * sp.pi * K), (z, 0, sp.oo))  # <relu>_K
    independent = mean.subs(K, K_a) * mean.subs(K, K_b)
    relu = independent + sp.integrate(step.subs(theta, t) * (-s * sp.sin(t)), (t, sp.pi / 2, theta))
    return sp.simplify(step), sp.simplify(sp.expand(relu / s))


def _slopes(act: Activation) -> tuple[sp.Expr, sp.Expr] | None:
    """(a_-, a_+) if sigma is a_- z for z < 0 and a_+ z for z > 0 (one piece: a_- = a_+), else None."""
    pieces = act.pieces
    if len(pieces) > 2 or (len(pieces) == 2 and pieces[0].hi != 0):
        return None
    slopes = []
    for p in pieces:
        expr = sp.expand(p.expr)
        if not expr.is_polynomial(z) or sp.degree(expr, z) > 1 or expr.subs(z, 0) != 0:
            return None
        slopes.append(sp.diff(expr, z))
    return (slopes[0], slopes[-1])


@cache
def pair_rule(act: Activation) -> PairRule:
    slopes = _slopes(act)
    if slopes is None:
        return PairRule("hermite", "Mehler series in normalised Hermite polynomials with a Parseval tail bound")
    step, relu = relu_pair()
    gap = sp.simplify(1 - 2 * relu)
    return PairRule(
        "closed",
        "arc-cosine kernel (derived by Price's theorem) in theta, from the distance and sum of the pair",
        slopes,
        step,
        relu,
        gap,
        small_k_branch(gap, theta),
    )


def closed_forms(rule: PairRule) -> dict[str, sp.Expr]:
    """The pair expectations in terms of K_aa, K_bb, K_ab, D, S and theta (closed rule only):
    ``sigma`` = <sigma_a sigma_b>, ``dsigma`` = <sigma'_a sigma'_b>, ``minus`` = <(sigma_a - sigma_b)^2>,
    ``plus`` = <(sigma_a + sigma_b)^2>. ``gap`` stands for the unit gap function (with its branch)."""
    lo, hi = rule.slopes
    K_ab, D, S, gap = sp.symbols("K_ab D S gap")
    root = (K_a - K_b) ** 2 / (sp.sqrt(K_a) + sp.sqrt(K_b)) ** 2  # (sqrt K_aa - sqrt K_bb)^2, no cancellation
    kink = (hi - lo) ** 2
    return {
        # sigma = lo z + (hi - lo) relu(z) and Stein's lemma <u_a relu(u_b)> = K_ab / 2
        "sigma": lo * hi * K_ab + kink * s * rule.relu,
        "dsigma": lo * hi + kink * rule.step,
        "minus": lo * hi * D + kink * (root / 2 + s * gap),
        "plus": lo * hi * S + kink * ((K_a + K_b) / 2 + 2 * s * rule.relu),
    }
