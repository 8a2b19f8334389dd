"""The generated pair sector (pdlt.generated.pair_metric) against its symbolic stages, at random numbers.

Hypothesis draws the state, the moments and the hyperparameters; the two generated functions of each order
(``_pair_cumulants_p``, ``_pair_step_p``) must give what the sector's expressions give, evaluated by sympy's
lambdify on the same numbers (allowance: 1e-11 relative to the sum of the absolute values of each expression's
terms, a bound on what reordering a floating-point sum can change).
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from pdlt.derive import notation as nt
from pdlt.derive.sectors import pair_metric as sector
from pdlt.generated import pair_metric as generated_pair


@njit
def _call4(fn, a, b, c, d):
    fn(a, b, c, d)


@njit
def _call6(fn, a, b, c, d, r, e):
    fn(a, b, c, d, r, e)


numbers = st.lists(st.floats(min_value=-2.0, max_value=2.0), min_size=400, max_size=400)


@pytest.mark.parametrize("order", generated_pair.ORDERS)
@settings(max_examples=5, deadline=None)
@given(values=numbers, ratio=st.floats(min_value=0.25, max_value=4.0))
def test_generated_stages_are_the_sectors(order, values, ratio):
    sec = sector(order)
    draw = iter(values)
    dims = getattr(generated_pair, f"_DIMS_{order}")
    m = np.array([next(draw) for _ in range(dims[3])])
    mua, mub = np.zeros((dims[4], dims[5])), np.zeros((dims[4], dims[5]))
    for arr, name in ((mua, "mua"), (mub, "mub")):
        for (a, i), _ in sec.field(name).entries:
            arr[a, i] = next(draw)
    s = np.zeros(dims[2])
    _call4(getattr(generated_pair, f"_pair_cumulants_{order}"), m, mua, mub, s)

    values_of = {sym: m[key[0]] for key, sym in sec.field("m").entries}
    for name, arr in (("mua", mua), ("mub", mub)):
        values_of.update({sym: arr[key] for key, sym in sec.field(name).entries})
    cumulants, step = sec.stages
    for (n,), expr in cumulants.rules:
        want, size = _evaluate(expr, values_of)
        assert abs(s[n] - want) <= 1e-11 * (1 + size), (n, s[n], want)

    c = np.zeros((dims[0], dims[1]))
    for key, _ in sec.field("c").entries:
        c[key] = next(draw)
    cb, cw = np.array([next(draw) for _ in range(order + 1)]), np.array([abs(next(draw)) for _ in range(order + 1)])
    out = np.zeros_like(c)
    _call6(getattr(generated_pair, f"_pair_step_{order}"), c, s, cb, cw, ratio, out)
    values_of = {sym: c[key] for key, sym in sec.field("c").entries}
    values_of.update({sym: s[key] for key, sym in sec.field("s").entries})
    values_of[nt.r] = ratio
    values_of.update({nt.hyper("C_b", k): cb[k] for k in range(order + 1)})
    values_of.update({nt.hyper("C_W", k): cw[k] for k in range(order + 1)})
    for key, expr in step.rules:
        want, size = _evaluate(expr, values_of)
        assert abs(out[key] - want) <= 1e-11 * (1 + size), (key, out[key], want)


def _evaluate(expr, values: dict) -> tuple[float, float]:
    """(value, sum of |terms|) of a polynomial at the given numbers, in double precision."""
    terms = sp.Add.make_args(sp.expand(expr))
    parts = [float(t.xreplace(values)) for t in terms]
    return float(sum(parts)), float(sum(abs(p) for p in parts))
