"""The shared runtime: quadrature nodes, input checks, the Python entry points every module exports."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numba import njit

from pdlt.derive.errors import UserError
from pdlt.generated import relu, tanh
from pdlt.runtime import api, numerics
from pdlt.runtime.errors import FlowError


@pytest.mark.parametrize("even", [False, True])
@pytest.mark.parametrize("shift", [0, 1])
def test_trapezoid_nodes_integrate_the_gaussian(even, shift):
    """sum w h / sqrt(2 pi) = 1 to roundoff: the rule is exponentially accurate for the Gaussian itself
    (aliasing error ~ exp(-2 pi^2 / h^2) ~ 1e-34 at h = 0.4; truncation at 30 h = 12: exp(-72))."""
    x, w = np.zeros(61), np.zeros(61)
    count = numerics._trapezoid_nodes(30, 0.4, shift, even, x, w)
    assert count == (31 if even else 61 - shift)
    assert abs(w[:count].sum() * 0.4 / math.sqrt(2 * math.pi) - 1.0) < 4 * np.finfo(float).eps * count
    if even:
        assert (x[:count] >= 0).all()


def test_flow_error_is_a_user_error_shared_by_every_module():
    assert tanh.FlowError is relu.FlowError is FlowError and issubclass(FlowError, UserError)
    with pytest.raises(FlowError, match="give exactly one of width and widths"):
        tanh.flow(3)


def test_entry_points_are_documented_for_their_module():
    assert tanh.flow.__module__ == "pdlt.generated.tanh" and tanh.flow.__name__ == "flow"
    assert "order-2 recursion for tanh" in tanh.flow.__doc__
    assert "for relu" in relu.two_input_flow.__doc__
    assert "d^i/dK^i <sigma^(2a)>_K" in tanh.moments.__doc__


def test_hidden_widths_and_hyperparameter_parts():
    assert api.hidden_widths(3, 8, None) == [8, 8] and api.hidden_widths(3, None, [4.0, 5]) == [4, 5]
    for bad in ([4], [4, 0], [4, 2.5]):
        with pytest.raises(FlowError):
            api.hidden_widths(3, None, bad)
    assert api.hyper_parts(2, 1.5, (0.25, 0.5, 7.0)).tolist() == [1.5, 0.25, 0.5]  # beyond the order: dropped


def test_the_module_description_matches_the_workspace():
    mu, err, mag = tanh.workspace()
    assert mu.shape == (tanh._NROWS, tanh._MAX_I + 1) == api.Module.shape.fget(tanh._MODULE)
    fields = dict(zip(numerics.DIMS_FIELDS, tanh._DIMS.tolist()))
    assert fields["order"] == tanh.ORDER and fields["top"] == tanh._TOP and fields["nrows"] == tanh._NROWS
    assert len(tanh._QCOUNT) == tanh._NROWS and tanh._RULE[numerics.KIND] == numerics.KINDS["trapezoid"]


@njit
def _call_integrands(integrands, x, sk, params, values):
    """A module's callbacks are numba cfuncs: call one from numba code, as the runtime does."""
    integrands(x, x.shape[0], sk, params, True, values)


def test_python_and_numba_entry_points_agree():
    """moments() (the runtime with the module's pointers) against the module's own pieces called
    directly: the closed forms of relu and the quadrature rows of tanh land where DIMS says."""
    mu, err, mag = relu.workspace()
    relu.moments(0.7, np.zeros(1), True, mu, err, mag)
    assert mu[1, 0] == pytest.approx(0.35, rel=1e-15) and mu[relu._PERP, 0] == pytest.approx(0.5, rel=1e-15)
    mu, err, mag = tanh.workspace()
    tanh.moments(0.7, np.zeros(1), True, mu, err, mag)
    values = np.zeros((1, tanh._NROWS))
    _call_integrands(tanh._integrands, np.zeros(1), math.sqrt(0.7), np.zeros(1), values)
    assert values[0, 1] == 0.0 and values[0, tanh._PERP] == 1.0  # tanh(0)^2, tanh'(0)^2
    assert 0 < mu[1, 0] < 0.7 and np.all(err[1:4, 0] < 1e-13 * mag[1:4, 0] + 1e-300)


def test_a_depth_that_would_not_fit_is_refused_before_allocating(monkeypatch):
    """flow relu --depth 100000000 grew to 12 GB before; the arrays' size is now checked first."""
    monkeypatch.setattr(api, "available_memory", lambda: 2**30)
    with pytest.raises(FlowError, match=r"depth 10000000 needs about 2\.7 GiB .* more than half of the 1\.0 GiB"):
        relu.flow(10_000_000, width=64, C_W=2.0)
    assert relu.flow(1000, width=64, C_W=2.0).depth == 1000  # 0.3 MB: fine


def test_a_kernel_too_large_to_integrate_is_refused_not_allocated():
    """tanh at K ~ 1e15 would need ~2e9 trapezoid nodes (hypothesis found the MemoryError): refused in one line."""
    from pdlt import generated
    from pdlt.runtime.errors import FlowError

    with pytest.raises(FlowError, match="too large to integrate at layer 1"):
        generated.load("tanh").flow(5, width=16, C_W=1.7e15)
