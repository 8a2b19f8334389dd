"""Lower sectors to the module IR: the one place where sympy objects become strings.

``lower(activation, order)`` takes the module's sectors from ``pdlt.derive.sectors`` (the
single-input flow and the two-input delta expansion), lays their integrands out as the rows of
``mu`` that ``pdlt.runtime`` expects, and prints every expression with the strict numba printer into
a :class:`~pdlt.codegen.ir.ModuleIR` of strings, numbers and tuples. It decides nothing
mathematical: which expectation has a closed form, which quadrature rule and with which constants,
all come from derive.
"""

from __future__ import annotations

from importlib import metadata

import mpmath
import sympy as sp

from pdlt.derive import notation as nt
from pdlt.derive import ntk, pair_metric, pairs, sectors
from pdlt.derive.activations import Activation, ActivationError
from pdlt.derive.quadrature import CALIBRATION_KERNELS, GL_DEGREES, TOLERANCE
from pdlt.derive.sectors import DSIGMA, SIGMA, Integrand, Rule, Sector, Stage
from pdlt.derive.stability import magnitude, overflow_safe
from pdlt.runtime import RUNTIME_ABI
from pdlt.runtime.numerics import FALLBACK_REL, KINDS

from .ir import Assign, Branch, Constant, Function, Loop, ModuleIR, Return
from .printer import NumbaPrinter, print_pairs

# How each sector's stages become functions: stage -> (function, the runtime signature it is compiled
# for, its arguments, the prefix of its temporaries). A field the stage reads is the argument of the
# same name; the field it writes is ``out`` when it also reads it, else its own name; a scalar whose
# name is an argument is spelled so, the others as in symbol_map (cb[k], cw[k]).
STAGES = {
    ("single_input", "cumulants"): ("_cumulants", "CUMULANTS", ("mu", "s"), "u"),
    ("single_input", "step"): ("_step", "STEP", ("c", "s", "cb", "cw", "r", "out"), "t"),
    ("delta", "susceptibilities"): ("_susceptibilities", "SUSCEPTIBILITIES", ("mu", "C_W", "chi"), "x"),
    ("delta", "step"): ("_delta_step", "DELTA_STEP", ("state", "chi", "C_b", "C_W", "mu", "out"), "y"),
    ("pair_metric", "cumulants"): ("_pair_cumulants", "PAIR_CUMULANTS", ("m", "mua", "mub", "s"), "w"),
    ("pair_metric", "step"): ("_pair_step", "PAIR_STEP", ("c", "s", "cb", "cw", "r", "out"), "v"),
    ("ntk", "step"): ("_ntk_step", "NTK_STEP", ("t", "e", "hyper", "r", "out"), "q"),
    ("ntk_pair", "step"): ("_ntk_pair_step", "NTK_STEP", ("t", "e", "hyper", "r", "out"), "p"),
}
NTK_HYPER = ("C_b", "C_W", "lambda_b", "lambda_W")  # the order of ``hyper`` in the ntk step
PAIR_ORDERS = (1, 2)  # orders of the generated pair sector (order 3 derives in 80 s to 1.1 million operations)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


class Layout:
    """Where each integrand lives in ``mu``: sigma^(2a) in row a, sigma'^2 in row p + 2."""

    def __init__(self, order: int, integrands: tuple[Integrand, ...]) -> None:
        self.order, self.top = order, order + 1
        self.perp, self.nrows = order + 2, order + 3
        self.integrands = integrands
        self.max_i = max(p.derivatives for p in integrands)

    def row(self, p: Integrand) -> int:
        return p.power if p.factor == SIGMA else self.perp

    def slot(self, p: Integrand, array: str = "mu") -> str:
        return f"{array}[{self.row(p)}, {p.derivatives}]"

    def quadrature(self) -> list[Integrand]:
        return [p for p in self.integrands if not p.expectation.exact]

    def qcount(self) -> list[int]:
        count = [0] * self.nrows
        for p in self.quadrature():
            count[self.row(p)] = max(count[self.row(p)], p.derivatives + 1)
        return count

    def qtop(self) -> int:
        """The row whose tail decides whether the truncated quadrature can be trusted."""
        rows = {self.row(p) for p in self.quadrature()}
        plain = [r for r in rows if r != self.perp]
        return max(plain) if plain else (self.perp if rows else 0)


def merge_integrands(*groups: tuple[Integrand, ...]) -> tuple[Integrand, ...]:
    """Every integrand the sectors need, once each (first come first kept)."""
    seen: dict[tuple, Integrand] = {}
    for group in groups:
        for p in group:
            seen.setdefault(p.key, p)
    return tuple(seen.values())


def symbol_map(act: Activation, layout: Layout, groups: tuple[tuple[Integrand, ...], ...]) -> dict[sp.Symbol, str]:
    """How the symbols every sector shares are spelled in generated code."""
    mapping: dict[sp.Symbol, str] = {nt.K: "K", nt.r: "r", nt.z: "z"}
    for j, sym in enumerate(act.param_symbols):
        mapping[sym] = f"params[{j}]"
    for group in groups:
        for p in group:
            mapping[p.symbol] = layout.slot(p)
    for k in range(layout.order + 1):
        mapping[nt.hyper("C_b", k)] = f"cb[{k}]"
        mapping[nt.hyper("C_W", k)] = f"cw[{k}]"
    return mapping


def assigns(outputs: list[tuple[str, sp.Expr]], mapping: dict, prefix: str) -> tuple[Assign, ...]:
    return tuple(Assign(t, e) for t, e in print_pairs(outputs, mapping, prefix)) if outputs else ()


def _piecewise(act: Activation, mapping: dict) -> tuple:
    printer = NumbaPrinter(mapping)
    body = [Branch(f"z < {float(p.hi)!r}", (Return(printer.doprint(overflow_safe(p.expr))),)) for p in act.pieces[:-1]]
    return (*body, Return(printer.doprint(overflow_safe(act.pieces[-1].expr))))


def exact_function(layout: Layout, mapping: dict) -> Function:
    exact = [p for p in layout.integrands if p.expectation.exact]
    plain = [p for p in exact if p.factor == SIGMA]
    perp = [p for p in exact if p.factor == DSIGMA]

    def block(group: list[Integrand], array: str, prefix: str, size: bool = False) -> tuple:
        rows = [(layout.slot(p, array), magnitude(p.expectation.expr) if size else p.expectation.expr) for p in group]
        return (*assigns(rows, mapping, prefix), *small_k(group, array, prefix, size))

    def small_k(group: list[Integrand], array: str, prefix: str, size: bool) -> tuple:
        """Below its switch, a closed form that cancels is replaced by its Taylor polynomial (derive)."""
        out = []
        for p in group:
            if (branch := p.small_k) is not None:
                poly = magnitude(branch.polynomial) if size else branch.polynomial
                out.append(Branch(f"K < {branch.switch!r}", assigns([(layout.slot(p, array), poly)], mapping, prefix)))
        return tuple(out)

    def only_perp(body: tuple) -> tuple:
        return (Branch("perp", body),) if body else ()

    mags = (*block(plain, "mag", "g", size=True), *only_perp(block(perp, "mag", "q", size=True)))
    body = (*block(plain, "mu", "e"), *only_perp(block(perp, "mu", "p")), *((Branch("check", mags),) if mags else ()))
    doc = "Closed-form expectations (sigma'^2 rows with ``perp``); with ``check``, mag = sum of |terms|."
    return Function("_exact", "EXACT", ("K", "params", "check", "perp", "mu", "err", "mag"), doc, body)


def integrands_function(layout: Layout, every: bool = False) -> Function:
    """The quadrature integrands; with ``every`` (a fallback rule) also those that have a closed form."""
    quad = list(layout.integrands) if every else layout.quadrature()
    powers = sorted({p.power for p in quad if p.factor == SIGMA})
    inner: list = [Assign("z", "sk * x[j]")]
    if powers:
        inner += [Assign("s", "sigma(z, params)"), Assign("s2", "s * s")]
        inner += [Assign(f"values[j, {a}]", f"s2 ** {a}") for a in powers]
    if any(p.factor == DSIGMA for p in quad):
        inner.append(Branch("perp", (Assign("d", "dsigma(z, params)"), Assign(f"values[j, {layout.perp}]", "d * d"))))
    body = (Loop("j", "count", tuple(inner)),) if quad else ()
    doc = "values[j, row]: the quadrature integrands at z = sk * x[j], j < count (sigma'^2 with ``perp``)."
    return Function("_integrands", "INTEGRANDS", ("x", "count", "sk", "params", "perp", "values"), doc, body)


DERIVATIVES = ("sigma", "dsigma", "d2sigma", "d3sigma")  # sigma and its derivatives, as the modules name them


def values_function(derivative: int = 0) -> Function:
    """sigma (or its ``derivative``-th derivative) on a grid of nodes, for the runtime's Hermite expansions of
    sigma(sqrt(K) x) and the NTK sector's expectations."""
    f = DERIVATIVES[derivative]
    name = ("_values", "_dvalues", "_d2values", "_d3values")[derivative]
    what = "sigma" + "'" * derivative
    body = (Loop("j", "count", (Assign("out[j]", f"{f}(scale * x[j], params)"),)),)
    doc = f"out[j] = {what}(scale * x[j]) for j < count."
    return Function(name, "VALUES", ("x", "count", "scale", "params", "out"), doc, body)


def jet_function() -> Function:
    """sigma and its first three derivatives on a grid in one pass (their common subexpressions, tanh's tanh say,
    computed once): the NTK sector's expectations need all four at the same nodes."""
    z = Assign("z", "scale * x[j]")
    rows = (Assign(f"out[{k} * count + j]" if k else "out[j]", f"{f}(z, params)") for k, f in enumerate(DERIVATIVES))
    body = (Loop("j", "count", (z, *rows)),)
    doc = "out[k * count + j] = the k-th derivative of sigma at scale * x[j], k = 0..3, j < count."
    return Function("_jet", "VALUES", ("x", "count", "scale", "params", "out"), doc, body)


def pair_function(act: Activation, rule: pairs.PairRule) -> Function:
    """The closed-form pair expectations at angle theta (out[0..3]: <sigma_a sigma_b>, <sigma'_a sigma'_b>,
    <(sigma_a - sigma_b)^2>, <(sigma_a + sigma_b)^2>); empty where the runtime sums a Hermite series."""
    args = ("ka", "kb", "kab", "dist", "total", "theta", "params", "out")
    doc = (
        "Closed-form pair expectations at angle theta: out = <s_a s_b>, <s'_a s'_b>, <(s_a - s_b)^2>, <(s_a + s_b)^2>."
    )
    if not rule.exact:
        return Function("_pair", "PAIR", args, doc, ())
    names = dict(zip(sp.symbols("K_ab D S"), ("kab", "dist", "total")))
    mapping = {pairs.K_a: "ka", pairs.K_b: "kb", pairs.theta: "theta", **names}
    mapping.update({sym: f"params[{j}]" for j, sym in enumerate(act.param_symbols)})
    forms = pairs.closed_forms(rule)
    body = []
    for name, expr, branch in rule.helpers:  # a helper the forms use, with its small-angle branch
        if any(e.has(sp.Symbol(name)) for e in forms.values()):
            mapping[sp.Symbol(name)] = name
            body += assigns([(name, expr)], mapping, "h")
            if branch is not None:
                body.append(Branch(f"theta < {branch.switch!r}", assigns([(name, branch.polynomial)], mapping, "q")))
    outputs = [(f"out[{j}]", forms[key]) for j, key in enumerate(("sigma", "dsigma", "minus", "plus"))]
    body += assigns(outputs, mapping, "v")
    return Function("_pair", "PAIR", args, doc, tuple(body))


def stage_function(sector: Sector, stage: Stage, mapping: dict, suffix: str = "") -> Function:
    name, signature, args, prefix = STAGES[(sector.name, stage.name)]
    name += suffix
    local = dict(mapping)
    for field_name in stage.reads:
        if field_name != "integrands":
            for key, sym in sector.field(field_name).entries:
                local[sym] = f"{field_name}[{', '.join(map(str, key))}]"
    local.update({sym: sym.name for sym in sector.scalars if sym.name in args})
    out = "out" if stage.writes in stage.reads else stage.writes
    outputs = [(f"{out}[{', '.join(map(str, key))}]", expr) for key, expr in stage.rules]
    return Function(name, signature, args, f"{sector.name}: {stage.doc}.", assigns(outputs, local, prefix))


def rule_constants(rule: Rule) -> tuple[dict, list[float], list[float]]:
    """QUADRATURE (what the docs and users read), and the runtime's rule and Gauss-Legendre arrays."""
    if rule.kind == "trapezoid":
        shown = {"kind": "trapezoid", "beta": rule.beta, "h_max": rule.h_max, "x_max": rule.x_max, "even": rule.even}
    elif rule.kind == "gauss-legendre":
        shown = {"kind": "gauss-legendre", "degrees": GL_DEGREES, "x_max": rule.x_max}
    else:
        shown = {"kind": "none"}
    if rule.fallback:
        shown["fallback"] = {"kind": "gauss-legendre", "degrees": GL_DEGREES, "x_max": rule.x_max}
    sizes = [len(x) for x, _ in rule.nodes] or [0, 0]
    values = [float(KINDS[rule.kind]), rule.x_max, rule.h_max, rule.beta, float(rule.even), *map(float, sizes)]
    values.append(float(rule.fallback))
    gl = [v for x, w in rule.nodes for v in (*x, *w)]
    return shown, values, gl


def _accuracy(layout: Layout, rule: Rule) -> dict:
    """How accurate each path this module uses is, and how that is checked (its ACCURACY table)."""
    every = {
        "exact": "closed form; with check=True err = 8 eps * (sum of |terms| it adds), a roundoff bound",
        "trapezoid": (
            f"spacing calibrated against mpmath to {mpmath.nstr(TOLERANCE, 1)} of the integrand's L1 size "
            f"at K = {', '.join(CALIBRATION_KERNELS)}; "
            "with check=True err = |T(h) - M(h)|/2 + 8 eps * L1 size"
        ),
        "gauss-legendre": (
            f"{GL_DEGREES[1]} nodes per piece; with check=True err = |Q_{GL_DEGREES[0]} - "
            f"Q_{GL_DEGREES[1]}| + 8 eps * L1 size"
        ),
        "fallback": (
            f"where a closed form's error estimate exceeds {FALLBACK_REL:g} of its value (it cancels below the scale "
            f"of a kink away from 0), Gauss-Legendre with {GL_DEGREES[1]} nodes per piece replaces it if its own "
            "estimate is smaller (with check=True only)"
        ),
        "tests": "every expectation within its err (x10) of 30-digit mpmath (tests/generated/test_kernels.py)",
    }
    used = {"exact"} if any(p.expectation.exact for p in layout.integrands) else set()
    used |= {"fallback"} if rule.fallback else set()
    return {path: text for path, text in every.items() if path in used | {rule.kind, "tests"}}


def lower(act: Activation, order: int, command: str = "python -m pdlt.codegen") -> ModuleIR:
    """The module IR of the order-``order`` kernels for ``act``."""
    single, delta = sectors.single_input(act, order), sectors.delta(act)
    layout = Layout(order, merge_integrands(single.integrands, delta.integrands))
    mapping = symbol_map(act, layout, (single.integrands, delta.integrands))
    rule = sectors.choose_rule(act, layout.integrands)
    pair = pairs.pair_rule(act)
    shown, rule_values, gl = rule_constants(rule)
    derivatives, current = [], act
    for _ in range(3):  # sigma', sigma'', sigma''' piece by piece, NaN from the first that jumps (a point mass)
        try:
            current = current.derivative()
            derivatives.append(_piecewise(current, mapping))
        except ActivationError:  # sigma jumps: no sigma', so no chi_perp (the single-input flow is unaffected)
            derivatives += [(Return("math.nan"),)] * (3 - len(derivatives))
            break
    dsigma = derivatives[0]
    table = sorted((p.power, p.derivatives, p.expectation.path, p.expectation.rule) for p in layout.integrands
                   if p.factor == SIGMA)  # fmt: skip
    perp_table = sorted((p.derivatives, p.expectation.path, p.expectation.rule) for p in layout.integrands
                        if p.factor == DSIGMA)  # fmt: skip
    public = (
        Constant("NAME", act.name),
        Constant("FORMULA", sp.sstr(act.expr)),
        Constant("ORDER", order),
        Constant("PARAMS", tuple((sym.name, float(val)) for sym, val in act.params)),
        Constant("STATE", tuple((m, k, nt.state_name(m, k)) for (m, k), _ in single.field("c").entries)),
        Constant("EXPECTATIONS", tuple(table),
                 "(a, i, path, rule): how mu[a, i] = d^i/dK^i <sigma^(2a)>_K is computed"),
        Constant("PERP_EXPECTATIONS", tuple(perp_table),
                 "(i, path, rule): how d^i/dK^i <sigma'(z)^2>_K is computed (chi_perp, h); empty if sigma jumps"),
        Constant("QUADRATURE", shown),
        Constant("ACCURACY", _accuracy(layout, rule), "how accurate each path is, and how that is checked"),
        Constant("PAIR_RULE", (pair.kind, pair.reason), "how the kernel-matrix pair expectations are computed"),
        Constant("KINKS", tuple(float(b) for b in act.breakpoints),
                 "where sigma or a derivative jumps (z); quadratures of sigma's Hermite coefficients split there"),
        Constant("RUNTIME_ABI", RUNTIME_ABI, "the pdlt.runtime calling convention this module was generated for"),
    )  # fmt: skip
    n_params = len(act.params)
    private = (
        Constant("_TOP", layout.top, "the highest cumulant of the metric"),
        Constant("_MAX_I", layout.max_i, "the most K-derivatives of an expectation"),
        Constant("_PERP", layout.perp, "row of mu holding d^i/dK^i <sigma'(z)^2>_K"),
        Constant("_NROWS", layout.nrows),
        Constant("_DIMS", (order, layout.top, layout.nrows, layout.max_i, n_params, layout.qtop()),
                 "pdlt.runtime.numerics.DIMS_FIELDS", "int64"),
        Constant("_QCOUNT", tuple(layout.qcount()), "K-derivatives computed by quadrature, per row of mu", "int64"),
        Constant("_RULE", tuple(rule_values), "pdlt.runtime.numerics.RULE_FIELDS", "float64"),
        Constant("_GL", tuple(gl), "Gauss-Legendre nodes and weights, coarse then fine", "float64"),
        Constant("_BREAKS", rule.breakpoints, "breakpoints of sigma in z", "float64"),
    )  # fmt: skip
    functions = (
        Function("sigma", None, ("z", "params"), "The activation sigma(z).", _piecewise(act, mapping)),
        Function(
            "dsigma",
            None,
            ("z", "params"),
            "The derivative sigma'(z) (piece by piece; kinks are breakpoints, never differentiated across).",
            dsigma,
        ),  # fmt: skip
        Function(
            "d2sigma", None, ("z", "params"), "sigma''(z) piece by piece; NaN where sigma' jumps.", derivatives[1]
        ),
        Function(
            "d3sigma", None, ("z", "params"), "sigma'''(z) piece by piece; NaN where sigma'' jumps.", derivatives[2]
        ),
        integrands_function(layout, rule.fallback),
        exact_function(layout, mapping),
        *(stage_function(sector, stage, mapping) for sector in (single, delta) for stage in sector.stages),
        *(values_function(k) for k in range(4)),
        jet_function(),
        pair_function(act, pair),
    )
    return ModuleIR(act.name, sp.sstr(act.expr), order, command, public + private, functions)


def lower_pair_metric(command: str = "python -m pdlt.codegen") -> ModuleIR:
    """The shared module of the pair sector at every order of PAIR_ORDERS (activation-independent)."""
    constants, functions = [Constant("ORDERS", PAIR_ORDERS, "orders in 1/n of the pair steps below")], []
    for order in PAIR_ORDERS:
        sector = sectors.pair_metric(order)
        mapping = {nt.r: "r"}
        for k in range(order + 1):
            mapping[nt.hyper("C_b", k)] = f"cb[{k}]"
            mapping[nt.hyper("C_W", k)] = f"cw[{k}]"
        rows = sorted({key[0]: pair_metric.state_index(sym) for key, sym in sector.field("c").entries}.items())
        moments = tuple(pair_metric.moment_key(sym) for _, sym in sector.field("m").entries)
        mua = sector.field("mua").entries
        constants += [
            Constant(f"STATE_{order}", tuple(g for _, g in rows),
                     f"row -> the joint cumulant (how often G_aa, G_ab, G_bb) in c[row, k] at order {order}"),
            Constant(f"MOMENTS_{order}", tuple((p, q, *d) for p, q, d in moments),
                     "(p, q, i, k, j) of m[n] = d^i/dK_aa^i d^k/dK_ab^k d^j/dK_bb^j <sigma_a^p sigma_b^q>"),
            Constant(f"_DIMS_{order}", (len(rows), order + 1, len(sector.field("s").entries), len(moments),
                     1 + max(a for (a, _), _ in mua), 1 + max(i for (_, i), _ in mua)),
                     "(state rows, state columns, cumulants, moments, mu rows, mu columns)", "int64"),
        ]  # fmt: skip
        functions += [stage_function(sector, stage, mapping, f"_{order}") for stage in sector.stages]
    return ModuleIR("pair_metric", "", max(PAIR_ORDERS), command, tuple(constants), tuple(functions))


def lower_ntk(command: str = "python -m pdlt.codegen") -> ModuleIR:
    """The shared module of the ntk sector (activation-independent): one input's NTK statistics step."""
    sector = sectors.ntk()
    mapping = {nt.r: "r", **{sym: f"hyper[{j}]" for j, sym in enumerate((nt.C_b, nt.C_W, ntk.lam_b, ntk.lam_W))}}
    table = []
    for _, sym in sector.field("e").entries:
        e = ntk.describe(sym)
        table.append((*(sum(k == j for _, k in e.atoms) for j in range(4)), len(e.derivs)))
    constants = (
        Constant("TENSORS", ntk.TENSORS, "the state t[i] of one layer: K, the NTK mean H, the 1/n coefficients"),
        Constant("HYPER", NTK_HYPER, "hyper[j] of the new layer, in this order"),
        Constant("NTK_EXPECTATIONS", tuple(table),
                 "(a, b, c, d, m): e[n] = <d^m/dz^m (sigma^a sigma'^b sigma''^c sigma'''^d)>_K, d/dz on the weight"),
    )  # fmt: skip
    pair = sectors.ntk_pair()
    entries = tuple((e.name, e.slots) for e in (ntk.describe(s) for _, s in pair.field("t").entries))
    table2 = []
    for _, sym in pair.field("e").entries:
        e = ntk.describe(sym)
        row = []
        for label in ("0", "1"):
            row += [sum(a == label and k == j for a, k in e.atoms) for j in range(4)]
            row.append(sum(d == label for d in e.derivs))
        table2.append(tuple(row))
    constants += (
        Constant("NTK_ORBITS", tuple((name, tuple("".join(map(str, q)) for q in ntk._ORBITS[name]))
                                     for name in ntk.TENSORS),
                 "the slot permutations under which each tensor is symmetric (one entry stored per orbit)"),
        Constant("NTK_PAIR_TENSORS", entries, "(name, slots) of t[i] in the two-input step: inputs 0 and 1"),
        Constant("NTK_PAIR_EXPECTATIONS", tuple(table2),
                 "per input (a, b, c, d, m) as above, input 0 then input 1: one joint expectation of both"),
    )  # fmt: skip
    functions = tuple(stage_function(s, stage, mapping) for s in (sector, pair) for stage in s.stages)
    return ModuleIR("ntk", "", 1, command, constants, functions)
