"""pdlt tradeoff: the normalized NTK fluctuations and dNTK/ddNTK against L/n, with r* (issue 8, item 5)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pdlt.codegen.cli import main
from pdlt.codegen.tradeoff import learning_rates
from pdlt.generated import load


def test_the_books_learning_rates():
    """(9.94): lambda~ / L for scale-invariant; (9.95) with p_perp = 1 (tanh): lambda~_b / l and lambda~_W."""
    lb, lw = learning_rates("scale-invariant", {}, 4, "equivalence", 0.5, 2.0)
    assert np.allclose(lb, 0.5 / 4) and np.allclose(lw, 2.0 / 4)
    lb, lw = learning_rates("K*=0", {"p_perp": 1.0}, 4, "equivalence", 0.5, 2.0)
    assert np.allclose(lb, 0.5 / np.arange(1, 5)) and np.allclose(lw, 2.0)
    lb, lw = learning_rates("K*=0", {"p_perp": 2.0}, 3, "equivalence", 1.0, 1.0)
    assert np.allclose(lb, (1 / np.arange(1, 4)) ** 2 * 3) and np.allclose(lw, 3 / np.arange(1, 4))
    assert np.allclose(learning_rates("half-stable", {}, 3, "uniform", 1.0, 2.0)[1], 2.0)


def test_the_command_draws_the_generated_tensors_and_r_star(tmp_path, capsys):
    out = tmp_path / "t.png"
    args = ["tradeoff", "tanh", "--width", "16", "--depths", "2,4,8", "--samples", "200", "--outputs", "2"]
    assert main([*args, "--out", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert out.stat().st_size > 10_000  # a real PNG
    assert data["depths"] == [2, 4, 8] and data["r"] == [2 / 16, 4 / 16, 8 / 16]
    assert data["r_star"] == pytest.approx(4 / ((20 + 3 * 2) * data["nu"]))
    # the theory columns are the generated tensors, normalized: L = 8 with the (9.96) rates
    r = load("tanh").kernel(np.ones((1, 1)), 8, C_W=1.0, lambda_b=1 / np.arange(1, 9), lambda_W=1.0,
                            tensors=("Theta", "A", "B", "P", "T"), layers=[8])  # fmt: skip
    K, H = r.K[0, 0, 0], r.Theta[0, 0, 0]
    want_var = (r.A.ravel()[0] + 2 * r.B.ravel()[0]) / (16 * H**2)
    assert data["theory"]["ntk_variance"][2] == pytest.approx(want_var, rel=1e-12)
    assert data["theory"]["P"][2] == pytest.approx(r.P.ravel()[0] / (16 * H**2), rel=1e-12)
    assert data["theory"]["T"][2] == pytest.approx(r.T.ravel()[0] * K / (16 * H**3), rel=1e-12)
    for name in ("ntk_variance", "P"):
        assert [p[0] for p in data["montecarlo"][name]] == [2, 4, 8]
        assert all(math.isfinite(p[1]) and p[2] > 0 for p in data["montecarlo"][name])


def test_relu_has_no_ddntk_and_its_P_vanishes(capsys):
    assert main(["tradeoff", "relu", "--width", "8", "--depths", "3,6", "--samples", "0", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["theory"]["R"] == [None, None] and data["montecarlo"] == {}
    assert all(abs(p) < 1e-12 for p in data["theory"]["P"])
    assert data["nu"] == pytest.approx(5.0)  # book (A.70)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--width", "0"], "--width must be >= 1"),
        (["--width", "8", "--depths", "1,2"], "depths >= 2"),
        (["--width", "8", "--depths", "a"], "comma-separated integers"),
        (["--width", "8", "--depths", "2,999999999"], "goes up to 100000 layers"),
        (["--width", "8", "--samples", "50"], "--samples must be 0"),
        (["--width", "8", "--lambda-b", "0", "--lambda-W", "0"], "not both 0"),
    ],
)
def test_bad_input_is_one_line(capsys, extra, message):
    assert main(["tradeoff", "tanh", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
