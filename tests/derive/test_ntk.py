"""The NTK sector's derivation (derive.ntk) against the book's printed recursions (issue 8, item 1).

The engine derives K, H, V, A, B, D, F from the forward equations by Wick contractions; the book's forms are
typed in here from reference part 2 (sections 0, 2.2, 2.5 and 3.2) and must agree term by term. The book writes
the layer-l tensors with raised indices against <(z z - G) ...>; Gaussian integration by parts turns each into
the weight derivatives the engine uses,

    sum_g G^{b1 g1} G^{b2 g2} <(z_g1 z_g2 - G_g1g2) Phi> = <d_b1 d_b2 Phi>,   sum_g <z_g Phi> G^{g b} = <d_b Phi>,

so (1/4) sum V^{(g1g2)(g3g4)} <(zz - G) Phi><(zz - G) Psi> = (1/4) sum V_(b1b2)(b3b4) <d_b1 d_b2 Phi><d_b3 d_b4 Psi>,
with each b running over the inputs Phi depends on.
"""

from __future__ import annotations

from itertools import product

import pytest
import sympy as sp

from pdlt.derive import notation as nt
from pdlt.derive import ntk
from pdlt.derive.ntk import SLOTS, derive_ntk_step, expanded, gexp, lam_b, lam_W, relabel, tensor

a1, a2, a3, a4 = SLOTS
C_b, C_W, r = nt.C_b, nt.C_W, nt.r


def s(*pairs):
    """The atoms sigma^(k)(z_label) of a product: s((a1, 0), (a3, 1)) = sigma_a1 sigma'_a3."""
    return list(pairs)


class Lin:
    """A linear combination of products of sigma's: coefficient -> atoms; <...> is linear."""

    def __init__(self, terms):
        self.terms = terms  # [(coefficient, atoms)]

    def __mul__(self, other):
        return Lin([(c * d, x + y) for c, x in self.terms for d, y in other.terms])

    def E(self, derivs=()):
        return sp.Add(*(c * gexp(x, derivs) for c, x in self.terms))

    @property
    def labels(self):
        return sorted({lab for _, x in self.terms for lab, _ in x}, key=str)


def P(*pairs):
    return Lin([(sp.Integer(1), list(pairs))])


def omega(a, b):
    """The auxiliary variable (8.74): lambda_W sigma_a sigma_b + C_W H_ab sigma'_a sigma'_b."""
    return Lin([(lam_W, [(a, 0), (b, 0)]), (C_W * tensor("H", a, b), [(a, 1), (b, 1)])])


def vertex_term(f: Lin, g: Lin):
    """(1/4) sum V^{(g1g2)(g3g4)} <(zz - G) f> <(zz - G) g>, in weight derivatives."""
    return sp.Rational(1, 4) * sum(
        tensor("V", b1, b2, b3, b4) * f.E((b1, b2)) * g.E((b3, b4))
        for b1, b2 in product(f.labels, repeat=2)
        for b3, b4 in product(g.labels, repeat=2)
    )


def d_term(f: Lin, c, d):
    """(1/2) sum <(z_b1 z_b2 - G) f> G^{b1 g1} G^{b2 g2} D_{g1 g2 c d}."""
    return sp.Rational(1, 2) * sum(tensor("D", b1, b2, c, d) * f.E((b1, b2)) for b1, b2 in product(f.labels, repeat=2))


def same(x, y):
    return sp.expand(x - y) == 0


@pytest.fixture(scope="module")
def step():
    return derive_ntk_step()


# ---------------------------------------------------------------------------------- multi-input, book §2.5


def test_kernel_and_ntk_mean_are_book_4_118_and_8_63(step):
    assert same(step["K"], C_b + C_W * P((a1, 0), (a2, 0)).E())
    H = lam_b + lam_W * P((a1, 0), (a2, 0)).E() + C_W * P((a1, 1), (a2, 1)).E() * tensor("H", a1, a2)
    assert same(step["H"], H)


def test_vertex_is_book_4_119(step):
    f, g = P((a1, 0), (a2, 0)), P((a3, 0), (a4, 0))
    book = C_W**2 * ((f * g).E() - f.E() * g.E()) + r * C_W**2 * vertex_term(f, g)
    assert same(step["V"], book)


def test_D_is_book_8_77(step):
    f, w = P((a1, 0), (a2, 0)), omega(a3, a4)
    book = (
        C_W * ((f * w).E() - f.E() * w.E())
        + r * C_W * vertex_term(f, w)
        + r * C_W**2 * d_term(f, a3, a4) * P((a3, 1), (a4, 1)).E()
    )
    assert same(step["D"], book)


def test_F_is_book_8_79(step):
    # F_{a1 a3 a2 a4} in the book's letters is F[a1, a2, a3, a4] here: preactivations a1, a3; NTK samples a2, a4
    b1, b3, b2, b4 = a1, a2, a3, a4
    f, g = P((b1, 0), (b3, 1)), P((b2, 0), (b4, 1))
    source = C_W**2 * P((b1, 0), (b2, 0), (b3, 1), (b4, 1)).E() * tensor("H", b3, b4)
    rec = sum(tensor("F", g1, b3, g2, b4) * f.E((g1,)) * g.E((g2,)) for g1 in f.labels for g2 in g.labels)
    assert same(step["F"], source + r * C_W**2 * rec)


def test_B_is_book_8_89(step):
    b1, b3, b2, b4 = a1, a2, a3, a4  # B_{a1 a3 a2 a4} of the book is B[a1, a2, a3, a4] here
    source = P((b1, 1), (b2, 1), (b3, 1), (b4, 1)).E() * tensor("H", b1, b2) * tensor("H", b3, b4)
    rec = r * P((b1, 1), (b3, 1)).E() * P((b2, 1), (b4, 1)).E() * tensor("B", b1, b3, b2, b4)
    assert same(step["B"], C_W**2 * (source + rec))


def test_A_is_book_8_97(step):
    w12, w34 = omega(a1, a2), omega(a3, a4)
    d12, d34 = P((a1, 1), (a2, 1)).E(), P((a3, 1), (a4, 1)).E()
    book = (
        (w12 * w34).E()
        - w12.E() * w34.E()
        + r * vertex_term(w12, w34)
        + r * C_W**2 * d12 * d34 * tensor("A", a1, a2, a3, a4)
        + r * C_W * (d_term(w12, a3, a4) * d34 + d_term(w34, a1, a2) * d12)
    )
    assert same(step["A"], book)


def test_layer_two_is_book_8_32_to_8_39(step):
    """With every layer-1 fluctuation zero (V = A = B = D = F = 0 at layer 1), layer 2 is the section 2.2 forms."""
    zero = {sym: 0 for e in step.values() for sym in e.free_symbols if sym.name[0] in "VABDF" and "[" in sym.name}
    w12, w34 = omega(a1, a2), omega(a3, a4)
    assert same(step["A"].xreplace(zero), (w12 * w34).E() - w12.E() * w34.E())
    f = P((a1, 0), (a2, 0))
    assert same(step["D"].xreplace(zero), C_W * ((f * w34).E() - f.E() * w34.E()))
    # (8.33): B_{a1 a3 a2 a4} = C_W^2 H_a1a2 H_a3a4 <sigma'^4>; (8.39): F = C_W^2 H_a3a4 <sigma sigma sigma' sigma'>
    H = tensor("H", a1, a3) * tensor("H", a2, a4)
    assert same(step["B"].xreplace(zero), C_W**2 * H * P((a1, 1), (a2, 1), (a3, 1), (a4, 1)).E())
    assert same(step["F"].xreplace(zero), C_W**2 * tensor("H", a2, a4) * P((a1, 0), (a3, 0), (a2, 1), (a4, 1)).E())


# ------------------------------------------------------------------------------ single input, book §3.2


def test_single_input_is_book_9_13_to_9_19():
    got = {k: v.subs(r, 1) for k, v in derive_ntk_step((0, 0, 0, 0)).items()}
    o = 0
    g = gexp([(o, 0)] * 2)
    chi_perp = C_W * gexp([(o, 1)] * 2)
    chi_par = C_W * gexp([(o, 0)] * 2, (o, o)) / 2  # C_W g'(K): d/dK <F> = <d^2 F>/2
    h = C_W * gexp([(o, 1)] * 2, (o, o)) / 4  # (1/2) d chi_perp / dK
    s4, s2d2, d4 = gexp([(o, 0)] * 4), gexp([(o, 0)] * 2 + [(o, 1)] * 2), gexp([(o, 1)] * 4)
    T = tensor("H", o, o)  # the frozen NTK Theta at this order
    V, A, B, D, F = (tensor(n, o, o, o, o) for n in "VABDF")
    lw = lam_W / C_W
    # <d (sigma sigma')> = <d^2 sigma^2>/2 under the weight derivative (d sigma^2 = 2 sigma sigma'), so chi_par
    # appears in F through that identity
    same_chi = {gexp([(o, 0), (o, 1)], (o,)): gexp([(o, 0)] * 2, (o, o)) / 2}
    assert same(got["V"], chi_par**2 * V + C_W**2 * (s4 - g**2))  # (9.19)
    assert same(got["F"].xreplace(same_chi), chi_par**2 * F + C_W**2 * s2d2 * T)  # (9.14)
    assert same(got["B"], chi_perp**2 * B + C_W**2 * d4 * T**2)  # (9.15)
    D13 = (
        chi_perp * chi_par * D
        + lw * (C_W**2 * s4 - (C_W * g) ** 2 + chi_par**2 * V)
        + T * (C_W**2 * s2d2 - C_W * g * chi_perp + 2 * h * chi_par * V)
    )
    assert same(got["D"], D13)  # (9.13)
    A16 = (
        chi_perp**2 * A
        + lw**2 * (C_W**2 * s4 - (C_W * g) ** 2 + chi_par**2 * V)
        + 2 * lw * T * (C_W**2 * s2d2 - C_W * g * chi_perp + 2 * h * chi_par * V)
        + 2 * lw * chi_perp * chi_par * D
        + 4 * h * chi_perp * T * D
        + T**2 * (C_W**2 * d4 - chi_perp**2 + (2 * h) ** 2 * V)
    )
    assert same(got["A"], A16)  # (9.16)


# ------------------------------------------------------------------------- labels, symmetries, limits


@pytest.mark.parametrize("pattern", [(0, 0, 0, 0), (0, 1, 0, 1), (0, 0, 1, 1), (0, 1, 1, 0), (0, 1, 1, 1)])
def test_generic_recursions_hold_when_inputs_coincide(step, pattern):
    """Re-deriving at concrete inputs (sums over their distinct labels) equals the generic recursion relabelled
    (in the product-rule form, where each derivative is tied to its factor): the index bookkeeping is exact."""
    concrete = derive_ntk_step(pattern)
    mapping = dict(zip(SLOTS, pattern))
    for name in ntk.TENSORS:
        assert same(relabel(expanded(step[name]), mapping), expanded(concrete[name])), name


@pytest.mark.parametrize("name", ["V", "A", "B", "D", "P"])
def test_each_tensor_keeps_the_symmetry_of_its_definition(step, name):
    """V, A: (a1 a2), (a3 a4) and the pair swap; D: within each pair; B_{x1x2x3x4} = B_{x2x1x4x3} = B_{x3x4x1x2};
    P: its two NTK slots (book 11.30, footnote 3)."""
    perms = {"V": ntk._PAIRED, "A": ntk._PAIRED, "D": ntk._ORBITS["D"], "B": ntk._ORBITS["B"], "P": ntk._ORBITS["P"]}
    perms = perms[name]
    base = expanded(step[name])
    for p in perms:
        mapping = {SLOTS[i]: SLOTS[p[i]] for i in range(4)}
        assert same(relabel(base, mapping), base), p


def test_the_engine_refuses_what_needs_next_to_leading_means():
    """The 1/n part of the NTK mean needs the 1/n corrections of layer-l means, which this sector does not carry:
    asking for it is an error, not a silently wrong number."""
    f = ntk._Fresh()
    with pytest.raises(AssertionError, match="survives below the target"):
        ntk.cumulant([ntk.h_field(1, 1, a1, a2, f)], 1)


def test_kinked_expectations_stay_in_weight_form():
    """What the numerics integrate (the sector's step) holds no sigma'' up to Q: derivatives stay on the weight.
    Only R, S, T, U keep sigma'' twice or sigma''' at one input, which the runtime refuses for a kinked sigma."""
    from pdlt.derive.sectors import ntk as sector

    for (i,), e in sector().stages[0].rules:
        for sym in e.free_symbols:
            d = ntk._REGISTRY.get(sym)
            if isinstance(d, ntk.GExp) and any(k >= 2 for _, k in d.atoms):
                assert ntk.TENSORS[i] in "RSTU", (ntk.TENSORS[i], sym)


def test_latex_prints_every_recursion_in_the_books_notation(capsys):
    from pdlt.codegen.cli import main
    from pdlt.derive.latex import ntk_section

    text = ntk_section()
    four = r"_{\alpha_1\alpha_2\alpha_3\alpha_4}^{(\ell+1)}"
    for lhs in (
        r"K_{\alpha_1\alpha_2}^{(\ell+1)}",
        r"A_{(\alpha_1\alpha_2)(\alpha_3\alpha_4)}^{(\ell+1)}",
        "B" + four,
        "F" + four,
    ):
        assert lhs in text
    assert (
        r"\langle \partial_{\alpha_{1}}\partial_{\alpha_{1}}(\sigma_{\alpha_{1}} \sigma_{\alpha_{2}}) \rangle" in text
    )
    assert "E[" not in text and "lambda_W" not in text.replace(r"\lambda_W", "")  # every symbol has a LaTeX name
    depth = 0
    for ch in text:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0
    assert main(["latex", "--sector", "ntk"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(r"\documentclass") and text in out and "Single-input" not in out
    assert main(["latex", "tanh", "--sector", "ntk"]) == 2


# ------------------------------------------------------------------------------------- the dNTK, book ch. 11


def test_P_is_book_11_49(step):
    d0, d1, d2, d3 = SLOTS
    s2 = P((d0, 2), (d1, 1), (d2, 1), (d3, 0)).E() * tensor("H", d0, d1) * tensor("H", d0, d2)
    inner = (
        P((d0, 2), (d3, 0)).E() * tensor("P", d0, d1, d2, d0)
        + P((d0, 1), (d3, 1)).E() * tensor("P", d0, d1, d2, d3)
        + P((d0, 2), (d3, 0)).E() * tensor("B", d0, d0, d1, d2)
    )
    book = C_W**2 * s2 + r * C_W**2 * P((d1, 1), (d2, 1)).E() * inner
    assert same(expanded(step["P"]), book)


def test_Q_is_book_11_52_with_the_next_layers_F(step):
    """Q(l+1) holds lambda_W / C_W F(l+1)_{d1 d0 d3 d2}: the layer-(l+1) F, which is the derived F relabelled."""
    d0, d1, d2, d3 = SLOTS
    F_next = relabel(expanded(step["F"]), {a1: d1, a2: d0, a3: d3, a4: d2})
    f, g = P((d0, 2), (d1, 1)), P((d2, 1), (d3, 0))
    last = sum(tensor("F", b, d0, c, d2) * f.E((b,)) * g.E((c,)) for b in f.labels for c in g.labels)
    book = (
        C_W**2 * P((d0, 2), (d1, 1), (d2, 1), (d3, 0)).E() * tensor("H", d0, d1) * tensor("H", d0, d2)
        + lam_W / C_W * F_next
        + r * C_W**2 * P((d0, 1), (d1, 1)).E() * (P((d2, 2), (d3, 0)).E() * tensor("Q", d0, d1, d2, d2)
                                                   + P((d2, 1), (d3, 1)).E() * tensor("Q", d0, d1, d2, d3))
        + r * C_W**2 * tensor("H", d0, d1) * last
    )  # fmt: skip
    assert same(expanded(step["Q"]), expanded(book))


def test_single_input_P_Q_are_book_11_55_and_11_56():
    got = {k: expanded(v.subs(r, 1)) for k, v in derive_ntk_step((0, 0, 0, 0)).items()}
    o = 0
    T, B, F, Pt, Qt = tensor("H", o, o), *(tensor(n, o, o, o, o) for n in "BFPQ")
    chi_perp = C_W * gexp([(o, 1)] * 2)
    chi_par = C_W * expanded(gexp([(o, 0), (o, 1)], (o,)))  # (C_W/K) <z sigma' sigma> = C_W <d(sigma sigma')>
    h = C_W * expanded(gexp([(o, 1)] * 2, (o, o))) / 4
    s2s = gexp([(o, 2), (o, 0)])
    s2ddd = gexp([(o, 2), (o, 1), (o, 1), (o, 0)])
    P55 = C_W**2 * s2ddd * T**2 + C_W * chi_perp * s2s * B + (C_W * chi_perp * s2s + chi_perp**2) * Pt
    assert same(got["P"], P55)
    F_next = got["F"]
    Q56 = (
        C_W**2 * s2ddd * T**2
        + lam_W / C_W * F_next
        + 2 * h * chi_par * T * F
        + (C_W * chi_perp * s2s + chi_perp**2) * Qt
    )
    assert same(got["Q"], expanded(Q56))


def test_weight_form_has_no_second_derivative_and_is_exact_for_smooth_sigma():
    """Integrating sigma'' by parts changes the form, not the value: both forms agree with sigma = exp, where
    <prod exp(k_i z)...> is exact (every derivative of exp is exp)."""
    rules = derive_ntk_step((0, 0, 0, 0))
    for name in ("P", "Q"):
        w = ntk.weight_form(rules[name])
        for sym in w.free_symbols:
            d = ntk._REGISTRY.get(sym)
            assert not isinstance(d, ntk.GExp) or all(k <= 1 for _, k in d.atoms)
        # sigma = exp: <d^m (sigma^a sigma'^b sigma''^c)>_K = <d^m exp((a+b+c) z)> = (a+b+c)^m exp((a+b+c)^2 K / 2)
        K = sp.Rational(3, 10)

        def value(sym, K=K):
            d = ntk._REGISTRY[sym]
            s_ = len(d.atoms)
            return s_ ** len(d.derivs) * sp.exp(sp.Rational(s_**2, 2) * K)

        for form in (rules[name], w):
            vals = {sym: value(sym) for sym in form.free_symbols if isinstance(ntk._REGISTRY.get(sym), ntk.GExp)}
            form_value = form.xreplace(vals)
            if form is rules[name]:
                first = form_value
        assert sp.simplify(form_value - first) == 0


def test_kinks_refuse_what_is_infinite_there():
    with pytest.raises(ntk.KinkError, match="twice"):
        ntk.weight_form(gexp([(0, 2), (0, 2), (0, 1), (0, 1)]))


# ------------------------------------------------------------------------------------ the ddNTKs, book ch. ∞


def _fsum(f: Lin, g: Lin, slots):
    """sum <z f> <z g> G G F_{g1 . g2 .}, in weight derivatives: F slots (beta, s1, gamma, s2)."""
    s1, s2 = slots
    return sum(tensor("F", b, s1, c, s2) * f.E((b,)) * g.E((c,)) for b in f.labels for c in g.labels)


def test_R_is_book_inf_172(step):
    d0, d1, d2, d3 = SLOTS
    H = lambda a, b: tensor("H", a, b)  # noqa: E731
    E = lambda *pairs: P(*pairs).E()  # noqa: E731
    perp = C_W * E((d2, 1), (d3, 1))
    book = (
        lam_W * C_W * E((d0, 2), (d1, 0), (d2, 1), (d3, 1)) * H(d0, d2) * H(d0, d3)
        + r * perp * lam_W * E((d0, 2), (d1, 0)) * tensor("B", d0, d0, d2, d3)
        + r * perp * lam_W * (E((d0, 2), (d1, 0)) * tensor("P", d0, d2, d3, d0)
                              + E((d0, 1), (d1, 1)) * tensor("P", d0, d2, d3, d1))
        + C_W**2 * E((d0, 3), (d1, 1), (d2, 1), (d3, 1)) * H(d0, d1) * H(d0, d2) * H(d0, d3)
        + r * perp * C_W * E((d0, 3), (d1, 1)) * tensor("B", d0, d0, d2, d3) * H(d0, d1)
        + r * perp * C_W * (E((d0, 3), (d1, 1)) * tensor("P", d0, d2, d3, d0)
                            + E((d0, 2), (d1, 2)) * tensor("P", d0, d2, d3, d1)) * H(d0, d1)
        + r * perp * C_W * E((d0, 1), (d1, 1)) * tensor("R", d0, d1, d2, d3)
    )  # fmt: skip
    assert same(expanded(step["R"]), expanded(book))


def test_T_is_book_inf_175_with_sigma_second_on_delta_1_in_the_sixth_term(step):
    """All 13 terms of (∞.175); the sixth carries sigma'' on delta_1 (the pitfall of reference part 2, §6.3)."""
    e1, e3, e4, e2 = SLOTS  # T_{d1 d3 d4 d2} of the book is T[a1, a2, a3, a4] here
    H = lambda a, b: tensor("H", a, b)  # noqa: E731
    E = lambda *pairs: P(*pairs).E()  # noqa: E731
    Q = lambda *s_: tensor("Q", *s_)  # noqa: E731
    lw, cw = lam_W, C_W
    book = (
        lw**2 * E((e1, 1), (e2, 1), (e3, 0), (e4, 0)) * H(e1, e2)
        + r * lw**2 * _fsum(P((e1, 1), (e3, 0)), P((e2, 1), (e4, 0)), (e1, e2))
        + cw * lw * E((e1, 1), (e2, 2), (e3, 0), (e4, 1)) * H(e2, e1) * H(e2, e4)
        + r * cw * lw * H(e2, e4) * _fsum(P((e1, 1), (e3, 0)), P((e2, 2), (e4, 1)), (e1, e2))
        + r * cw * lw * E((e2, 1), (e4, 1)) * (E((e1, 2), (e3, 0)) * Q(e2, e4, e1, e1)
                                               + E((e1, 1), (e3, 1)) * Q(e2, e4, e1, e3))
        + cw * lw * E((e2, 1), (e1, 2), (e4, 0), (e3, 1)) * H(e1, e2) * H(e1, e3)
        + r * cw * lw * H(e1, e3) * _fsum(P((e2, 1), (e4, 0)), P((e1, 2), (e3, 1)), (e2, e1))
        + r * cw * lw * E((e1, 1), (e3, 1)) * (E((e2, 2), (e4, 0)) * Q(e1, e3, e2, e2)
                                               + E((e2, 1), (e4, 1)) * Q(e1, e3, e2, e4))
        + r * cw**2 * E((e1, 1), (e3, 1)) * E((e2, 1), (e4, 1)) * tensor("T", e1, e3, e4, e2)
        + cw**2 * E((e1, 2), (e2, 2), (e3, 1), (e4, 1)) * H(e1, e2) * H(e1, e3) * H(e2, e4)
        + r * cw**2 * H(e1, e3) * H(e2, e4) * _fsum(P((e1, 2), (e3, 1)), P((e2, 2), (e4, 1)), (e1, e2))
        + r * cw**2 * H(e2, e4) * E((e1, 1), (e3, 1)) * (E((e2, 3), (e4, 1)) * Q(e1, e3, e2, e2)
                                                         + E((e2, 2), (e4, 2)) * Q(e1, e3, e2, e4))
        + r * cw**2 * H(e1, e3) * E((e2, 1), (e4, 1)) * (E((e1, 3), (e3, 1)) * Q(e2, e4, e1, e1)
                                                         + E((e1, 2), (e3, 2)) * Q(e2, e4, e1, e3))
    )  # fmt: skip
    assert same(expanded(step["T"]), expanded(book))
    # the pitfall: sigma'' on delta_2 in the sixth term is a different recursion, one a single input cannot see
    wrong = book.xreplace({E((e2, 1), (e1, 2), (e4, 0), (e3, 1)): E((e2, 2), (e1, 1), (e4, 0), (e3, 1))})
    assert not same(expanded(step["T"]), expanded(wrong))
    one = dict(zip(SLOTS, (0, 0, 0, 0)))
    assert same(relabel(expanded(step["T"]), one), relabel(expanded(wrong), one))


def test_S_and_U_are_book_inf_174_and_inf_176(step):
    d1, d2, d3, d4 = SLOTS
    H = lambda a, b: tensor("H", a, b)  # noqa: E731
    E = lambda *pairs: P(*pairs).E()  # noqa: E731
    S = (
        C_W * lam_W * E((d1, 1), (d2, 1), (d3, 1), (d4, 1)) * H(d1, d3) * H(d2, d4)
        + r * C_W * E((d3, 1), (d4, 1)) * (lam_W * E((d1, 1), (d2, 1)) + C_W * H(d1, d2) * E((d1, 2), (d2, 2)))
        * tensor("B", d1, d2, d3, d4)
        + C_W**2 * E((d1, 2), (d2, 2), (d3, 1), (d4, 1)) * H(d1, d2) * H(d1, d3) * H(d2, d4)
        + r * C_W**2 * E((d1, 1), (d2, 1)) * E((d3, 1), (d4, 1)) * tensor("S", d1, d2, d3, d4)
    )  # fmt: skip
    assert same(expanded(step["S"]), expanded(S))
    u1, u4, u2, u3 = SLOTS  # U_{d1 d4 d2 d3} of the book is U[a1, a2, a3, a4] here
    U = C_W**2 * E((u1, 2), (u2, 2), (u3, 1), (u4, 1)) * H(u1, u2) * H(u1, u3) * H(u2, u4) + r * C_W**2 * E(
        (u1, 1), (u4, 1)
    ) * E((u2, 1), (u3, 1)) * tensor("U", u1, u4, u2, u3)
    assert same(expanded(step["U"]), expanded(U))


def test_single_input_R_S_T_U_are_book_inf_14_to_inf_18():
    got = {k: expanded(v.subs(r, 1)) for k, v in derive_ntk_step((0, 0, 0, 0)).items()}
    o = 0
    T, K = tensor("H", o, o), sp.Symbol("K", positive=True)
    B, F, Pt, Qt, R, S, Tt, U = (tensor(n, o, o, o, o) for n in "BFPQRSTU")
    E = lambda *k: gexp([(o, x) for x in k])  # noqa: E731
    chi = C_W * E(1, 1)
    lw = lam_W
    # <z f>/K = <d f> (Stein): the book's <z sigma' sigma> / K and <z sigma'' sigma'> / K
    zs = expanded(gexp([(o, 1), (o, 0)], (o,)))
    zss = expanded(gexp([(o, 2), (o, 1)], (o,)))
    R14 = (chi**2 * R + lw * C_W * E(2, 1, 1, 0) * T**2 + C_W**2 * E(3, 1, 1, 1) * T**3
           + chi * (lw * E(2, 0) + C_W * T * E(3, 1)) * (B + Pt)
           + chi * (lw * E(1, 1) + C_W * T * E(2, 2)) * Pt)  # fmt: skip
    S15 = chi**2 * S + C_W * lw * E(1, 1, 1, 1) * T**2 + C_W**2 * E(2, 2, 1, 1) * T**3 + chi * (
        lw * E(1, 1) + C_W * T * E(2, 2)) * B  # fmt: skip
    T16 = (chi**2 * Tt + 2 * C_W * lw * E(2, 1, 1, 0) * T**2 + C_W**2 * E(2, 2, 1, 1) * T**3
           + lw**2 * E(1, 1, 0, 0) * T + (lw * zs * K + C_W * T * zss * K) ** 2 * F / K**2
           + 2 * chi * (lw * (E(2, 0) + E(1, 1)) + C_W * T * (E(3, 1) + E(2, 2))) * Qt)  # fmt: skip
    U17 = chi**2 * U + C_W**2 * E(2, 2, 1, 1) * T**3
    for name, book in (("R", R14), ("S", S15), ("T", T16), ("U", U17)):
        assert same(got[name], expanded(book)), name
