"""The NTK sector at leading order in 1/n (and its means at the next), derived from the stochastic forward equations
(book ch. 8, issue 8).

Nothing here is transcribed from the book's results. The engine starts from the two forward equations of layer
l + 1 given layer l (book 8.9 and 8.12),

    z_{i;a}     = b_i + sum_j W_ij sigma_{j;a}
    H_{i1 i2;ab} = delta_{i1 i2} [lambda_b + lambda_W / n_l sum_j sigma_{j;a} sigma_{j;b}]
                  + sum_{j1 j2} W_{i1 j1} W_{i2 j2} sigma'_{j1;a} sigma'_{j2;b} H_{j1 j2;ab},

picks output neurons (rows) so that one term of each defining decomposition survives (book 8.82, 8.67, 4.77:
``A = n kappa(H_11, H_22)``, ``B = n kappa(H_12, H_12)``, ``D = n kappa(z_1, z_1, H_22)``,
``F = n kappa(z_1, z_2, H_12)``, ``V = n kappa(z_1, z_1, z_2, z_2)``) and computes each joint cumulant by

1. the law of total cumulance over layer l: kappa(X...) = sum over partitions of kappa_l(kappa_c(blocks)),
   where kappa_c is the cumulant given layer l (joint cumulants of three or more conditional cumulants are
   O(1/n^2) and dropped);
2. Wick's theorem for W and b given layer l (``E W_ij W_kl = delta delta C_W / n_l``, ``E b b = C_b``): every
   conditional moment is a sum over hidden neurons of products of sigma^(k)(z_{j;a}) and H_{j1 j2};
3. the layer-l expectation of such neuron sums to leading order: sum over set partitions of the hidden indices
   (distinct neurons, n_l^blocks of them; n_l (n_l - 1) ... where a covariance needs it), each neuron's own
   variables Gaussian with kernel K at leading order, H_jj = H + dH_jj, H_{jk} = dH_{jk} (j != k), and one
   connected cumulant of layer l across neurons, all O(1/n_{l-1}), taken from the decompositions themselves:

       kappa(z_{j;b1}, z_{j;b2}, z_{k;b3}, z_{k;b4}) = V_(b1 b2)(b3 b4),
       kappa(z_{j;b1}, z_{j;b2}, dH_{kk;cd}) = D_{b1 b2 c d},  kappa(z_{p;b}, z_{q;b'}, dH_{pq;cd}) = F_{b c b' d},
       kappa(dH_{jj;ab}, dH_{kk;cd}) = A_(ab)(cd),
       kappa(dH_{pq;ab}, dH_{pq;cd}) = B_{a c b d},  kappa(dH_{pq;ab}, dH_{qp;cd}) = B_{a d b c}   (all / n_{l-1}),

   where a z leg of a cumulant acts on that neuron's function as a derivative (the cumulant expansion of a
   nearly Gaussian law: 1/4 for the two pairs of V, 1/2 for the pair of D, 1 otherwise).

The means K and H are also carried one order further (K1, H1, issue 10: the book leaves H1 uncomputed): their
1/n part needs each neuron's own law at next-to-leading order (``_own_law``: its kernel K + K1/n, its own
four-point cumulant, its NTK mean H + H1/n and the D, F correlation of its NTK with its own preactivations) and
the count n (n - 1) ... of distinct neurons.

Every Gaussian expectation is kept as ``<d_{b1} ... d_{bm} Phi>_K`` for a product Phi of sigma^(k)(z_a): the
derivatives are those of the Gaussian weight (Price's theorem), so kinks are harmless and nothing like a
delta function squared ever appears; ``expanded`` applies the product rule for display. Sample labels are
strings (symbolic, assumed distinct: the generic recursions) or integers (concrete inputs: one input is
label 0); derivative labels range over the labels of the function they act on, so both are exact.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from itertools import combinations, permutations, product

import sympy as sp

from . import notation as nt

n = sp.Symbol("n_l", positive=True)  # width of layer l (the hidden layer being summed over)
lam_b = sp.Symbol("lambda_b", real=True)  # of the new layer l + 1
lam_W = sp.Symbol("lambda_W", real=True)
SLOTS = ("a1", "a2", "a3", "a4")  # the generic sample labels of a four-index tensor
TENSORS = ("K", "H", "V", "A", "B", "D", "F", "P", "Q", "R", "S", "T", "U", "K1", "H1")  # one layer's state, step order
TWO_SLOT = ("K", "H", "K1", "H1")  # the means: K, H and their 1/n_(l-1) parts; the rest have four slots


# ---------------------------------------------------------------------------------------------- symbols


@dataclass(frozen=True, order=True)
class GExp:
    """<d_{derivs} prod_i sigma^(k_i)(z_{label_i})>_K: a Gaussian expectation with derivatives of the weight."""

    atoms: tuple[tuple[str, int], ...]  # sorted (label, k) pairs, as strings for labels
    derivs: tuple[str, ...]  # sorted labels

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(sorted({a for a, _ in self.atoms}))


_REGISTRY: dict[sp.Symbol, object] = {}


def _key(label) -> str:
    return str(label)


def gexp(atoms, derivs=()) -> sp.Expr:
    """The symbol of <d_derivs prod sigma^(k)(z_label)>; zero when a derivative's label is not in the product."""
    at = tuple(sorted((_key(a), k) for a, k in atoms))
    ds = tuple(sorted(_key(d) for d in derivs))
    if not at:
        return sp.Integer(0) if ds else sp.Integer(1)
    present = {a for a, _ in at}
    if any(d not in present for d in ds):
        return sp.Integer(0)
    e = GExp(at, ds)
    name = "E[" + "*".join(f"s{k}({a})" for a, k in at) + (";d(" + ",".join(ds) + ")" if ds else "") + "]"
    sym = sp.Symbol(name, real=True)
    _REGISTRY[sym] = e
    return sym


_PAIRS = {frozenset((0, 1)), frozenset((2, 3))}
_PAIRED = tuple(p for p in permutations(range(4)) if {frozenset(p[:2]), frozenset(p[2:])} == _PAIRS)
_ORBITS = {  # slot permutations under which each tensor is symmetric (from its defining decomposition)
    "K": ((0, 1), (1, 0)),
    "H": ((0, 1), (1, 0)),
    "K1": ((0, 1), (1, 0)),
    "H1": ((0, 1), (1, 0)),
    "V": _PAIRED,
    "A": _PAIRED,
    "D": ((0, 1, 2, 3), (1, 0, 2, 3), (0, 1, 3, 2), (1, 0, 3, 2)),
    "B": ((0, 1, 2, 3), (1, 0, 3, 2), (2, 3, 0, 1), (3, 2, 1, 0)),
    "F": ((0, 1, 2, 3), (2, 3, 0, 1)),  # (8.67) under (i1 a1) <-> (i2 a2) with the NTK symmetric
    "P": ((0, 1, 2, 3), (0, 2, 1, 3)),
    "Q": ((0, 1, 2, 3),),
    "R": ((0, 1, 2, 3), (0, 1, 3, 2)),
    "S": ((0, 1, 2, 3), (1, 0, 3, 2)),
    "T": ((0, 1, 2, 3), (3, 2, 1, 0)),
    "U": ((0, 1, 2, 3), (2, 3, 0, 1)),
}  # fmt: skip


@dataclass(frozen=True)
class TensorEntry:
    name: str
    slots: tuple[str, ...]


def tensor(name: str, *slots) -> sp.Symbol:
    """The symbol of a layer-l tensor entry, its slots put in canonical order by the tensor's symmetries."""
    keys = tuple(_key(s) for s in slots)
    canon = min(tuple(keys[i] for i in p) for p in _ORBITS[name])
    sym = sp.Symbol(f"{name}[{','.join(canon)}]", real=True)
    _REGISTRY[sym] = TensorEntry(name, canon)
    return sym


def describe(sym: sp.Symbol):
    """The GExp or TensorEntry behind a symbol made here."""
    return _REGISTRY[sym]


# ------------------------------------------------------------------------------ forward equations, Wick


@dataclass(frozen=True)
class Term:
    """coef * sum over ``hidden`` neurons of prod W[row, j] * prod b[row] * prod atoms.

    Atoms: ("s", k, j, label) for sigma^(k)(z_{j;label}); ("H", j1, j2, a, b) for H_{j1 j2;ab} and
    ("dH", j0, j1, j2, a0, a1, a2) for the dNTK dH_{j0 j1 j2;a0 a1 a2} of layer l, and ("ddI", j0..j3, a0..a3),
    ("ddII", j1..j4, a1..a4) for its ddNTKs."""

    coef: sp.Expr
    W: tuple = ()
    b: tuple = ()
    atoms: tuple = ()
    hidden: tuple = ()


class _Fresh:
    def __init__(self):
        self.count = 0

    def __call__(self) -> str:
        self.count += 1
        return f"j{self.count}"


def z_field(row: int, a, fresh) -> list[Term]:
    j = fresh()
    return [Term(sp.Integer(1), b=(row,)), Term(sp.Integer(1), W=((row, j),), atoms=(("s", 0, j, a),), hidden=(j,))]


def h_field(r1: int, r2: int, a, b, fresh) -> list[Term]:
    terms = []
    if r1 == r2:
        j = fresh()
        terms += [Term(lam_b), Term(lam_W / n, atoms=(("s", 0, j, a), ("s", 0, j, b)), hidden=(j,))]
    j1, j2 = fresh(), fresh()
    atoms = (("s", 1, j1, a), ("s", 1, j2, b), ("H", j1, j2, a, b))
    terms.append(Term(sp.Integer(1), W=((r1, j1), (r2, j2)), atoms=atoms, hidden=(j1, j2)))
    return terms


def dh_field(r0: int, r1: int, r2: int, a0, a1, a2, fresh) -> list[Term]:
    """The dNTK of layer l + 1 (book 11.24): every way the two derivatives of z_{r0;a0} can fall."""
    k0, k1, k2 = fresh(), fresh(), fresh()
    W = ((r0, k0), (r1, k1), (r2, k2))
    terms = [
        Term(sp.Integer(1), W=W, atoms=(("s", 1, k0, a0), ("s", 1, k1, a1), ("s", 1, k2, a2),
                                         ("dH", k0, k1, k2, a0, a1, a2)), hidden=(k0, k1, k2)),
        Term(sp.Integer(1), W=W, atoms=(("s", 2, k0, a0), ("s", 1, k1, a1), ("s", 1, k2, a2), ("H", k0, k1, a0, a1),
                                         ("H", k0, k2, a0, a2)), hidden=(k0, k1, k2)),
    ]  # fmt: skip
    if r0 == r1:
        j0, j2 = fresh(), fresh()
        atoms = (("s", 1, j0, a0), ("s", 0, j0, a1), ("s", 1, j2, a2), ("H", j0, j2, a0, a2))
        terms.append(Term(lam_W / n, W=((r2, j2),), atoms=atoms, hidden=(j0, j2)))
    if r0 == r2:
        j0, j1 = fresh(), fresh()
        atoms = (("s", 1, j0, a0), ("s", 1, j1, a1), ("s", 0, j0, a2), ("H", j0, j1, a0, a1))
        terms.append(Term(lam_W / n, W=((r1, j1),), atoms=atoms, hidden=(j0, j1)))
    return terms


def _s(k, j, a):
    return ("s", k, j, a)


def _H(j, k, a, b):
    return ("H", j, k, a, b)


def _dH(j0, j1, j2, a0, a1, a2):
    return ("dH", j0, j1, j2, a0, a1, a2)


def ddi_field(rows, d, fresh) -> list[Term]:
    """The first ddNTK of layer l + 1 (book ∞.169)."""
    r0, r1, r2, r3 = rows
    d0, d1, d2, d3 = d
    c = lam_W / n
    terms = []
    for i, (ra, rb) in ((1, (r2, r3)), (2, (r3, r1)), (3, (r1, r2))):
        if r0 != rows[i]:
            continue
        j0, ja, jb = fresh(), fresh(), fresh()
        da, db = {1: (d2, d3), 2: (d3, d1), 3: (d1, d2)}[i]
        base = (_s(0, j0, d[i]), _s(1, ja, da), _s(1, jb, db))
        W = ((ra, ja), (rb, jb))
        terms.append(Term(c, W=W, atoms=(*base, _s(2, j0, d0), _H(j0, ja, d0, da), _H(j0, jb, d0, db)),
                          hidden=(j0, ja, jb)))  # fmt: skip
        terms.append(Term(c, W=W, atoms=(*base, _s(1, j0, d0), _dH(j0, ja, jb, d0, da, db)), hidden=(j0, ja, jb)))
    j0, j1, j2, j3 = fresh(), fresh(), fresh(), fresh()
    W = ((r0, j0), (r1, j1), (r2, j2), (r3, j3))
    base = (_s(1, j1, d1), _s(1, j2, d2), _s(1, j3, d3))
    hid = (j0, j1, j2, j3)
    for atoms in (
        (_s(1, j0, d0), ("ddI", j0, j1, j2, j3, d0, d1, d2, d3)),
        (_s(2, j0, d0), _dH(j0, j1, j2, d0, d1, d2), _H(j0, j3, d0, d3)),
        (_s(2, j0, d0), _dH(j0, j2, j3, d0, d2, d3), _H(j0, j1, d0, d1)),
        (_s(2, j0, d0), _dH(j0, j3, j1, d0, d3, d1), _H(j0, j2, d0, d2)),
        (_s(3, j0, d0), _H(j0, j1, d0, d1), _H(j0, j2, d0, d2), _H(j0, j3, d0, d3)),
    ):
        terms.append(Term(sp.Integer(1), W=W, atoms=(*base, *atoms), hidden=hid))
    return terms


def ddii_field(rows, d, fresh) -> list[Term]:
    """The second ddNTK of layer l + 1 (book ∞.170)."""
    r1, r2, r3, r4 = rows
    d1, d2, d3, d4 = d
    c = lam_W / n
    terms = []
    if r1 == r3 and r2 == r4:
        j, k = fresh(), fresh()
        atoms = (_s(1, j, d1), _s(1, k, d2), _s(0, j, d3), _s(0, k, d4), _H(j, k, d1, d2))
        terms.append(Term(c * c, atoms=atoms, hidden=(j, k)))
    if r1 == r2:
        j, j3, j4 = fresh(), fresh(), fresh()
        atoms = (_s(1, j, d1), _s(1, j, d2), _s(1, j3, d3), _s(1, j4, d4), _H(j, j3, d1, d3), _H(j, j4, d2, d4))
        terms.append(Term(c, W=((r3, j3), (r4, j4)), atoms=atoms, hidden=(j, j3, j4)))
    if r1 == r3:
        j, j2, j4 = fresh(), fresh(), fresh()
        base = (_s(0, j, d3), _s(1, j4, d4), _s(1, j, d1))
        W = ((r2, j2), (r4, j4))
        terms.append(Term(c, W=W, atoms=(*base, _s(2, j2, d2), _H(j2, j, d2, d1), _H(j2, j4, d2, d4)),
                          hidden=(j, j2, j4)))  # fmt: skip
        terms.append(Term(c, W=W, atoms=(*base, _s(1, j2, d2), _dH(j2, j, j4, d2, d1, d4)), hidden=(j, j2, j4)))
    if r2 == r4:
        j, j1, j3 = fresh(), fresh(), fresh()
        base = (_s(0, j, d4), _s(1, j3, d3), _s(1, j, d2))
        W = ((r1, j1), (r3, j3))
        terms.append(Term(c, W=W, atoms=(*base, _s(2, j1, d1), _H(j1, j, d1, d2), _H(j1, j3, d1, d3)),
                          hidden=(j, j1, j3)))  # fmt: skip
        terms.append(Term(c, W=W, atoms=(*base, _s(1, j1, d1), _dH(j1, j, j3, d1, d2, d3)), hidden=(j, j1, j3)))
    j1, j2, j3, j4 = fresh(), fresh(), fresh(), fresh()
    W = ((r1, j1), (r2, j2), (r3, j3), (r4, j4))
    base = (_s(1, j3, d3), _s(1, j4, d4))
    hid = (j1, j2, j3, j4)
    for atoms in (
        (_s(1, j1, d1), _s(1, j2, d2), ("ddII", j1, j2, j3, j4, d1, d2, d3, d4)),
        (_s(2, j1, d1), _s(2, j2, d2), _H(j1, j2, d1, d2), _H(j1, j3, d1, d3), _H(j2, j4, d2, d4)),
        (_s(1, j1, d1), _s(2, j2, d2), _H(j2, j4, d2, d4), _dH(j1, j2, j3, d1, d2, d3)),
        (_s(1, j2, d2), _s(2, j1, d1), _H(j1, j3, d1, d3), _dH(j2, j1, j4, d2, d1, d4)),
    ):
        terms.append(Term(sp.Integer(1), W=W, atoms=(*base, *atoms), hidden=hid))
    return terms


def _times(x: list[Term], y: list[Term]) -> list[Term]:
    return [Term(s.coef * t.coef, s.W + t.W, s.b + t.b, s.atoms + t.atoms, s.hidden + t.hidden) for s in x for t in y]


def _matchings(items: list):
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for i in range(len(rest)):
        for m in _matchings(rest[:i] + rest[i + 1 :]):
            yield [(first, rest[i]), *m]


def _rename(atoms: tuple, where: dict) -> tuple:
    out = []
    for atom in atoms:
        if atom[0] == "s":
            out.append(("s", atom[1], where.get(atom[2], atom[2]), atom[3]))
        elif atom[0] == "H":
            out.append(("H", where.get(atom[1], atom[1]), where.get(atom[2], atom[2]), atom[3], atom[4]))
        else:
            k = {"dH": 3, "ddI": 4, "ddII": 4}[atom[0]]
            out.append((atom[0], *(where.get(j, j) for j in atom[1 : 1 + k]), *atom[1 + k :]))
    return tuple(out)


def wick(terms: list[Term]) -> list[Term]:
    """E over W and b of layer l + 1 given layer l: the pairings of each row's weights identify hidden neurons."""
    out = []
    for t in terms:
        rows_W, rows_b = defaultdict(list), defaultdict(int)
        for row, j in t.W:
            rows_W[row].append(j)
        for row in t.b:
            rows_b[row] += 1
        if any(c % 2 for c in rows_b.values()) or any(len(v) % 2 for v in rows_W.values()):
            continue
        coef = t.coef
        for c in rows_b.values():
            coef *= _double_factorial(c - 1) * nt.C_b ** (c // 2)
        for choice in product(*(list(_matchings(v)) for v in rows_W.values())):
            parent = {j: j for j in t.hidden}
            pairs = 0
            for matching in choice:
                for x, y in matching:
                    parent[_root(parent, x)] = _root(parent, y)
                    pairs += 1
            where = {j: _root(parent, j) for j in t.hidden}
            hidden = tuple(sorted(set(where.values())))
            out.append(Term(coef * (nt.C_W / n) ** pairs, atoms=_rename(t.atoms, where), hidden=hidden))
    return out


def _root(parent: dict, j: str) -> str:
    while parent[j] != j:
        j = parent[j]
    return j


def _double_factorial(k: int) -> int:
    return 1 if k <= 0 else k * _double_factorial(k - 2)


def _set_partitions(items: list):
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for p in _set_partitions(rest):
        yield [[first], *p]
        for i in range(len(p)):
            yield [*p[:i], [first, *p[i]], *p[i + 1 :]]


# --------------------------------------------------------------------------- layer-l expectations


@dataclass(frozen=True)
class _Block:
    sigma: tuple  # (label, k) atoms on this neuron
    legs: tuple  # ("diag", a, b) for dH_jj, with the rest of the block's function as its coefficient


def _blocks(atoms: tuple, partition: list[list[str]], diag_as_leg: frozenset):
    """Map hidden names to blocks; returns (sigma atoms per block, H factors, diagonal legs, off-diagonal legs).

    ``diag_as_leg``: indices (into the H atoms) of diagonal H_jj taken as their fluctuation dH_jj, the rest as H."""
    where = {j: i for i, block in enumerate(partition) for j in block}
    sig = [[] for _ in partition]
    means, diag, off = [], [], []
    h_index = 0
    for atom in atoms:
        if atom[0] == "s":
            sig[where[atom[2]]].append((atom[3], atom[1]))
            continue
        if atom[0] in ("dH", "ddI", "ddII"):  # zero mean or O(1/n): always a leg, kept with the off-diagonal ones
            k = 3 if atom[0] == "dH" else 4
            off.append((atom[0], *(where[j] for j in atom[1 : 1 + k]), *atom[1 + k :]))
            continue
        p, q = where[atom[1]], where[atom[2]]
        if p == q:
            if h_index in diag_as_leg:
                diag.append((p, atom[3], atom[4]))
            else:
                means.append(tensor("H", atom[3], atom[4]))
        else:
            off.append((p, q, atom[3], atom[4]))
        h_index += 1  # numbered among all H atoms, as _diag_indices numbers them
    return sig, means, diag, off


def _labels(atoms) -> list:
    return sorted({a for a, _ in atoms}, key=str)


def _g(atoms, derivs=()) -> sp.Expr:
    return gexp(atoms, derivs)


def _insertions(sig, diag, off):
    """Every single cross-neuron cumulant of layer l that absorbs all the legs: (blocks touched, value / n_{l-1}),
    the untouched blocks' Gaussian expectations not included."""
    out = []
    nb = len(sig)
    dnt = [leg for leg in off if leg[0] == "dH"]
    if dnt:
        return _dnt_insertion(sig, dnt[0]) if len(off) == 1 and not diag else []
    dd = [leg for leg in off if leg[0] in ("ddI", "ddII")]
    if dd:
        return _ddnt_mean(sig, dd[0]) if len(off) == 1 and not diag else []
    if not diag and not off:
        for j, k in combinations(range(nb), 2):
            value = sum(
                tensor("V", b1, b2, b3, b4) * _g(sig[j], (b1, b2)) * _g(sig[k], (b3, b4))
                for b1, b2 in product(_labels(sig[j]), repeat=2)
                for b3, b4 in product(_labels(sig[k]), repeat=2)
            )
            out.append(({j, k}, sp.Rational(1, 4) * value))
    elif len(diag) == 1 and not off:
        k, c, d = diag[0]
        for j in range(nb):
            if j == k:
                continue
            value = sum(
                tensor("D", b1, b2, c, d) * _g(sig[j], (b1, b2)) for b1, b2 in product(_labels(sig[j]), repeat=2)
            )
            out.append(({j, k}, sp.Rational(1, 2) * value * _g(sig[k])))
    elif len(off) == 1 and not diag:
        p, q, c, d = off[0]
        value = sum(
            tensor("F", b, c, bp, d) * _g(sig[p], (b,)) * _g(sig[q], (bp,))
            for b in _labels(sig[p])
            for bp in _labels(sig[q])
        )
        out.append(({p, q}, value))
    elif len(diag) == 2 and not off:
        (j, a, b), (k, c, d) = diag
        if j != k:
            out.append(({j, k}, tensor("A", a, b, c, d) * _g(sig[j]) * _g(sig[k])))
    elif len(off) == 2 and not diag:
        (p, q, a, b), (p2, q2, c, d) = off
        if (p, q) == (p2, q2):
            out.append(({p, q}, tensor("B", a, c, b, d) * _g(sig[p]) * _g(sig[q])))
        elif (p, q) == (q2, p2):
            out.append(({p, q}, tensor("B", a, d, b, c) * _g(sig[p]) * _g(sig[q])))
    return out


def _diag_indices(atoms, partition) -> list[int]:
    where = {j: i for i, block in enumerate(partition) for j in block}
    hs = [a for a in atoms if a[0] == "H"]
    return [i for i, a in enumerate(hs) if where[a[1]] == where[a[2]]]


def _ddnt_mean(sig, leg):
    """E[ddI_{p q s t;a0..a3}] and E[ddII_{p q s t;a1..a4}] (book ∞.171, ∞.173) over two distinct neurons."""
    kind, p, q, s_, t, *a = leg
    out = None
    if kind == "ddI":
        for (x, y), (u, v), slots in (((p, q), (s_, t), (0, 1, 2, 3)), ((p, s_), (t, q), (0, 2, 3, 1)),
                                      ((p, t), (q, s_), (0, 3, 1, 2))):  # fmt: skip
            if x == y and u == v and x != u:
                out = tensor("R", *(a[i] for i in slots)), {x, u}
    else:
        for (x, y), (u, v), name, slots in (((p, q), (s_, t), "S", (0, 1, 2, 3)), ((p, s_), (t, q), "T", (0, 2, 3, 1)),
                                            ((p, t), (q, s_), "U", (0, 3, 1, 2))):  # fmt: skip
            if x == y and u == v and x != u:
                out = tensor(name, *(a[i] for i in slots)), {x, u}
    if out is None:
        return []
    value, touched = out
    return [(touched, value * sp.Mul(*(_g(sig[b]) for b in touched)))]


def _dnt_insertion(sig, leg):
    """kappa(dH_{p q s;a0 a1 a2}, z_{t;b}) = (book 11.30) P_{a0 a1 a2 b} if t = p, q = s; Q_{a0 a1 a2 b} if p = q,
    t = s; Q_{a0 a2 a1 b} if p = s, t = q (distinct neurons; one neuron alone is O(1/n^2) here)."""
    _, p, q, t, a0, a1, a2 = leg
    if q == t and p != q:
        name, slots, at, other = "P", (a0, a1, a2), p, q
    elif p == q and t != p:
        name, slots, at, other = "Q", (a0, a1, a2), t, p
    elif p == t and q != p:
        name, slots, at, other = "Q", (a0, a2, a1), q, p
    else:
        return []
    value = sum(tensor(name, *slots, b) * _g(sig[at], (b,)) for b in _labels(sig[at]))
    return [({at, other}, value * _g(sig[other]))]


class _Orders(dict):
    """n-exponent -> coefficient (insertions count as 1/n_l with a width ratio r)."""

    def add(self, e: int, value: sp.Expr):
        if value != 0:
            self[e] = self.get(e, 0) + value


def _coef_parts(coef: sp.Expr) -> tuple[int, sp.Expr]:
    power = sp.degree(sp.expand(coef * n**8), n) - 8 if coef.has(n) else 0
    return power, sp.expand(coef / n**power)


def expectation(terms: list[Term], target: int, nlo: bool = False) -> sp.Expr:
    """E_l of a sum of neuron sums, the coefficient of 1/n^target; a nonzero lower order is an error unless
    ``nlo``: then the target is the 1/n correction of an O(1) mean (K1, H1), which needs each neuron's own law at
    next-to-leading order (``_own_law``) and the count of distinct neurons, n (n - 1) ... = n^b - b (b - 1) / 2
    n^(b - 1) + ...; the leading order itself is dropped."""
    orders = _Orders()
    for t in terms:
        power, coef = _coef_parts(t.coef)
        for part in _set_partitions(list(t.hidden)):
            count = power + len(part)
            diag_all = _diag_indices(t.atoms, part)
            for k in range(len(diag_all) + 1):
                for legs in combinations(diag_all, k):
                    sig, means, diag, off = _blocks(t.atoms, part, frozenset(legs))
                    if nlo and count == 0:
                        nb = len(part)
                        if not diag and not off:
                            lead = coef * sp.Mul(*means) * sp.Mul(*(_g(s) for s in sig))
                            orders.add(count, lead)
                            orders.add(count - 1, -sp.Rational(nb * (nb - 1), 2) * lead)
                        orders.add(count - 1, nt.r * coef * _own_law(sig, means, diag, off))
                    elif not diag and not off:
                        orders.add(count, coef * sp.Mul(*means) * sp.Mul(*(_g(s) for s in sig)))
                        continue
                    for touched, value in _insertions(sig, diag, off):
                        rest = sp.Mul(*(_g(s) for i, s in enumerate(sig) if i not in touched))
                        orders.add(count - 1, nt.r * coef * sp.Mul(*means) * value * rest)
    if nlo:
        orders.pop(0, None)
    return _pick(orders, target)


def _own_law(sig, means, diag, off) -> sp.Expr:
    """The 1/n_(l-1) part of E_l[prod over blocks of each neuron's function] from each neuron's own law: its kernel
    K + K1/n (a Gaussian shift: 1/2 K1_b1b2 <d_b1 d_b2 f>), its own four-point cumulant (the three pairings of V,
    1/8 V_(b1b2)(b3b4) <d^4 f>), its NTK mean H + H1/n, and its NTK fluctuation's correlation with its own
    preactivations (D and the two F of one neuron, 1/2 <d_b1 d_b2 f> each) when H_jj is a leg."""
    gauss = [_g(s) for s in sig]
    if off or len(diag) > 1:
        raise NotImplementedError("a neuron's own law at NLO with more than one NTK leg")
    if diag:
        (k, c, d) = diag[0]
        labels = _labels(sig[k])
        value = sp.Rational(1, 2) * sum(
            (tensor("D", b1, b2, c, d) + tensor("F", b1, c, b2, d) + tensor("F", b2, c, b1, d)) * _g(sig[k], (b1, b2))
            for b1, b2 in product(labels, repeat=2)
        )
        return sp.Mul(*means) * value * sp.Mul(*(g for i, g in enumerate(gauss) if i != k))
    total = sp.Mul(*gauss) * sum(
        tensor("H1", *describe(h).slots) * sp.Mul(*means) / h for h in means
    )  # one H at a time to its H1
    for i, s in enumerate(sig):
        labels = _labels(s)
        own = sp.Rational(1, 2) * sum(tensor("K1", b1, b2) * _g(s, (b1, b2)) for b1, b2 in product(labels, repeat=2))
        own += sp.Rational(1, 8) * sum(tensor("V", *bs) * _g(s, bs) for bs in product(labels, repeat=4))
        total += sp.Mul(*means) * own * sp.Mul(*(g for j, g in enumerate(gauss) if j != i))
    return total


def _pick(orders: _Orders, target: int) -> sp.Expr:
    for e, value in orders.items():
        if e > -target and sp.expand(value) != 0:
            raise AssertionError(f"order n^{e} survives below the target 1/n^{target}: {value}")
    return sp.expand(orders.get(-target, 0))


def covariance(x: list[Term], y: list[Term], target: int) -> sp.Expr:
    """Cov_l of two sums of neuron sums at 1/n^target (only cumulants that link x's neurons to y's)."""
    orders = _Orders()
    for s in x:
        for t in y:
            ps, cs = _coef_parts(s.coef)
            pt, ct = _coef_parts(t.coef)
            if not s.hidden or not t.hidden:
                continue
            coef = cs * ct
            atoms = s.atoms + t.atoms
            left = set(s.hidden)
            for part in _set_partitions(list(s.hidden + t.hidden)):
                count = ps + pt + len(part)
                mixed = any(set(b) & left and set(b) - left for b in part)
                sides = [bool(set(b) & left) for b in part]
                diag_all = _diag_indices(atoms, part)
                for k in range(len(diag_all) + 1):
                    for legs in combinations(diag_all, k):
                        sig, means, diag, off = _blocks(atoms, part, frozenset(legs))
                        base = coef * sp.Mul(*means)
                        if not diag and not off:
                            gauss = sp.Mul(*(_g(s_) for s_ in sig))
                            if mixed:
                                orders.add(count, base * gauss)
                            else:  # n(n-1)...: the neurons of x and y are distinct from each other
                                p1 = sum(sides)
                                orders.add(count - 1, -p1 * (len(part) - p1) * base * gauss)
                        if mixed:
                            continue  # a cumulant on top of a shared neuron is higher order
                        for touched, value in _insertions(sig, diag, off):
                            if not any(sides[i] for i in touched) or all(sides[i] for i in touched):
                                continue  # within x or within y: cancels against E[x] E[y]
                            rest = sp.Mul(*(_g(s_) for i, s_ in enumerate(sig) if i not in touched))
                            orders.add(count - 1, nt.r * base * value * rest)
    return _pick(orders, target)


# ------------------------------------------------------------------------------- cumulants of layer l+1


def _moment(fields: list[list[Term]]) -> list[Term]:
    out = [Term(sp.Integer(1))]
    for f in fields:
        out = _times(out, f)
    return wick(out)


def _conditional_cumulant(fields: list[list[Term]]) -> list[Term]:
    """kappa_c of the fields given layer l, by Moebius inversion of the Wick moments."""
    out = []
    for part in _set_partitions(list(range(len(fields)))):
        sign = (-1) ** (len(part) - 1) * sp.factorial(len(part) - 1)
        prod_terms = [Term(sp.Integer(sign))]
        for block in part:
            prod_terms = _times(prod_terms, _moment([fields[i] for i in block]))
        out += prod_terms
    return [t for t in out if t.coef != 0]


def cumulant(fields: list[list[Term]], target: int, nlo: bool = False) -> sp.Expr:
    """kappa(fields) of layer l + 1 at 1/n^target by the law of total cumulance over layer l (``nlo``: the 1/n
    correction of an O(1) cumulant, see ``expectation``)."""
    total = sp.Integer(0)
    for part in _set_partitions(list(range(len(fields)))):
        inner = [_conditional_cumulant([fields[i] for i in block]) for block in part]
        if len(inner) == 1:
            total += expectation(inner[0], target, nlo)
        elif len(inner) == 2:
            total += covariance(inner[0], inner[1], target)
        # three or more conditional cumulants: a joint cumulant of neuron averages, O(1/n^2)
    return sp.expand(total)


# ------------------------------------------------------------------------------------------- the step


@cache
def derive_ntk_step(labels: tuple = SLOTS) -> dict[str, sp.Expr]:
    """The leading-order recursion of every tensor of the sector for the sample labels (a1, a2, a3, a4):
    name -> layer-(l+1) entry in terms of layer-l entries (``tensor``) and expectations (``gexp``) at K(l).

    K and H carry the labels (a1, a2); V, A, D the book's (a1 a2)(a3 a4); B_{a1 a2 a3 a4} and F_{a1 a2 a3 a4}
    in the book's slot order (the NTK factors of B are (a1, a3) and (a2, a4); F's preactivations a1, a3)."""
    a1, a2, a3, a4 = labels
    f = _Fresh()
    return {
        "K": cumulant([z_field(1, a1, f), z_field(1, a2, f)], 0),
        "H": cumulant([h_field(1, 1, a1, a2, f)], 0),
        "V": cumulant([z_field(1, a1, f), z_field(1, a2, f), z_field(2, a3, f), z_field(2, a4, f)], 1),
        "A": cumulant([h_field(1, 1, a1, a2, f), h_field(2, 2, a3, a4, f)], 1),
        "B": cumulant([h_field(1, 2, a1, a3, f), h_field(1, 2, a2, a4, f)], 1),
        "D": cumulant([z_field(1, a1, f), z_field(1, a2, f), h_field(2, 2, a3, a4, f)], 1),
        "F": cumulant([z_field(1, a1, f), z_field(2, a3, f), h_field(1, 2, a2, a4, f)], 1),
        "P": cumulant([dh_field(1, 2, 2, a1, a2, a3, f), z_field(1, a4, f)], 1),
        "Q": cumulant([dh_field(1, 1, 2, a1, a2, a3, f), z_field(2, a4, f)], 1),
        "R": cumulant([ddi_field((1, 1, 2, 2), (a1, a2, a3, a4), f)], 1),
        "S": cumulant([ddii_field((1, 1, 2, 2), (a1, a2, a3, a4), f)], 1),
        "T": cumulant([ddii_field((1, 2, 1, 2), (a1, a4, a2, a3), f)], 1),  # T_{x1 x2 x3 x4} = T_{d1 d3 d4 d2}
        "U": cumulant([ddii_field((1, 2, 2, 1), (a1, a3, a4, a2), f)], 1),  # U_{x1 x2 x3 x4} = U_{d1 d4 d2 d3}
        "K1": cumulant([z_field(1, a1, f), z_field(1, a2, f)], 1, nlo=True),
        "H1": cumulant([h_field(1, 1, a1, a2, f)], 1, nlo=True),
    }


def expanded(expr: sp.Expr) -> sp.Expr:
    """Apply the product rule to every <d... Phi>: derivatives land on the sigma factors of their label
    (for smooth sigma; the weight form is what the numerics use)."""
    subs = {}
    for sym in expr.free_symbols:
        e = _REGISTRY.get(sym)
        if isinstance(e, GExp) and e.derivs:
            subs[sym] = _product_rule(e.atoms, e.derivs)
    return sp.expand(expr.xreplace(subs))


def _product_rule(atoms, derivs) -> sp.Expr:
    terms = {tuple(atoms): sp.Integer(1)}
    for d in derivs:
        new: dict = defaultdict(lambda: sp.Integer(0))
        for at, c in terms.items():
            for i, (label, k) in enumerate(at):
                if label == d:
                    new[at[:i] + ((label, k + 1),) + at[i + 1 :]] += c
        terms = new
    return sp.Add(*(c * gexp(at) for at, c in terms.items()))


def relabel(expr: sp.Expr, mapping: dict) -> sp.Expr:
    """The same recursion at other sample labels (e.g. the generic a1..a4 -> inputs 0, 1, 0, 1). Exact on the
    ``expanded`` form, where a derivative is tied to the factor it acts on; the weight form sums each derivative
    over the distinct labels of its function, so relabel that one only by re-deriving at the new labels."""
    subs = {}
    for sym in expr.free_symbols:
        e = _REGISTRY.get(sym)
        if isinstance(e, GExp):
            subs[sym] = gexp([(mapping.get(a, a), k) for a, k in e.atoms], [mapping.get(d, d) for d in e.derivs])
        elif isinstance(e, TensorEntry):
            subs[sym] = tensor(e.name, *(mapping.get(s, s) for s in e.slots))
    return sp.expand(expr.xreplace(subs))


class KinkError(ValueError):
    """An expectation that holds sigma'' twice at one input (or sigma'''): not defined where sigma' jumps."""


def weight_form(expr: sp.Expr, strict: bool = True) -> sp.Expr:
    """Remove every sigma'' from the expectations by Gaussian integration by parts, so that a kink costs nothing:
    with R = sigma'_a^(b-1) sigma_a^c Psi (Psi free of input a) and d_B the weight derivatives already there,

        <d_B (sigma''_a R)> = ( <d_B d_a (sigma'_a^b sigma_a^c Psi)> - c <d_B (sigma'_a^(b+1) sigma_a^(c-1) Psi)> ) / b,

    the product rule of d_a (sigma'_a^b sigma_a^c) solved for the sigma'' term. Where sigma' jumps this is the
    value with the kink smoothed away (sigma'' a point mass), the book's reading (11.67, 11.70); KinkError where an
    input carries sigma'' twice or sigma''' (the book's R, S, T, U for ReLU, infinite there: ∞.39-44), unless
    ``strict`` is off: then those stay as they are, for a smooth sigma to evaluate directly."""
    subs = {}
    for sym in expr.free_symbols:
        e = _REGISTRY.get(sym)
        if isinstance(e, GExp) and any(k >= 2 for _, k in e.atoms):
            try:
                subs[sym] = _integrate_by_parts(e.atoms, e.derivs)
            except KinkError:
                if strict:
                    raise
    return sp.expand(expr.xreplace(subs)) if subs else expr


def _integrate_by_parts(atoms, derivs) -> sp.Expr:
    high = [(a, k) for a, k in atoms if k >= 2]
    label = high[0][0]
    at_label = [k for a, k in atoms if a == label]
    if max(at_label) > 2 or at_label.count(2) > 1:
        raise KinkError(f"<{' '.join(f's{k}({a})' for a, k in atoms)}> holds sigma'' twice or sigma''' at one input")
    rest = [(a, k) for a, k in atoms if a != label]
    b, c = at_label.count(1) + 1, at_label.count(0)
    first = gexp([*rest, *[(label, 1)] * b, *[(label, 0)] * c], (*derivs, label))
    second = gexp([*rest, *[(label, 1)] * (b + 1), *[(label, 0)] * (c - 1)], derivs) if c else sp.Integer(0)
    return weight_form((first - c * second) / b)
