"""pdlt.codegen.network_tensors, the sampled networks' own derivatives behind the dNTK Monte Carlo: its complex-step
Hessian-vector products against central differences of its backpropagated gradients, for tanh and for ReLU (whose
complex extension z 1[Re z > 0] gives the almost-sure derivatives)."""

from __future__ import annotations

import numpy as np
import pytest

from pdlt.codegen.network_tensors import hessian_times, initial, network_tensors, output_and_gradient, rates

X = np.array([[1.0, 0.3, -0.2], [0.2, 0.9, 0.5]])


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_hessian_times_is_the_derivative_of_the_gradient(activation):
    """Central differences at step 1e-6 (error ~1e-10 for tanh; for ReLU exact unless a preactivation crosses 0
    within the step, which a fixed seed rules out here: the difference is then exactly linear)."""
    sizes = [3, 12, 12, 2]
    rng = np.random.default_rng(4)
    theta = initial(sizes, rng, C_W=2.0)
    v = rng.standard_normal(theta.size)
    hv = hessian_times(theta, sizes, X, v, activation)
    s = 1e-6
    fd = (output_and_gradient(theta + s * v, sizes, X, activation)[1]
          - output_and_gradient(theta - s * v, sizes, X, activation)[1]) / (2 * s)  # fmt: skip
    assert np.allclose(hv, fd, rtol=1e-6, atol=1e-8 * np.abs(fd).max())
    assert np.abs(hv).max() > 0.1  # not trivially zero: ReLU's mixed weight derivatives remain
    z, H, dH, ddI, ddII = network_tensors(theta, sizes, X, rates(sizes, 1.0), third=False, activation=activation)
    g = output_and_gradient(theta, sizes, X, activation)[1]
    assert np.allclose(H, g @ (g * rates(sizes, 1.0)).T) and ddI is None and dH.shape == (4, 4, 4)


def test_relu_has_no_third_derivatives_by_differences():
    sizes = [3, 4, 1]
    with pytest.raises(ValueError, match="analytic"):
        network_tensors(initial(sizes, np.random.default_rng(0)), sizes, X, rates(sizes, 1.0), activation="relu")
