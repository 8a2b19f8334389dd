"""Criticality with the generated kernels: nu at large depth, the 1/n-corrected NLO metric,
the aspect ratio, the figures, and the commands' errors."""

from __future__ import annotations

import json
import math
import re

import pytest

from pdlt import generated
from pdlt.codegen.analysis import aspect_ratio, nu_from_flow, usable_point, verdict
from pdlt.codegen.cli import main
from pdlt.derive import activations
from pdlt.derive.criticality import critical_points


@pytest.mark.parametrize("name,nu", [("relu", 5.0), ("linear", 2.0), ("tanh", 2 / 3), ("sin", 2 / 3)])
def test_nu_confirmed_by_the_generated_flow(name, nu):
    """V/(K^2 (L-1)) at L = 4000: exact for the scale-invariant class, O(log L / L) off for K* = 0."""
    act = activations.get(name)
    point = usable_point(critical_points(act))
    got = nu_from_flow(generated.load(name), point, depth=4000)
    tol = 1e-12 if name in ("relu", "linear") else 3 * math.log(4000) / 4000
    assert got == pytest.approx(nu, rel=tol)


@pytest.mark.parametrize("name", ["tanh", "sin"])
def test_renormalized_nlo_metric_against_iteration(name):
    """With C_W = (1 + 2/(3n))/sigma_1^2 (book 5.141), G{1} l tends to a constant. Expanding the
    recursion with the book's own K (5.92), V (5.127) and j/(8K^2) (5.123) to O(1/l^2) gives
    A = (84 a_1^2 - 90 a_1 b_1 - a_2) / (3 a_1^3): 89/72 for tanh, 20/9 for sin. The book prints
    (2/3)(3 a_2 - a_1^2)/(-a_1)^3 (13/12 and 2/3), which the iteration does not reproduce
    (docs/criticality.md). Corrections are O(log l / l)."""
    taylor = critical_points(activations.get(name)).taylor
    a1, a2, b1 = (float(getattr(taylor, k)) for k in ("a_1", "a_2", "b_1"))
    A = (84 * a1**2 - 90 * a1 * b1 - a2) / (3 * a1**3)
    book = (2 / 3) * (3 * a2 - a1**2) / (-a1) ** 3
    L = 100_000
    flow = generated.load(name).flow(L, width=10**6, C_W=1.0, C_W_n=(2 / 3,), check=False)
    got = flow.G1[-1] * L
    assert got == pytest.approx(A, rel=10 * math.log(L) / L)
    assert abs(got - book) > 0.1 * abs(book)


def test_aspect_ratio_at_criticality():
    act = activations.get("relu")
    result = aspect_ratio(act, generated.load("relu"), depth=50, width=64, outputs=10)
    assert result.r == 50 / 64 and result.nu == 5.0
    assert result.r_star == pytest.approx(4 / (50 * 5), rel=1e-15)  # (A.73) with n_L = 10
    # scale-invariant at criticality: V = 5 (L-1) K^2 exactly at order 1
    assert result.vertex == pytest.approx(5 * 49 / 64, rel=1e-13)
    assert result.nlo_metric == 0.0
    assert "x the optimal" in result.verdict


@pytest.mark.parametrize(
    "r,r_star,phrase",
    [
        (0.01, 0.1, "well below"),
        (0.1, 0.1, "near the optimal"),
        (0.5, 0.1, "x the optimal"),
        (1.5, 0.1, "breaks down"),
    ],
)
def test_verdicts(r, r_star, phrase):
    assert phrase in verdict(r, r_star, 0.1, 1e-3)


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_criticality_json(capsys):
    code, out, _ = run(capsys, "criticality", "gelu", "--json")
    data = json.loads(out)
    assert code == 0 and data["class"] == "half-stable"
    assert {"activation", "class", "critical_points", "taylor", "exponents", "nu"} <= set(data)
    half = [p for p in data["critical_points"] if p["K_star"]]
    assert half[0]["C_b"] == pytest.approx(0.17292239, abs=5e-9) and half[0]["C_W"] == pytest.approx(
        1.98305826, abs=5e-9
    )
    assert data["nu"] == pytest.approx(data["nu_flow"]) and data["nu_source"].startswith("generated flow")


def test_criticality_suggests_the_renormalized_initialization(capsys):
    code, out, _ = run(capsys, "criticality", "tanh", "--json")
    assert json.loads(out)["renormalized"]["C_W_n"] == [pytest.approx(2 / 3)]


def _png(path):
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_phase_and_flow_figures(capsys, tmp_path):
    code, _, err = run(capsys, "phase", "tanh", "--out", str(tmp_path / "phase.png"))
    assert code == 0 and _png(tmp_path / "phase.png") and "K*=0" in err
    code, _, err = run(capsys, "flow", "tanh", "--depth", "200", "--width", "100", "--plot", str(tmp_path / "flow.png"))
    assert code == 0 and _png(tmp_path / "flow.png") and "critical point of class K*=0" in err
    code, _, err = run(
        capsys, "flow", "tanh", "--depth", "20", "--width", "100", "--C-W", "1.5", "--plot", str(tmp_path / "off.png")
    )
    assert code == 0 and "no asymptotic law" in err


@pytest.mark.parametrize(
    "argv,message",
    [
        (["criticality", "heaviside(z)"], "jumps"),
        (["phase", "foo(z)", "--out", "OUT"], "unknown function"),
        (["aspect-ratio", "tanh", "--depth", "0", "--width", "8"], "--depth must be >= 1"),
        (["aspect-ratio", "tanh", "--depth", "3", "--width", "8", "--C-b", "0.1"], "give both --C-b and --C-W"),
        (["aspect-ratio", "sigmoid", "--depth", "3", "--width", "8"], "no critical initialization"),
        (["flow", "tanh", "--depth", "3", "--width", "8", "--C-W-n", "a,b"], "--C-W-n must be comma-separated"),
    ],
)
def test_bad_input(capsys, tmp_path, argv, message):
    argv = [str(tmp_path / "x.png") if a == "OUT" else a for a in argv]
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == "" and message in err and err.count("\n") == 1
    assert not list(tmp_path.iterdir())


def test_exponents_from_the_flow():
    """tanh (K* = 0 class): the book's p_0 = 1, p_parallel = 2, p_perp = b_1/a_1 = 1, p_V = 1, p_1 = 0
    within 10 log(l)/l at l = 4000; GELU at its half-stable point: V and ddK[2] grow like l (p = -1),
    G{1} like l^2 (chi_parallel = 1 with a source growing like V)."""
    from pdlt.codegen.analysis import exponents_from_flow

    tol = 10 * math.log(4000) / 4000
    got = exponents_from_flow(generated.load("tanh"), usable_point(critical_points(activations.get("tanh"))))
    for key, value in {"p_0": 1, "p_parallel": 2, "p_perp": 1, "p_V": 1, "p_1": 0}.items():
        assert got[key] == pytest.approx(value, abs=tol), key
    report = critical_points(activations.get("gelu"))
    got = exponents_from_flow(generated.load("gelu"), usable_point(report))
    assert got["p_V"] == pytest.approx(-1, abs=tol) and got["p_1"] == pytest.approx(-2, abs=tol)
    assert got["p_0"] == 0.0


# ---------------------------------------------------------------- the commands' success paths, with values


def _numbers(pattern: str, text: str) -> list[float]:
    match = re.search(pattern, text)
    assert match, (pattern, text)
    return [float(g) for g in match.groups()]


def _scale_invariant_exact(a_minus: float, depth: int, width: int, outputs: int) -> dict:
    """At (0, 1/A_2) a scale-invariant network multiplies G by the mean of n iid X = sigma^2/(A_2 G)
    (E X = 1, Var X = nu = 3 A_4/A_2^2 - 1, book 5.120) in each layer, independently of G, so
    Var G(L) = K^2 ((1 + nu/n)^(L-1) - 1) exactly at equal widths and E G = K: V/(nK^2) = nu (L-1)/n,
    V{1}/(n^2 K^2) = nu^2 C(L-1, 2)/n^2, G{1} = 0; r* = 4/((20 + 3 n_L) nu) (A.73)."""
    A2, A4 = (1 + a_minus**2) / 2, (1 + a_minus**4) / 2
    nu = 3 * A4 / A2**2 - 1
    vertex = nu * (depth - 1) / width
    second = nu**2 * math.comb(depth - 1, 2) / width**2
    return {
        "C_b": 0.0,
        "C_W": 1 / A2,
        "r": depth / width,
        "nu": nu,
        "r_star": 4 / ((20 + 3 * outputs) * nu),
        "vertex": vertex,
        "nlo_metric": 0.0,
        "next_vertex": second,
        "neglected": second**2 / vertex,
    }


def test_aspect_ratio_text_against_the_exact_relu_network(capsys):
    """`pdlt aspect-ratio relu --depth 50 --width 64 --outputs 10`: every printed number against the
    exact scale-invariant result, to the printed precision (half a unit in the last of 4, 3 or 2
    significant digits)."""
    code, out, _ = run(capsys, "aspect-ratio", "relu", "--depth", "50", "--width", "64", "--outputs", "10")
    assert code == 0
    want = _scale_invariant_exact(0.0, 50, 64, 10)
    assert _numbers(r"C_b = (\S+), C_W = (\S+)\n", out) == [0.0, 2.0]
    r, nu, r_star = _numbers(r"r = L/n = (\S+); nu = (\S+); optimal r\* = .* = (\S+)\n", out)
    vertex, nlo, second, neglected = _numbers(
        r"V/\(nK\^2\) = (\S+), G\{1\}/\(nK\) = (\S+), V\{1\}/\(n\^2K\^2\) = (\S+); first neglected order ~ (\S+)\n", out
    )
    for got, key, digits in (
        (r, "r", 4),
        (nu, "nu", 4),
        (r_star, "r_star", 4),
        (vertex, "vertex", 4),
        (second, "next_vertex", 3),
        (neglected, "neglected", 2),
    ):
        assert got == pytest.approx(want[key], rel=0.5 * 10.0 ** (1 - digits)), key
    assert nlo == 0.0 and "x the optimal" in out  # r / r* = 49 > 2


def test_aspect_ratio_json_with_a_parameter(capsys):
    """`--param slope=1/10 --json` for leaky ReLU: every field against the exact result; the exact
    rules leave only roundoff (relative 1e-12 over 30 layers)."""
    code, out, _ = run(
        capsys,
        "aspect-ratio",
        "leaky_relu",
        "--param",
        "slope=1/10",
        "--depth",
        "30",
        "--width",
        "128",
        "--outputs",
        "2",
        "--json",
    )
    assert code == 0
    data = json.loads(out)
    assert {"activation": "leaky_relu", "depth": 30, "width": 128, "outputs": 2}.items() <= data.items()
    want = _scale_invariant_exact(0.1, 30, 128, 2)
    for key, value in want.items():
        assert data[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key
    assert data["verdict"].startswith("r = 0.234 is 7.4 x the optimal")


def test_aspect_ratio_text_at_the_tanh_critical_point(capsys):
    """The docs' example: r = 20/256, nu = 2/3 (5.131), r* = 4/(50 nu) = 0.12, and r/r* = 0.65 is 'near'."""
    code, out, _ = run(capsys, "aspect-ratio", "tanh", "--depth", "20", "--width", "256", "--outputs", "10")
    assert code == 0
    assert _numbers(r"C_b = (\S+), C_W = (\S+)\n", out) == [0.0, 1.0]
    r, nu, r_star = _numbers(r"r = L/n = (\S+); nu = (\S+); optimal r\* = .* = (\S+)\n", out)
    assert r == pytest.approx(20 / 256, rel=5e-4) and nu == pytest.approx(2 / 3, rel=5e-4)
    assert r_star == pytest.approx(0.12, rel=5e-4) and "is near the optimal" in out
    assert _numbers(r"V/\(nK\^2\) = (\S+),", out)[0] > 0


def _points(out: str) -> list[tuple[float, float, str]]:
    return [
        (float(cb), float(cw), where)
        for cb, cw, where in re.findall(
            r"critical point: C_b = (\S+), C_W = (\S+), (K\* = \S+|line of fixed points),", out
        )
    ]


def test_criticality_text(capsys):
    """The printed critical points against the book: tanh (0, 1) at K* = 0 with nu = 2/3 (5.89, 5.131);
    ReLU (0, 2) on a line with nu = 5 (5.67, 5.120); leaky ReLU (--param slope=1/10) (0, 2/(1+a^2)) with
    nu = 6 (1 + a^4)/(1 + a^2)^2 - 1; GELU (0, 1/sigma_1^2 = 4) at K* = 0 and (0.17292239, 1.98305826) at
    K* = (3 + sqrt 17)/2 (5.105, to the book's 8 decimals; printed with 10 significant digits)."""
    code, out, _ = run(capsys, "criticality", "tanh")
    assert code == 0 and "class K*=0" in out and _points(out) == [(0.0, 1.0, "K* = 0")]
    assert "nu = 0.666667 (exact 2/3)" in out
    code, out, _ = run(capsys, "criticality", "relu")
    assert code == 0 and "class scale-invariant" in out and _points(out) == [(0.0, 2.0, "line of fixed points")]
    assert "nu = 5 (exact 5)" in out
    code, out, _ = run(capsys, "criticality", "leaky_relu", "--param", "slope=1/10")
    ((cb, cw, where),) = _points(out)
    assert (cb, where) == (0.0, "line of fixed points") and cw == pytest.approx(2 / 1.01, rel=5e-10)
    nu = float(re.search(r"nu = (\S+) \(exact (\S+)\)", out).group(1))
    assert nu == pytest.approx(6 * (1 + 1e-4) / 1.01**2 - 1, rel=5e-6)  # printed with 6 digits
    code, out, _ = run(capsys, "criticality", "gelu")
    assert code == 0 and "class half-stable" in out
    (zero_cb, zero_cw, zero_where), (cb, cw, where) = _points(out)
    assert (zero_cb, zero_cw, zero_where) == (0.0, 4.0, "K* = 0")
    assert abs(cb - 0.17292239) <= 0.5e-8 + 5e-11 and abs(cw - 1.98305826) <= 0.5e-8 + 5e-10
    assert float(where.split()[-1]) == pytest.approx((3 + 17**0.5) / 2, rel=5e-10)


def test_phase_labels_sit_inside_their_phase():
    """The labels used to sit at fixed places: tanh's 'chaotic' landed on the ordered side. Each is
    now anchored at the grid point deepest inside its phase; a phase absent from the window has none."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pdlt.codegen.plots import _label_phases

    CB, CW = np.meshgrid(np.linspace(0, 1, 41), np.linspace(0.05, 3, 41))
    log_chi = np.log10(CW / (1 + CB))  # chaotic above the line C_W = 1 + C_b
    fig, ax = plt.subplots()
    _label_phases(ax, CB, CW, log_chi)
    placed = {t.get_text().split()[0]: t.get_position() for t in ax.texts}
    assert set(placed) == {"ordered", "chaotic"}
    assert placed["chaotic"][1] > 1 + placed["chaotic"][0] and placed["ordered"][1] < 1 + placed["ordered"][0]
    fig2, ax2 = plt.subplots()
    _label_phases(ax2, CB, CW, np.full_like(CB, -0.5))  # all ordered
    assert [t.get_text().split()[0] for t in ax2.texts] == ["ordered"]
    plt.close("all")
