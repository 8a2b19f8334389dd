"""The mean output of a fully trained network at finite width (book §∞.2, issue 10).

Trained by MSE to zero training loss with the book's per-parameter learning rates (eta lambda_b for biases,
eta lambda_W / n_(l-1) for weights), the network's mean output at a test input beta is (∞.155)

    m_i;beta = m^NTK_i;beta + [m^dNTK... (beta) - sum H_beta,a H~^ab m^...(b)] / n_(L-1) + O(1/n^2),

with the four corrections: the NTK's instantiation-to-instantiation fluctuations (A, B), the dNTK (P, Q), and the
two ddNTKs (R; S, T, U), contracted with the training targets y, the output kernel K and the algorithm's
projectors Z (∞.142)-(∞.153), built here from the inverse mean NTK H~^-1 on the training set and the inverting
tensors X_II, X_III (∞.107)-(∞.110). The representation-learning parts are the means of the T-shirt formula's
lines (∞.154), taken term by term (``corrections``). m^NTK = H_beta,a H~^ab y_b uses the full mean NTK
H = Theta + H1 / n_(L-1), so its own 1/n part (H1, which the book leaves uncomputed) enters the coefficient too.

Every tensor comes from ``kernel_matrices`` on the training inputs and one test input together, so a training set
has at most MANY_MAX - 1 inputs. The projectors are the book's; each one is also the nested geometric sum that the
function-space gradient descent, truncated where the book truncates it, produces in the eigenbasis of H (a
training mode k decays as (1 - eta h_k)^t), and the linear response of that truncated dynamics is the T-shirt
formula's lines exactly (tests/runtime/test_predict.py). How far the expansion can be trusted depends on the
training set: the O(1/n^2) remainder grows with the condition number of the training NTK (slow modes train long
while the ddNTKs drift), see ``Prediction.condition`` and docs/predicting-trained-networks.md. Indices below:
d = any input of that set (training first), a..g = training inputs; y is (n_L, N_train).

The variance over initializations of the trained output, to 1/n (∞.161, of which the book prints one example term),
is derived here from the T-shirt formula: ``variance_prediction``.

The fluctuation term enters with a minus sign, m^DeltaNTK = -(A + B + n_L B) H~^-1 H~^-1 y in (∞.157)'s slots: a
frozen but fluctuating NTK trains to z(x) - H(x, x_0) H(x_0, x_0)^-1 (z(x_0) - y) exactly, and the delta method on
E[H(x, x_0) H(x_0, x_0)^-1] gives -Cov / H^2 (as transcribed in the reference the sign is +; trained ensembles
side with the derivation, tests/montecarlo/test_predict_mc.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import MANY_MAX
from .errors import FlowError

ALGORITHMS = ("gradient-flow", "gd", "newton2")
NEEDED = ("Theta", "H1", "A", "B", "D", "F", "P", "Q", "R", "S", "T", "U")
PARTS = ("NTK mean", "NTK fluctuations", "dNTK", "ddNTK-I", "ddNTK-II")


@dataclass
class Prediction:
    """The mean trained output at the test inputs: ``mean_infinite`` + ``mean_coefficient`` / n + O(1/n^2), arrays
    (n_test, n_L), for all hidden widths equal to n. ``parts[name]`` splits the coefficient into the NTK mean's own
    1/n part ("NTK mean", from H1), the NTK fluctuations (A, B), the dNTK (P, Q) and the ddNTKs (R; S, T, U).
    ``variance_infinite`` (n_test,): each output's variance over initializations at infinite width (the leading
    term of ∞.161), K(x, x) - 2 H(x, a) H~^ab K(b, x) + H(x, a) H~^ab K(b, c) H~^cd H(d, x);
    ``variance_coefficient`` (n_test, n_L) its 1/n part, Var z_T = variance_infinite + variance_coefficient / n
    + O(1/n^2), split in ``variance_parts`` (see :func:`variance_prediction`). ``error`` is the largest accumulated
    relative error bound of the tensors used. ``condition``: the condition number of the training NTK Theta (largest
    over smallest eigenvalue; 1 for one training input), on which the size of the O(1/n^2) remainder depends (module
    doc)."""

    activation: str
    algorithm: str
    eta: float
    depth: int
    mean_infinite: np.ndarray
    mean_coefficient: np.ndarray
    variance_infinite: np.ndarray
    variance_coefficient: np.ndarray
    parts: dict = field(default_factory=dict)
    variance_parts: dict = field(default_factory=dict)
    error: float = 0.0
    condition: float = 1.0

    def mean(self, width: float) -> np.ndarray:
        """mean_infinite + mean_coefficient / width (the truncation is O(1/width^2))."""
        if not (np.isfinite(width) and width >= 1):
            raise FlowError(f"width must be a number >= 1, got {width}")
        return self.mean_infinite + self.mean_coefficient / width

    def variance(self, width: float) -> np.ndarray:
        """variance_infinite + variance_coefficient / width, (n_test, n_L) (the truncation is O(1/width^2))."""
        if not (np.isfinite(width) and width >= 1):
            raise FlowError(f"width must be a number >= 1, got {width}")
        return self.variance_infinite[:, None] + self.variance_coefficient / width

    def as_dict(self, width: float | None = None) -> dict:
        """The JSON contract of ``pdlt predict``: lists over test inputs, one list per output when n_L > 1."""

        def out(a: np.ndarray):
            return [float(v) for v in a[:, 0]] if a.shape[1] == 1 else [[float(v) for v in row] for row in a.T]

        d = {
            "mean_infinite": out(self.mean_infinite),
            "mean_coefficient": out(self.mean_coefficient),
            "variance_infinite": [float(v) for v in self.variance_infinite],
            "variance_coefficient": out(self.variance_coefficient),
        }
        if width is not None:
            d["mean"] = out(self.mean(width))
            d["variance"] = out(self.variance(width))
        d["parts"] = {name: out(v) for name, v in self.parts.items()}
        d["variance_parts"] = {name: out(v) for name, v in self.variance_parts.items()}
        d.update({"algorithm": self.algorithm, "eta": self.eta, "depth": self.depth, "error_bound": self.error,
                  "condition_number": self.condition})  # fmt: skip
        return d


# ------------------------------------------------------------------------------------------ projectors


def inverting(H: np.ndarray, eta: float) -> tuple[np.ndarray, np.ndarray]:
    """X_II (N,)*4 and X_III (N,)*6 of (∞.107) and (∞.110): the inverses, on pairs and triples of training indices,
    of H d + d H - eta H H and of (H d d + d H d + d d H) - eta (H H d + H d H + d H H) + eta^2 H H H."""
    N = H.shape[0]
    eye = np.eye(N)
    M2 = np.einsum("ac,bd->abcd", H, eye) + np.einsum("ac,bd->abcd", eye, H) - eta * np.einsum("ac,bd->abcd", H, H)
    X2 = np.linalg.inv(M2.reshape(N * N, N * N)).reshape((N,) * 4)

    def outer3(P, Q, R):
        return np.einsum("ad,be,cf->abcdef", P, Q, R)

    M3 = (outer3(H, eye, eye) + outer3(eye, H, eye) + outer3(eye, eye, H)
          - eta * (outer3(H, H, eye) + outer3(H, eye, H) + outer3(eye, H, H)) + eta**2 * outer3(H, H, H))  # fmt: skip
    X3 = np.linalg.inv(M3.reshape(N**3, N**3)).reshape((N,) * 6)
    return X2, X3


def projectors(H: np.ndarray, algorithm: str, eta: float) -> dict[str, np.ndarray]:
    """Z_A, Z_B (N,)*4 and Z_IA, Z_IB, Z_IIA, Z_IIB (N,)*6 of the algorithm (∞.142)-(∞.153), from the mean NTK H on the
    training set (the shorthands Y_1..Y_4 of (∞.135), (∞.138)-(∞.140))."""
    Hi = np.linalg.inv(H)
    if algorithm == "newton2":  # (∞.148)
        N = H.shape[0]
        zero4, zero6 = np.zeros((N,) * 4), np.zeros((N,) * 6)
        hhh = np.einsum("ad,be,cf->abcdef", Hi, Hi, Hi)
        return {"A": zero4, "B": 0.5 * np.einsum("ac,bd->abcd", Hi, Hi), "IA": zero6, "IB": -hhh / 6, "IIA": zero6,
                "IIB": zero6}  # fmt: skip
    if algorithm == "gradient-flow":
        eta = 0.0
    X2, X3 = inverting(H, eta)
    Y1 = np.einsum("abde,cf->abcdef", X2, Hi) - np.einsum("cg,abgdef->abcdef", Hi, X3)
    Y2 = np.einsum("ac,bd->abcd", Hi, Hi) - np.einsum("be,aecd->abcd", Hi, X2)
    Y3 = (np.einsum("ad,be,cf->abcdef", Hi, Hi, Hi) - np.einsum("bg,agde,cf->abcdef", Hi, X2, Hi)
          - np.einsum("ad,cg,bgef->abcdef", Hi, Hi, X2)
          + np.einsum("ci,bigh,aghdef->abcdef", Hi, X2, X3))  # fmt: skip
    Y4 = np.einsum("ad,bcef->abcdef", Hi, X2) - np.einsum("bcgh,aghdef->abcdef", X2, X3)
    Y3_213546 = Y3.transpose(1, 0, 2, 4, 3, 5)
    Y3_132465 = Y3.transpose(0, 2, 1, 3, 5, 4)
    return {
        "A": Y2,
        "B": Y2 + eta / 2 * X2,
        "IA": -Y3 - eta / 2 * Y4,
        "IB": -Y3 - eta / 2 * Y4 - eta / 2 * Y1 - eta**2 / 6 * X3,
        "IIA": -Y3,
        "IIB": -Y3 - Y3_213546 - Y3_132465 - eta * Y4 - eta * Y1,
    }


# ------------------------------------------------------------------------------------- the mean (∞.155)


def _embed(a: np.ndarray, train: np.ndarray, N: int) -> np.ndarray:
    """a, indexed by training inputs on every axis, as an array over the whole set of N inputs (zero elsewhere)."""
    out = np.zeros((N,) * a.ndim)
    out[np.ix_(*[train] * a.ndim)] = a
    return out


def _moments(t: dict[str, np.ndarray], nL: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n E[dH_{i0 i1 i2; s0 s1 s2} z_{i3; s3}] (11.30), n E[ddI_{i0..i3; s0..s3}] (∞.171) and n E[ddII_{i0..i3; s0..s3}]
    (∞.173) as [i0..i3, s0..s3] over the whole set, from P, Q, R, S, T, U (E[dH] = E[dH z z] = 0)."""
    e = np.eye(nL)
    P, Q, R, S, T, U = (t[k] for k in "PQRSTU")
    dz = (np.einsum("ad,bc,wxyz->abcdwxyz", e, e, P) + np.einsum("ab,cd,wxyz->abcdwxyz", e, e, Q)
          + np.einsum("ac,bd,wyxz->abcdwxyz", e, e, Q))  # fmt: skip
    dd1 = (np.einsum("ab,cd,wxyz->abcdwxyz", e, e, R) + np.einsum("ac,db,wyzx->abcdwxyz", e, e, R)
           + np.einsum("ad,bc,wzxy->abcdwxyz", e, e, R))  # fmt: skip
    dd2 = (np.einsum("ab,cd,wxyz->abcdwxyz", e, e, S) + np.einsum("ac,bd,wyzx->abcdwxyz", e, e, T)
           + np.einsum("ad,bc,wzxy->abcdwxyz", e, e, U))  # fmt: skip
    return dz, dd1, dd2


def _dntk_lines(dz: np.ndarray, W: np.ndarray, Z: dict) -> np.ndarray:
    """[i, d]: the two dNTK lines of (∞.154) (Z_A, Z_B) at every input d of the set, before the kernel projection,
    with n E[dH_{..} eps_{j;c} eps_{k;e}] replaced by dz[.., j, .., c] W[k, e] + dz[.., k, .., e] W[j, c]: W = -y is
    the mean (E[dH] = 0), W = E[z' eps] the pairing of another z' with one eps. Z is over the whole set."""
    return (np.einsum("jikjadbc,ke,abce->id", dz, W, Z["A"], optimize=True)
            + np.einsum("jikkadbe,jc,abce->id", dz, W, Z["A"], optimize=True)
            + np.einsum("ijkjdabc,ke,abce->id", dz, W, Z["B"], optimize=True)
            + np.einsum("ijkkdabe,jc,abce->id", dz, W, Z["B"], optimize=True))  # fmt: skip


def _ddntk_lines(dd1: np.ndarray, dd2: np.ndarray, W3: np.ndarray, Z: dict) -> tuple[np.ndarray, np.ndarray]:
    """[i, d]: the ddNTK-I lines (Z_IA, Z_IB) and the ddNTK-II lines (Z_IIA, Z_IIB) of (∞.154), before the kernel
    projection, with n E[ddH eps eps eps] replaced by n E[ddH] W3[j1, j2, j3, s1, s2, s3]: W3 = E[eps eps eps] is the
    mean (the ddNTKs' connected correlations with z are O(1/n^2)), W3 = E[z' eps eps eps] the covariance with z'."""
    first = (np.einsum("jikladbc,abcefg,jklefg->id", dd1, Z["IA"], W3, optimize=True)
             + np.einsum("ijkldabc,abcefg,jklefg->id", dd1, Z["IB"], W3, optimize=True))  # fmt: skip
    second = (np.einsum("jkilabdc,abcefg,jklefg->id", dd2, Z["IIA"], W3, optimize=True)
              + np.einsum("ijkldabc,abcefg,jklefg->id", dd2, Z["IIB"], W3, optimize=True))  # fmt: skip
    return first, second


def _fluctuation(t: dict[str, np.ndarray], nL: int) -> np.ndarray:
    """[d, a, b, c] = n sum_j E[dH_{ij; d a} dH_{ji; b c}] = A_(da)(bc) + B_dbac + n_L B_dcab (8.82)."""
    return t["A"] + np.einsum("dbac->dabc", t["B"]) + nL * np.einsum("dcab->dabc", t["B"])


def corrections(t: dict[str, np.ndarray], y: np.ndarray, Z: dict, train: np.ndarray) -> dict[str, np.ndarray]:
    """The NTK-fluctuation, dNTK and ddNTK parts of the mean, each (n_L, N) at every input d of the set (before the
    kernel projection of their training values is subtracted), from the output layer's tensors ``t`` (name -> array
    over the set's N inputs) and targets y (n_L, N_train).

    The fluctuation part is derived (module doc). The dNTK and ddNTK parts are the means of the T-shirt formula's
    lines (∞.154) taken term by term, with the output indices explicit: E[dH eps eps] from the decomposition of
    E[dH z] (11.30; E[dH] = E[dH z z] = 0), E[ddH eps eps eps] = E[ddH] E[eps eps eps] from the ddNTK means (∞.171,
    ∞.173), eps = z - y with E[z z] = delta K. At one training input this is (∞.158)-(∞.160) exactly (checked); beyond
    it those compact forms assume symmetries the projectors lack (the factor 2 of ∞.158 needs Z_B symmetric under
    (a1 a3) <-> (a2 a4), which Y_2 is not)."""
    nL, N = y.shape[0], t["K"].shape[0]
    Hi = _embed(np.linalg.inv(t["Theta"][np.ix_(train, train)]), train, N)
    yF = np.zeros((nL, N))
    yF[:, train] = y
    ZF = {name: _embed(z, train, N) for name, z in Z.items()}
    out = {"NTK fluctuations": -np.einsum("dabc,ab,ce,ie->id", _fluctuation(t, nL), Hi, Hi, yF)}
    dz, dd1, dd2 = _moments(t, nL)
    out["dNTK"] = _dntk_lines(dz, -yF, ZF)
    out["ddNTK-I"], out["ddNTK-II"] = _ddntk_lines(dd1, dd2, -_third_moment(yF, t["K"]), ZF)
    return out


def _third_moment(y: np.ndarray, K: np.ndarray) -> np.ndarray:
    """-E[eps_{j;a} eps_{k;b} eps_{l;c}] = y y y + delta_jk K_ab y_lc + delta_jl K_ac y_kb + delta_kl K_bc y_ja."""
    e = np.eye(y.shape[0])
    return (np.einsum("ja,kb,lc->jklabc", y, y, y) + np.einsum("jk,ab,lc->jklabc", e, K, y)
            + np.einsum("jl,ac,kb->jklabc", e, K, y) + np.einsum("kl,bc,ja->jklabc", e, K, y))  # fmt: skip


def mean_prediction(t: dict[str, np.ndarray], y: np.ndarray, algorithm: str, eta: float, train: np.ndarray,
                    test: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:  # fmt: skip
    """(m_infinite, m_coefficient, parts), each (n_L, len(test)), from the output layer's tensors on the set."""
    H0 = t["Theta"][np.ix_(train, train)]
    H1 = t["H1"][np.ix_(train, train)]
    Hi = np.linalg.inv(H0)
    proj = t["Theta"][np.ix_(test, train)] @ Hi  # H_beta,a H~^ab at leading order
    alpha = Hi @ y.T  # (N_train, n_L)
    m_inf = (proj @ y.T).T
    parts = {"NTK mean": (t["H1"][np.ix_(test, train)] @ alpha - proj @ H1 @ alpha).T}
    for name, m in corrections(t, y, projectors(H0, algorithm, eta), train).items():
        parts[name] = m[:, test] - (proj @ m[:, train].T).T
    total = sum(parts.values())
    return m_inf, total, parts


VARIANCE_PARTS = ("kernel", "NTK mean", "NTK fluctuations", "dNTK", "ddNTK-I", "ddNTK-II")


def variance_prediction(t: dict[str, np.ndarray], y: np.ndarray, algorithm: str, eta: float, train: np.ndarray,
                        test: int) -> tuple[float, np.ndarray, dict]:  # fmt: skip
    """(v_infinite, v_coefficient (n_L,), parts): the variance over initializations of each output of the trained
    network at the test input ``test`` of the set, Var z_T = v_infinite + v_coefficient / n + O(1/n^2), from the
    output layer's tensors ``t`` (with K1 = the 1/n part of E[z z]) and targets y (n_L, N_train).

    Derived from the T-shirt formula (∞.154) with the derived sign of its Delta-H lines (module doc); the book gives
    only an example term (∞.162). Write the test input's kernel projection as p (p_beta = 1, p_a = -r_a on the
    training inputs, r = H(beta, T) H~^-1) and the formula as z_T = p.z + r.y + L1 + L2 + Ld + Ldd with L1 = -p.dH
    H~^-1 eps and L2 = +p.dH H~^-1 dH H~^-1 eps the Delta-H lines, Ld the dNTK lines, Ldd the ddNTK lines. To O(1/n):

    - Var(p.z + r.y) = p (K + K1/n) p with r = (Theta + H1/n)(beta, T) H~^-1: parts "kernel" (K1) and "NTK mean" (H1);
    - 2 Cov(p.z, L1) (D, F: 8.67), Var(L1) (A, B with E[eps eps] = delta K + y y: 8.82), 2 Cov(p.z, L2) (A, B: the
      mean's fluctuation tensor with y replaced by K p): "NTK fluctuations";
    - 2 Cov(p.z, Ld) = 2 E[p.z dH eps eps]: z is Gaussian at leading order, so the dNTK pairs with p.z (and the eps
      pair with each other, E[eps eps] = delta K + y y) or with one eps (and p.z with the other): "dNTK";
    - 2 Cov(p.z, Ldd) = 2 E[ddH] E[p.z eps eps eps]: "ddNTK-I", "ddNTK-II".

    Every other product is O(1/n^2) or vanishes by parity: the dNTK and ddNTK lines are themselves O(1/n) per
    network, and flipping the last layer's sign flips z and the dNTK but not the NTK or the ddNTKs, so
    E[z Delta-H] = E[z Delta-H Delta-H] = E[dH z z] = 0."""
    nL, N = y.shape[0], t["K"].shape[0]
    e = np.eye(nL)
    Theta, K = t["Theta"], t["K"]
    HiT = np.linalg.inv(Theta[np.ix_(train, train)])
    Hi = _embed(HiT, train, N)
    r = Theta[test, train] @ HiT
    p = np.zeros(N)
    p[test], p[train] = 1.0, -r
    Kp = K @ p
    yF = np.zeros((nL, N))
    yF[:, train] = y
    v_inf = float(p @ Kp)
    r1 = (p @ t["H1"][:, train]) @ HiT
    parts = {"kernel": np.full(nL, float(p @ t["K1"] @ p)), "NTK mean": np.full(nL, -2.0 * float(r1 @ Kp[train]))}
    D, F, A, B = t["D"], t["F"], t["A"], t["B"]
    cross = (np.einsum("s,t,sbta,ab->", p, p, D, Hi) + nL * np.einsum("s,t,stba,ab->", p, p, F, Hi)
             + np.einsum("s,t,sabt,ab->", p, p, F, Hi))  # fmt: skip
    same = nL * K + yF.T @ yF  # sum_j E[eps_j eps_j]
    line2 = 2.0 * np.einsum("t,tabc,ab,cd,d->", p, _fluctuation(t, nL), Hi, Hi, Kp)
    fluct = np.empty(nL)
    dntk, dd1n, dd2n = np.empty(nL), np.empty(nL), np.empty(nL)
    Z = {name: _embed(z, train, N) for name, z in projectors(Theta[np.ix_(train, train)], algorithm, eta).items()}
    dz, dd1, dd2 = _moments(t, nL)
    eps2 = np.einsum("jk,ce->jcke", e, K) + np.einsum("jc,ke->jcke", yF, yF)  # E[eps_{j;c} eps_{k;e}]
    for i in range(nL):
        own = K + np.outer(yF[i], yF[i])  # E[eps_i eps_i]
        var1 = (np.einsum("s,t,satb,ac,bd,cd->", p, p, A, Hi, Hi, own)
                + np.einsum("s,t,stab,ac,bd,cd->", p, p, B, Hi, Hi, same)
                + np.einsum("s,t,sbat,ac,bd,cd->", p, p, B, Hi, Hi, own))  # fmt: skip
        fluct[i] = -2.0 * cross + var1 + line2
        W = np.zeros((nL, N))
        W[i] = Kp  # E[p.z_i eps_{j;s}] = delta_ij (K p)_s
        paired = np.einsum("abcwxyz,z->abcwxy", dz[:, :, :, i], p)  # n E[p.z_i dH]
        lines = (np.einsum("jikadb,jcke,abce->id", paired, eps2, Z["A"], optimize=True)
                 + np.einsum("ijkdab,jcke,abce->id", paired, eps2, Z["B"], optimize=True)
                 + _dntk_lines(dz, W, Z))  # fmt: skip
        dntk[i] = 2.0 * lines[i] @ p
        # E[p.z_i eps eps eps]: p.z_i pairs with one eps, the other two with each other
        W3 = (np.einsum("jl,kbmc->jkmlbc", W, eps2) + np.einsum("kl,jamc->jkmalc", W, eps2)
              + np.einsum("ml,jakb->jkmabl", W, eps2))  # fmt: skip
        first, second = _ddntk_lines(dd1, dd2, W3, Z)
        dd1n[i], dd2n[i] = 2.0 * first[i] @ p, 2.0 * second[i] @ p
    parts.update({"NTK fluctuations": fluct, "dNTK": dntk, "ddNTK-I": dd1n, "ddNTK-II": dd2n})
    return v_inf, sum(parts.values()), parts


def predict(module, train_inputs, train_targets, test_inputs, depth: int, C_b=0.0, C_W=1.0, lambda_b=None,
            lambda_W=None, algorithm: str = "gradient-flow", eta: float | None = None, tolerance: float = 1e-4,
            **params) -> Prediction:  # fmt: skip
    """The mean output of the fully trained network at ``test_inputs`` (book ∞.155-∞.160) for an activation module
    (``pdlt.generated.load(name)``), hidden widths all equal: see :class:`Prediction`.

    ``train_inputs`` (N, n_0), ``train_targets`` (N,) or (N, n_L), ``test_inputs`` (M, n_0); hyperparameters as in
    ``kernel`` (one value or one per layer; ``lambda_b``, ``lambda_W`` default to ``C_b``, ``C_W``). ``algorithm``:
    "gradient-flow" (eta -> 0), "gd" (full-batch gradient descent at global learning rate ``eta``, which must make
    it converge: 0 < eta < 2 / the largest eigenvalue of the training NTK), or "newton2" (the two-Newton-step
    algorithm of ∞.148). At most MANY_MAX - 1 training inputs, distinct. FlowError on bad input or a tensor that misses
    ``tolerance``."""
    X = _matrix("train inputs", train_inputs)
    XT = _matrix("test inputs", test_inputs)
    Y = np.asarray(train_targets, dtype=np.float64)
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2 or Y.shape[0] != X.shape[0] or not np.all(np.isfinite(Y)):
        raise FlowError(f"train targets must be finite, shaped (N,) or (N, n_L) with N = {X.shape[0]}, "
                        f"got {np.shape(train_targets)}")  # fmt: skip
    if XT.shape[1] != X.shape[1]:
        raise FlowError(f"test inputs have {XT.shape[1]} features, train inputs {X.shape[1]}")
    if algorithm not in ALGORITHMS:
        raise FlowError(f"unknown algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}")
    if algorithm == "gd":
        if eta is None or not (np.isfinite(eta) and eta > 0):
            raise FlowError(f"gradient descent needs a learning rate eta > 0, got {eta}")
    elif eta is not None:
        raise FlowError(f"eta is the learning rate of gd; {algorithm} does not take one")

    if X.shape[0] > MANY_MAX - 1:
        raise FlowError(
            f"pdlt predict takes at most {MANY_MAX - 1} training inputs, got {X.shape[0]}: it needs the dNTK and "
            f"ddNTK tensors on the training inputs and a test input together, computed for at most {MANY_MAX} inputs"
        )
    if len({tuple(row) for row in X}) < X.shape[0]:
        raise FlowError("train inputs repeat an input: the training NTK is singular and gradient descent cannot fit "
                        "two targets at one input; merge the repeats")  # fmt: skip
    name = getattr(module, "NAME", getattr(module, "__name__", "sigma"))
    core = getattr(module, "_MODULE", None)
    if core is not None and core.kinks:
        raise FlowError(
            f"the finite-width prediction needs the ddNTKs R, S, T, U, which {name} does not have: its kink makes "
            "sigma'' a point mass and the training expansion breaks down (book ∞.39-44); its infinite-width answer "
            "is kernel regression with the NTK (pdlt kernel --tensors Theta)"
        )
    kw = dict(C_b=C_b, C_W=C_W, lambda_b=lambda_b, lambda_W=lambda_W, tolerance=tolerance, **params)
    km = module.kernel(X, depth, layers=[depth], tensors=("Theta",), **kw)
    spectrum = np.linalg.eigvalsh(km.Theta[0])
    top = float(spectrum[-1])
    if not spectrum[0] > 10 * X.shape[0] * max(float(np.max(km.error)), 1e-14) * top:
        raise FlowError(f"the training NTK is singular to its accuracy (eigenvalues {spectrum[0]:.3g} to {top:.3g}, "
                        f"relative error {float(np.max(km.error)):.1g}): gradient descent cannot fit these targets "
                        "at zero loss; drop inputs that (nearly) repeat another")  # fmt: skip
    if algorithm == "gd":  # checked once, before any test input (a test input at a training one skips the tensors)
        if eta >= 2.0 / top:
            raise FlowError(f"gd at eta = {eta:g} does not converge: eta must be below 2 / {top:.6g} (twice the "
                            "inverse of the training NTK's largest eigenvalue)")  # fmt: skip
    nL = Y.shape[1]
    m_inf = np.zeros((XT.shape[0], nL))
    m_coef = np.zeros_like(m_inf)
    var = np.zeros(XT.shape[0])
    parts = {name: np.zeros_like(m_inf) for name in PARTS}
    var_coef = np.zeros_like(m_inf)
    var_parts = {name: np.zeros_like(m_inf) for name in VARIANCE_PARTS}
    error = 0.0
    Nt = X.shape[0]
    train, test = np.arange(Nt), np.array([Nt])
    for j, x in enumerate(XT):
        same = [a for a in range(Nt) if np.array_equal(x, X[a])]
        if same:  # a training input: the trained network fits it exactly, at any width
            m_inf[j] = Y[same[0]]
            continue
        km = module.kernel(np.vstack([X, x]), depth, layers=[depth], tensors=("K", "G", *NEEDED), order=1, **kw)
        t = {name: np.asarray(getattr(km, name)[0]) for name in ("K", *NEEDED)}
        t["K1"] = np.asarray(km.G[0, 1])
        rate = 0.0 if eta is None else float(eta)
        inf, coef, p = mean_prediction(t, Y.T, algorithm, rate, train, test)
        var[j], var_coef[j], vp = variance_prediction(t, Y.T, algorithm, rate, train, Nt)
        m_inf[j], m_coef[j] = inf[:, 0], coef[:, 0]
        for name in PARTS:
            parts[name][j] = p[name][:, 0]
        for name in VARIANCE_PARTS:
            var_parts[name][j] = vp[name]
        error = max(error, float(np.max(km.error)), float(np.max(km.four_error)), float(np.max(km.G_error)))
    return Prediction(name, algorithm, 0.0 if eta is None else float(eta), depth, m_inf, m_coef, var, var_coef, parts,
                      var_parts, error, top / float(spectrum[0]))  # fmt: skip


def _matrix(what: str, a) -> np.ndarray:
    x = np.asarray(a, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0 or not np.all(np.isfinite(x)):
        raise FlowError(f"{what} must be a finite (N, n_0) array, got shape {np.shape(a)}")
    return x
