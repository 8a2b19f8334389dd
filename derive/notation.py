"""Symbols of the single-input flow and their names in the book's notation.

State of layer l at order p: ``c[m][k]``, the coefficient of ``1/n_{l-1}^k`` in the m-th
cumulant of the stochastic metric, ``kappa_m(G) = sum_{k=m-1}^{p} c[m][k] / n_{l-1}^k``.

Names (book where it has one, a documented extension otherwise):

========  ==========================  ==============================================
c[m][k]   name                        book
========  ==========================  ==============================================
c[1][0]   ``K``                       kernel (4.106)
c[1][k]   ``G{k}``                    NLO metric G^{1} (4.104); G^{2}, ... beyond
c[2][1]   ``V``                       four-point vertex (4.76)
c[2][k]   ``V{k-1}``                  subleading vertex V^{1} (4.105), ...
c[3][2]   ``U``                       six-point vertex (epilogue, eps.19)
c[3][k]   ``U{k-2}``                  its 1/n corrections
c[m][k]   ``V{2m}{k-m+1}``, m >= 4    the 2m-point vertex, 1/n^(m-1) leading
========  ==========================  ==============================================
"""

from __future__ import annotations

from functools import cache

import sympy as sp

# Hyperparameters and the width ratio of one step l -> l+1.
C_b = sp.Symbol("C_b", real=True)
C_W = sp.Symbol("C_W", positive=True)
r = sp.Symbol("r", positive=True)  # n_l / n_{l-1}
K = sp.Symbol("K", positive=True)  # the kernel, c[1][0], where it appears explicitly
z = sp.Symbol("z", real=True)


@cache
def c(m: int, k: int) -> sp.Symbol:
    """State coefficient: the 1/n_{l-1}^k part of the m-th metric cumulant."""
    if m == 1 and k == 0:
        return K
    return sp.Symbol(f"c_{m}_{k}", real=True)


@cache
def s(m: int, j: int) -> sp.Symbol:
    """j-th K-derivative of the m-th cumulant of sigma(z)^2, z ~ N(0, K)."""
    return sp.Symbol(f"s_{m}_{j}", real=True)


@cache
def mu(a: int, i: int) -> sp.Symbol:
    """i-th K-derivative of the Gaussian expectation <sigma(z)^(2a)>_K."""
    return sp.Symbol(f"mu_{a}_{i}", real=True)


@cache
def hyper(name: str, k: int) -> sp.Symbol:
    """The 1/n^k part of a hyperparameter, C = C^{0} + C^{1}/n_l + ... (book 5.138-5.139)."""
    return sp.Symbol(f"{name}_{k}", real=True)


def state_name(m: int, k: int) -> str:
    """Plain-text name of c[m][k] (used in tables and JSON docs): K, G{1}, V, V{1}, U, V8, ..."""
    return _state_label(m, k, latex=False)


def state_latex(m: int, k: int) -> str:
    """LaTeX name of c[m][k] in the book's notation: K, G^{\\{1\\}}, V, U, V_{(8)}, ..."""
    return _state_label(m, k, latex=True)


def _state_label(m: int, k: int, latex: bool) -> str:
    if m == 1 and k == 0:
        return "K"
    if m == 1:
        base, sub = "G", k
    else:
        base = {2: "V", 3: "U"}.get(m, rf"V_{{({2 * m})}}" if latex else f"V{2 * m}")
        sub = k - (m - 1)
    if sub == 0:
        return base
    return rf"{base}^{{\{{{sub}\}}}}" if latex else f"{base}{{{sub}}}"


def derivative_prefix(i: int) -> str:
    """LaTeX for d^i/dK^i (empty for i = 0)."""
    if i == 0:
        return ""
    if i == 1:
        return r"\frac{d}{dK}"
    return rf"\frac{{d^{{{i}}}}}{{dK^{{{i}}}}}"


def latex_names(order: int) -> dict[sp.Symbol, str]:
    """LaTeX for every symbol that an order-``order`` derivation can contain."""
    names: dict[sp.Symbol, str] = {C_b: "C_b", C_W: "C_W", r: r"\frac{n_\ell}{n_{\ell-1}}", K: "K"}
    top = order + 1
    for m in range(1, top + 1):
        for k in range(m - 1, order + 1):
            names[c(m, k)] = state_latex(m, k)
    for m in range(1, top + 1):
        for j in range(0, 2 * (top - m) + 1):
            pre = derivative_prefix(j)
            names[s(m, j)] = rf"{pre}\kappa_{{{m}}}\!\left[\sigma^2\right]_K"
    for a in range(1, top + 1):
        for i in range(0, 2 * (top - a) + 1):
            pre = derivative_prefix(i)
            names[mu(a, i)] = rf"{pre}\langle \sigma^{{{2 * a}}} \rangle_K"
    for k in range(order + 1):
        names[hyper("C_b", k)] = rf"c_b^{{\{{{k}\}}}}"
        names[hyper("C_W", k)] = rf"c_W^{{\{{{k}\}}}}"
    return names
