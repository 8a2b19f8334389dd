"""Sectors: each family of recursions described once, symbolically, for codegen (DESIGN section 8)."""

from __future__ import annotations

import pytest
import sympy as sp

from pdlt.derive import activations, delta, sectors
from pdlt.derive import notation as nt
from pdlt.derive.expectations import expectations
from pdlt.derive.recursion import cumulant_derivatives, derive_step, moment_derivatives, state_keys


@pytest.mark.parametrize("order", [0, 1, 2, 3])
def test_the_single_input_sector_is_the_derived_step(order):
    act = activations.get("tanh")
    sector = sectors.single_input(act, order)
    step = derive_step(order, renormalized=True)
    cumulants, layer = (dict(stage.rules) for stage in sector.stages)
    assert [s.name for s in sector.stages] == ["cumulants", "step"]
    assert cumulants == {key: step.cumulants[key] for key in cumulant_derivatives(order)}
    assert layer == {key: step.new_state[key] for key in state_keys(order)}
    assert [key for key, _ in sector.field("c").entries] == state_keys(order)
    assert sector.field("c").symbol((2, 1)) == nt.c(2, 1) if order >= 1 else True
    assert [(p.power, p.derivatives) for p in sector.integrands] == moment_derivatives(order)


@pytest.mark.parametrize("name", ["tanh", "relu", "gelu", "elu"])
def test_integrands_record_how_derive_evaluates_them(name):
    act = activations.get(name)
    found = expectations(act, moment_derivatives(2))
    for p in sectors.single_input(act, 2).integrands:
        assert p.factor == sectors.SIGMA and p.expectation == found[(p.power, p.derivatives)]


def test_the_delta_sector_reads_sigma_and_sigma_prime_rows():
    sector = sectors.delta(activations.get("tanh"))
    keys = {p.key for p in sector.integrands}
    # g, g', g'' (the shift of K_[0] needs g''), <sigma'^2> and its K-derivative
    assert keys == {("sigma", 1, 0), ("sigma", 1, 1), ("sigma", 1, 2), ("sigma'", 1, 0), ("sigma'", 1, 1)}
    chi_stage, step_stage = sector.stages
    assert (chi_stage.writes, step_stage.writes) == ("chi", "state")
    rows = {p.symbol: p for p in sector.integrands}
    # chi_perp = C_W <sigma'^2>_K (5.51): the derived rule reads the sigma' row with no K-derivative
    (row,) = dict(chi_stage.rules)[(1,)].free_symbols - {nt.C_W}
    assert rows[row].key == ("sigma'", 1, 0)
    assert dict(step_stage.rules)[(2,)] == delta.CHI_PERP * delta.ddK2 + delta.H * delta.dK1**2


def test_a_sigma_with_a_jump_has_no_sigma_prime_rows():
    step = activations.Activation("step", sp.Piecewise((0, nt.z < 0), (1, True)))
    assert sectors.perp_integrands(step) == ()
    assert {p.factor for p in sectors.delta(step).integrands} == {sectors.SIGMA}


@pytest.mark.parametrize(
    ("name", "kind"), [("tanh", "trapezoid"), ("elu", "gauss-legendre"), ("relu", "none"), ("sin", "none")]
)
def test_derive_chooses_the_quadrature_rule(name, kind):
    act = activations.get(name)
    integrands = sectors.single_input(act, 2).integrands + sectors.delta(act).integrands
    rule = sectors.choose_rule(act, integrands)
    assert rule.kind == kind
    if kind == "trapezoid":
        assert rule.even and 0 < rule.beta <= 1 and rule.x_max > 8
    if kind == "gauss-legendre":
        assert rule.breakpoints == (0.0,) and [len(x) for x, _ in rule.nodes] == [40, 60]
