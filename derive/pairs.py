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
- **closed form** when sigma' is a Gaussian, ``sigma' = A exp(-beta z^2)`` (erf and its rescalings): by
  Price's theorem again, <sigma'_a sigma'_b> is a Gaussian integral of a Gaussian,
  ``A^2 det(1 + 2 beta G)^(-1/2)``, and <sigma_a sigma_b> its integral in K_ab from the independent point
  (where it is sigma(0)^2: sigma - sigma(0) is odd), an arcsine. sigma is smooth, so the pair's angle only
  needs absolute accuracy and the distance and sum come from the second moments.
- **Hermite (Mehler) series** otherwise: the runtime expands sigma(sqrt(K) x) in normalised Hermite
  polynomials, and the Parseval tail bounds the truncation error (``runtime.kernels``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache

import sympy as sp

from .activations import Activation
from .expectations import exponential_shaped
from .notation import z
from .stability import SmallK, exponential_terms, small_k_branch

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
    forms: dict | None = None  # see closed_forms
    helpers: tuple = ()  # (name, expression in theta, SmallK branch or None) that the forms refer to by name
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
        if not p.expr.is_polynomial(z):  # on the tree, before expanding
            return None
        expr = sp.expand(p.expr)
        if not expr.is_polynomial(z) or sp.degree(expr, z) > 1 or expr.subs(z, 0) != 0:
            return None
        slopes.append(sp.diff(expr, z))
    return (slopes[0], slopes[-1])


def _gaussian_derivative(act: Activation) -> tuple[sp.Expr, sp.Expr, sp.Expr] | None:
    """(A, beta, sigma(0)) if sigma' = A exp(-beta z^2) with beta > 0 and sigma has no parameters, else None."""
    if act.is_piecewise or act.expr.free_symbols != {z}:
        return None
    d = sp.diff(act.expr, z)
    if not exponential_shaped(d):  # refused structurally: simplify on tanh(tanh(...)) takes minutes
        return None
    d = sp.simplify(d)
    exps = [f for f in sp.Mul.make_args(d) if isinstance(f, sp.exp)]
    if len(exps) != 1:
        return None
    arg = sp.expand(exps[0].args[0])
    beta = -arg.coeff(z, 2)
    A = sp.simplify(d / exps[0])
    if sp.expand(arg + beta * z**2) != 0 or not beta.is_positive or A.has(z):
        return None
    return A, beta, act.expr.subs(z, 0)


@cache
def gaussian_pair(A: sp.Expr, beta: sp.Expr, s0: sp.Expr) -> tuple[sp.Expr, sp.Expr]:
    """(<sigma_a sigma_b>, <sigma'_a sigma'_b>) as functions of K_aa, K_bb, K_ab for sigma' = A exp(-beta z^2).

    <exp(-beta u_a^2) exp(-beta u_b^2)> over N(0, G) is det(1 + 2 beta G)^(-1/2) (a Gaussian integral of a
    Gaussian); Price's theorem integrates it in K_ab from 0, where <sigma_a sigma_b> = sigma(0)^2, through
    K_ab = sqrt(P) sin(phi) / (2 beta) with P = (1 + 2 beta K_aa)(1 + 2 beta K_bb) (|phi| < pi/2)."""
    c = sp.Symbol("K_ab", real=True)
    t, phi, P = sp.Symbol("t", real=True), sp.Symbol("phi", positive=True), sp.Symbol("P", positive=True)
    density = A**2 / sp.sqrt(P - 4 * beta**2 * t**2)
    along = density.subs(t, sp.sqrt(P) * sp.sin(phi) / (2 * beta)) * sp.diff(sp.sqrt(P) * sp.sin(phi) / (2 * beta), phi)
    along = sp.simplify(sp.trigsimp(along).subs(sp.sqrt(sp.cos(phi) ** 2), sp.cos(phi)))
    if along.has(phi):  # the substitution did not reduce the integrand to a constant: no closed form here
        raise ValueError(f"unexpected integrand {along}")
    end = sp.asin(2 * beta * c / sp.sqrt(P))
    sigma = s0**2 + along * end  # the integral of a constant in phi from 0 to asin(2 beta K_ab / sqrt(P))
    full = (1 + 2 * beta * K_a) * (1 + 2 * beta * K_b)
    return sigma.subs(P, full), density.subs({P: full, t: c})


def _exponential_sum(act: Activation) -> list[tuple[sp.Expr, sp.Expr]] | None:
    """[(A_i, c_i)] if sigma(z) = sum_i A_i exp(c_i z) with constant (possibly complex) A_i, c_i: sin, cos,
    sinh, cosh, exp and their combinations; None otherwise (or with parameters)."""
    if act.is_piecewise or act.expr.free_symbols != {z} or not exponential_shaped(act.expr):
        return None
    terms = []
    for term in sp.Add.make_args(sp.expand(act.expr.rewrite(sp.exp))):
        exps = [f for f in sp.Mul.make_args(term) if isinstance(f, sp.exp)]
        if len(exps) > 1:
            return None
        rate = sp.expand(exps[0].args[0]) if exps else sp.Integer(0)
        coeff = sp.simplify(term / exps[0]) if exps else term
        if coeff.has(z) or not sp.expand(rate - rate.coeff(z, 1) * z) == 0:
            return None
        terms.append((coeff, rate.coeff(z, 1)))
    return terms


@cache
def exponential_pair(terms: tuple[tuple[sp.Expr, sp.Expr], ...]) -> tuple[sp.Expr, sp.Expr]:
    """(<sigma_a sigma_b>, <sigma'_a sigma'_b>) for sigma = sum_i A_i exp(c_i z), by the bivariate Gaussian's
    characteristic function E[exp(c u_a + d u_b)] = exp((c^2 K_aa + 2 c d K_ab + d^2 K_bb) / 2)."""
    c = sp.Symbol("K_ab", real=True)

    def pair(weights):
        total = sum(
            (A * B * sp.exp((a**2 * K_a + 2 * a * b * c + b**2 * K_b) / 2) for A, a in weights for B, b in weights),
            sp.Integer(0),
        )
        return sp.simplify(sp.expand(total))

    return pair(terms), pair(tuple((A * a, a) for A, a in terms))


ARC_COSINE = "arc-cosine kernel (derived by Price's theorem) in theta, from the distance and sum of the pair"
ARC_SINE = "arcsine kernel (derived by Price's theorem from a Gaussian sigma')"
EXPONENTIAL = "sums of exponentials, by the bivariate characteristic function"


def _smooth_forms(sigma: sp.Expr, dsigma: sp.Expr, tidy=lambda e: e) -> dict[str, sp.Expr]:
    """The four pair expectations of a smooth sigma from <sigma_a sigma_b> and <sigma'_a sigma'_b> in K_ab: the
    distance and sum from the second moments (the angle of a smooth sigma needs only absolute accuracy)."""
    K_ab = sp.Symbol("K_ab", real=True)
    second = [sigma.subs({K_ab: K, other: K}, simultaneous=True) for K, other in ((K_a, K_b), (K_b, K_a))]
    forms = {
        "sigma": sigma,
        "dsigma": dsigma,
        "minus": second[0] + second[1] - 2 * sigma,
        "plus": second[0] + second[1] + 2 * sigma,
    }
    return {k: tidy(v).subs(K_ab, sp.Symbol("K_ab")) for k, v in forms.items()}


@cache
def pair_rule(act: Activation) -> PairRule:
    slopes = _slopes(act)
    if slopes is not None:
        step, relu = relu_pair()
        gap = sp.simplify(1 - 2 * relu)
        branch = small_k_branch(gap, theta)
        rule = PairRule("closed", ARC_COSINE, None, (("gap", gap, branch),), slopes, step, relu, gap, branch)
        return replace(rule, forms=_arc_cosine_forms(rule))
    gaussian = _gaussian_derivative(act)
    if gaussian is not None:
        return PairRule("closed", ARC_SINE, _smooth_forms(*gaussian_pair(*gaussian)))
    exponential = _exponential_sum(act)
    if exponential is not None:
        sigma, dsigma = exponential_pair(tuple(exponential))
        # one exponent per term: exp(K_ab - (K_aa + K_bb)/2) = exp(-D/2) never overflows
        return PairRule("closed", EXPONENTIAL, _smooth_forms(sigma, dsigma, exponential_terms))
    return PairRule("hermite", "Mehler series in normalised Hermite polynomials with a Parseval tail bound")


def closed_forms(rule: PairRule) -> dict[str, sp.Expr]:
    """The pair expectations in terms of K_aa, K_bb, K_ab, D, S and theta (closed rule only):
    ``sigma`` = <sigma_a sigma_b>, ``dsigma`` = <sigma'_a sigma'_b>, ``minus`` = <(sigma_a - sigma_b)^2>,
    ``plus`` = <(sigma_a + sigma_b)^2>. A helper's name (``gap``) stands for its expression (with its branch)."""
    return dict(rule.forms)


def _arc_cosine_forms(rule: PairRule) -> dict[str, sp.Expr]:
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
