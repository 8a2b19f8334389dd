"""The NTK sector on three or more inputs (pdlt.runtime.ntk_many): each entry's recursion derived at its slots'
coincidence pattern and relabelled; the one- and two-input expectations by cubature with weight-derivative Hermite
polynomials, the three- and four-input ones by Hermite series across pairs (pdlt.runtime.ntk_mehler) (issues 7
item 3, 8)."""

from __future__ import annotations

from itertools import permutations, product

import numpy as np
import pytest

from pdlt.generated import load
from pdlt.runtime.errors import FlowError
from pdlt.runtime.finite import width_ratios
from pdlt.runtime.ntk import ntk_pair_flow, pair_arrays, sector
from pdlt.runtime.ntk_many import many_flow, pattern_of

X = np.array([[1.0, 0.3, -0.2], [0.2, 0.9, 0.5], [-0.5, 0.4, 1.0], [0.6, -0.6, 0.3]])
DEPTH = 4
HYPER = np.tile([0.1, 1.1, 0.7, 1.3], (DEPTH, 1))


def run(name, x, tolerance=1e-3, hyper=HYPER):
    mod = load(name)._MODULE
    return many_flow(mod, hyper.shape[0], x @ x.T / x.shape[1], hyper, width_ratios(None, hyper.shape[0]),
                     mod.param_values({}), tolerance)  # fmt: skip


def test_patterns():
    assert pattern_of((5, 2, 5, 7)) == (0, 1, 0, 2) and pattern_of((3, 3, 3, 3)) == (0, 0, 0, 0)


def test_two_inputs_are_the_pair_flow():
    """Every entry of every tensor at two inputs equals the Mehler-series pair flow (its own derivation at the 16
    label patterns, Hermite-coefficient shifts for the weight derivatives) to 1e-10 of the tensor's largest entry."""
    arrays, error = run("tanh", X[:2], 1e-8)
    mod = load("tanh")._MODULE
    T, _ = ntk_pair_flow(mod, DEPTH, X[:2] @ X[:2].T / 3, HYPER, width_ratios(None, DEPTH), mod.param_values({}), 1e-10)
    ref = pair_arrays(T, sector().NTK_PAIR_TENSORS)
    assert error[-1] < 1e-8
    for name, want in ref.items():
        scale = max(np.max(np.abs(want)), 1e-300)
        assert np.max(np.abs(arrays[name] - want)) <= 1e-10 * scale, name


def test_deep_linear_vertex_is_exact_on_four_inputs():
    """sigma = z, C_b = 0, C_W = 1: V(l)_(ab)(cd) = (l - 1)(K_ac K_bd + K_ad K_bc) with K = gram (deep linear
    networks, from V' = C_W^2 [V + K_ac K_bd + K_ad K_bc]); the cubature is exact for these polynomials. Four
    independent inputs in R^4: with C_b = 0 their Gram matrix is layer 1's kernel, which must not be singular."""
    hyper = np.tile([0.0, 1.0, 1.0, 1.0], (DEPTH, 1))
    X4 = np.hstack([X, [[0.3], [-0.4], [0.2], [0.8]]])
    arrays, _ = run("linear", X4, 1e-6, hyper)  # the estimate is roundoff over 331 776 nodes
    K = X4 @ X4.T / 4
    for l in range(1, DEPTH + 1):
        want = (l - 1) * (np.einsum("ac,bd->abcd", K, K) + np.einsum("ad,bc->abcd", K, K))
        assert np.allclose(arrays["V"][l - 1], want, rtol=1e-10, atol=1e-13)
        assert np.allclose(arrays["K1"][l - 1], 0.0, atol=1e-13)  # a deep linear network's mean kernel is exact


def test_three_inputs_hold_every_pair_and_permute_with_the_inputs():
    arrays, error = run("tanh", X[:3])
    pair, _ = run("tanh", X[:2], 1e-8)
    for name, a in pair.items():
        sub = arrays[name][(slice(None), *([slice(0, 2)] * (a.ndim - 1)))]
        assert np.allclose(sub, a, rtol=1e-10, atol=1e-14), name
    assert 0 < error[-1] < 1e-3  # three-input cubature: about 2e-5 here
    perm = (2, 0, 1)
    moved, _ = run("tanh", X[list(perm)])
    inverse = np.argsort(perm)
    for name, a in arrays.items():
        idx = np.ix_(*([inverse] * (a.ndim - 1)))
        scale = np.max(np.abs(a))
        assert np.max(np.abs(moved[name][(slice(None), *idx)] - a)) <= 10 * error[-1] * scale + 1e-14, name


def test_a_large_kernel_beside_small_ones_is_resolved():
    """Norms^2 0.38, 0.36 and 2.3 (a test input well outside the training inputs): the one- and two-input groups,
    by Gauss-Hermite, missed 1e-4 by a factor 77 (tanh's poles sit at distance 1.03 from the real axis in
    whitened coordinates there); with Gauss-Legendre panels the bound is 5e-5, and the block of the pair (1, 2)
    is the Mehler-series pair flow's to 10 times that bound."""
    x = np.array([[1.0, 0.3, -0.2], [-0.3, 1.0, 0.0], [-2.325, -0.219, -1.246]])
    hyper = np.tile([0.0, 1.0, 1.0, 1.0], (3, 1))
    arrays, error = run("tanh", x, 1e-4, hyper)
    assert error[-1] < 1e-4
    mod = load("tanh")._MODULE
    pair = x[1:]
    T, _ = ntk_pair_flow(mod, 3, pair @ pair.T / 3, hyper, width_ratios(None, 3), mod.param_values({}), 1e-8)
    for name, want in pair_arrays(T, sector().NTK_PAIR_TENSORS).items():
        got = arrays[name][(slice(None), *([slice(1, 3)] * (want.ndim - 1)))]
        scale = np.max(np.abs(want))
        assert np.max(np.abs(got - want)) <= 10 * error[-1] * scale, name


def test_symmetries_of_three_input_tensors():
    arrays, _ = run("tanh", X[:3])
    A, B = arrays["A"][-1], arrays["B"][-1]
    for p in permutations(range(3)):
        assert np.isclose(A[p[0], p[1], p[2], p[2]], A[p[1], p[0], p[2], p[2]])
    for a, b, c, d in product(range(3), repeat=4):
        assert B[a, b, c, d] == B[c, d, a, b]


def test_refusals():
    with pytest.raises(FlowError, match="R, S, T, U are not defined for relu: they need sigma'' twice"):
        run("relu", X[:3])
    with pytest.raises(FlowError, match="at most 64 inputs"):
        load("tanh").kernel(np.eye(65), 3, tensors=("A",))
    with pytest.raises(FlowError, match="above tolerance 1e-10"):
        run("tanh", X[:3], 1e-10)
    with pytest.raises(FlowError, match="singular at some layer: the inputs are linearly dependent"):
        run("tanh", np.vstack([X[:3], X[:1]]), 1e-3)  # an input twice
    four_in_three = np.array([[1.0, 0.3, -0.2], [-0.3, 1.0, 0.0], [0.2, -0.1, 1.0], [0.7, 0.7, 0.0]])
    with pytest.raises(FlowError, match="more of them than input dimensions with C_b = 0"):  # Gram matrix of rank 3
        load("tanh").kernel(four_in_three, 3, tensors=("A",), tolerance=1e-3)


def test_progress_counts_the_layers_then_the_pairs():
    """With four-index tensors on three inputs the flow reports each layer (told "layers" where the callback takes
    a third argument), then the blocks of pairs as before; a two-argument callback gets two arguments."""
    told, plain = [], []
    tanh = load("tanh")
    tanh.kernel(X[:3], 4, tensors=("V",), tolerance=1e-6, progress=lambda d, t, what="pairs": told.append((d, t, what)))
    tanh.kernel(X[:3], 4, tensors=("V",), tolerance=1e-6, progress=lambda d, t: plain.append((d, t)))
    assert told[:3] == [(1, 3, "layers"), (2, 3, "layers"), (3, 3, "layers")]
    assert told[3:] and all(w == "pairs" for *_, w in told[3:]) and told[-1][0] == told[-1][1]
    assert plain == [(d, t) for d, t, _ in told]


@pytest.mark.parametrize("name", ["relu", "hard_tanh"])
def test_kinked_three_inputs_hold_the_pair_flow(name):
    """A kinked sigma on three inputs (V, A, B, D, F, H1, and the dNTK's P, Q, whose weight derivatives are moved
    off the kinked factors as K^-1 z; the one- and two-input groups cut at the kinks, the triples by Hermite series
    over kink-cut tables): the block of the first two inputs is the two-input pair flow's (its own piecewise rules)
    to 1e-11 of each tensor's largest entry."""
    tensors = ("V", "A", "B", "D", "F", "H1", "P", "Q")
    three = load(name).kernel(X[:3], DEPTH, C_b=0.1, C_W=1.5, tensors=tensors, tolerance=1e-6)
    two = load(name).kernel(X[:2], DEPTH, C_b=0.1, C_W=1.5, tensors=tensors, tolerance=1e-8)
    assert three.four_error[-1] < 1e-6
    for t, want in two.four.items():
        got = three.four[t][(slice(None), *([slice(0, 2)] * (want.ndim - 1)))]
        assert np.max(np.abs(got - want)) <= 1e-11 * np.max(np.abs(want)), t
