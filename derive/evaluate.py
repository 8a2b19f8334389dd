"""High-precision evaluation of a derivation with mpmath: the reference the kernels are tested against.

Slow (mpmath quadrature for every expectation, every layer) but independent of code generation,
of the exact rules and of the generated quadrature: expectations come from
:func:`expectations.mp_expectation`, the recursion from :func:`recursion.derive_step`.
"""

from __future__ import annotations

from collections.abc import Sequence

import mpmath
import sympy as sp

from . import notation as nt
from .activations import Activation
from .expectations import mp_expectation
from .recursion import cumulant_derivatives, derive_step, moment_derivatives, state_keys

State = dict[tuple[int, int], mpmath.mpf]


def moments_at(act: Activation, order: int, kernel, params=None, dps: int = 30) -> dict:
    """mu_a^(i)(K) for every (a, i) the order needs, at ``dps`` digits."""
    return {(a, i): mp_expectation(act, a, i, kernel, params, dps) for a, i in moment_derivatives(order)}


def step_at(
    order: int, state: State, mu: dict, C_b, C_W, ratio, dps: int = 30, C_b_n: Sequence = (), C_W_n: Sequence = ()
) -> State:
    """One layer of the order-``order`` recursion, evaluated at ``dps`` digits."""
    step = derive_step(order, renormalized=True)
    with mpmath.workdps(dps + 10):
        subs = {nt.mu(a, i): mpmath.mpf(v) for (a, i), v in mu.items()}
        s_vals = {nt.s(m, j): _num(step.cumulants[(m, j)], subs) for m, j in cumulant_derivatives(order)}
        values = dict(s_vals)
        values[nt.r] = mpmath.mpf(ratio)
        for (m, k), v in state.items():
            if (m, k) != (1, 0):
                values[nt.c(m, k)] = mpmath.mpf(v)
        cb = [C_b, *C_b_n] + [0] * (order + 1)
        cw = [C_W, *C_W_n] + [0] * (order + 1)
        for k in range(order + 1):
            values[nt.hyper("C_b", k)] = mpmath.mpf(cb[k])
            values[nt.hyper("C_W", k)] = mpmath.mpf(cw[k])
        return {key: _num(step.new_state[key], values) for key in state_keys(order)}


def _num(expr: sp.Expr, values: dict):
    """Evaluate a polynomial expression in mpmath (no floats in between)."""
    f = sp.lambdify(list(values), expr, "mpmath")
    return f(*values.values())


def reference_flow(
    act: Activation, order: int, depth: int, widths: Sequence[int], C_b, C_W, input_norm2, params=None, dps: int = 30
) -> list[State]:
    """The state of layers 1..depth at ``dps`` digits; widths = (n_1, ..., n_{depth-1})."""
    with mpmath.workdps(dps + 10):
        state: State = {key: mpmath.mpf(0) for key in state_keys(order)}
        state[(1, 0)] = mpmath.mpf(C_b) + mpmath.mpf(C_W) * mpmath.mpf(input_norm2)
        layers = [state]
        for l in range(1, depth):
            ratio = 1 if l == 1 else mpmath.mpf(widths[l - 1]) / widths[l - 2]
            mu = moments_at(act, order, state[(1, 0)], params, dps)
            state = step_at(order, state, mu, C_b, C_W, ratio, dps)
            layers.append(state)
        return layers


def cumulant_values(layers: list[State], widths: Sequence[int], order: int) -> list[dict[int, mpmath.mpf]]:
    """kappa_m(G(l)) = sum_k c[m][k] / n_{l-1}^k for each layer (layer 1: only kappa_1)."""
    out = []
    for l, state in enumerate(layers, start=1):
        vals = {m: mpmath.mpf(0) for m in range(1, order + 2)}
        if l == 1:
            vals[1] = state[(1, 0)]
        else:
            n = mpmath.mpf(widths[l - 2])
            for (m, k), v in state.items():
                vals[m] += v / n**k
        out.append(vals)
    return out
