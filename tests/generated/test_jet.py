"""The generated grid callbacks of sigma and its derivatives (``_values``, ``_dvalues``, ``_d2values``,
``_d3values`` and the one-pass ``_jet`` the NTK expectations use) against the activation's symbolic derivatives.

``_jet`` must equal the four separate callbacks bit for bit (the same inlined functions, one pass: a row in the
wrong place or a wrong scale is caught exactly), and both must equal sympy's derivatives of each smooth piece,
evaluated by mpmath at 30 digits, to 1e-12 of max(1, |value|): the generated functions evaluate those same
expressions in double precision, a few dozen operations of at most half an ulp each at |z| <= 18. A kinked
activation's module has no sigma'' or sigma''' (NaN everywhere: point masses at the kink).
"""

from __future__ import annotations

import math

import mpmath as mpm
import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from pdlt.derive.activations import get
from pdlt.derive.notation import z
from pdlt.generated import SHIPPED, load
from pdlt.runtime import ntk_mehler

TOL = 1e-12


def _reference(name: str):
    """(k, z) -> the k-th derivative of sigma at z from the symbolic pieces (30 digits), and sigma's breakpoints."""
    act = get(name)
    defaults = {sym: val for sym, val in act.params}
    pieces = []
    for piece in act.pieces:
        derivs = [sp.lambdify(z, sp.diff(piece.expr.subs(defaults), z, k), "mpmath") for k in range(4)]
        pieces.append((float(piece.lo), float(piece.hi), derivs))

    def value(k: int, x: float) -> float:
        with mpm.workdps(30):
            for lo, hi, derivs in pieces:
                if lo <= x <= hi:
                    return float(derivs[k](mpm.mpf(x)))
        raise AssertionError(x)

    return value, [float(b) for b in act.breakpoints]


@pytest.mark.parametrize("name", sorted(SHIPPED))
@settings(max_examples=20, deadline=None)
@given(
    xs=st.lists(st.floats(-6.0, 6.0), min_size=1, max_size=8),
    scale=st.floats(0.1, 3.0),
)
def test_jet_is_the_four_callbacks_and_the_symbolic_derivatives(name, xs, scale):
    pieces = load(name)._MODULE.pieces
    value, breaks = _reference(name)
    x = np.array(xs)
    params = np.array([float(v) for _, v in get(name).params] or [0.0])
    jet = np.zeros(4 * x.size)
    ntk_mehler._call(pieces.jet, x, scale, params, jet)
    jet = jet.reshape(4, x.size)
    for k, f in enumerate((pieces.values, pieces.dvalues, pieces.d2values, pieces.d3values)):
        alone = np.zeros(x.size)
        ntk_mehler._call(f, x, scale, params, alone)
        np.testing.assert_array_equal(jet[k], alone)
        if breaks and k >= 2:  # a kinked module has no sigma'' or sigma''' (point masses): NaN, refused downstream
            assert np.all(np.isnan(jet[k]))
            continue
        for j, xj in enumerate(x):
            zj = scale * xj
            if any(abs(zj - b) < 1e-6 for b in breaks):  # at a kink a derivative is one-sided: NaN or either side
                continue
            want = value(k, zj)
            assert abs(jet[k, j] - want) <= TOL * max(1.0, abs(want)), (name, k, zj, jet[k, j], want)
            assert math.isfinite(jet[k, j])
