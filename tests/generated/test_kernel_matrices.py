"""N x N kernel matrices at infinite width (pdlt.runtime.kernels): NNGP K and NTK Theta for every pair."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from scipy.special import erf

from pdlt import generated
from pdlt.codegen.kernel_reference import gauss_hermite, scale_invariant
from pdlt.runtime.errors import FlowError


def _inputs(seed=1, n0=8):
    """Generic inputs plus the hard cases: a near-duplicate (1e-7), an exact and a near (1e-6) antiparallel
    pair, and unequal norms."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(6, n0))
    x[1] = x[0] + 1e-7 * rng.normal(size=n0)
    x[2] = -x[0]
    x[3] = -x[0] + 1e-6 * rng.normal(size=n0)
    x[4] *= 1.5
    return x


def _scaled_error(got, ref):
    """max |got - ref| / sqrt(ref_aa ref_bb): the natural scale of an entry (Cauchy-Schwarz)."""
    scale = np.sqrt(np.einsum("lii,ljj->lij", ref, ref))
    return float(np.max(np.abs(got - ref) / scale))


HYPER = {"C_b": [0.1, 0.05, 0.2, 0.1, 0.0], "C_W": [1.7, 2.0, 1.5, 1.9, 2.1], "lambda_b": 0.3, "lambda_W": 1.1}


def _lists(depth):
    return [
        np.broadcast_to(np.asarray(HYPER[k], dtype=float), (depth,)) for k in ("C_b", "C_W", "lambda_b", "lambda_W")
    ]


@pytest.mark.parametrize(("name", "a_minus", "a_plus"), [("relu", 0, 1), ("leaky_relu", 0.01, 1), ("abs", -1, 1),
                                                         ("linear", 1, 1)])  # fmt: skip
def test_scale_invariant_class_against_30_digit_book_forms(name, a_minus, a_plus):
    """Every entry within 1e-14 of the book's (5.159)/(5.161) iterated at 30 digits (roundoff: a few eps per
    layer), including the near-duplicate and antiparallel pairs where the angle is recovered from D and S."""
    x, depth = _inputs(), 5
    res = generated.load(name).kernel(x, depth, **HYPER)
    K, T = (np.array(m, dtype=float) for m in scale_invariant(x, depth, *_lists(depth), a_minus, a_plus))
    assert _scaled_error(res.K, K) < 1e-14
    assert _scaled_error(res.Theta, T) < 1e-14
    assert res.method == "closed" and np.all(res.terms == 0)


def _naive_relu_theta(x, depth, cb, cw, lb, lw):
    """The textbook double-precision arc-cosine recursion with the angle from K_ab / sqrt(K_aa K_bb)."""
    dot = x @ x.T / x.shape[1]
    K, T = cb[0] + cw[0] * dot, lb[0] + lw[0] * dot
    for l in range(1, depth):
        d = np.sqrt(np.diag(K))
        th = np.arccos(np.clip(K / np.outer(d, d), -1, 1))
        sig = np.outer(d, d) * (np.sin(th) + (np.pi - th) * np.cos(th)) / (2 * np.pi)
        K, T = cb[l] + cw[l] * sig, lb[l] + lw[l] * sig + cw[l] * (np.pi - th) / (2 * np.pi) * T
    return T


def test_near_duplicates_keep_accuracy_where_the_textbook_recursion_loses_it():
    """The test above can fail: the angle from K_ab loses ~1e-9 on the NTK of the 1e-7 near-duplicate pair."""
    x, depth = _inputs(), 5
    T = np.array(scale_invariant(x, depth, *_lists(depth), 0, 1)[1], dtype=float)
    naive = _naive_relu_theta(x, depth, *_lists(depth))
    assert _scaled_error(naive[None], T[-1:]) > 1e-11
    assert _scaled_error(generated.load("relu").kernel(x, depth, **HYPER).Theta[-1:], T[-1:]) < 1e-14


def _logistic(z):
    return 1 / (1 + np.exp(-z))


SMOOTH = {
    "tanh": (np.tanh, lambda z: 1 / np.cosh(z) ** 2, 640),
    "erf": (erf, lambda z: 2 / np.sqrt(np.pi) * np.exp(-z * z), 240),
    "gelu": (lambda z: z * (1 + erf(z / math.sqrt(2))) / 2,
             lambda z: (1 + erf(z / math.sqrt(2))) / 2 + z * np.exp(-z * z / 2) / math.sqrt(2 * math.pi), 160),
    "swish": (lambda z: z * _logistic(z), lambda z: _logistic(z) * (1 + z * (1 - _logistic(z))), 240),
    "sin": (np.sin, np.cos, 160),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(SMOOTH))
def test_smooth_activations_against_tensor_gauss_hermite(name):
    """The Mehler series (and erf's arcsine closed form): entries within 1e-11 (relative to sqrt(K_aa K_bb)) of
    an independent n x n Gauss-Hermite recursion whose own error estimate (n against 3n/2 nodes) is below
    1e-12; the module's stated bound is below 1e-10."""
    sigma, dsigma, n = SMOOTH[name]
    x, depth = _inputs(n0=6) * 0.8, 4
    hyper = {"C_b": 0.1, "C_W": 1.5, "lambda_b": 0.3, "lambda_W": 1.1}
    res = generated.load(name).kernel(x, depth, **hyper)
    K, T, err = gauss_hermite(sigma, dsigma, x, depth, *([hyper[k]] * depth for k in hyper), n=n)
    assert err < 1e-12
    assert res.method == ("closed" if name in ("erf", "sin") else "hermite") and np.all(res.error <= 1e-10)
    assert _scaled_error(res.K, K) < 1e-11
    assert _scaled_error(res.Theta, T) < 1e-11


@pytest.mark.parametrize("name", ["relu", "tanh", "gelu"])
def test_diagonal_is_the_single_input_flow(name):
    mod = generated.load(name)
    x = _inputs()
    res = mod.kernel(x, 6, C_b=0.1, C_W=1.6)
    for a in (0, 4):
        flow = mod.flow(6, width=10**9, C_b=0.1, C_W=1.6, input_norm2=float(x[a] @ x[a] / x.shape[1]))
        np.testing.assert_allclose(res.K[:, a, a], flow.K, rtol=1e-14)


@pytest.mark.parametrize("name", ["relu", "tanh"])
def test_symmetric_and_positive_semidefinite(name):
    x = np.random.default_rng(3).normal(size=(40, 10))
    res = generated.load(name).kernel(x, 4, C_b=0.05, C_W=1.8)
    for M in (*res.K, *res.Theta):
        np.testing.assert_array_equal(M, M.T)
        eig = np.linalg.eigvalsh(M)
        assert eig[0] >= -1e-12 * eig[-1]


def test_delta_expansion_is_the_small_distance_limit():
    """K_{+-} of x_0 -+ dx/2 against the two-input delta expansion (book 5.46-5.48): the difference is the
    expansion's truncation, O(dx^4), so halving dx divides it by about 16 (at least 8 here)."""
    mod = generated.load("tanh")
    rng = np.random.default_rng(5)
    x0, u = rng.normal(size=4), rng.normal(size=4)
    gaps = []
    for eps in (0.08, 0.04):
        dx = eps * u
        res = mod.kernel(np.array([x0 + dx / 2, x0 - dx / 2]), 6, C_b=0.1, C_W=1.3, tensors=["K"])
        d = mod.two_input_flow(6, C_b=0.1, C_W=1.3, input_norm2=x0 @ x0 / 4, input_dot=x0 @ dx / 4,
                               input_delta2=dx @ dx / 4)  # fmt: skip
        gaps.append(np.max(np.abs(res.K[:, 0, 1] - (d["K00"] + d["ddK0"] - d["ddK2"]))))
    assert gaps[0] > 1e-12 and gaps[0] / gaps[1] > 8


def test_stored_layers_and_tensors():
    mod = generated.load("tanh")
    x = _inputs()
    full = mod.kernel(x, 5, C_b=0.1, C_W=1.5)
    part = mod.kernel(x, 5, C_b=0.1, C_W=1.5, layers=[4, 2])
    np.testing.assert_array_equal(part.layers, [2, 4])
    np.testing.assert_array_equal(part.K, full.K[[1, 3]])
    np.testing.assert_array_equal(part.Theta, full.Theta[[1, 3]])
    assert mod.kernel(x, 5, tensors=["K"]).Theta is None


def test_progress_and_saving(tmp_path):
    seen = []
    res = generated.load("relu").kernel(_inputs(), 3, progress=lambda done, total: seen.append((done, total)))
    assert seen and seen[-1][0] == seen[-1][1]
    path = tmp_path / "k.npz"
    res.save(str(path))
    with np.load(path) as data:
        assert sorted(data.files) == ["K", "Theta", "layers"]
        np.testing.assert_array_equal(data["Theta"], res.Theta)
    assert os.listdir(tmp_path) == ["k.npz"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"inputs": np.ones(3)}, "2-d array"),
        ({"inputs": np.array([[1.0, np.nan]])}, "NaN"),
        ({"inputs": np.array([[1.0, 0.0], [0.0, 0.0]])}, "input 1 is zero"),
        ({"C_W": [1.0, 2.0]}, "one per layer 1..3"),
        ({"C_W": -1.0}, "C_W must be > 0"),
        ({"lambda_b": -1.0}, "lambda_b must be >= 0"),
        ({"tensors": ["T"]}, "T is not defined for relu: it needs sigma.. twice"),
        ({"tensors": ["X"]}, "unknown tensor"),
        ({"layers": [0]}, "between 1 and depth"),
        ({"depth": 0}, "depth must be"),
        ({"parametrization": "mup"}, "parametrization must be"),
        ({"parametrization": "standard"}, "needs the hidden widths"),
        ({"parametrization": "standard", "widths": [4, 4], "lambda_W": 1.0}, "give neither"),
        ({"widths": [4]}, "widths needs depth - 1 = 2 integers"),
        ({"widths": [4, 0]}, "widths needs depth - 1 = 2 integers >= 1"),
    ],
)
def test_bad_input_is_refused_in_one_line(kwargs, message):
    args = {"inputs": np.eye(3), "depth": 3, **kwargs}
    with pytest.raises(FlowError, match=message) as info:
        generated.load("relu").kernel(**args)
    assert "\n" not in str(info.value)


def test_kinked_activation_is_refused_with_the_reason():
    with pytest.raises(FlowError, match="kink"):
        generated.load("hard_tanh").kernel(_inputs(), 3)


def _conditional_reference(name, x, depth, cb, cw, n=400):
    """K and Theta (lambda = C) for elu or hard tanh by conditioning: given z_a, z_b is Gaussian, and the inner
    expectations of these piecewise sigma and sigma' are closed forms in Phi and phi; the outer integral over
    z_a is Gauss-Legendre with n nodes on each piece between sigma's kinks (on [-12, 12] standard deviations)."""
    from scipy.special import ndtr

    def phi(t):
        return np.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)

    def inner(m, s):  # (E sigma(m + s v), E sigma'(m + s v)), v ~ N(0, 1)
        if name == "elu":
            tail = np.exp(m + 0.5 * s * s) * ndtr((-m - s * s) / s)  # E[e^X; X < 0]
            pos = m * ndtr(m / s) + s * phi(m / s)
            return pos + tail - ndtr(-m / s), ndtr(m / s) + tail
        lo, hi = (-1 - m) / s, (1 - m) / s  # hard tanh: clip to [-1, 1]
        mid = m * (ndtr(hi) - ndtr(lo)) + s * (phi(lo) - phi(hi))
        return mid + ndtr(-hi) - ndtr(lo), ndtr(hi) - ndtr(lo)

    def sigma(z):
        if name == "elu":
            return np.where(z > 0, z, np.expm1(np.minimum(z, 0))), np.where(z > 0, 1.0, np.exp(np.minimum(z, 0)))
        return np.clip(z, -1, 1), (np.abs(z) < 1).astype(float)

    kinks = [0.0] if name == "elu" else [-1.0, 1.0]
    t, w = np.polynomial.legendre.leggauss(n)
    N, n0 = x.shape
    K = cb + cw * (x @ x.T) / n0
    T = K.copy()
    for _ in range(1, depth):
        Kn, Tn = np.zeros_like(K), np.zeros_like(T)
        for a in range(N):
            ra = math.sqrt(K[a, a])
            cuts = [-12.0, *[k / ra for k in kinks], 12.0]
            u = np.concatenate([lo + (hi - lo) * (t + 1) / 2 for lo, hi in zip(cuts[:-1], cuts[1:])])
            wu = np.concatenate([(hi - lo) / 2 * w for lo, hi in zip(cuts[:-1], cuts[1:])]) * phi(u)
            za = ra * u
            sa, da = sigma(za)
            for b in range(N):
                s2 = K[b, b] - K[a, b] ** 2 / K[a, a]
                if a == b or np.array_equal(x[a], x[b]):  # z_b = z_a
                    sb, db = sa, da
                else:
                    sb, db = inner(K[a, b] / K[a, a] * za, math.sqrt(s2))
                Kn[a, b] = cb + cw * np.sum(wu * sa * sb)
                Tn[a, b] = cb + cw * np.sum(wu * sa * sb) + cw * np.sum(wu * da * db) * T[a, b]
        K, T = Kn, Tn
    return K, T


@pytest.mark.parametrize(("name", "tolerance"), [("elu", 1e-10), ("hard_tanh", 1e-9)])
def test_kinked_activations_against_a_conditional_reference(name, tolerance):
    """elu and hard tanh, whose Hermite coefficients are integrated piece by piece and whose pairs each bound their
    own truncation: K and Theta at layer 4 against the conditioning reference (its change from 300 to 400 nodes
    per piece is asserted below 1e-12), within the run's own error bound."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(5, 6))
    x[3] = x[0]  # an identical pair: the single-input flow, exactly
    res = generated.load(name).kernel(x, 4, C_b=0.1, C_W=1.5, layers=[4], tolerance=tolerance)
    K, T = _conditional_reference(name, x, 4, 0.1, 1.5)
    Kc, Tc = _conditional_reference(name, x, 4, 0.1, 1.5, n=300)
    assert max(_scaled_error(Kc[None], K[None]), _scaled_error(Tc[None], T[None])) < 1e-12
    bound = float(res.error[-1])
    assert bound <= tolerance
    assert _scaled_error(res.K, K[None]) <= 10 * bound + 1e-12
    assert _scaled_error(res.Theta, T[None]) <= 10 * bound + 1e-12
    np.testing.assert_array_equal(res.K[0, 0, 3], res.K[0, 0, 0])
