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

The fluctuation term enters with a minus sign, m^DeltaNTK = -(A + B + n_L B) H~^-1 H~^-1 y in (∞.157)'s slots: a
frozen but fluctuating NTK trains to z(x) - H(x, x_0) H(x_0, x_0)^-1 (z(x_0) - y) exactly, and the delta method on
E[H(x, x_0) H(x_0, x_0)^-1] gives -Cov / H^2 (as transcribed in the reference the sign is +; trained ensembles
side with the derivation, tests/montecarlo/test_predict_mc.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import FlowError

ALGORITHMS = ("gradient-flow", "gd", "newton2")
NEEDED = ("Theta", "H1", "A", "B", "P", "Q", "R", "S", "T", "U")
PARTS = ("NTK mean", "NTK fluctuations", "dNTK", "ddNTK-I", "ddNTK-II")


@dataclass
class Prediction:
    """The mean trained output at the test inputs: ``mean_infinite`` + ``mean_coefficient`` / n + O(1/n^2), arrays
    (n_test, n_L), for all hidden widths equal to n. ``parts[name]`` splits the coefficient into the NTK mean's own
    1/n part ("NTK mean", from H1), the NTK fluctuations (A, B), the dNTK (P, Q) and the ddNTKs (R; S, T, U).
    ``variance_infinite`` (n_test,): each output's variance over initializations at infinite width (the leading
    term of ∞.161), K(x, x) - 2 H(x, a) H~^ab K(b, x) + H(x, a) H~^ab K(b, c) H~^cd H(d, x); its 1/n part is not
    computed. ``error`` is the largest accumulated relative error bound of the tensors used. ``condition``: the
    condition number of the training NTK Theta (largest over smallest eigenvalue; 1 for one training input), on which
    the size of the O(1/n^2) remainder depends (module doc)."""

    activation: str
    algorithm: str
    eta: float
    depth: int
    mean_infinite: np.ndarray
    mean_coefficient: np.ndarray
    variance_infinite: np.ndarray
    parts: dict = field(default_factory=dict)
    error: float = 0.0
    condition: float = 1.0

    def mean(self, width: float) -> np.ndarray:
        """mean_infinite + mean_coefficient / width (the truncation is O(1/width^2))."""
        if not (np.isfinite(width) and width >= 1):
            raise FlowError(f"width must be a number >= 1, got {width}")
        return self.mean_infinite + self.mean_coefficient / width

    def as_dict(self, width: float | None = None) -> dict:
        """The JSON contract of ``pdlt predict``: lists over test inputs, one list per output when n_L > 1."""

        def out(a: np.ndarray):
            return [float(v) for v in a[:, 0]] if a.shape[1] == 1 else [[float(v) for v in row] for row in a.T]

        d = {
            "mean_infinite": out(self.mean_infinite),
            "mean_coefficient": out(self.mean_coefficient),
            "variance_infinite": [float(v) for v in self.variance_infinite],
        }
        if width is not None:
            d["mean"] = out(self.mean(width))
        d["parts"] = {name: out(v) for name, v in self.parts.items()}
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
    nL = y.shape[0]
    e = np.eye(nL)
    Hi = np.linalg.inv(t["Theta"][np.ix_(train, train)])
    K = t["K"][np.ix_(train, train)]

    def tr(name: str, spec: str) -> np.ndarray:
        """The tensor with its slots read as ``spec`` (d = the free input, a, b, c = training), as [d, a, b, c]."""
        x = np.einsum(f"{spec}->dabc", t[name])
        return x[:, train][:, :, train][:, :, :, train]

    def free(arr: np.ndarray, slot: int) -> np.ndarray:
        """arr[i0..i3, s0..s3] with every sample slot but ``slot`` restricted to the training inputs."""
        for ax in range(4, 8):
            if ax - 4 != slot:
                arr = np.take(arr, train, axis=ax)
        return arr

    out = {}
    fluct = tr("A", "dabc") + tr("B", "dbac") + nL * tr("B", "dcab")
    out["NTK fluctuations"] = -np.einsum("dabc,ab,ce,ie->id", fluct, Hi, Hi, y)
    P, Q, R, S, T, U = (t[k] for k in "PQRSTU")
    # n E[dH_{i0 i1 i2; s0 s1 s2} z_{i3; s3}], n E[ddI_{i0..i3; s0..s3}], n E[ddII_{i0..i3; s0..s3}] as [i0..i3, s0..s3]
    dz = (np.einsum("ad,bc,wxyz->abcdwxyz", e, e, P) + np.einsum("ab,cd,wxyz->abcdwxyz", e, e, Q)
          + np.einsum("ac,bd,wyxz->abcdwxyz", e, e, Q))  # fmt: skip
    dd1 = (np.einsum("ab,cd,wxyz->abcdwxyz", e, e, R) + np.einsum("ac,db,wyzx->abcdwxyz", e, e, R)
           + np.einsum("ad,bc,wzxy->abcdwxyz", e, e, R))  # fmt: skip
    dd2 = (np.einsum("ab,cd,wxyz->abcdwxyz", e, e, S) + np.einsum("ac,bd,wyzx->abcdwxyz", e, e, T)
           + np.einsum("ad,bc,wzxy->abcdwxyz", e, e, U))  # fmt: skip
    # E[dH eps_{j;a} eps_{k;b}] = -E[dH z_{j;a}] y_{k;b} - E[dH z_{k;b}] y_{j;a}; lines Z_A (dH_{j i k; a d b}), Z_B
    A_, B_ = free(dz, 1), free(dz, 0)
    out["dNTK"] = -(
        np.einsum("jikjadbc,ke,abce->id", A_, y, Z["A"]) + np.einsum("jikkadbe,jc,abce->id", A_, y, Z["A"])
        + np.einsum("ijkjdabc,ke,abce->id", B_, y, Z["B"]) + np.einsum("ijkkdabe,jc,abce->id", B_, y, Z["B"])
    )  # fmt: skip
    # -E[eps_{j;a} eps_{k;b} eps_{l;c}] = y y y + delta_jk K_ab y_lc + delta_jl K_ac y_kb + delta_kl K_bc y_ja
    g3 = (np.einsum("ja,kb,lc->jklabc", y, y, y) + np.einsum("jk,ab,lc->jklabc", e, K, y)
          + np.einsum("jl,ac,kb->jklabc", e, K, y) + np.einsum("kl,bc,ja->jklabc", e, K, y))  # fmt: skip
    out["ddNTK-I"] = -(
        np.einsum("jikladbc,abcefg,jklefg->id", free(dd1, 1), Z["IA"], g3)
        + np.einsum("ijkldabc,abcefg,jklefg->id", free(dd1, 0), Z["IB"], g3)
    )
    out["ddNTK-II"] = -(
        np.einsum("jkilabdc,abcefg,jklefg->id", free(dd2, 2), Z["IIA"], g3)
        + np.einsum("ijkldabc,abcefg,jklefg->id", free(dd2, 0), Z["IIB"], g3)
    )
    return out


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
    from .kernels import MANY_MAX  # here: importing this module stays light (the CLI's argument parser does)

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
    error = 0.0
    Nt = X.shape[0]
    train, test = np.arange(Nt), np.array([Nt])
    for j, x in enumerate(XT):
        same = [a for a in range(Nt) if np.array_equal(x, X[a])]
        if same:  # a training input: the trained network fits it exactly, at any width
            m_inf[j] = Y[same[0]]
            continue
        km = module.kernel(np.vstack([X, x]), depth, layers=[depth], tensors=("K", *NEEDED), **kw)
        t = {name: np.asarray(getattr(km, name)[0]) for name in ("K", *NEEDED)}
        inf, coef, p = mean_prediction(t, Y.T, algorithm, 0.0 if eta is None else float(eta), train, test)
        proj = t["Theta"][np.ix_(test, train)] @ np.linalg.inv(t["Theta"][np.ix_(train, train)])
        K = t["K"]
        var[j] = (K[np.ix_(test, test)] - 2 * proj @ K[np.ix_(train, test)]
                  + proj @ K[np.ix_(train, train)] @ proj.T).item()  # fmt: skip
        m_inf[j], m_coef[j] = inf[:, 0], coef[:, 0]
        for name in PARTS:
            parts[name][j] = p[name][:, 0]
        error = max(error, float(np.max(km.error)), float(np.max(km.four_error)))
    return Prediction(name, algorithm, 0.0 if eta is None else float(eta), depth, m_inf, m_coef, var, parts, error,
                      top / float(spectrum[0]))  # fmt: skip


def _matrix(what: str, a) -> np.ndarray:
    x = np.asarray(a, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0 or not np.all(np.isfinite(x)):
        raise FlowError(f"{what} must be a finite (N, n_0) array, got shape {np.shape(a)}")
    return x
