"""The NTK sector for any number of inputs (smooth activations): every entry of K, H, K1, H1 and the four-index
tensors V..U on N inputs, layer by layer (issues 7 item 3, 8, 10).

An entry's recursion depends only on which of its slots coincide: for each such pattern (15 for four slots)
``pdlt.derive.ntk`` derives it once at pattern labels, in weight form, and a one-to-one relabelling to the
entry's inputs is exact. The Gaussian expectations <d_B prod sigma^(k)(z_a)> over up to four distinct inputs are
E[prod sigma^(k)(z_a) h_B(z)] (Price's theorem: h_B is the multivariate Hermite polynomial of the derivatives
B in the metric K^-1), integrated by a tensor-product rule in whitened coordinates z = L u, K = L L^T: Gauss-
Legendre panels for groups of one and two inputs (``_axis_rule``), Gauss-Hermite for three and four. Two rule
sizes give the error estimate; a layer whose worst relative error (against the integral of
the integrand's absolute value) misses its share of the tolerance is refused. Gauss-Hermite converges
geometrically for an entire sigma (tanh, erf, gelu, swish, ...), slowly at a kink, so kinked activations are
refused here (one or two inputs have the piecewise rules of ``pdlt.runtime.ntk``).
"""

from __future__ import annotations

import math
from functools import cache
from itertools import product

import numpy as np
import sympy as sp

from .errors import FlowError
from .ntk import canonical, state_arrays

# nodes per axis, by dimension: for one and two inputs Gauss-Legendre nodes per panel (``_axis_rule``), for more
# Gauss-Hermite nodes
RULES = {1: (24, 36), 2: (16, 24), 3: (36, 48), 4: (18, 24)}
LEGENDRE_UP_TO = 2


@cache
def _derivation():
    from pdlt.derive import notation as nt
    from pdlt.derive import ntk

    return ntk, nt


def pattern_of(slots: tuple) -> tuple[int, ...]:
    """The coincidence pattern of concrete labels: each slot's first-occurrence index, e.g. (5, 2, 5) -> (0, 1, 0)."""
    first: dict = {}
    return tuple(first.setdefault(s, len(first)) for s in slots)


@cache
def _rule(name: str, pattern: tuple[int, ...]):
    """(lambdified rule, its tensor symbols, its expectation symbols) for entries of ``name`` with ``pattern``."""
    ntk, nt = _derivation()
    labels = pattern + tuple(range(8, 8 + 4 - len(pattern)))  # the two-slot tensors use a1, a2 only
    expr = ntk.weight_form(ntk.derive_ntk_step(labels)[name], strict=False)
    syms = sorted(expr.free_symbols, key=str)
    tensors = [s for s in syms if isinstance(ntk._REGISTRY.get(s), ntk.TensorEntry)]
    gexps = [s for s in syms if isinstance(ntk._REGISTRY.get(s), ntk.GExp)]
    scalars = [nt.r, nt.C_b, nt.C_W, ntk.lam_b, ntk.lam_W]
    fn = sp.lambdify([*tensors, *gexps, *scalars], expr, modules="numpy", cse=True)
    return fn, [ntk._REGISTRY[s] for s in tensors], [ntk._REGISTRY[s] for s in gexps]


class Plan:
    """The state entries of N inputs, each entry's rule and the gathers of its arguments, the expectation table."""

    def __init__(self, N: int):
        ntk, _ = _derivation()
        self.N = N
        orbits = ntk._ORBITS
        self.entries: list[tuple] = []
        index: dict = {}
        for name in ntk.TENSORS:
            width = 2 if name in ntk.TWO_SLOT else 4
            for slots in product(range(N), repeat=width):
                key = canonical(name, slots, orbits)
                if key not in index:
                    index[key] = len(self.entries)
                    self.entries.append((name, tuple(int(c) for c in key[1])))
        self.index = index
        gindex: dict = {}
        groups: dict = {}
        self.calls = []  # (fn, entry rows, tensor gathers (k, m), expectation gathers (g, m))
        by_rule: dict = {}
        for i, (name, slots) in enumerate(self.entries):
            by_rule.setdefault((name, pattern_of(slots)), []).append(i)
        for (name, pat), rows in by_rule.items():
            fn, tensors, gexps = _rule(name, pat)
            tg = np.zeros((len(tensors), len(rows)), dtype=np.int64)
            eg = np.zeros((len(gexps), len(rows)), dtype=np.int64)
            for col, row in enumerate(rows):
                slots = self.entries[row][1]
                where = {str(p): s for p, s in zip(pat, slots)}
                for k, t in enumerate(tensors):
                    tg[k, col] = index[canonical(t.name, tuple(where[s] for s in t.slots), orbits)]
                for k, e in enumerate(gexps):
                    atoms = tuple(sorted((where[a], power) for a, power in e.atoms))
                    derivs = tuple(sorted(where[d] for d in e.derivs))
                    key = (atoms, derivs)
                    if key not in gindex:
                        gindex[key] = len(gindex)
                        groups.setdefault(tuple(sorted({a for a, _ in atoms})), []).append(key)
                    eg[k, col] = gindex[key]
            self.calls.append((fn, np.array(rows), tg, eg))
        self.gindex = gindex
        self.groups = groups
        self.k_columns = np.array([[index[canonical("K", (a, b), orbits)] for b in range(N)] for a in range(N)])

    def start(self, gram: np.ndarray, hyper0: np.ndarray) -> np.ndarray:
        t = np.zeros(len(self.entries))
        cb, cw, lb, lw = hyper0
        for i, (name, slots) in enumerate(self.entries):
            if name in ("K", "H"):
                g = gram[slots[0], slots[1]]
                t[i] = cb + cw * g if name == "K" else lb + lw * g
        return t

    def kernel(self, t: np.ndarray) -> np.ndarray:
        return t[self.k_columns]

    def step(self, t: np.ndarray, e: np.ndarray, hyper: np.ndarray, r: float) -> np.ndarray:
        out = np.zeros_like(t)
        scalars = (r, *hyper)
        for fn, rows, tg, eg in self.calls:
            out[rows] = fn(*t[tg], *e[eg], *scalars)
        return out


def _hermite(w: np.ndarray, Kinv: np.ndarray, derivs: tuple, memo: dict) -> np.ndarray:
    """h_B(z) = (-1)^|B| d_B p(z) / p(z) at the nodes (w = K^-1 z, columns by label position), by the recursion
    h_{B+c} = w_c h_B - sum_{b in B} Kinv[b, c] h_{B-b}."""
    if derivs in memo:
        return memo[derivs]
    if not derivs:
        out = np.ones(w.shape[0])
    else:
        *rest, c = derivs
        rest = tuple(rest)
        out = w[:, c] * _hermite(w, Kinv, rest, memo)
        for i, b in enumerate(rest):
            out = out - Kinv[b, c] * _hermite(w, Kinv, rest[:i] + rest[i + 1 :], memo)
    memo[derivs] = out
    return out


@cache
def _axis_rule(q: int, m: int, panels: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of a rule for E[f(u)], u ~ N(0, 1), on each axis of an m-input group. Gauss-Hermite
    converges slowly where sigma's complex singularities come near the real axis, at distance d / sqrt(K) in u
    (tanh: d = pi/2; the mean square of its third derivative at K = 2.3 is off by 4e-4 at 128 nodes, 8e-6 at
    192), so one and two inputs, where nodes are cheap, take Gauss-Legendre with q nodes on each of ``panels``
    equal panels of [-13.4, 13.4]: geometric in the panel's half-width over that distance. Three and four inputs
    keep Gauss-Hermite, whose node count is what they can afford."""
    if m <= LEGENDRE_UP_TO:
        from .kernels import piecewise_rule

        R = math.sqrt(2.0) + 12.0  # piecewise_rule's range for n = 0
        x, sw = piecewise_rule(q, np.linspace(-R, R, panels + 1)[1:-1], 0)
        return x, sw * sw
    x, w = np.polynomial.hermite_e.hermegauss(q)
    return x, w / math.sqrt(2 * math.pi)


def _panels(K: np.ndarray) -> int:
    """Panels per axis: 8 per unit of sqrt(K) (the singularities' distance shrinks like 1 / sqrt(K)), at least 8."""
    return 8 * max(1, math.ceil(math.sqrt(float(np.max(np.diag(K))))))


def expectations(mod, plan: Plan, K: np.ndarray, params) -> tuple[np.ndarray, float]:
    """The expectation table at the layer's kernel K, and the worst relative error estimate (two rule sizes)."""
    from .ntk import _tabulate

    p = mod.pieces
    values = np.zeros((2, len(plan.gindex)))
    size = np.zeros(len(plan.gindex))
    for labels, keys in plan.groups.items():
        m = len(labels)
        sub = K[np.ix_(labels, labels)]
        spectrum = np.linalg.eigvalsh(sub)
        try:
            if not spectrum[0] > 1e-12 * spectrum[-1]:  # singular to rounding: a Cholesky factor would be noise
                raise np.linalg.LinAlgError
            L = np.linalg.cholesky(sub)
            Kinv = np.linalg.inv(sub)
        except np.linalg.LinAlgError:
            raise FlowError(
                f"the kernel of inputs {list(labels)} is singular at some layer: the inputs are linearly "
                "dependent (parallel, or more of them than input dimensions with C_b = 0, where layer 1's kernel "
                "is their Gram matrix); the NTK statistics of more than two inputs need a nonsingular one: use "
                "C_b > 0 or independent inputs"
            ) from None
        pos = {a: i for i, a in enumerate(labels)}
        for rule, q in enumerate(RULES[m]):
            x, w = _axis_rule(q, m, _panels(sub) if m <= LEGENDRE_UP_TO else 0)
            grid = np.stack(np.meshgrid(*([x] * m), indexing="ij"), -1).reshape(-1, m)
            weight = np.prod(np.stack(np.meshgrid(*([w] * m), indexing="ij"), -1).reshape(-1, m), axis=1)
            z = grid @ L.T
            table = np.zeros((m, 4, z.shape[0]))
            for i in range(m):
                _tabulate(p.values, p.dvalues, p.d2values, p.d3values, np.ascontiguousarray(z[:, i]), 1.0, params,
                          table[i])  # fmt: skip
            wz = z @ Kinv  # rows: K^-1 z per node (Kinv symmetric)
            memo: dict = {}
            for key in keys:
                atoms, derivs = key
                f = weight * _hermite(wz, Kinv, tuple(pos[d] for d in derivs), memo)
                for a, power in atoms:
                    f = f * table[pos[a], power]
                g = plan.gindex[key]
                values[rule, g] = f.sum()
                if rule == 1:
                    size[g] = np.abs(f).sum()
    err = np.abs(values[1] - values[0]) + 8 * np.finfo(float).eps * size
    ok = size > 0
    worst = float(np.max(err[ok] / size[ok], initial=0.0))
    return values[1], worst


def many_flow(mod, depth: int, gram: np.ndarray, hyper: np.ndarray, ratios: np.ndarray, params,
              tolerance: float) -> tuple[dict, np.ndarray]:  # fmt: skip
    """(arrays, error): arrays[name] of shape (depth, N, N) for K, H, K1, H1 and (depth, N, N, N, N) for V..U, every
    entry for the N inputs with gram[a, b] = x_a . x_b / n_0; hyper[l - 1] = (C_b, C_W, lambda_b, lambda_W);
    error[l - 1] the accumulated relative error bound of the expectations."""
    if mod.kinks:
        raise FlowError(
            f"the NTK statistics of more than two inputs are computed for smooth activations so far; {mod.name} has "
            "a kink, where Gauss-Hermite cubature converges too slowly (one or two inputs have piecewise rules)"
        )
    N = gram.shape[0]
    plan = Plan(N)
    T = np.zeros((depth, len(plan.entries)))
    T[0] = plan.start(gram, hyper[0])
    rel = np.zeros(max(depth - 1, 1))
    for l in range(depth - 1):
        K = plan.kernel(T[l])
        e, rel[l] = expectations(mod, plan, K, params)
        T[l + 1] = plan.step(T[l], e, hyper[l + 1], float(ratios[l]))
    error = np.zeros(depth)
    error[1:] = np.cumsum(rel[: depth - 1])
    if not np.all(np.isfinite(T)):
        raise FlowError(f"the NTK statistics of {mod.name} for {N} inputs are not finite (inputs or C_W too large)")
    if not error[-1] <= tolerance:
        worst = int(np.argmax(error > tolerance))
        raise FlowError(
            f"the Gaussian expectations of the {N}-input NTK statistics of {mod.name} reach a relative error "
            f"~{error[worst]:.1e} at layer {worst + 1}, above tolerance {tolerance:g}: pass a larger tolerance"
        )
    return state_arrays(T, plan.index, N), error
