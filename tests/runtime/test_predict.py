"""``pdlt predict`` and pdlt.runtime.predict: the algebra of the projectors, the exact limits, refusals (issue 10).

The comparison with really trained networks is tests/montecarlo/test_predict_mc.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pdlt.codegen.cli import main
from pdlt.generated import load
from pdlt.runtime.errors import FlowError
from pdlt.runtime.predict import inverting, mean_prediction, predict, projectors

X = np.array([[1.0, 0.3, -0.2]])
XT = np.array([[0.2, 0.9, 0.5], [-0.5, 0.4, 1.0]])
KW = dict(C_W=1.0, lambda_b=1.0, lambda_W=1.0)


def _spd(N: int, seed: int) -> np.ndarray:
    a = np.random.default_rng(seed).standard_normal((N, N))
    return a @ a.T + N * np.eye(N)


@pytest.mark.parametrize("eta", [0.0, 0.05])
def test_inverting_tensors_satisfy_their_defining_equations(eta):
    """(∞.107) and (∞.110) as written, for a random 3 x 3 NTK: the sums give the identity on pairs and triples."""
    H = _spd(3, 1)
    d = np.eye(3)
    X2, X3 = inverting(H, eta)
    lhs = (np.einsum("abcd,ce,df->abef", X2, H, d) + np.einsum("abcd,ce,df->abef", X2, d, H)
           - eta * np.einsum("abcd,ce,df->abef", X2, H, H))  # fmt: skip
    assert np.allclose(lhs, np.einsum("ae,bf->abef", d, d), atol=1e-12)

    def three(P, Q, R):
        return np.einsum("abcdef,dg,eh,fi->abcghi", X3, P, Q, R)

    lhs3 = (three(H, d, d) + three(d, H, d) + three(d, d, H) - eta * (three(H, H, d) + three(H, d, H) + three(d, H, H))
            + eta**2 * three(H, H, H))  # fmt: skip
    assert np.allclose(lhs3, np.einsum("ag,bh,ci->abcghi", d, d, d), atol=1e-12)


def test_projectors_of_one_training_input_in_closed_form():
    """One training input with NTK h: X_II = 1/(2h - eta h^2), Z_A = 1/(2 h^2) in gradient flow, and the two Newton
    steps' Z_B = 1/(2 h^2), Z_IB = -1/(6 h^3) (∞.148)."""
    h, eta = 2.7, 0.2
    X2, X3 = inverting(np.array([[h]]), eta)
    assert X2.item() == pytest.approx(1 / (2 * h - eta * h * h), rel=1e-14)
    assert X3.item() == pytest.approx(1 / (3 * h - 3 * eta * h * h + eta**2 * h**3), rel=1e-14)
    gf = projectors(np.array([[h]]), "gradient-flow", 0.0)
    assert gf["A"].item() == pytest.approx(1 / (2 * h * h)) and gf["B"].item() == pytest.approx(1 / (2 * h * h))
    assert gf["IA"].item() == pytest.approx(-1 / (6 * h**3))  # 1/h^3 - 2/(2 h^3) + 1/(6 h^3), with a minus
    nw = projectors(np.array([[h]]), "newton2", 0.0)
    assert nw["B"].item() == pytest.approx(1 / (2 * h * h)) and nw["IB"].item() == pytest.approx(-1 / (6 * h**3))
    assert nw["A"].item() == 0 and nw["IIB"].item() == 0


def _truncated(z, H, dH, ddI, ddII, y, train, algorithm, eta):
    """The outputs on every input after training, by iterating the function-space dynamics as the book truncates
    them (∞.2): one output; z (P,), H (P, P), dH (P,)*3 with its second derivative in slot 0, ddI (P,)*4 likewise,
    ddII (P,)*4 with its second derivatives in slots 0 and 1. A step moves the parameters by -eta lambda grad z . e
    (e = z - y on the training inputs): z gains -eta H e + eta^2/2 dH e e - eta^3/6 ddI e e e, H its first two
    orders and dH its first; ddI and ddII stay (their change is O(1/n^2)). Two Newton steps: the first with
    sample-space rate H^-1 (eta = 1), the second with the NTK reached, to first order."""
    z, H, dH = z.copy(), H.copy(), dH.copy()
    t = np.ix_(train, train)
    G = ddI + ddII + ddII.transpose(0, 2, 1, 3)
    dH2 = ddI + ddI.transpose(1, 0, 2, 3) + 2 * ddII
    newton = algorithm == "newton2"
    kappa = np.linalg.inv(H[t]) if newton else eta * np.eye(len(train))
    for step in range(2 if newton else 100_000):
        if newton and step == 1:  # the small Newton step: the error left, through the NTK reached
            return z - H[:, train] @ np.linalg.solve(H[t], z[train] - y)
        if np.max(np.abs(z[train] - y)) < 1e-14:
            return z
        e = kappa @ (z[train] - y)  # the step's sample-space move, times eta
        z += (-H[:, train] @ e + np.einsum("dab,a,b->d", dH[:, train][:, :, train], e, e) / 2
              - np.einsum("dabc,a,b,c->d", ddI[:, train][:, :, train][:, :, :, train], e, e, e) / 6)  # fmt: skip
        H += (-np.einsum("xyc,c->xy", dH[:, :, train], e) - np.einsum("yxc,c->xy", dH[:, :, train], e)
              + np.einsum("xycd,c,d->xy", dH2[:, :, train][:, :, :, train], e, e) / 2)  # fmt: skip
        dH -= np.einsum("xyzc,c->xyz", G[..., train], e)
    raise AssertionError("the truncated dynamics did not converge")


def _tshirt_lines(H, dH, ddI, ddII, e, train, test, Z):
    """The representation-learning lines of (∞.154) for one network with Delta H = 0 (H~ = H), one output, at the
    inputs ``test``: each tensor with the free slot where the reference puts beta (A: 2nd of dH, B: 1st; IA: 2nd of
    ddI, IB: 1st; IIA: 3rd of ddII, IIB: 1st), minus its kernel projection."""
    proj = H[np.ix_(test, train)] @ np.linalg.inv(H[np.ix_(train, train)])

    def line(T, slot):
        free = np.moveaxis(T, slot, 0)
        free = free[np.ix_(np.arange(len(T)), *[train] * (T.ndim - 1))]
        return free[test] - np.einsum("da,a...->d...", proj, free[train])

    lines = {"A": line(dH, 1), "B": line(dH, 0), "IA": line(ddI, 1), "IB": line(ddI, 0), "IIA": line(ddII, 2),
             "IIB": line(ddII, 0)}  # fmt: skip
    two = sum(np.einsum("dab,abce,c,e->d", lines[k], Z[k], e, e) for k in ("A", "B"))
    three = sum(np.einsum("dabc,abcefg,e,f,g->d", lines[k], Z[k], e, e, e) for k in ("IA", "IB", "IIA", "IIB"))
    return two + three


@pytest.mark.parametrize(("algorithm", "eta"), [("gd", 0.3), ("gd", 0.05), ("newton2", 0.0)])
def test_projectors_are_the_linear_response_of_the_truncated_dynamics(algorithm, eta):
    """Three training inputs, two test inputs, a random NTK and random dNTK and ddNTKs (with their symmetries): the
    T-shirt formula's lines with the projectors are the derivative of the trained outputs with respect to the scale
    s of dH, ddI, ddII at s = 0, computed by running the truncated dynamics at s = +-1e-6: a central difference, whose
    error c s^2 has c ~ 3e3 for these O(1) tensors (measured at s = 1e-2 .. 1e-5), so ~3e-9, with rounding
    ~1e-16 / s below it. With the dNTK's slots read another way (its second derivative in slot 1, the projectors
    transposed), the lines differ by O(1)."""
    rng = np.random.default_rng(7)
    P, train, test = 5, np.arange(3), np.array([3, 4])
    a = rng.standard_normal((P, P + 2))
    H = a @ a.T / (P + 2) + 0.5 * np.eye(P)
    z, y = rng.standard_normal(P), rng.standard_normal(3)
    dH = rng.standard_normal((P,) * 3)
    dH = (dH + dH.transpose(0, 2, 1)) / 2
    ddI = rng.standard_normal((P,) * 4)
    ddI = sum(ddI.transpose(0, *p) for p in ((1, 2, 3), (1, 3, 2), (2, 1, 3), (2, 3, 1), (3, 1, 2), (3, 2, 1))) / 6
    ddII = rng.standard_normal((P,) * 4)
    ddII = (ddII + ddII.transpose(1, 0, 3, 2)) / 2
    s = 1e-6
    up, down = (_truncated(z, H, k * dH, k * ddI, k * ddII, y, train, algorithm, eta) for k in (s, -s))
    response = (up - down)[test] / (2 * s)
    Z = projectors(H[np.ix_(train, train)], algorithm, eta)
    want = _tshirt_lines(H, dH, ddI, ddII, z[train] - y, train, test, Z)
    assert np.allclose(response, want, rtol=1e-7, atol=1e-7 * np.max(np.abs(want))), (response, want)
    Zt = {k: v.T if v.ndim == 4 else v for k, v in Z.items()}
    assert not np.allclose(_tshirt_lines(H, dH.transpose(1, 0, 2), ddI, ddII, z[train] - y, train, test, Zt), want,
                           rtol=1e-2)  # fmt: skip


def test_gradient_descent_tends_to_gradient_flow_and_its_parts_add_up():
    mod = load("tanh")
    flow = predict(mod, X, [2.0], XT, 3, **KW)
    slow = predict(mod, X, [2.0], XT, 3, algorithm="gd", eta=1e-7, **KW)
    fast = predict(mod, X, [2.0], XT, 3, algorithm="gd", eta=0.3, **KW)
    assert np.allclose(slow.mean_coefficient, flow.mean_coefficient, rtol=1e-5)
    assert not np.allclose(fast.mean_coefficient, flow.mean_coefficient, rtol=0.1)
    assert np.allclose(sum(flow.parts.values()), flow.mean_coefficient, rtol=1e-14)
    theta = mod.kernel(np.vstack([X, XT]), 3, tensors=("Theta",), layers=[3], **KW).Theta[0]
    assert np.allclose(flow.mean_infinite[:, 0], theta[1:, 0] / theta[0, 0] * 2.0, rtol=1e-12)  # kernel regression
    assert np.allclose(flow.mean(50.0), flow.mean_infinite + flow.mean_coefficient / 50.0)


def test_only_the_output_layer_learning_leaves_the_ntk_terms():
    """lambda = 0 below the output layer: the dNTK and ddNTKs vanish (book ∞.168) and the network is a linear model
    of its last layer, z_T(x) = z(x) - H(x, x_0)/H(x_0, x_0) (z(x_0) - y): its mean E[H(x, x_0)/H(x_0, x_0)] y to
    1/n is the NTK-mean and NTK-fluctuation parts, by the delta method on the mean and covariance of H."""
    lam = [0.0, 0.0, 1.0]
    p = predict(load("tanh"), X, [0.7], XT, 3, C_W=1.0, lambda_b=lam, lambda_W=lam)
    for name in ("dNTK", "ddNTK-I", "ddNTK-II"):
        assert np.all(p.parts[name] == 0)
    for j, x in enumerate(XT):
        t = load("tanh").kernel(np.vstack([X, x]), 3, C_W=1.0, lambda_b=lam, lambda_W=lam,
                                tensors=("Theta", "H1", "A"), layers=[3])  # fmt: skip
        H, H1, A = t.Theta[0], t.H1[0], t.A[0]
        r = H[1, 0] / H[0, 0]
        ratio = (H1[1, 0] - r * H1[0, 0]) / H[0, 0] - (A[1, 0, 0, 0] - r * A[0, 0, 0, 0]) / H[0, 0] ** 2
        assert p.mean_coefficient[j, 0] == pytest.approx(0.7 * ratio, rel=1e-10)


def test_a_training_input_is_fitted_exactly_and_vector_targets_scale():
    p = predict(load("tanh"), X, [[1.5, -1.0]], np.vstack([X, XT]), 3, **KW)
    assert np.array_equal(p.mean_infinite[0], [1.5, -1.0]) and np.all(p.mean_coefficient[0] == 0)
    assert p.mean_infinite.shape == (3, 2)
    one = predict(load("tanh"), X, [1.5], XT, 3, **KW)
    assert np.allclose(p.mean_infinite[1:, 0], one.mean_infinite[:, 0], rtol=1e-12)
    assert not np.allclose(p.mean_coefficient[1:, 0], one.mean_coefficient[:, 0], rtol=1e-3)  # n_L and |y|^2 enter


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"train_inputs": np.eye(64, 3, k=-3) + np.eye(64, 3), "train_targets": np.ones(64)}, "at most 63 training"),
        ({"train_inputs": np.vstack([X, X]), "train_targets": [1.0, 2.0]}, "repeat an input"),
        ({"train_inputs": np.vstack([X, X * (1 + 1e-9)]), "train_targets": [1.0, 2.0]}, "training NTK is singular"),
        ({"activation": "relu"}, "does not have: its kink"),
        ({"algorithm": "gd"}, "needs a learning rate"),
        ({"algorithm": "gd", "eta": 5.0}, "does not converge"),
        ({"algorithm": "gd", "eta": 5.0, "test_inputs": X}, "does not converge"),  # even at the training input
        ({"algorithm": "newton2", "eta": 0.1}, "does not take one"),
        ({"algorithm": "adam"}, "unknown algorithm"),
        ({"train_targets": [1.0, 2.0]}, "train targets must be"),
        ({"test_inputs": np.ones((2, 4))}, "test inputs have 4 features"),
        ({"test_inputs": np.array([[np.nan, 0.0, 0.0]])}, "finite"),
    ],
)
def test_refusals(kwargs, message):
    args = {"activation": "tanh", "train_inputs": X, "train_targets": [1.0], "test_inputs": XT}
    args.update(kwargs)
    act = args.pop("activation")
    with pytest.raises(FlowError, match=message):
        predict(load(act), args["train_inputs"], args["train_targets"], args["test_inputs"], 3,
                **{k: v for k, v in args.items() if k in ("algorithm", "eta")})  # fmt: skip


def _files(tmp_path, targets):
    paths = [str(tmp_path / f) for f in ("x.npy", "y.npy", "t.npy")]
    for path, a in zip(paths, (X, np.asarray(targets), XT)):
        np.save(path, a)
    return ["--train-inputs", paths[0], "--train-targets", paths[1], "--test-inputs", paths[2]]


def test_cli_json_is_the_contract(tmp_path, capsys):
    files = _files(tmp_path, [[1.5, -1.0]])
    assert main(["predict", "tanh", *files, "--depth", "3", "--lambda-b", "1", "--lambda-W", "1", "--width", "64",
                 "--json"]) == 0  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    p = predict(load("tanh"), X, [[1.5, -1.0]], XT, 3, **KW)
    assert np.allclose(out["mean_infinite"], p.mean_infinite.T, rtol=1e-14)  # one list per output over test inputs
    assert np.allclose(out["mean_coefficient"], p.mean_coefficient.T, rtol=1e-14)
    assert np.allclose(out["mean"], (p.mean_infinite + p.mean_coefficient / 64).T, rtol=1e-14)
    assert np.allclose(out["variance_infinite"], p.variance_infinite, rtol=1e-14) and len(out["variance_infinite"]) == 2
    assert np.allclose(out["variance_coefficient"], p.variance_coefficient.T, rtol=1e-14)
    assert np.allclose(out["variance"], (p.variance_infinite[:, None] + p.variance_coefficient / 64).T, rtol=1e-14)
    assert set(out["variance_parts"]) == {"kernel", "NTK mean", "NTK fluctuations", "dNTK", "ddNTK-I", "ddNTK-II"}
    assert np.allclose(sum(np.array(v) for v in out["variance_parts"].values()), out["variance_coefficient"])
    # the two outputs' targets differ, and so do their variances at 1/n (at infinite width they are equal)
    assert abs(out["variance_coefficient"][0][0] - out["variance_coefficient"][1][0]) > 0.01
    files = _files(tmp_path, [2.0])
    assert main(["predict", "tanh", *files, "--depth", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["mean_infinite"]) == 2 and isinstance(out["mean_infinite"][0], float) and "mean" not in out
    assert main(["predict", "tanh", *files, "--depth", "3", "--width", "32"]) == 0
    text = capsys.readouterr().out
    assert "mean at n = 32" in text and "variance at n = 32" in text


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--algorithm", "gd"], "needs --eta"),
        (["--eta", "0.1"], "does not take one"),
        (["--width", "0"], "--width must be >= 1"),
        (["--depth", "1"], "--depth must be >= 2"),
    ],
)
def test_cli_refuses_in_one_line(tmp_path, capsys, extra, message):
    files = _files(tmp_path, [2.0])
    args = ["predict", "tanh", *files, "--depth", "3", *extra]
    if "--depth" in extra:
        args = ["predict", "tanh", *files, *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


FROZEN = dict(C_b=0.1, C_W=1.0, lambda_b=[0.0, 0.0, 0.5], lambda_W=[0.0, 0.0, 1.0])  # learning in the output layer only
FROZEN_TRAIN = np.array([[1.0, 0.3, -0.2], [0.2, 0.9, 0.5]])


@pytest.fixture(scope="module")
def frozen():
    """The output layer's tensors on one or two training inputs and XT[1], learning only in the output layer."""
    names = ("K", "G", "Theta", "H1", *"VABDFPQRSTU")
    out = {}
    for n_train in (1, 2):
        t = load("tanh").kernel(np.vstack([FROZEN_TRAIN[:n_train], XT[1]]), 3, layers=[3], tensors=names, order=1,
                                tolerance=1e-4, **FROZEN)  # fmt: skip
        out[n_train] = {name: np.asarray(getattr(t, name)[0]) for name in names if name != "G"}
        out[n_train]["K1"] = np.asarray(t.G[0, 1])
    return out


def test_two_training_inputs_frozen_features_are_the_matrix_delta_method(frozen):
    """Two training inputs, lambda = 0 below the output: the mean is E[H(x, T) H(T, T)^-1] y, whose 1/n part by the
    delta method is H1(x,T) Hi y - H(x,T) Hi H1 Hi y - sum A_(x a)(b c) Hi^ab Hi^cd y_d + H(x,T) Hi A_(T a)(b c) ...:
    written here with its own index placement, it must equal the algebra's (three-input tensors by cubature; predict
    itself refuses two training inputs, see test_refusals)."""
    y = np.array([0.7, -0.4])
    tensors = frozen[2]
    _, coefficient, parts = mean_prediction(tensors, y[None, :], "gradient-flow", 0.0, np.arange(2), np.array([2]))
    H, H1, A = tensors["Theta"], tensors["H1"], tensors["A"]
    T, b = [0, 1], 2
    Hi = np.linalg.inv(H[np.ix_(T, T)])
    alpha = Hi @ y

    def second(d):  # E[delta(d, a) Hi^ab delta(b, c)] Hi^cd y_d, per unit 1/n
        return np.einsum("abc,ab,c->", A[d][np.ix_(T, T, T)], Hi, alpha)

    proj = H[b, T] @ Hi
    want = H1[b, T] @ alpha - proj @ H1[np.ix_(T, T)] @ alpha - second(b) + proj @ np.array([second(a) for a in T])
    assert coefficient[0, 0] == pytest.approx(want, rel=1e-6)
    assert all(np.allclose(parts[k], 0, atol=1e-12) for k in ("dNTK", "ddNTK-I", "ddNTK-II"))


def _compact(t, y, Z, train):
    """The book's compact mean terms (∞.158)-(∞.160), as the reference prints them: valid where the projectors have
    the symmetries they assume (one training input)."""
    nL = y.shape[0]
    K = t["K"][np.ix_(train, train)]

    def tr(name, spec):
        x = np.einsum(f"{spec}->dabc", t[name])
        return x[:, train][:, :, train][:, :, :, train]

    first = tr("P", "dabc") + tr("Q", "dabc") + nL * tr("Q", "dbac")
    second = nL * tr("P", "adbc") + tr("Q", "adbc") + tr("Q", "abdc")
    third = tr("P", "adbc") + nL * tr("Q", "adbc") + tr("Q", "abdc")
    dntk = -(2 * np.einsum("dabc,abce,ie->id", first, Z["B"], y) + np.einsum("dabc,abce,ie->id", second, Z["A"], y)
             + np.einsum("dabc,abec,ie->id", third, Z["A"], y))  # fmt: skip
    gamma = (np.einsum("ie,jf,jg->iefg", y, y, y) + nL * np.einsum("ie,fg->iefg", y, K)
             + np.einsum("if,ge->iefg", y, K) + np.einsum("ig,ef->iefg", y, K))  # fmt: skip
    zib = Z["IB"] + np.einsum("bcafge->abcefg", Z["IB"]) + np.einsum("cabgef->abcefg", Z["IB"])
    dd1 = -(np.einsum("dabc,abcefg,iefg->id", tr("R", "dabc"), zib, gamma)
            + np.einsum("dabc,abcefg,iefg->id", tr("R", "adbc"), Z["IA"], gamma)
            + np.einsum("dabc,abcfge,iefg->id", tr("R", "abcd"), Z["IA"], gamma)
            + np.einsum("dabc,abcgef,iefg->id", tr("R", "acdb"), Z["IA"], gamma))  # fmt: skip
    dd2 = -(np.einsum("dabc,abcefg,iefg->id", tr("S", "dabc"), Z["IIB"], gamma)
            + np.einsum("dabc,bcafge,iefg->id", tr("T", "dabc"), Z["IIB"], gamma)
            + np.einsum("dabc,cabgef,iefg->id", tr("U", "dabc"), Z["IIB"], gamma)
            + np.einsum("dabc,abcfge,iefg->id", tr("S", "abdc"), Z["IIA"], gamma)
            + np.einsum("dabc,abcefg,iefg->id", tr("T", "adcb"), Z["IIA"], gamma)
            + np.einsum("dabc,abcgef,iefg->id", tr("U", "acbd"), Z["IIA"], gamma))  # fmt: skip
    return {"dNTK": dntk, "ddNTK-I": dd1, "ddNTK-II": dd2}


@pytest.mark.parametrize("targets", [[[2.0]], [[1.5], [-1.0]]])
@pytest.mark.parametrize(("algorithm", "eta"), [("gd", 0.3), ("gradient-flow", 0.0), ("newton2", 0.0)])
def test_term_by_term_means_are_the_books_compact_forms_at_one_training_input(targets, algorithm, eta):
    """The dNTK and ddNTK parts, taken line by line from the T-shirt formula with explicit output indices, equal the
    book's compact (∞.158)-(∞.160) at one training input, for one output and two."""
    from pdlt.runtime.predict import corrections

    names = ("K", "Theta", "H1", *"ABPQRSTU")
    t = load("tanh").kernel(np.vstack([X, XT[:1]]), 3, layers=[3], tensors=names, **KW)
    t = {name: np.asarray(getattr(t, name)[0]) for name in names}
    train, y = np.array([0]), np.asarray(targets, dtype=float)
    Z = projectors(t["Theta"][:1, :1], algorithm, eta)
    got, want = corrections(t, y, Z, train), _compact(t, y, Z, train)
    for name, value in want.items():
        assert np.allclose(got[name], value, rtol=1e-12, atol=1e-14), name


@pytest.mark.parametrize("n_train", [1, 2])
def test_variance_of_a_linear_model_of_its_last_layer_is_the_delta_method(frozen, n_train):
    """lambda = 0 below the output layer, C_b != lambda_b: given the last hidden layer, z ~ N(0, G^) with the output
    metric G^ = C_b + C_W sigma.sigma/n, and the NTK is H^ = lambda_b + lambda_W/C_W (G^ - C_b), so training ends at
    z_T = z(x) - h (z(T) - y) with h = H^(x, T) H^(T, T)^-1, and Var z_T = E[q(G^)] + Var(h y) with
    q = G^_xx - 2 h G^_Tx + h G^_TT h. E[G^] = K + K1/n and Cov(G^_ab, G^_cd) = V_(ab)(cd)/n (the kernel sector's
    four-point vertex, not the NTK sector's A, D), so the 1/n part is grad q . K1 + (1/2) d2q[V]
    + y_i^2 grad h V grad h: derivatives by the complex step (first) and a central difference of it (second, relative
    error ~1e-10). It must equal variance_prediction's (built from K1, H1, A and D; B, F, P..U vanish)."""
    from pdlt.runtime.predict import variance_prediction

    lam_b, lam_W, C_b = FROZEN["lambda_b"][-1], FROZEN["lambda_W"][-1], FROZEN["C_b"]
    y = np.array([[0.7, -0.4], [1.1, 0.3]])[:n_train].T  # two outputs (n_L, N_train)
    tensors = frozen[n_train]
    v_inf, coefficient, parts = variance_prediction(tensors, y, "gradient-flow", 0.0, np.arange(n_train), n_train)
    assert all(np.allclose(parts[k], 0, atol=1e-12) for k in ("dNTK", "ddNTK-I", "ddNTK-II"))

    N, T, x = n_train + 1, list(range(n_train)), n_train
    K, K1, V = tensors["K"], tensors["K1"], tensors["V"]

    def h_and_q(G):
        H = lam_b + lam_W * (G - C_b)
        h = np.linalg.solve(H[np.ix_(T, T)].T, H[x, T])
        return np.r_[h, G[x, x] - 2 * h @ G[T, x] + h @ G[np.ix_(T, T)] @ h]

    pairs = [(a, b) for a in range(N) for b in range(a + 1)]  # one variable per entry pair: delta is symmetric
    units = {ab: np.zeros((N, N)) for ab in pairs}
    for (a, b), u in units.items():
        u[a, b] = u[b, a] = 1.0

    def grad(G):  # d(h, q) / d g_ab for every pair, by the complex step
        return {ab: h_and_q(G + 1e-30j * u).imag / 1e-30 for ab, u in units.items()}

    first = grad(K.astype(complex))
    second = {}
    for cd, u in units.items():
        up, down = grad(K + 1e-5 * u), grad(K - 1e-5 * u)
        for ab in pairs:
            second[ab, cd] = (up[ab] - down[ab]) / 2e-5
    mean_q = sum(first[(a, b)][-1] * K1[a, b] for a, b in pairs)
    curv_q = sum(second[(a, b), (c, d)][-1] * V[a, b, c, d] for a, b in pairs for c, d in pairs)
    var_h = sum(np.outer(first[(a, b)][:-1], first[(c, d)][:-1]) * V[a, b, c, d] for a, b in pairs for c, d in pairs)
    for i in range(2):
        want = mean_q + 0.5 * curv_q + y[i] @ var_h @ y[i]
        assert coefficient[i] == pytest.approx(want, rel=1e-3 if n_train > 1 else 1e-8), (i, coefficient[i], want)
    assert v_inf == pytest.approx(h_and_q(K)[-1], rel=1e-12)


def test_variance_pairings_are_the_gaussian_expectation_of_the_lines():
    """The dNTK and ddNTK parts of the variance are 2 E[p.z_i line_i] with z Gaussian: check the pairing algebra
    against that expectation computed directly, line by line, on a surrogate where it is exact. z ~ N(0, delta K)
    on two outputs and three inputs (two training), the dNTK linear in z with n E[dH z] = the (random) P, Q
    decomposition, the ddNTKs fixed at their (random) means; E[p.z line] is a polynomial of degree 4 in z, so
    Gauss-Hermite with 3 nodes a dimension (exact to degree 5) gives it exactly. The same for the mean's lines."""
    from pdlt.runtime.predict import _embed, _moments, corrections, variance_prediction

    rng = np.random.default_rng(5)
    nL, N, train = 2, 3, np.arange(2)
    t = {name: rng.standard_normal((N,) * 4) for name in "ABDFPQRSTU"}
    t["K"], t["Theta"] = _spd(N, 2) / N, _spd(N, 3) / N
    t["K1"], t["H1"] = rng.standard_normal((N, N)), rng.standard_normal((N, N))
    y = rng.standard_normal((nL, 2))
    Z = {name: _embed(z, train, N) for name, z in projectors(t["Theta"][:2, :2], "gd", 0.1).items()}
    _, _, parts = variance_prediction(t, y, "gd", 0.1, train, 2)
    mean = corrections(t, y, projectors(t["Theta"][:2, :2], "gd", 0.1), train)

    dz, dd1, dd2 = _moments(t, nL)
    C = np.einsum("abcdwxyt,ts->abcdwxys", dz, np.linalg.inv(t["K"]))  # dH = C z: E[dH z] = dz
    r = t["Theta"][2, :2] @ np.linalg.inv(t["Theta"][:2, :2])
    p = np.array([-r[0], -r[1], 1.0])
    g, w = np.polynomial.hermite_e.hermegauss(3)
    root = np.linalg.cholesky(t["K"])
    yF = np.concatenate([y, np.zeros((nL, 1))], axis=1)
    want = {"dNTK": np.zeros(nL), "ddNTK-I": np.zeros(nL), "ddNTK-II": np.zeros(nL)}
    means = {k: np.zeros(nL) for k in want}
    for idx in np.ndindex(*(3,) * (nL * N)):
        weight = np.prod(w[list(idx)]) / (2 * np.pi) ** (nL * N / 2)
        z = g[list(idx)].reshape(nL, N) @ root.T
        eps = (z - yF) * np.array([1.0, 1.0, 0.0])  # the lines see the training inputs only (Z is zero elsewhere)
        dH = np.einsum("abcdwxyz,dz->abcwxy", C, z)
        lines = {
            "dNTK": np.einsum("jikadb,abce,jc,ke->id", dH, Z["A"], eps, eps)
            + np.einsum("ijkdab,abce,jc,ke->id", dH, Z["B"], eps, eps),
            "ddNTK-I": np.einsum("jikladbc,abcefg,je,kf,lg->id", dd1, Z["IA"], eps, eps, eps)
            + np.einsum("ijkldabc,abcefg,je,kf,lg->id", dd1, Z["IB"], eps, eps, eps),
            "ddNTK-II": np.einsum("jkilabdc,abcefg,je,kf,lg->id", dd2, Z["IIA"], eps, eps, eps)
            + np.einsum("ijkldabc,abcefg,je,kf,lg->id", dd2, Z["IIB"], eps, eps, eps),
        }
        for k, line in lines.items():
            want[k] += weight * 2 * (z @ p) * (line @ p)
            means[k] += weight * line @ p
    for k in want:
        assert np.allclose(parts[k], want[k], rtol=1e-11, atol=1e-12 * np.abs(want[k]).max()), (k, parts[k], want[k])
        assert np.allclose(mean[k] @ p, means[k], rtol=1e-11), (k, mean[k] @ p, means[k])
