"""The NTK sector for any number of inputs (smooth activations): every entry of K, H, K1, H1 and the four-index
tensors V..U on N inputs, layer by layer (issues 7 item 3, 8, 10).

An entry's recursion depends only on which of its slots coincide: for each such pattern (15 for four slots)
``pdlt.derive.ntk`` derives it once at pattern labels, in weight form, and a one-to-one relabelling to the
entry's inputs is exact; the plan finds every entry's canonical slots, pattern and arguments with numpy at once.
The Gaussian expectations <d_B prod sigma^(k)(z_a)> over one or two distinct inputs are E[prod sigma^(k)(z_a)
h_B(z)] (Price's theorem: h_B is the multivariate Hermite polynomial of the derivatives B in the metric K^-1),
integrated by Gauss-Legendre panels in whitened coordinates z = L u, K = L L^T (``_group_rule``; for a kinked sigma
cut where each z_a crosses a kink), two rule sizes giving the error estimate; over three and four distinct inputs
by Hermite series across a split into two pairs (``pdlt.runtime.ntk_mehler``), with their own bounds. A layer whose
worst relative error misses its share of the tolerance is refused. A kinked sigma has every tensor but R, S, T, U
(sigma'' twice: infinite there)."""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import sympy as sp
from numba import njit

from .errors import FlowError

# Gauss-Legendre nodes per panel and axis (``_group_rule``) by the number of inputs: one and two are integrated here
RULES = {1: (24, 36), 2: (16, 24)}
KINK_SMOOTH_ONLY = ("R", "S", "T", "U")  # sigma'' twice: infinite where sigma has a kink (book ∞.39-44)
FACTORS = 62  # the most distinct per-input factors (sigma-derivative products) a plan encodes


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
def _step(labels: tuple) -> dict:
    ntk, _ = _derivation()
    return ntk.derive_ntk_step(labels)


@cache
def _rule_symbols(name: str, pattern: tuple[int, ...], kinked: bool = False):
    """(recursion, its tensor symbols, its expectation symbols) for entries of ``name`` with ``pattern``; for a
    ``kinked`` sigma every sigma'' is integrated by parts (``weight_form``), for a smooth one it stays."""
    ntk, _ = _derivation()
    labels = pattern + tuple(range(8, 8 + 4 - len(pattern)))  # the two-slot tensors use a1, a2 only
    expr = ntk.weight_form(_step(labels)[name], strict=kinked)
    syms = sorted(expr.free_symbols, key=str)
    tensors = [s for s in syms if isinstance(ntk._REGISTRY.get(s), ntk.TensorEntry)]
    gexps = [s for s in syms if isinstance(ntk._REGISTRY.get(s), ntk.GExp)]
    return expr, tensors, gexps


@cache
def _rule(name: str, pattern: tuple[int, ...], kinked: bool = False):
    """(lambdified rule, its tensor entries, its expectations) for entries of ``name`` with ``pattern``. The
    arguments are renamed a0, a1, ... first: the symbols' own names are not identifiers, and lambdify's dummifying
    them cost most of a plan's first build."""
    ntk, nt = _derivation()
    expr, tensors, gexps = _rule_symbols(name, pattern, kinked)
    scalars = [nt.r, nt.C_b, nt.C_W, ntk.lam_b, ntk.lam_W]
    args = [sp.Symbol(f"a{i}", real=True) for i in range(len(tensors) + len(gexps) + len(scalars))]
    plain = expr.xreplace(dict(zip([*tensors, *gexps, *scalars], args)))
    fn = sp.lambdify(args, plain, modules="numpy", cse=True, dummify=False)
    return fn, [ntk._REGISTRY[s] for s in tensors], [ntk._REGISTRY[s] for s in gexps]


def _patterns(width: int) -> list[tuple[int, ...]]:
    """Every coincidence pattern of ``width`` slots (restricted growth strings: 2 for two slots, 15 for four)."""
    out = [()]
    for _ in range(width):
        out = [p + (k,) for p in out for k in range(max(p, default=-1) + 2)]
    return out


def needed(names) -> tuple[str, ...]:
    """The tensors whose entries the recursions of ``names`` (and K) read, closed under the recursions."""
    ntk, _ = _derivation()
    want, todo = {"K"}, ["K", *names]
    while todo:
        name = todo.pop()
        want.add(name)
        for pat in _patterns(2 if name in ntk.TWO_SLOT else 4):
            for t in _rule_symbols(name, pat)[1]:
                t = ntk._REGISTRY[t]
                if t.name not in want and t.name not in todo:
                    todo.append(t.name)
    return tuple(n for n in ntk.TENSORS if n in want)


def _codes(slots: np.ndarray, N: int) -> np.ndarray:
    code = np.zeros(slots.shape[0], dtype=np.int64)
    for i in range(slots.shape[1]):
        code = code * N + slots[:, i]
    return code


def _pattern_rows(slots: np.ndarray) -> np.ndarray:
    """Each row's coincidence pattern: slot i gets the rank of its value's first occurrence."""
    n, w = slots.shape
    pat = np.zeros((n, w), dtype=np.int64)
    seen = np.zeros(n, dtype=np.int64)  # distinct values so far
    for i in range(w):
        new = np.ones(n, dtype=bool)
        for j in range(i):
            same = slots[:, j] == slots[:, i]
            pat[same & new, i] = pat[same & new, j]
            new &= ~same
        pat[new, i] = seen[new]
        seen += new
    return pat


def plan_bytes(N: int, names, depth: int, n_store: int) -> int:
    """About the bytes a flow of ``names`` over N inputs holds: each needed tensor's entry lookup (N^slots int64) and
    its entries at every layer (N^slots over its symmetries), and the stored arrays of ``names``."""
    ntk, _ = _derivation()
    total = 0
    for name in needed(names):
        full = N ** (2 if name in ntk.TWO_SLOT else 4)
        total += 8 * full + 8 * depth * full // len(ntk._ORBITS[name])
    return total + 8 * n_store * sum(N ** (2 if n in ntk.TWO_SLOT else 4) for n in names)


class Plan:
    """The state entries of N inputs for the tensors ``names`` (and what their recursions read), each entry's rule
    and the gathers of its arguments, the expectation keys grouped by their inputs. Built with numpy over all entries
    at once: an entry's canonical slots are the least code over its tensor's symmetries, its rule the one derived
    at its coincidence pattern."""

    def __init__(self, N: int, names=None, kinked: bool = False):
        ntk, _ = _derivation()
        self.N = N
        self.names = needed(ntk.TENSORS if names is None else names)
        orbits = ntk._ORBITS
        self.lookup: dict[str, np.ndarray] = {}  # name -> entry of every slot code (N^width)
        slots_of: list[tuple[str, int, np.ndarray]] = []  # (name, first entry, canonical slots of each entry)
        offset = 0
        for name in self.names:
            width = 2 if name in ntk.TWO_SLOT else 4
            every = np.indices((N,) * width).reshape(width, -1).T
            canon = np.min([_codes(every[:, list(p)], N) for p in orbits[name]], axis=0)
            codes, inverse = np.unique(canon, return_inverse=True)
            self.lookup[name] = offset + inverse.astype(np.int64)
            rep = np.stack(np.unravel_index(codes, (N,) * width), axis=1).astype(np.int64)
            slots_of.append((name, offset, rep))
            offset += codes.size
        self.size = offset
        self.calls = []  # (fn, entry rows, tensor gathers (k, m), expectation gathers (g, m))
        keys: list[np.ndarray] = []  # per rule and expectation: (rows, 9) key codes
        gathers: list[tuple] = []
        factor_id: dict = {}
        for name, offset, rep in slots_of:
            pats = _pattern_rows(rep)
            pcode = _codes(pats, 4)
            for pc in np.unique(pcode):
                sel = np.flatnonzero(pcode == pc)
                pat = tuple(int(v) for v in pats[sel[0]])
                fn, tensors, gexps = _rule(name, pat, kinked)
                where = {}
                for i, p in enumerate(pat):
                    where.setdefault(str(p), rep[sel, i])
                tg = np.zeros((len(tensors), sel.size), dtype=np.int64)
                for k, t in enumerate(tensors):
                    concrete = np.stack([where[s] for s in t.slots], axis=1)
                    tg[k] = self.lookup[t.name][_codes(concrete, N)]
                eg = []
                for e in gexps:
                    labels = sorted({a for a, _ in e.atoms})
                    ids = [factor_id.setdefault((tuple(sorted(k for a, k in e.atoms if a == lab)),
                                                 sum(1 for d in e.derivs if d == lab)), len(factor_id))
                           for lab in labels]  # fmt: skip
                    concrete = np.stack([where[lab] for lab in labels], axis=1)
                    order = np.argsort(concrete, axis=1, kind="stable")
                    key = np.full((sel.size, 9), -1, dtype=np.int64)
                    key[:, 0] = len(labels)
                    key[:, 1 : 1 + len(labels)] = np.take_along_axis(concrete, order, axis=1)
                    key[:, 5 : 5 + len(labels)] = np.asarray(ids)[order]
                    eg.append(len(keys))
                    keys.append(key)
                gathers.append((fn, offset + sel, tg, eg))
        self.factors = {v: k for k, v in factor_id.items()}
        allkeys = np.concatenate(keys) if keys else np.zeros((0, 9), dtype=np.int64)
        radix = np.array([5] + [N + 1] * 4 + [FACTORS + 1] * 4, dtype=np.int64)  # one int64 a key: 1-D unique
        if len(factor_id) > FACTORS:
            raise FlowError(f"the recursions use {len(factor_id)} distinct factors, more than {FACTORS}")
        code = np.zeros(allkeys.shape[0], dtype=np.int64)
        for c in range(9):
            code = code * radix[c] + allkeys[:, c] + (c > 0)
        codes, inverse = np.unique(code, return_inverse=True)
        inverse = inverse.reshape(-1)
        unique = np.zeros((codes.size, 9), dtype=np.int64)
        for c in range(8, -1, -1):
            codes, unique[:, c] = np.divmod(codes, radix[c])
            unique[:, c] -= c > 0
        bounds = np.cumsum([0] + [k.shape[0] for k in keys])
        for fn, rows, tg, eg in gathers:
            e = np.array([inverse[bounds[i] : bounds[i + 1]] for i in eg]).reshape(len(eg), rows.size)
            self.calls.append((fn, rows, tg, e))
        self.keys = unique  # rows: (m, labels, factor ids), padded with -1; a row's index is its expectation's
        self.gindex: dict = {}
        self.groups: dict = {}
        self.encoded: dict = {}  # per group of one or two inputs: its keys as ``_encoded`` makes them
        for g, row in enumerate(unique):
            if row[0] > 2:  # three or four inputs: ``ntk_mehler`` reads the rows
                continue
            m = int(row[0])
            labels = tuple(int(v) for v in row[1 : 1 + m])
            atoms, derivs = [], []
            for lab, fid in zip(labels, row[5 : 5 + m]):
                powers, nd = self.factors[int(fid)]
                atoms += [(lab, k) for k in powers]
                derivs += [lab] * nd
            key = (tuple(sorted(atoms)), tuple(sorted(derivs)))
            self.gindex[key] = g
            self.groups.setdefault(labels, []).append(key)
        self.k_columns = self.lookup["K"].reshape(N, N)
        self.entries_K = slots_of[self.names.index("K")]
        self.entries_H = slots_of[self.names.index("H")] if "H" in self.names else None

    def start(self, gram: np.ndarray, hyper0: np.ndarray) -> np.ndarray:
        t = np.zeros(self.size)
        cb, cw, lb, lw = hyper0
        for entry, (c, w) in ((self.entries_K, (cb, cw)), (self.entries_H, (lb, lw))):
            if entry is not None:
                _, offset, rep = entry
                t[offset + np.arange(rep.shape[0])] = c + w * gram[rep[:, 0], rep[:, 1]]
        return t

    def kernel(self, t: np.ndarray) -> np.ndarray:
        return t[self.k_columns]

    def step(self, t: np.ndarray, e: np.ndarray, hyper: np.ndarray, r: float) -> np.ndarray:
        out = np.zeros_like(t)
        scalars = (r, *hyper)
        for fn, rows, tg, eg in self.calls:
            out[rows] = fn(*t[tg], *e[eg], *scalars)
        return out

    def arrays(self, T: np.ndarray, names=None) -> dict[str, np.ndarray]:
        """The states T (layers, entries) as arrays: name -> (layers, N, N) or (layers, N, N, N, N)."""
        ntk, _ = _derivation()
        out = {}
        for name in self.names if names is None else names:
            width = 2 if name in ntk.TWO_SLOT else 4
            out[name] = T[:, self.lookup[name]].reshape(T.shape[0], *(self.N,) * width)
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


def _group_rule(q: int, panels: int, L: np.ndarray, kinks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nodes (n, m) and weights (n,) in whitened coordinates u (z = L u) of a one- or two-input group, and the
    distinct values of u_1 (the nodes run through them in order, each repeated n / their number times). Gauss-Hermite
    converges slowly where sigma's complex singularities come near the real axis, at distance d / sqrt(K) in u
    (tanh: d = pi/2; the mean square of its third derivative at K = 2.3 is off by 4e-4 at 128 nodes, 8e-6 at
    192), so each axis takes Gauss-Legendre with q nodes on each of ``panels`` equal panels of [-13.4, 13.4]:
    geometric in the panel's half-width over that distance. For a kinked sigma the pieces are cut where each z_a
    crosses a kink (``pair_rule``)."""
    from .ntk_mehler import cut_rule, legendre_panels, pair_rule

    m = L.shape[0]
    if kinks.size == 0:
        x, w = legendre_panels(q, panels)
        grid = np.stack(np.meshgrid(*([x] * m), indexing="ij"), -1).reshape(-1, m)
        return grid, np.prod(np.stack(np.meshgrid(*([w] * m), indexing="ij"), -1).reshape(-1, m), axis=1), x
    if m == 1:
        x, w = cut_rule(q, panels, (kinks / L[0, 0])[None, :])
        return x[0][:, None], w[0], x[0]
    x, w, y, v = pair_rule(q, panels, L, kinks)
    return np.stack([np.repeat(x, y.shape[1]), y.ravel()], axis=1), (w[:, None] * v).ravel(), x


def _encoded(plan: Plan, labels: tuple, keys: list) -> tuple:
    """A group's keys for ``_key_sums`` (made once per plan): the distinct weight derivatives, each key's derivative
    (index), its factors (rows of the group's table: input * (Z + 1) + derivative order, padded with -1) and its
    row of the expectation table."""
    from .ntk_mehler import Z

    if labels not in plan.encoded:
        derivs = sorted({d for _, d in keys})
        pos = {a: i for i, a in enumerate(labels)}
        width = max((len(atoms) for atoms, _ in keys), default=0)
        factors = np.full((len(keys), max(width, 1)), -1, dtype=np.int64)
        for i, (atoms, _) in enumerate(keys):
            for j, (a, k) in enumerate(atoms):
                factors[i, j] = (Z + 1) * pos[a] + k  # ``ntk_mehler.sigma`` tabulates Z + 1 rows an input
        hidx = np.array([derivs.index(d) for _, d in keys], dtype=np.int64)
        plan.encoded[labels] = (derivs, hidx, factors, np.array([plan.gindex[key] for key in keys], dtype=np.int64))
    return plan.encoded[labels]


@njit(cache=True, error_model="numpy")
def _key_sums(table, weight, hs, hidx, factors, total, mag):
    """total[k] = sum_j weight_j hs[hidx[k], j] prod_i table[factors[k, i], j], mag[k] the same sum of absolute
    values: one buffer a key, each factor a streaming pass over it."""
    buf = np.empty(weight.shape[0])
    for k in range(hidx.shape[0]):
        h = hs[hidx[k]]
        for j in range(buf.shape[0]):
            buf[j] = weight[j] * h[j]
        for i in range(factors.shape[1]):
            if factors[k, i] < 0:
                break
            row = table[factors[k, i]]
            for j in range(buf.shape[0]):
                buf[j] *= row[j]
        total[k], mag[k] = _sum_abs(buf)


@njit(cache=True, error_model="numpy", fastmath={"reassoc", "nsz"})
def _sum_abs(buf):
    """(sum, sum of absolute values) of buf, reassociated into partial sums in vector lanes (their rounding grows
    more slowly than one running sum's; the two rule sizes' difference and 8 eps of the second bound it)."""
    s, m = 0.0, 0.0
    for j in range(buf.shape[0]):
        s += buf[j]
        m += abs(buf[j])
    return s, m


def _panels(K: np.ndarray) -> int:
    """Panels per axis: 8 per unit of sqrt(K) (the singularities' distance shrinks like 1 / sqrt(K)), at least 8."""
    return 8 * max(1, math.ceil(math.sqrt(float(np.max(np.diag(K))))))


def expectations(mod, plan: Plan, K: np.ndarray, params, target: float) -> tuple[np.ndarray, float]:
    """The expectation table at the layer's kernel K, and the worst relative error estimate: groups of one and two
    inputs by cubature (two rule sizes), of three and four by ``pdlt.runtime.ntk_mehler`` (its truncation chosen for
    ``target``)."""
    from . import ntk_mehler

    p = mod.pieces
    kinks = np.array(mod.kinks, dtype=np.float64)
    values = np.zeros((2, len(plan.keys)))
    size = np.zeros(len(plan.keys))
    for labels, keys in plan.groups.items():
        m = len(labels)
        ntk_mehler.check_groups(K, np.array([labels]))
        sub = K[np.ix_(labels, labels)]
        L = np.linalg.cholesky(sub)
        Kinv = np.linalg.inv(sub)
        orders = {k for atoms, _ in keys for _, k in atoms}
        pos = {a: i for i, a in enumerate(labels)}
        for rule, q in enumerate(RULES[m]):
            grid, weight, first = _group_rule(q, _panels(sub), L, kinks)
            z = grid @ L.T
            # z_1 = L11 u_1 takes the axis's ``first`` values, each repeated: sigma is evaluated once at each
            one = np.repeat(ntk_mehler.sigma(p, orders, first, L[0, 0], params), z.shape[0] // first.size, axis=1)
            rest = [ntk_mehler.sigma(p, orders, np.ascontiguousarray(z[:, i]), 1.0, params) for i in range(1, m)]
            table = np.stack([one, *rest])
            wz = z @ Kinv  # rows: K^-1 z per node (Kinv symmetric)
            derivs, hidx, factors, rows = _encoded(plan, labels, keys)
            memo: dict = {}
            hs = np.stack([_hermite(wz, Kinv, tuple(pos[d] for d in b), memo) for b in derivs])
            total, mag = np.zeros(len(keys)), np.zeros(len(keys))
            _key_sums(table.reshape(-1, table.shape[-1]), weight, hs, hidx, factors, total, mag)
            values[rule, rows] = total
            if rule == 1:
                size[rows] = mag
    err = np.abs(values[1] - values[0]) + 8 * np.finfo(float).eps * size
    ok = size > 0
    worst = float(np.max(err[ok] / size[ok], initial=0.0))
    worst = max(worst, ntk_mehler.expectations(mod, params, K, plan.keys, plan.factors, values[1], target))
    return values[1], worst


def many_flow(mod, depth: int, gram: np.ndarray, hyper: np.ndarray, ratios: np.ndarray, params,
              tolerance: float, names=None, layers=None, progress=None) -> tuple[dict, np.ndarray]:  # fmt: skip
    """(arrays, error): arrays[name] of shape (layers, N, N) for K, H, K1, H1 and (layers, N, N, N, N) for V..U, every
    entry for the N inputs with gram[a, b] = x_a . x_b / n_0, for the tensors ``names`` (default: all; computed with
    those their recursions read) at the layer numbers ``layers`` (default: all); hyper[l - 1] = (C_b, C_W, lambda_b,
    lambda_W); error[l - 1] the accumulated relative error bound of the expectations. ``progress(done, total)`` is
    called after each layer."""
    ntk, _ = _derivation()
    kinked = bool(mod.kinks)
    dnt = [t for t in needed(ntk.TENSORS if names is None else names) if t in KINK_SMOOTH_ONLY]
    if kinked and dnt:
        raise FlowError(
            f"{', '.join(dnt)} {'is' if len(dnt) == 1 else 'are'} not defined for {mod.name}: "
            f"{'it needs' if len(dnt) == 1 else 'they need'} sigma'' twice, a product of point masses at its kink"
        )
    N = gram.shape[0]
    plan = Plan(N, names, kinked)
    T = np.zeros((depth, plan.size))
    T[0] = plan.start(gram, hyper[0])
    rel = np.zeros(max(depth - 1, 1))
    for l in range(depth - 1):
        K = plan.kernel(T[l])
        e, rel[l] = expectations(mod, plan, K, params, tolerance / (4 * max(depth - 1, 1)))
        T[l + 1] = plan.step(T[l], e, hyper[l + 1], float(ratios[l]))
        if progress is not None:
            progress(l + 1, depth - 1)
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
    stored = np.arange(depth) if layers is None else np.asarray(layers) - 1
    return plan.arrays(T[stored], names), error
