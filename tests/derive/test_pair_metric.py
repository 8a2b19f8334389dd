"""The derived two-input metric flow (issue 7, item 2) against the single-input engine and the book.

sigma = c0 + exp(lam z) makes every Gaussian expectation exact: sigma_a^p sigma_b^q is a sum of exponentials
exp(u.z), whose expectations are exp(u.K.u / 2), and every metric derivative multiplies by a polynomial in u.
So the symbolic recursions can be evaluated at random states without any numerics, and compared:
- with both inputs equal (all state entries equal the single-input ones), every entry must be the
  single-input recursion's, at every order;
- at order 1 with distinct inputs, the mean and vertex of the pair must be the book's (4.115) and (4.119)
  restricted to the two inputs, with raised indices, <sigma sigma (z z - K)> and the rest written out.
"""

from __future__ import annotations

import itertools
import random
from math import comb

import pytest
import sympy as sp

from pdlt.derive import notation as nt
from pdlt.derive.pair_metric import (
    KERNEL,
    derive_pair_step,
    indices,
    is_pure,
    moment_key,
    pair_state_keys,
    pc,
    pm,
    ps,
)
from pdlt.derive.recursion import derive_step

C0, LAM = sp.Rational(3, 10), sp.Rational(7, 10)


def exp_terms(p: int, q: int):
    """sigma_a^p sigma_b^q = sum weight * exp(lam (k z_a + l z_b)) for sigma = c0 + exp(lam z)."""
    for k in range(p + 1):
        for l in range(q + 1):
            yield comb(p, k) * comb(q, l) * C0 ** (p - k) * C0 ** (q - l), LAM * k, LAM * l


def moment_value(p, q, d, Kaa, Kab, Kbb):
    """d^i/dKaa^i d^k/dKab^k d^j/dKbb^j <sigma_a^p sigma_b^q>: each exp(u.K.u/2) gains the factor
    (u_a^2/2)^i (u_a u_b)^k (u_b^2/2)^j."""
    i, k, j = d
    return sum(
        w
        * (ua**2 / 2) ** i
        * (ua * ub) ** k
        * (ub**2 / 2) ** j
        * sp.exp((ua**2 * Kaa + 2 * ua * ub * Kab + ub**2 * Kbb) / 2)
        for w, ua, ub in exp_terms(p, q)
    )


def evaluate(step, key, state: dict, K: tuple, hyper: dict) -> sp.Expr:
    """The pair recursion's entry ``key`` with the cumulants written through exact moments."""
    expr = step.new_state[key]
    subs = {ps(a, b): e for (a, b), e in step.cumulants.items()}
    expr = expr.xreplace(subs)
    moments = {s: moment_value(*moment_key(s), *K) for s in expr.free_symbols if s.name.startswith("m_")}
    expr = expr.xreplace(moments).xreplace(dict(zip(KERNEL, K))).xreplace(state).xreplace(hyper)
    return sp.N(expr, 30)


def hyper_values(order: int, rng: random.Random) -> dict:
    out = {nt.r: sp.Rational(rng.randint(5, 15), 10)}
    for k in range(order + 1):
        out[nt.hyper("C_b", k)] = sp.Rational(rng.randint(1, 9), 10)
        out[nt.hyper("C_W", k)] = sp.Rational(rng.randint(5, 15), 10)
    return out


@pytest.mark.parametrize("order", [0, 1, 2])
def test_the_aa_entries_are_the_single_input_flow(order):
    """Entries along aa only read and write nothing of b: they are derive_step's, symbol for symbol."""
    pair, single = derive_pair_step(order), derive_step(order, renormalized=True)
    to_pair = {nt.c(m, k): pc((m, 0, 0), k) for m, k in single.state_keys}
    s_pair = {ps(a, b): e for (a, b), e in pair.cumulants.items()}
    s_single = {nt.s(m, j): e for (m, j), e in single.cumulants.items()}
    mu = {pm(2 * a, 0, (i, 0, 0)): nt.mu(a, i) for a, i in single.moments}
    for (m, k), expr in single.new_state.items():
        got = pair.new_state[((m, 0, 0), k)].xreplace(s_pair).xreplace(mu)
        assert sp.expand(got - expr.xreplace(s_single).xreplace(to_pair)) == 0, (m, k)


@pytest.mark.parametrize("order", [1, 2])
def test_equal_inputs_reduce_to_the_single_input_flow(order):
    """With x_a = x_b every joint cumulant of (G_aa, G_ab, G_bb) is the single input's: so must the step be."""
    rng = random.Random(order)
    K = sp.Rational(rng.randint(5, 15), 10)
    single_state = {(m, k): sp.Rational(rng.randint(-9, 9), 10) for m, k in derive_step(order).state_keys}
    single_state[(1, 0)] = K
    state = {pc(g, k): single_state[(sum(g), k)] for g, k in pair_state_keys(order) if not (sum(g) == 1 and k == 0)}
    hyper = hyper_values(order, rng)
    single = derive_step(order, renormalized=True)
    mu = {nt.mu(a, i): sp.diff(moment_value(2 * a, 0, (0, 0, 0), nt.K, 0, 0), nt.K, i) for a, i in single.moments}
    s_vals = {sym: e.xreplace(mu) for sym, e in ((nt.s(m, j), v) for (m, j), v in single.cumulants.items())}
    pair = derive_pair_step(order)
    for (g, k), _ in pair.new_state.items():
        want = single.new_state[(sum(g), k)].xreplace(s_vals).xreplace({nt.K: K})
        want = want.xreplace({nt.c(m, kk): v for (m, kk), v in single_state.items()}).xreplace(hyper)
        got = evaluate(pair, (g, k), state, (K, K, K), hyper)
        assert abs(got - sp.N(want, 30)) <= 1e-20 * (1 + abs(got)), (g, k)


# --- the book's two-input recursions at order 1 ---------------------------------------------------------

AB = (0, 1)  # the two inputs


def gaussian_product_moment(u, K, idx) -> sp.Expr:
    """E[prod_{i in idx} z_i exp(u.z)] for z ~ N(0, K): exp(u.K.u/2) E[prod z_i] with z ~ N(K u, K)."""
    mean = [sum(K[i][j] * u[j] for j in AB) for i in AB]

    def moment(items):
        if not items:
            return sp.Integer(1)
        first, rest = items[0], items[1:]
        total = mean[first] * moment(rest)
        for n, other in enumerate(rest):
            total += K[first][other] * moment(rest[:n] + rest[n + 1 :])
        return total

    quad = sum(u[i] * K[i][j] * u[j] for i in AB for j in AB)
    return sp.exp(quad / 2) * moment(list(idx))


def two_sigma(K, poly) -> sp.Expr:
    """<sigma_a sigma_b P(z)> for a polynomial P given as {index tuple: coefficient}."""
    total = sp.Integer(0)
    for w, ua, ub in exp_terms(1, 1):
        for idx, coeff in poly.items():
            total += w * coeff * gaussian_product_moment((ua, ub), K, idx)
    return total


def sigma_pair_at(K, a1, a2, poly) -> sp.Expr:
    """<sigma_{a1} sigma_{a2} P(z)> with a1, a2 in {0, 1} (the same input twice allowed)."""
    total = sp.Integer(0)
    for w, ua, ub in exp_terms(1, 1):
        u = [0, 0]
        u[a1] += ua
        u[a2] += ub
        for idx, coeff in poly.items():
            total += w * coeff * gaussian_product_moment(u, K, idx)
    return total


def book_order1(K, G1, V, C_W, r):
    """(4.115) and (4.119) for the two inputs: G1'[a1][a2] and V'[(a1 a2)(a3 a4)]."""
    Kinv = sp.Matrix(K).inv()
    Vup = {}
    for b in itertools.product(AB, repeat=4):
        Vup[b] = sum(
            Kinv[b[0], d[0]] * Kinv[b[1], d[1]] * Kinv[b[2], d[2]] * Kinv[b[3], d[3]] * V[d]
            for d in itertools.product(AB, repeat=4)
        )

    def zz(b1, b2):  # z_b1 z_b2 - K_b1b2
        return {(b1, b2): 1, (): -K[b1][b2]}

    def times(p1, p2):
        out = {}
        for i1, c1 in p1.items():
            for i2, c2 in p2.items():
                out[i1 + i2] = out.get(i1 + i2, 0) + c1 * c2
        return out

    G1_next, V_next = {}, {}
    for a1, a2 in itertools.product(AB, repeat=2):
        total = sp.Integer(0)
        for b in itertools.product(AB, repeat=4):
            b1, b2, b3, b4 = b
            total += sp.Rational(1, 2) * Kinv[b1, b3] * Kinv[b2, b4] * G1[b3][b4] * sigma_pair_at(K, a1, a2, zz(b1, b2))
            total += sp.Rational(1, 8) * Vup[b] * sigma_pair_at(K, a1, a2, times(zz(b1, b2), zz(b3, b4)))
            total += (
                sp.Rational(1, 4) * Vup[(b1, b3, b2, b4)] * K[b3][b4]
                * sigma_pair_at(K, a1, a2, {(b1, b2): -2, (): K[b1][b2]})
            )  # fmt: skip
        G1_next[(a1, a2)] = r * C_W * total
    for a in itertools.product(AB, repeat=4):
        a1, a2, a3, a4 = a
        four = _four_sigma(K, a)
        total = C_W**2 * (four - sigma_pair_at(K, a1, a2, {(): 1}) * sigma_pair_at(K, a3, a4, {(): 1}))
        for b in itertools.product(AB, repeat=4):
            b1, b2, b3, b4 = b
            total += (
                sp.Rational(1, 4) * C_W**2 * r * Vup[b]
                * sigma_pair_at(K, a1, a2, zz(b1, b2)) * sigma_pair_at(K, a3, a4, zz(b3, b4))
            )  # fmt: skip
        V_next[a] = total
    return G1_next, V_next


def _four_sigma(K, a) -> sp.Expr:
    """<sigma_{a1} sigma_{a2} sigma_{a3} sigma_{a4}>."""
    total = sp.Integer(0)
    choices = [[(C0, 0), (1, LAM)] for _ in a]
    for picks in itertools.product(*choices):
        w = sp.prod([c for c, _ in picks])
        u = [0, 0]
        for slot, (_, lam) in zip(a, picks):
            u[slot] += lam
        total += w * gaussian_product_moment(u, K, ())
    return total


ENTRY = {(0, 0): 0, (0, 1): 1, (1, 0): 1, (1, 1): 2}  # input pair -> entry of (aa, ab, bb)


def test_order_one_is_the_books_two_input_recursion():
    """G{1}_ab and the vertex V_(ab)(cd) of the pair from the derived step equal (4.115) and (4.119)."""
    rng = random.Random(7)
    Kaa, Kbb = sp.Rational(12, 10), sp.Rational(8, 10)
    Kab = sp.Rational(5, 10)
    K = [[Kaa, Kab], [Kab, Kbb]]
    G1 = {e: sp.Rational(rng.randint(-9, 9), 10) for e in range(3)}
    Vs = {g: sp.Rational(rng.randint(1, 9), 10) for g in indices(2)}
    C_W, r = sp.Rational(13, 10), sp.Rational(3, 2)

    def vertex(a):  # V_(a1 a2)(a3 a4) from the pair's joint cumulants of (G_aa, G_ab, G_bb)
        g = [0, 0, 0]
        g[ENTRY[a[0], a[1]]] += 1
        g[ENTRY[a[2], a[3]]] += 1
        return Vs[tuple(g)]

    V = {a: vertex(a) for a in itertools.product(AB, repeat=4)}
    G1_matrix = [[G1[ENTRY[i, j]] for j in AB] for i in AB]
    book_G1, book_V = book_order1(K, G1_matrix, V, C_W, r)

    state = {pc((1, 0, 0), 1): G1[0], pc((0, 1, 0), 1): G1[1], pc((0, 0, 1), 1): G1[2]}
    state.update({pc(g, 1): v for g, v in Vs.items()})
    hyper = {nt.r: r, nt.hyper("C_W", 0): C_W, nt.hyper("C_W", 1): 0, nt.hyper("C_b", 0): 0, nt.hyper("C_b", 1): 0}
    step = derive_pair_step(1)
    for a1, a2 in itertools.product(AB, repeat=2):
        g = [0, 0, 0]
        g[ENTRY[a1, a2]] = 1
        got = evaluate(step, (tuple(g), 1), state, (Kaa, Kab, Kbb), hyper)
        assert abs(got - sp.N(book_G1[(a1, a2)], 30)) < 1e-20, (a1, a2)
    for a in itertools.product(AB, repeat=4):
        g = [0, 0, 0]
        g[ENTRY[a[0], a[1]]] += 1
        g[ENTRY[a[2], a[3]]] += 1
        got = evaluate(step, (tuple(g), 1), state, (Kaa, Kab, Kbb), hyper)
        assert abs(got - sp.N(book_V[a], 30)) < 1e-20, a


def test_state_keys_and_purity():
    keys = pair_state_keys(1)
    assert len(keys) == 3 * 2 + 6 and all(k >= sum(g) - 1 for g, k in keys)
    assert [g for g in indices(2) if is_pure(g)] == [(2, 0, 0), (0, 0, 2)]


def test_latex_prints_the_pair_recursions_of_order_one():
    """pdlt latex gains the two-input section: G{1}_ab and the five vertex entries that involve both inputs,
    written through the moments' metric derivatives, with balanced braces (pdflatex runs in test_cli)."""
    from pdlt.derive.latex import body, pair_section

    text = pair_section()
    lhs = [line.split("&=")[0].strip() for line in text.splitlines() if "&=" in line]
    assert lhs == [
        "{G^{\\{1\\}}_{ab}}^{(\\ell+1)}",
        "{V_{(aa)(ab)}}^{(\\ell+1)}",
        "{V_{(aa)(bb)}}^{(\\ell+1)}",
        "{V_{(ab)(ab)}}^{(\\ell+1)}",
        "{V_{(ab)(bb)}}^{(\\ell+1)}",
    ]
    assert "\\big[\\partial_{ab}^{2}\\langle \\sigma_a \\sigma_b \\rangle\\big]" in text
    assert text.count("{") == text.count("}") and text in body(1)
