"""One input's NTK statistics (pdlt.runtime.ntk with pdlt.generated.ntk) against the book's oracle facts
(reference part 2, section 10), 30-digit expectations and the symbolic step (issue 8).

- Facts 2 and 6: at criticality every scale-invariant activation has exact solutions for all layers (9.42)-(9.52),
  the exact cubic A of section 3.6, P = 0 (11.74) and Q (11.79); they hold to rounding (the expectations are
  polynomial moments, the quadrature is exact up to roundoff there), allowance 1e-13 relative.
- Fact 1: deep linear networks' exact ddNTKs (∞.46-∞.48), R = U = P = 0.
- Facts 3, 4 and 5: tanh with the learning rates (9.96) approaches the printed large-depth coefficients (the
  dNTK's P/(n Theta^2) -> -1/12, Q/(n Theta^2) -> -(1/16) lambda~_b / Theta_inf and the ddNTKs' R K/(n Theta^3) etc.
  among them); the book's ansatz
  (9.22) puts the corrections at O(log l / l), so the distance to each coefficient must shrink by at least 5 from
  l = 10^4 to 10^5 (8 for log l / l; or be below 1e-4 of it already) and be below 0.2 % at 10^5
  (fitted constants of the log l / l law are 2-3).
- Fact 7: the Bayes-equivalent learning rates give Theta(L) = K(L), B = F = P = Q = R = S = T = U = 0 and
  A = D = V at the output.
- The vertex V agrees with the single-input flow (an independent derivation: the law of total cumulance on
  the metric), and K, Theta with the kernel matrices at N = 1.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from pdlt.derive import notation as nt
from pdlt.derive import ntk as dntk
from pdlt.derive.activations import REGISTRY
from pdlt.derive.sectors import ntk as ntk_sector
from pdlt.generated import load
from pdlt.generated import ntk as gntk
from pdlt.runtime.errors import FlowError
from pdlt.runtime.finite import width_ratios
from pdlt.runtime.ntk import expectations, ntk_flow

NAMES = ("K", "H", "V", "A", "B", "D", "F", "P", "Q", "R", "S", "T", "U", "K1", "H1")


def flow(name, depth, C_b=0.0, C_W=1.0, lb=1.0, lw=1.0, norm2=1.0, widths=None, tolerance=1e-9, wanted=(), **params):
    mod = load(name)._MODULE
    hyper = np.zeros((depth, 4))
    hyper[:, 0], hyper[:, 1], hyper[:, 2], hyper[:, 3] = C_b, C_W, lb, lw
    ratios = width_ratios(widths, depth)
    T, err = ntk_flow(mod, depth, norm2, hyper, ratios, mod.param_values(params), tolerance, wanted)
    return {n: T[:, i] for i, n in enumerate(NAMES)}, err


SCALE_INVARIANT = [("relu", 1.0, 0.0, {}), ("leaky_relu", 1.0, 0.3, {"slope": 0.3}), ("linear", 1.0, 1.0, {}),
                   ("abs", 1.0, -1.0, {})]  # fmt: skip


@pytest.mark.parametrize("name,a_plus,a_minus,params", SCALE_INVARIANT)
def test_scale_invariant_solutions_are_exact_at_every_layer(name, a_plus, a_minus, params):
    A2, A4 = (a_plus**2 + a_minus**2) / 2, (a_plus**4 + a_minus**4) / 2
    lb, lw, norm2, L = 0.7, 1.3, 0.8, 12
    got, _ = flow(name, L, C_W=1 / A2, lb=lb, lw=lw, norm2=norm2, **params)
    Ks = norm2 / A2  # K(1) = C_W |x|^2/n_0 with C_W = 1/A2
    rho, kap = A4 / A2**2, A2 * Ks
    for i, l in enumerate(range(1, L + 1)):
        want = {
            "K": Ks,
            "H": (lb + lw * kap) * l,
            "V": (l - 1) * (3 * rho - 1) * Ks**2,
            "D": l * (l - 1) / 2 * (lb * (rho - 1) * Ks + lw * A2 * (4 * rho - 2) * Ks**2),
            "F": l * (l - 1) / 2 * rho * (lb + lw * kap) * Ks,
            "B": l * (l - 1) * (2 * l - 1) / 6 * rho * (lb + lw * kap) ** 2,
            "A": l * (l - 1) / 6 * ((rho - 1) * lb**2 * (2 * l - 1) + 6 * (rho - 1) * lb * lw * kap * l
                                    + lw**2 * kap**2 * ((10 * rho - 6) * l - 2 * rho)),
            "P": 0.0,  # (11.74)
            "Q": l * (l**2 - 1) / 6 * A4 / A2 * (lb + lw * kap) * lw * Ks,  # (11.79) with lambda = lambda~ / L
        }  # fmt: skip
        for n, w in want.items():
            # P = 0 is a cancellation between terms of B's and Theta^2's size: rounding is relative to those
            size = max(abs(want["B"]), want["H"] ** 2) if n == "P" else abs(w)
            assert abs(got[n][i] - w) <= 1e-13 * max(size, Ks**2, 1.0), (n, l, got[n][i], w)


def test_deep_linear_ddntks_are_exact_at_every_layer():
    """Fact 1 (book ∞.46-∞.48): linear sigma, C_W = 1, lambda = lambda~ / L: R = U = P = 0, and with
    c = l^2 (l^2 - 1) / (12 L^3): S = c (lambda~_b + lambda~_W K*)^2 lambda~_W, T = c (lambda~_b + lambda~_W K*)
    lambda~_W^2 K*."""
    L, lbt, lwt, Ks = 9, 0.6, 1.7, 0.8
    got, _ = flow("linear", L, C_W=1.0, lb=lbt / L, lw=lwt / L, norm2=Ks, wanted=("R", "S", "T", "U"))
    for i, l in enumerate(range(1, L + 1)):
        c = l**2 * (l**2 - 1) / (12 * L**3)
        want = {"S": c * (lbt + lwt * Ks) ** 2 * lwt, "T": c * (lbt + lwt * Ks) * lwt**2 * Ks, "R": 0.0, "U": 0.0,
                "P": 0.0}  # fmt: skip
        scale = max(want["S"], 1e-300)
        for n, w in want.items():
            assert abs(got[n][i] - w) <= 1e-13 * scale, (n, l, got[n][i], w)


@pytest.fixture(scope="module")
def deep_tanh():
    L = 100_000
    ells = np.arange(1, L + 1)
    mod = load("tanh")._MODULE
    hyper = np.zeros((L, 4))
    hyper[:, 1], hyper[:, 2], hyper[:, 3] = 1.0, 1.0 / ells, 1.0  # (9.96) with lambda~_b = lambda~_W = 1
    T, _ = ntk_flow(mod, L, 1.0, hyper, width_ratios(None, L), mod.param_values({}), 1e-6, ("R", "S", "T", "U"))
    return T


def test_tanh_large_depth_coefficients_are_the_books(deep_tanh):
    theta = 1.0 + 1.0 / 2  # lambda~_b + lambda~_W / 2
    want = {"A": 4 / 27 / theta**2, "B": 1 / 3, "D": -2 / 9 / theta, "F": 1 / 4, "V": 2 / 3, "P": -1 / 12,
            "Q": -1 / 16 / theta, "R": -1 / 48 * (3 + 2) / theta, "S": 1 / 24 / theta, "T": 1 / 32 / theta**2,
            "U*l^2": 1 / 2}  # fmt: skip

    def ratio(name, l):
        K, H, V, A, B, D, F, P, Q, R, S, T, U = deep_tanh[l - 1][:13]
        value = {"A": A / H**2, "B": B / H**2, "D": D / (K * H), "F": F / (K * H), "V": V / K**2, "P": P / H**2,
                 "Q": Q / H**2, "R": R * K / H**3, "S": S * K / H**3, "T": T * K / H**3,
                 "U*l^2": U * K / H**3 * l**2}[name]  # fmt: skip
        return value / l

    for name, c in want.items():
        far, farther = abs(ratio(name, 10_000) - c), abs(ratio(name, 100_000) - c)
        assert farther <= far / 5 or farther <= 1e-4 * abs(c), (name, far, farther)
        assert farther <= 2e-3 * abs(c), (name, farther)
    assert abs(deep_tanh[-1, 1] - theta) < 1e-3  # Theta -> lambda~_b + lambda~_W sigma_1^2 / (-a_1)
    assert abs(deep_tanh[-1, 0] * 100_000 - 0.5) < 1e-3  # K -> 1 / ((-a_1) l), a_1 = -2


@pytest.mark.parametrize("name", ["tanh", "gelu", "swish"])
def test_bayes_equivalent_learning_rates(name):
    L, C_b, C_W = 5, 0.1, 1.4
    mod = load(name)._MODULE
    hyper = np.zeros((L, 4))
    hyper[:, 0], hyper[:, 1] = C_b, C_W
    hyper[-1, 2], hyper[-1, 3] = C_b, C_W  # lambda = 0 below the output layer, lambda = C at it
    T, _ = ntk_flow(mod, L, 0.9, hyper, width_ratios(None, L), mod.param_values({}), 1e-9)
    K, H, V, A, B, D, F, P, Q, R, S, T_, U, K1, H1 = T[-1]
    scale = abs(V)
    assert abs(H - K) <= 1e-14 * K
    assert abs(H1 - K1) <= 1e-12 * abs(K1)  # the output NTK is the conditional kernel G itself: E[H] = E[G]
    assert max(abs(B), abs(F), abs(P), abs(Q), abs(R), abs(S), abs(T_), abs(U)) <= 1e-14 * scale
    assert abs(A - V) <= 1e-12 * scale and abs(D - V) <= 1e-12 * scale


@pytest.mark.parametrize("name", ["tanh", "gelu", "elu", "hard_tanh", "sin"])
def test_vertex_and_means_agree_with_the_other_sectors(name):
    """V from the Wick derivation equals c[2][1] of the law-of-total-cumulance flow; K and Theta equal the
    kernel matrices' at one input (with per-layer learning rates)."""
    L, C_b, C_W = 6, 0.05, 1.3
    got, err = flow(name, L, C_b=C_b, C_W=C_W, lb=0.4, lw=0.9, norm2=0.7)
    ref = load(name).flow(L, width=10**6, C_b=C_b, C_W=C_W, input_norm2=0.7)
    assert np.allclose(got["V"], ref.V, rtol=1e-10, atol=0)
    assert np.allclose(got["K"], ref.K, rtol=1e-12, atol=0)
    x = np.full((1, 4), np.sqrt(0.7))
    km = load(name).kernel(x, L, C_b=C_b, C_W=C_W, lambda_b=0.4, lambda_W=0.9, tensors=("Theta", "V"), tolerance=1e-8)
    assert np.allclose(km.K[:, 0, 0], got["K"], rtol=1e-12, atol=0)
    assert np.allclose(km.Theta[:, 0, 0], got["H"], rtol=1e-10, atol=0)
    assert np.allclose(km.V[:, 0, 0, 0, 0], got["V"], rtol=1e-12, atol=0)
    assert err[-1] < 1e-9


# ----------------------------------------------------------------------------- expectations and the step


def _mp_expectation(name, powers, m, K):
    """<d^m (sigma^a sigma'^b sigma''^c sigma'''^d)>_K at 40 digits, powers = (a, b, c, d), piece by piece."""
    act = REGISTRY[name]
    subs = {sym: sp.nsimplify(v) for sym, v in act.params}
    funcs, current = [], act
    for k in range(4):
        funcs.append([sp.lambdify(nt.z, p.expr.subs(subs), "mpmath") for p in current.pieces])
        if k < 3 and any(powers[k + 1 :]):
            current = current.derivative()
    pieces = [(p.lo, p.hi) for p in act.pieces]
    with mpmath.workdps(40):
        K = mpmath.mpf(K)
        sk = mpmath.sqrt(K)

        def he(x):  # the probabilists' Hermite polynomial He_m by its recurrence
            h, prev = mpmath.mpf(1), mpmath.mpf(0)
            for i in range(m):
                h, prev = x * h - i * prev, h
            return h

        def weight(z):
            return he(z / sk) * mpmath.exp(-z * z / (2 * K))

        total = 0
        for i, (lo, hi) in enumerate(pieces):
            lo = -mpmath.inf if lo == -sp.oo else mpmath.mpf(float(lo))
            hi = mpmath.inf if hi == sp.oo else mpmath.mpf(float(hi))
            points = [lo, 0, hi] if lo < 0 < hi else [lo, hi]
            fs = [f[i] for f in funcs[: 1 + max(k for k in range(4) if powers[k] or k == 0)]]

            def integrand(z, fs=fs):
                return mpmath.fprod(f(z) ** p for f, p in zip(fs, powers)) * weight(z)

            total += mpmath.quad(integrand, points)
        return total / mpmath.sqrt(2 * mpmath.pi * K) / K ** (mpmath.mpf(m) / 2)


@pytest.mark.parametrize("name", ["tanh", "relu", "gelu", "elu", "hard_tanh", "softplus"])
@pytest.mark.parametrize("K", [0.05, 1.0, 30.0])
def test_expectations_against_mpmath(name, K):
    """Each expectation within ten times its own error estimate (plus 1e-14 of its size) of 30 digits, and that
    estimate below 1e-12 of the size (the integral of the integrand's absolute value)."""
    mod = load(name)._MODULE
    e, err, mag = expectations(mod, K, mod.param_values({}))
    for n, (*powers, m) in enumerate(gntk.NTK_EXPECTATIONS):
        if mod.kinks and any(powers[2:]):  # sigma'' squared or sigma''': not defined at a kink, NaN (refused)
            assert np.isnan(e[n]) or not any(powers[3:]) and not powers[2] > 1
            continue
        ref = float(_mp_expectation(name, powers, m, K))
        assert abs(e[n] - ref) <= 10 * err[n] + 1e-14 * mag[n], (name, K, powers, m, e[n], ref, err[n])
        assert err[n] <= 1e-12 * mag[n], (name, K, powers, m, err[n], mag[n])


@njit
def _call(fn, t, e, hyper, r, out):
    fn(t, e, hyper, r, out)


@settings(max_examples=20, deadline=None)
@given(
    values=st.lists(st.floats(min_value=-2.0, max_value=2.0), min_size=40, max_size=40),
    ratio=st.floats(min_value=0.25, max_value=4.0),
)
def test_generated_step_is_the_sector(values, ratio):
    """The generated step at random numbers equals the sector's expressions (allowance 1e-12 relative to the sum
    of the absolute values of each expression's terms, what reordering a floating-point sum can change)."""
    sec = ntk_sector()
    ne, nt_ = len(gntk.NTK_EXPECTATIONS), len(NAMES)
    t, e = np.array(values[:nt_]), np.array(values[nt_ : nt_ + ne])
    hyper = np.array(values[nt_ + ne : nt_ + ne + 4])
    hyper[1] = abs(hyper[1]) + 0.1
    out = np.zeros(len(NAMES))
    _call(gntk._ntk_step, t, e, hyper, ratio, out)
    vals = {sym: t[k] for (k,), sym in sec.field("t").entries}
    vals.update({sym: e[k] for (k,), sym in sec.field("e").entries})
    vals.update({nt.C_b: hyper[0], nt.C_W: hyper[1], dntk.lam_b: hyper[2], dntk.lam_W: hyper[3], nt.r: ratio})
    for (k,), expr in sec.stages[0].rules:
        parts = [float(term.xreplace(vals)) for term in sp.Add.make_args(sp.expand(expr))]
        assert abs(out[k] - sum(parts)) <= 1e-12 * (1 + sum(abs(p) for p in parts)), (k, out[k], sum(parts))


def test_unequal_widths_scale_the_fluctuations_by_their_ratio():
    """Every finite-width term of step l -> l+1 carries n_l / n_(l-1): with widths (n, 2n, ...) the layer-3 values
    are those of the flow run with that ratio by hand."""
    base, _ = flow("tanh", 3, C_W=1.2, widths=[10, 10])
    wide, _ = flow("tanh", 3, C_W=1.2, widths=[10, 20])
    mod = load("tanh")._MODULE
    e, _, _ = expectations(mod, base["K"][1], mod.param_values({}))
    t = np.array([base[n][1] for n in NAMES])
    out = np.zeros(len(NAMES))
    _call(gntk._ntk_step, t, e, np.array([0.0, 1.2, 1.0, 1.0]), 2.0, out)
    assert np.allclose([wide[n][2] for n in NAMES], out, rtol=1e-14)
    assert not np.isclose(wide["A"][2], base["A"][2])


def test_refusals():
    x = np.eye(3)
    with pytest.raises(FlowError, match="at most 64 inputs"):
        load("tanh").kernel(np.eye(65), 3, tensors=("A",))
    with pytest.raises(FlowError, match="R is not defined for relu: it needs sigma'' twice"):
        load("relu").kernel(x[:1], 3, tensors=("R",))
    with pytest.raises(FlowError, match="unknown tensor"):
        load("tanh").kernel(x[:1], 3, tensors=("W",))
    with pytest.raises(FlowError, match="in process"):
        load("tanh").kernel(x[:1], 3, tensors=("B",), out="x.zarr")
    with pytest.raises(FlowError, match="not finite at layer 2"):
        flow("linear", 4, C_W=1e200)


@pytest.mark.parametrize(("lbt", "lwt"), [(1.0, 1.0), (0.2, 3.0)])
def test_two_input_relu_ntk_angle_goes_to_a_quarter(lbt, lwt):
    """Fact 8 (book 10.92-10.94): two equal-norm inputs through ReLU at criticality with lambda = lambda~ / L: the
    frozen NTK's cos(zeta) -> 1/4 whatever lambda~, so the robustness Theta_-+/Theta_++ - 1 -> -3/4. The recursion
    (10.92) approaches its fixed point like 1/l: the distance must shrink at least 3x from l = 1000 to 4000 (4x for
    1/l) and be below 0.002 at l = 4000."""
    x = np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0]])

    def cos_zeta(L):
        T = load("relu").kernel(x, L, C_W=2.0, lambda_b=lbt / L, lambda_W=lwt / L, layers=[L]).Theta[0]
        return T[0, 1] / math.sqrt(T[0, 0] * T[1, 1])

    near, far = abs(cos_zeta(1000) - 0.25), abs(cos_zeta(4000) - 0.25)
    assert far <= near / 3 and far <= 2e-3, (near, far)


@pytest.mark.parametrize(("name", "C_W"), [("tanh", 1.0), ("gelu", 1.8), ("swish", 2.0), ("relu", 2.0)])
def test_the_nlo_kernel_is_the_mean_kernels_first_correction(name, C_W):
    """K1 of the ntk sector (each neuron's own law at next-to-leading order, pdlt.derive.ntk) and G[1] of the mean
    kernel (the law-of-total-cumulance flow and the pair-metric sector) are two derivations of one coefficient:
    equal to the quadratures' accuracy, one input and two, at every layer."""
    from pdlt.runtime.ntk import ntk_pair_flow, pair_arrays, sector

    mod, L = load(name)._MODULE, 6
    hyper = np.tile([0.1, C_W, 1.0, 1.0], (L, 1))
    x = np.array([[1.0, 0.2], [0.3, -0.9]])
    T, _ = ntk_flow(mod, L, 0.9, hyper, width_ratios(None, L), mod.param_values({}), 1e-9, ())
    km = load(name).kernel(np.array([[np.sqrt(0.9)]]), L, C_b=0.1, C_W=C_W, tensors=("G",), tolerance=1e-10)
    scale = np.max(np.abs(km.G[:, 1])) + 1e-300
    assert np.max(np.abs(T[:, list(gntk.TENSORS).index("K1")] - km.G[:, 1, 0, 0])) <= 1e-9 * max(scale, 1.0)
    T2, _ = ntk_pair_flow(mod, L, x @ x.T / 2, hyper, width_ratios(None, L), mod.param_values({}), 1e-9, ())
    K1 = pair_arrays(T2, sector().NTK_PAIR_TENSORS)["K1"]
    km = load(name).kernel(x, L, C_b=0.1, C_W=C_W, tensors=("G",), tolerance=1e-10)
    assert np.max(np.abs(K1 - km.G[:, 1])) <= 1e-9 * max(np.max(np.abs(km.G[:, 1])), 1.0)


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "linear"])
def test_scale_invariant_nlo_means_vanish_on_the_diagonal(name):
    """For sigma(z) = a_+ z (z > 0), a_- z (z < 0) the law of one input's (z, H) is symmetric under z -> -z at any
    width, so E[sigma^2] = A2 E[z^2] and E[sigma'^2 H] = A2 E[H] exactly: K1 = H1 = 0 at one input (the ReLU NTK
    has no finite-width correction on its diagonal, as Guillen-Misof-Gerken report). Off the diagonal it does."""
    got, _ = flow(name, 6, C_W=1.0, lb=0.6, lw=1.4, norm2=0.8)
    scale = np.max(np.abs(got["H"]))
    assert np.max(np.abs(got["K1"])) <= 1e-12 * scale and np.max(np.abs(got["H1"])) <= 1e-12 * scale
    if name == "relu":
        x = np.array([[1.0, 0.3], [0.2, 0.9]])
        two = load(name).kernel(x, 6, C_W=2.0, tensors=("H1",))
        assert np.all(np.abs(two.H1[-1, [0, 1], [0, 1]]) <= 1e-12 * np.abs(two.H1[-1, 0, 1]))
        assert two.H1[-1, 0, 1] > 0.1 * two.Theta[-1, 0, 1] if two.Theta is not None else two.H1[-1, 0, 1] > 0.1
