"""LaTeX for derivations, in the book's notation (amsmath).

``document(derivation, activation)`` gives a standalone document: the recursion generic in sigma
(with the book's chi_parallel), the cumulants of sigma^2 in terms of Gaussian expectations, and,
for an activation, the closed forms that exist and the path (exact rule or quadrature) of each
expectation. ``recursion_align`` gives just the align environment (used by ``_repr_latex_``).
"""

from __future__ import annotations

import sympy as sp

from . import notation as nt
from .activations import Activation
from .expectations import expectations
from .recursion import StepDerivation, cumulant_derivatives, derive_step, moment_derivatives

CHI = sp.Symbol("chi_parallel", positive=True)


def _names(order: int) -> dict[sp.Symbol, str]:
    names = nt.latex_names(order)
    names[CHI] = r"\chi_{\parallel}"
    names[nt.r] = r"\rho_\ell"
    return names


def _tex(expr: sp.Expr, order: int) -> str:
    return sp.latex(expr, symbol_names=_names(order), long_frac_ratio=3)


def _with_chi(expr: sp.Expr) -> sp.Expr:
    """Write C_W d<sigma^2>/dK as the book's chi_parallel (5.10)."""
    return sp.expand(expr.subs(nt.s(1, 1), CHI / nt.C_W))


def _next(m: int, k: int) -> str:
    name = nt.state_latex(m, k)
    return f"{{{name}}}^{{(\\ell+1)}}"


def recursion_align(step: StepDerivation) -> str:
    """The recursion c[m][k] of layer l+1 from layer l, generic in sigma, one line each."""
    names = _names(step.order)
    lines = [f"{_next(m, k)} &= {_broken_sum(_with_chi(step.new_state[(m, k)]), names)}" for m, k in step.state_keys]
    return _align(lines)


def _broken_sum(expr: sp.Expr, names: dict, per_line: int = 3, expand: bool = True) -> str:
    """A sum term by term (ordered by powers of the width ratio), broken every ``per_line`` terms
    so that long recursions stay on the page. ``expand=False`` keeps closed forms whole."""
    terms = sp.Add.make_args(sp.expand(expr) if expand else expr)
    terms = sorted(terms, key=lambda t: (-sp.degree(t, nt.r) if t.is_polynomial(nt.r) else 0, sp.default_sort_key(t)))
    out = ""
    for n, term in enumerate(terms):
        text = sp.latex(term, symbol_names=names, long_frac_ratio=3)
        if n:
            sep = " - " if text.startswith("-") else " + "
            text = text[1:].lstrip() if text.startswith("-") else text
            out += (" \\notag \\\\\n&\\quad" if n % per_line == 0 else "") + sep + text
        else:
            out = text
    return out


def _align(lines: list[str]) -> str:
    return "\\begin{align}\n" + " \\\\\n".join(lines) + "\n\\end{align}"


def specialised_align(step: StepDerivation, act: Activation) -> str:
    """The recursion for one activation: cumulants written through its own expectations, closed
    forms substituted where every expectation in a line has one and the result stays short."""
    order = step.order
    exps = expectations(act, moment_derivatives(order))
    names = _names(order)
    sig = _sigma_tex(act)
    for a, i in exps:
        names[nt.mu(a, i)] = rf"{nt.derivative_prefix(i)}\left\langle \left({sig}\right)^{{{2 * a}}} \right\rangle_K"
    closed = {nt.mu(a, i): e.expr for (a, i), e in exps.items() if e.exact}
    lines = []
    for m, k in step.state_keys:
        expr = step.new_state[(m, k)].subs(
            {nt.s(mm, j): step.cumulants[(mm, j)] for mm, j in cumulant_derivatives(order)}
        )
        expr = sp.expand(expr)
        substituted = False
        if expr.free_symbols & set(closed) and not (expr.free_symbols - set(closed)) & {nt.mu(a, i) for a, i in exps}:
            candidate = sp.collect(sp.expand(expr.subs(closed)), [nt.r, nt.C_W, nt.C_b])
            if sp.count_ops(candidate) <= 80:
                expr, substituted = candidate, True
        lines.append(f"{_next(m, k)} &= {_broken_sum(expr, names, per_line=2, expand=not substituted)}")
    return _align(lines)


def cumulant_align(order: int) -> str:
    step = derive_step(order)
    lines = []
    for m, j in cumulant_derivatives(order):
        if j:
            continue
        lhs = _tex(nt.s(m, 0), order)
        lines.append(f"{lhs} &= {_tex(step.cumulants[(m, 0)], order)}")
    return _align(lines)


def _sigma_tex(act: Activation) -> str:
    return sp.latex(act.expr, symbol_names={nt.z: "z"})


def activation_section(act: Activation, order: int) -> str:
    """Closed forms of <sigma^(2a)>_K where an exact rule reaches, and the path of each expectation."""
    exps = expectations(act, moment_derivatives(order))
    parts = [f"\\subsection*{{Specialised to {act.name.replace('_', '-')}: $\\sigma(z) = {_sigma_tex(act)}$}}"]
    if act.params:
        defaults = ", ".join(f"{sym.name} = {sp.latex(val)}" for sym, val in act.params)
        parts.append(f"Parameters (defaults): {defaults}.")
    closed = []
    for a in sorted({a for a, _ in exps}):
        e = exps[(a, 0)]
        lhs = f"\\langle \\sigma^{{{2 * a}}} \\rangle_K"
        if e.exact:
            closed.append(f"{lhs} &= {sp.latex(e.expr, symbol_names={nt.K: 'K'})} && \\text{{({e.rule})}}")
        else:
            closed.append(f"{lhs} &: \\text{{no closed form; {e.rule}}}")
    parts.append(_align(closed))
    if exps[(1, 0)].exact and order >= 1:
        chi = sp.simplify(nt.C_W * exps[(1, 1)].expr)
        parts.append(
            "In particular\n\\begin{equation}\n"
            "\\chi_{\\parallel}(K) = C_W \\frac{d}{dK}\\langle \\sigma^2 \\rangle_K = "
            + sp.latex(chi, symbol_names={nt.K: "K", nt.C_W: "C_W"})
            + "\n\\end{equation}"
        )
    parts.append(
        "The $K$-derivatives follow from $\\frac{d^i}{dK^i}\\langle F \\rangle_K = "
        "\\langle F\\, \\mathrm{He}_{2i}(z/\\sqrt{K}) \\rangle_K / (2K)^i$, so no derivative of "
        "$\\sigma$ is taken. The recursion for this activation"
        + (" (parameters at their defaults)" if act.params else "")
        + ":"
    )
    parts.append(specialised_align(derive_step(order), _defaults(act)))
    return "\n\n".join(parts)


def delta_section() -> str:
    """Inputs x_pm = x_0 pm dx/2 to second order in dx (book 5.39-5.53), as derived by derive.delta."""
    from .delta import derive_delta_expansion

    legend = (
        "Inputs $x_\\pm = x_0 \\pm \\delta x/2$; the kernel in the book's $\\gamma$ basis, "
        "$K_{\\pm\\pm} = K_{00} + \\delta\\delta K_{[0]} \\pm \\delta K_{[1]} + \\delta\\delta K_{[2]}$, "
        "$K_{+-} = K_{00} + \\delta\\delta K_{[0]} - \\delta\\delta K_{[2]}$ (5.22)-(5.24), "
        "$\\delta\\delta K_{[0]} = 0$ at layer 1. Derived by expanding "
        "$\\langle \\sigma(u_a)\\sigma(u_b)\\rangle$ about the coincident inputs with the heat equation "
        "and reducing every term to $\\frac{d^j}{dK^j}\\langle \\sigma^2\\rangle$, "
        "$\\frac{d^j}{dK^j}\\langle \\sigma'^2\\rangle$ (pdlt.derive.delta). "
        "$(K_{00}, \\delta K_{[1]}, \\delta\\delta K_{[2]})$ is closed; the last line, which the book "
        "leaves as $O(\\delta^2)$, is the correction to $K_{[0]}$."
    )
    return legend + "\n\n" + derive_delta_expansion().latex()


def pair_section() -> str:
    """Two inputs at finite width, order 1 (derive.pair_metric): the mean kernel G{1}_ab and the two-input
    vertex, generic in sigma, written through the moments <sigma_a^p sigma_b^q> and their metric derivatives."""
    from . import pair_metric as pmod

    step = pmod.derive_pair_step(1)
    entry = {0: "aa", 1: "ab", 2: "bb"}
    names: dict[sp.Symbol, str] = {nt.r: r"\rho_\ell"}
    for k in range(2):
        names[nt.hyper("C_b", k)] = "C_b" if k == 0 else r"c_b^{\{1\}}"
        names[nt.hyper("C_W", k)] = "C_W" if k == 0 else r"c_W^{\{1\}}"
    for g, k in pmod.pair_state_keys(1):
        slots = [entry[e] for e in range(3) for _ in range(g[e])]
        if len(slots) == 1:
            names[pmod.pc(g, k)] = ("K" if k == 0 else r"G^{\{1\}}") + f"_{{{slots[0]}}}"
        else:
            names[pmod.pc(g, k)] = f"V_{{({slots[0]})({slots[1]})}}"
    for sym in step.moments:
        p, q, (i, k, j) = pmod.moment_key(sym)
        parts = [
            rf"\partial_{{{e}}}^{{{n}}}" if n > 1 else rf"\partial_{{{e}}}"
            for e, n in zip(("aa", "ab", "bb"), (i, k, j))
            if n
        ]
        power = lambda f, n: "" if n == 0 else (f if n == 1 else f"{f}^{{{n}}}")  # noqa: E731
        body_ = " ".join(x for x in (power(r"\sigma_a", p), power(r"\sigma_b", q)) if x)
        bracket = rf"\langle {body_} \rangle"
        names[sym] = rf"\big[{''.join(parts)}{bracket}\big]" if parts else bracket
    cumulants = {pmod.ps(a, b): e for (a, b), e in step.cumulants.items()}
    lines = []
    for (g, k), expr in step.new_state.items():
        if pmod.is_pure(g) or k == 0:
            continue
        lhs = names[pmod.pc(g, k)]
        lines.append(rf"{{{lhs}}}^{{(\ell+1)}} &= {_broken_sum(expr.xreplace(cumulants), names, per_line=2)}")
    legend = (
        "Two inputs $x_a, x_b$ at finite width, to order $1/n$: the metric $(G_{aa}, G_{ab}, G_{bb})$ has mean "
        "$K + G^{\\{1\\}}/n_{\\ell-1}$ and covariance $V/n_{\\ell-1}$ (book 4.76, 4.104), derived by the law of "
        "total cumulance on the three entries (pdlt.derive.pair_metric). "
        "$\\partial_{ab}$ is the derivative in $K_{ab}$ with $K_{aa}, K_{bb}$ fixed; expectations are over "
        "$(z_a, z_b) \\sim \\mathcal{N}(0, K^{(\\ell)})$. The entries of one input alone are the single-input "
        "recursion above; these are the others (the book's (4.115) and (4.119) restricted to two inputs)."
    )
    return legend + "\n\n" + _align(lines)


def _ntk_names(expr_list) -> dict[sp.Symbol, str]:
    """LaTeX for the ntk sector's symbols: sample labels a_i -> alpha_i, the book's bracket for V and A."""
    from . import ntk

    def lab(a: str) -> str:
        return rf"\alpha_{{{a[1:]}}}" if a.startswith("a") else a

    factor = {0: r"\sigma", 1: r"\sigma'", 2: r"\sigma''", 3: r"\sigma'''"}
    names: dict[sp.Symbol, str] = {nt.r: r"\rho_\ell", nt.C_b: "C_b", nt.C_W: "C_W",
                                   ntk.lam_b: r"\lambda_b", ntk.lam_W: r"\lambda_W"}  # fmt: skip
    for expr in expr_list:
        for sym in expr.free_symbols:
            d = ntk._REGISTRY.get(sym)
            if isinstance(d, ntk.GExp):
                inside = " ".join(f"{factor[k]}_{{{lab(a)}}}" for a, k in d.atoms)
                parts = "".join(rf"\partial_{{{lab(b)}}}" for b in d.derivs)
                names[sym] = rf"\langle {parts}({inside}) \rangle" if parts else rf"\langle {inside} \rangle"
            elif isinstance(d, ntk.TensorEntry):
                sl = [lab(a) for a in d.slots]
                if d.name in ("V", "A"):
                    names[sym] = rf"{d.name}_{{({sl[0]}{sl[1]})({sl[2]}{sl[3]})}}"
                elif d.name in ("K1", "H1"):
                    names[sym] = rf"{d.name[0]}^{{\{{1\}}}}_{{{''.join(sl)}}}"
                else:
                    names[sym] = rf"{d.name}_{{{''.join(sl)}}}"
    return names


def ntk_section() -> str:
    """The NTK sector at leading order (derive.ntk), generic in sigma and in the inputs alpha_1..alpha_4."""
    from . import ntk

    step = ntk.derive_ntk_step()
    names = _ntk_names(step.values())
    slots = {"K": r"K_{\alpha_1\alpha_2}", "H": r"H_{\alpha_1\alpha_2}",
             "V": r"V_{(\alpha_1\alpha_2)(\alpha_3\alpha_4)}",
             "A": r"A_{(\alpha_1\alpha_2)(\alpha_3\alpha_4)}",
             "K1": r"{K^{\{1\}}_{\alpha_1\alpha_2}}", "H1": r"{H^{\{1\}}_{\alpha_1\alpha_2}}"}  # fmt: skip
    lines = []
    for name in ntk.TENSORS:
        lhs = slots.get(name, rf"{name}_{{\alpha_1\alpha_2\alpha_3\alpha_4}}")
        lines.append(rf"{lhs}^{{(\ell+1)}} &= {_broken_sum(step[name], names, per_line=2)}")
    legend = (
        r"Leading order in $1/n$, derived from the stochastic forward equations (book 8.9, 8.12) by Wick "
        r"contractions and the layer-$\ell$ cumulants that define each tensor (pdlt.derive.ntk): the kernel, the NTK "
        r"mean $H$ (the frozen NTK $\Theta$ at this order), and the coefficients of $1/n_{\ell-1}$ of the vertex "
        r"$V$, the NTK variance $A$, $B$ (book 8.82) and the NTK-preactivation cross-correlations $D$, $F$ "
        r"(book 8.67), the dNTK's $P$, $Q$ (book 11.30), the ddNTKs' $R$, $S$, $T$, $U$ (book $\infty$.171, "
        r"$\infty$.173), and the coefficients $K^{\{1\}}$, $H^{\{1\}}$ of $1/n_{\ell-1}$ in the kernel and NTK means "
        r"(each neuron's own law at next-to-leading order; the book leaves $H^{\{1\}}$ uncomputed), "
        r"with the book's subscript order. Unlabelled quantities on the right are of layer $\ell$; "
        r"$C_b, C_W, \lambda_b, \lambda_W$ of layer $\ell+1$; $\rho_\ell = n_\ell/n_{\ell-1}$. "
        r"Expectations are over $z \sim \mathcal{N}(0, K^{(\ell)})$; $\partial_\beta$ is the derivative in "
        r"$z_\beta$ carried by the Gaussian weight, "
        r"$\langle\partial_{\beta_1}\partial_{\beta_2}\Phi\rangle = \sum K^{\beta_1\gamma_1}K^{\beta_2\gamma_2}"
        r"\langle(z_{\gamma_1}z_{\gamma_2} - K_{\gamma_1\gamma_2})\Phi\rangle$, so a kink needs no "
        r"$\sigma''$."
    )
    return legend + "\n\n" + _align(lines)


def _defaults(act: Activation) -> Activation:
    return Activation(act.name, act.with_defaults(), act.description) if act.params else act


def body(order: int, act: Activation | None = None) -> str:
    """The document body: legend, generic recursion, cumulants, optional specialisation."""
    step = derive_step(order)
    legend = (
        "State of layer $\\ell$: $\\kappa_m(\\widehat G^{(\\ell)}) = "
        f"\\sum_{{k=m-1}}^{{{order}}} c^{{(\\ell)}}_{{m,k}}\\, n_{{\\ell-1}}^{{-k}}$, "
        "with $c_{1,0} = K$ (kernel), $c_{1,k} = G^{\\{k\\}}$ (NLO metric and beyond), "
        "$c_{2,1} = V$ (four-point vertex), "
        "$c_{2,k} = V^{\\{k-1\\}}$, $c_{3,2} = U$ (six-point vertex), $c_{3,k} = U^{\\{k-2\\}}$, and "
        "$c_{m,k} = V_{(2m)}^{\\{k-m+1\\}}$ for $m \\ge 4$. Unlabelled quantities on the right are of layer $\\ell$; "
        "$\\rho_\\ell = n_\\ell / n_{\\ell-1}$; expectations are over $z \\sim \\mathcal{N}(0, K^{(\\ell)})$; "
        "$\\kappa_m[\\sigma^2]_K$ is the $m$-th cumulant of $\\sigma(z)^2$ and "
        "$\\chi_{\\parallel} = C_W \\frac{d}{dK}\\langle\\sigma^2\\rangle_K$ (book 5.10)."
    )
    sections = [
        f"\\section*{{Single-input recursions to order $1/n^{{{order}}}$}}",
        legend,
        recursion_align(step),
        "\\subsection*{Cumulants of $\\sigma^2$}",
        cumulant_align(order),
        "\\section*{Two nearby inputs at infinite width: the $\\delta$ expansion}",
        delta_section(),
        "\\section*{Two inputs at finite width: the mean kernel and vertex}",
        pair_section(),
        "\\section*{The NTK at finite width: $A$, $B$, $D$, $F$}",
        ntk_section(),
    ]
    if act is not None:
        sections.append(activation_section(act, order))
    return "\n\n".join(sections) + "\n"


def document(order: int, act: Activation | None = None, text: str | None = None) -> str:
    """A standalone document that compiles with pdflatex (amsmath, amssymb), around ``text`` or ``body``."""
    return (
        "\\documentclass[11pt]{article}\n"
        "\\usepackage{amsmath,amssymb}\n"
        "\\usepackage[margin=2cm,landscape]{geometry}\n"
        "\\allowdisplaybreaks\n"
        "\\begin{document}\n\n" + (body(order, act) if text is None else text) + "\n\\end{document}\n"
    )
