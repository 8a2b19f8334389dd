"""The book's numbers and large-depth laws, reproduced by the generated kernels.

Regression values are the reference sheet's section 8 (mpmath quadrature of (5.108)-(5.111), computed
independently of pdlt). Large-depth laws are the book's (5.92), (5.131), (5.134), (5.120).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from pdlt import generated

# (activation, C_b, C_W, K1, layer, K, V, G1): reference part 1, section 8
TABLE = [
    ("tanh", 0.0, 1.0, 1.0, 2, 0.394294490398, 0.0975237380859, 0.0),
    ("tanh", 0.0, 1.0, 1.0, 3, 0.236450410499, 0.0678074938921, -0.0309325198661),
    ("tanh", 0.0, 1.0, 1.0, 4, 0.166656353802, 0.0501465964673, -0.0526824673413),
    ("tanh", 0.0, 1.0, 1.0, 5, 0.127904735299, 0.0393984430357, -0.0682253713605),
    ("sin", 0.0, 1.0, 1.0, 2, 0.432332358382, 0.120463023106, 0.0),
    ("sin", 0.0, 1.0, 1.0, 3, 0.289403626088, 0.105953701558, -0.0507381517133),
    ("sin", 0.0, 1.0, 1.0, 5, 0.177799287863, 0.0809770247533, -0.115937346595),
    ("gelu", 0.17292239, 1.98305826, 3.56155281281, 2, 3.56155281643, 62.2084344944, 0.0),
    ("gelu", 0.17292239, 1.98305826, 3.56155281281, 3, 3.56155282005, 124.416869277, -0.00893477481882),
    ("gelu", 0.17292239, 1.98305826, 3.56155281281, 5, 3.5615528273, 248.833739706, -0.0536086502918),
]


@pytest.mark.parametrize("name,C_b,C_W,K1,layer,K,V,G1", TABLE)
def test_reference_table(name, C_b, C_W, K1, layer, K, V, G1):
    """The table's values carry 12 significant digits: agreement to 5e-11 relative."""
    mod = generated.load(name)
    flow = mod.flow(layer, width=100, C_b=C_b, C_W=C_W, input_norm2=(K1 - C_b) / C_W)
    got = flow.coefficients[layer - 1]
    assert got[1, 0] == pytest.approx(K, rel=5e-11)
    assert got[2, 1] == pytest.approx(V, rel=5e-11)
    assert got[1, 1] == pytest.approx(G1, rel=5e-11, abs=1e-12)


def test_relu_vertex_grows_linearly_at_criticality():
    """(5.120): V = 5 (l-1) K^2, G{1} = 0, K constant; (eps.20): U(2) = 44 K^3, U(3) = 238, U(10) = 5796."""
    flow = generated.load("relu").flow(100, width=64, C_b=0.0, C_W=2.0, input_norm2=0.5)  # K = 1
    layers = np.arange(1, 101)
    np.testing.assert_array_equal(flow.K, np.ones(100))
    np.testing.assert_allclose(flow.V, 5 * (layers - 1), rtol=1e-14)
    np.testing.assert_array_equal(flow.G1, np.zeros(100))
    U = flow.coefficient(3, 2)
    assert (U[1], U[2], U[9], U[99]) == pytest.approx((44, 238, 5796, 732006), rel=1e-13)


@pytest.mark.parametrize("name,a1", [("tanh", -2.0), ("sin", -1.0)])
def test_k_star_zero_class_large_depth_laws(name, a1):
    """(5.92) K ~ 1/((-a1) l), (5.131) V/K^2 ~ (2/3) l, (5.134) G{1} -> -1/(3 (-a1)).

    Each law's first correction is O(log l / l) with coefficient (a2 - a1^2)/a1^3 (of order 1 for
    both), so at l = 20000 the tolerance is 10 log(l)/l ~ 5e-3 (relative).
    """
    L = 20000
    flow = generated.load(name).flow(L, width=1000, C_b=0.0, C_W=1.0, input_norm2=1.0, check=False)
    K, V, G1 = flow.K[-1], flow.V[-1], flow.G1[-1]
    tol = 10 * math.log(L) / L
    assert K * L * (-a1) == pytest.approx(1.0, rel=tol)
    assert V / (K**2 * L) == pytest.approx(2 / 3, rel=tol)
    assert G1 * 3 * (-a1) == pytest.approx(-1.0, rel=tol)


def test_linear_network_vertex_is_book_3_28():
    """V/(n K^2) = (1 + 2/n)^(l-1) - 1 = 2(l-1)/n + O(1/n^2) for deep linear networks."""
    flow = generated.load("linear").flow(30, width=50, C_W=1.0, input_norm2=2.0)
    np.testing.assert_allclose(flow.V, 2 * np.arange(30) * 4.0, rtol=1e-14)


def test_leaky_relu_parameter_reaches_the_kernels():
    """A_2 = (1 + a^2)/2 and 3A_4/A_2^2 - 1 = 6(1+a^4)/(1+a^2)^2 - 1 (part 1, 5.1)."""
    a = 0.3
    mod = generated.load("leaky_relu")
    flow = mod.flow(6, width=64, C_W=2 / (1 + a * a), input_norm2=1.0, slope=a)
    K = flow.K[0]
    np.testing.assert_allclose(flow.K, K, rtol=1e-14)
    coeff = 6 * (1 + a**4) / (1 + a * a) ** 2 - 1
    np.testing.assert_allclose(flow.V, coeff * np.arange(6) * K**2, rtol=1e-13)


def test_flow_shows_itself_in_notebooks():
    flow = generated.load("tanh").flow(30, width=64)
    assert repr(flow).startswith("Flow(tanh, order=2, depth=30, widths=[64, 64, 64, 64, 64, 64, ...], C_b=0, C_W=1")
    html = flow._repr_html_()
    assert html.count("<tr>") == 11 and "<th>G{1}</th>" in html and "<td>30</td>" in html
