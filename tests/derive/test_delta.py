"""The derived two-input delta expansion against the book (5.46)-(5.52) and against exact next-layer
kernels: Isserlis moments for a polynomial sigma, 2-D Gaussian quadrature for tanh and softplus."""

from __future__ import annotations

import math

import mpmath
import pytest
import sympy as sp

from pdlt.derive import delta
from pdlt.derive import notation as nt
from pdlt.derive.delta import CHI_PAR, CHI_PERP, K00, BasisError, H, ddK0, ddK2, derive_delta_expansion, dK1, eps
from pdlt.derive.recursion import derive_step

C_b, C_W, K = nt.C_b, nt.C_W, nt.K


def rows() -> dict[tuple[str, int], sp.Symbol]:
    d = derive_delta_expansion()
    return {(r.factor, r.derivative_order): r.symbol for r in d.basis + d.extra_basis}


def test_basis_is_the_four_rows_the_generated_code_evaluates():
    d = derive_delta_expansion()
    assert [(r.symbol.name, r.factor, r.derivative_order) for r in d.basis] == [
        ("g", "sigma", 0),
        ("g_1", "sigma", 1),
        ("p_0", "sigma'", 0),
        ("p_1", "sigma'", 1),
    ]
    assert [name for name, _ in d.updates] == ["K00", "dK1", "ddK2"]


def test_derived_recursion_is_the_books():
    """Book (5.50)-(5.52): chi_par = C_W g'(K), chi_perp = C_W <sigma'^2>, h = (1/2) d chi_perp/dK;
    (5.46)-(5.48): K00' = C_b + C_W g, dK1' = chi_par dK1, ddK2' = chi_perp ddK2 + h dK1^2."""
    d, row = derive_delta_expansion(), rows()
    book_chi = {
        "chi_parallel": C_W * row["sigma", 1],
        "chi_perp": C_W * row["sigma'", 0],
        "h": sp.Rational(1, 2) * C_W * row["sigma'", 1],  # d/dK raises the derivative order by one
    }
    book_updates = {
        "K00": C_b + C_W * row["sigma", 0],
        "dK1": CHI_PAR * dK1,
        "ddK2": CHI_PERP * ddK2 + H * dK1**2,
    }
    assert {name: sp.expand(e - book_chi[name]) for name, e in d.susceptibilities} == dict.fromkeys(book_chi, 0)
    assert {name: sp.expand(e - book_updates[name]) for name, e in d.updates} == dict.fromkeys(book_updates, 0)
    # the midpoint kernel follows the single-input recursion (5.4) exactly
    assert sp.expand(d.updates[0][1] - derive_step(0).new_state[(1, 0)].subs(nt.s(1, 0), row["sigma", 0])) == 0


def test_gamma0_gets_a_second_order_correction():
    """K'_[0] - K00' = ddK0' is O(eps^2) and nonzero even when ddK0 = 0 (layer 1); it stays out of
    (5.47)-(5.48), so K_{+-} = K00 - ddK2 holds at layer 1 only."""
    d, row = derive_delta_expansion(), rows()
    name, expr = d.midpoint_correction
    expected = CHI_PAR * ddK0 + (CHI_PAR - CHI_PERP) * ddK2 + (C_W * row["sigma", 2] / 2 - H) * dK1**2
    assert name == "ddK0" and sp.expand(expr - expected) == 0
    assert all(ddK0 not in e.free_symbols for _, e in d.updates)


def test_terms_outside_the_basis_are_refused():
    z, s = nt.z, delta.sigma
    assert delta.reduce_to_basis(s(z) * sp.diff(s(z), z, 2)) == rows()["sigma", 1] - rows()["sigma'", 0]
    with pytest.raises(BasisError, match="not a combination"):
        delta.reduce_to_basis(s(z) * sp.diff(s(z), z, 4))
    with pytest.raises(BasisError, match="two sigma factors"):
        delta.reduce_to_basis(s(z) ** 3)


def test_latex_has_the_books_equations():
    text = derive_delta_expansion().latex()
    assert text.startswith("\\begin{align*}") and text.endswith("\\end{align*}")
    for tag in ("5.46", "5.47", "5.48", "5.50", "5.51", "5.52"):
        assert f"\\tag{{{tag}}}" in text
    for piece in (r"\chi_{\parallel}", r"\chi_{\perp}", r"{\delta\delta K_{[2]}}^{(\ell+1)}", r"\notag"):
        assert piece in text
    assert r"\langle \sigma'^2 \rangle_{K_{00}}" in text


# --- exact next-layer kernels -------------------------------------------------------------------


def predicted(values: dict, dk1: float, ddk2: float, ddk0: float, with_ddk0: bool = True) -> tuple:
    """Gamma components (5.17)-(5.19) of K' from the derived updates, the rows given in ``values``."""
    d = derive_delta_expansion()
    sub = {CHI_PAR: d.susceptibilities[0][1], CHI_PERP: d.susceptibilities[1][1], H: d.susceptibilities[2][1]}
    state = {dK1: dk1, ddK2: ddk2, ddK0: ddk0}
    up = {name: e.subs(sub).subs(values).subs(state) for name, e in (*d.updates, d.midpoint_correction)}
    k0 = up["K00"] + (up["ddK0"] if with_ddk0 else 0)
    return k0, up["dK1"], up["ddK2"]


def gamma_components(pp, mm, pm) -> tuple:
    return (pp + mm + 2 * pm) / 4, (pp - mm) / 2, (pp + mm - 2 * pm) / 4


def isserlis(cov: dict, labels: tuple) -> sp.Expr:
    """E[prod u_label] for a zero-mean Gaussian: the sum over pairings of products of covariances."""
    if not labels:
        return sp.Integer(1)
    first, rest = labels[0], labels[1:]
    return sum(
        (cov[frozenset((first, rest[i]))] * isserlis(cov, rest[:i] + rest[i + 1 :]) for i in range(len(rest))), 0
    )


def test_polynomial_sigma_exactly_to_second_order():
    """sigma = z + z^2/2 + z^3/6: exact K'_ab by Isserlis, symbolic in K00, dK1, ddK2, ddK0; the
    derived expansion must match through eps^2 (eps^3 terms remain, D^3 acts on a sextic)."""
    coeffs = {1: 1, 2: sp.Rational(1, 2), 3: sp.Rational(1, 6)}
    K0 = K00 + eps**2 * ddK0
    kpp, kmm, kpm = K0 + eps * dK1 + eps**2 * ddK2, K0 - eps * dK1 + eps**2 * ddK2, K0 - eps**2 * ddK2
    cov = {frozenset("+"): kpp, frozenset("-"): kmm, frozenset("+-"): kpm}

    def pair(a: str, b: str) -> sp.Expr:
        return C_b + C_W * sum(
            ci * cj * isserlis(cov, (a,) * i + (b,) * j) for i, ci in coeffs.items() for j, cj in coeffs.items()
        )

    exact = gamma_components(pair("+", "+"), pair("-", "-"), pair("+", "-"))
    z = nt.z
    sig = sum(c * z**i for i, c in coeffs.items())

    def moment(expr: sp.Expr) -> sp.Expr:  # <expr(z)>_K, <z^n> = (n-1)!! K^(n/2)
        poly = sp.Poly(sp.expand(expr), z)
        return sum(c * sp.factorial2(n - 1) * K ** (n // 2) for (n,), c in poly.terms() if n % 2 == 0)

    values = {}
    for (factor, j), symbol in rows().items():
        base = moment((sig if factor == "sigma" else sp.diff(sig, z)) ** 2)
        values[symbol] = sp.diff(base, K, j).subs(K, K00)
    pred = predicted(values, eps * dK1, eps**2 * ddK2, eps**2 * ddK0)
    for a in range(3):
        diff = sp.expand(exact[a] - pred[a])
        assert [diff.coeff(eps, k) for k in range(3)] == [0, 0, 0], a
        assert diff != 0
    # the book's integrand form of (5.50) agrees: C_W <sigma^2 (z^2 - K)>_K / (2 K^2)
    chi_book = C_W * moment(sig**2 * (z**2 - K)) / (2 * K**2)
    chi_derived = derive_delta_expansion().susceptibilities[0][1].subs(values)
    assert sp.simplify(chi_book.subs(K, K00) - chi_derived) == 0


ACTIVATIONS = {
    "tanh": (math.tanh, lambda t: mpmath.tanh(t), lambda t: mpmath.sech(t) ** 2),
    "softplus": (
        lambda t: math.log1p(math.exp(t)) if t < 30 else t + math.log1p(math.exp(-t)),
        lambda t: mpmath.log1p(mpmath.exp(t)),
        lambda t: 1 / (1 + mpmath.exp(-t)),
    ),
}


def numeric_rows(act: str, kernel: float) -> dict:
    """Rows at K by 30-digit quadrature: d^j/dK^j <F>_K = <F He_2j(x)>/(2K)^j, x = z/sqrt(K)."""
    _, f, df = ACTIVATIONS[act]
    he = {0: lambda x: 1, 1: lambda x: x**2 - 1, 2: lambda x: x**4 - 6 * x**2 + 3}
    out = {}
    with mpmath.workdps(30):
        root = mpmath.sqrt(kernel)
        for (factor, j), symbol in rows().items():
            fn = f if factor == "sigma" else df
            integrand = lambda x, fn=fn, w=he[j]: fn(root * x) ** 2 * w(x) * mpmath.exp(-x * x / 2)  # noqa: E731
            val = mpmath.quad(integrand, [-mpmath.inf, 0, mpmath.inf])
            out[symbol] = float(val / mpmath.sqrt(2 * mpmath.pi) / (2 * kernel) ** j)
    return out


def exact_next(act: str, kpp: float, kmm: float, kpm: float, cb: float, cw: float) -> tuple:
    """K'_ab = C_b + C_W E[sigma(u_a) sigma(u_b)] by mpmath.fp.quad in (x, y): u_+ = a x,
    u_- = b x + c y (Cholesky), about 1e-15 absolute."""
    f, fp = ACTIVATIONS[act][0], mpmath.fp
    a = math.sqrt(kpp)
    b = kpm / a
    c = math.sqrt(kmm - b * b)
    line = [-fp.inf, 0, fp.inf]

    def one(k: float) -> float:
        return fp.quad(lambda x: f(math.sqrt(k) * x) ** 2 * math.exp(-x * x / 2), line) / math.sqrt(2 * math.pi)

    two = fp.quad(lambda x, y: f(a * x) * f(b * x + c * y) * math.exp(-(x * x + y * y) / 2), line, line) / (2 * math.pi)
    return tuple(cb + cw * v for v in (one(kpp), one(kmm), two))


@pytest.mark.parametrize("act", ["tanh", "softplus"])
@pytest.mark.parametrize("ddk0_rate", [0.0, 0.3])
def test_residual_shrinks_at_the_first_omitted_order(act, ddk0_rate):
    """K00 = 0.7, dK1 = 0.8 eps, ddK2 = 0.5 eps^2, ddK0 = rate eps^2 (0 as at layer 1). The residual
    of [1] (odd in eps) is O(eps^3) and of [0], [2] (even) O(eps^4): doubling eps multiplies it by
    2^3 resp. 2^4; we allow 0.05 in log2 for the next order (relative O(eps^2)) and quadrature noise.
    Dropping ddK0' leaves [0] wrong at O(eps^2): the midpoint correction is real."""
    kernel, cb, cw = 0.7, 0.1, 1.3
    values = {**numeric_rows(act, kernel), K00: kernel, C_b: cb, C_W: cw}
    residuals, without = [], []
    for e in (1e-2, 2e-2):
        dk1, ddk2, ddk0 = 0.8 * e, 0.5 * e * e, ddk0_rate * e * e
        k0 = kernel + ddk0
        exact = gamma_components(*exact_next(act, k0 + dk1 + ddk2, k0 - dk1 + ddk2, k0 - ddk2, cb, cw))
        pred = predicted(values, dk1, ddk2, ddk0)
        residuals.append([abs(float(x - p)) for x, p in zip(exact, pred)])
        without.append(abs(float(exact[0] - predicted(values, dk1, ddk2, ddk0, with_ddk0=False)[0])))
    for a, order in ((0, 4), (1, 3), (2, 4)):
        assert math.log2(residuals[1][a] / residuals[0][a]) == pytest.approx(order, abs=0.05), a
        assert residuals[0][a] < 10 * 1e-2**order
    assert math.log2(without[1] / without[0]) == pytest.approx(2, abs=0.05)
