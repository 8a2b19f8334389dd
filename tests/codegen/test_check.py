"""pdlt check: networks sampled layer by layer, k-statistics with standard errors, residuals by order."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pdlt.codegen.check import check, k_statistics, sample_metric
from pdlt.codegen.cli import main
from pdlt.derive import activations
from pdlt.generated import linear, tanh


def test_k_statistics_are_the_unbiased_cumulants():
    x = np.array([0.0, 1.0, 3.0, 7.0])
    assert k_statistics(x)[0] == pytest.approx(2.75)
    assert k_statistics(x)[1] == pytest.approx(np.var(x, ddof=1))
    d = x - x.mean()
    assert k_statistics(x)[2] == pytest.approx(16 / (3 * 2) * np.mean(d**3))


def test_sampled_linear_networks_have_the_exact_moments():
    """sigma(z) = z, C_b = 0, C_W = 1: G(l+1) = G(l) chi^2_n / n, so E[G(L)] = G(1) and
    Var G(L) = G(1)^2 ((1 + 2/n)^(L-1) - 1) exactly. 40 000 networks at depth 4, width 8: both within
    4 standard errors (the SE from the spread of 50 groups)."""
    G = sample_metric(activations.get("linear"), [8, 8, 8], 0.0, 1.0, 1.5, 40_000, seed=1)
    groups = np.array([k_statistics(g) for g in np.array_split(G, 50)])
    se = groups.std(axis=0, ddof=1) / np.sqrt(50)
    k = k_statistics(G)
    assert abs(k[0] - 1.5) <= 4 * se[0]
    assert abs(k[1] - 1.5**2 * ((1 + 2 / 8) ** 3 - 1)) <= 4 * se[1]


@pytest.mark.parametrize("name", ["gelu", "erf", "softplus", "mish"])
def test_every_special_function_samples_on_arrays(name):
    """sigma is evaluated on whole arrays of preactivations: erf (gelu's) comes from scipy, not math, which would
    refuse an array (found by the command-line fuzz test)."""
    G = sample_metric(activations.get(name), [4], 0.0, 1.0, 1.0, 50, seed=0)
    assert G.shape == (50,) and np.all(np.isfinite(G)) and np.all(G > 0)


def test_the_order_two_expansion_holds_where_it_should():
    """tanh at width 32, depth 4: order 2 within 4 SE for E[G] and Var G, order 0 far outside for Var G
    (it predicts 0). The linear network is exact at order 1: its E[G] residual is noise at every order."""
    result = check(activations.get("tanh"), tanh.flow(4, width=32), 30_000, seed=2)
    mean, var = result.rows[0], result.rows[1]
    assert abs(mean.residuals()[2]) <= 4 and abs(var.residuals()[2]) <= 4
    assert var.residuals()[0] > 20
    lin = check(activations.get("linear"), linear.flow(4, width=16), 20_000, seed=3)
    assert all(abs(r) <= 4 for r in lin.rows[0].residuals())


def test_the_command_prints_text_and_json(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PDLT_CACHE_DIR", str(tmp_path))
    assert main(["check", "relu", "--C-W", "2", "--depth", "3", "--width", "16", "--samples", "2000"]) == 0
    out = capsys.readouterr().out
    assert "E[G]" in out and "Var G" in out and "order 2 (res/SE)" in out
    assert main(["check", "relu", "--C-W", "2", "--depth", "3", "--width", "16", "--samples", "2000", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["samples"] == 2000 and set(data["cumulants"]) == {"1", "2", "3"}
    assert len(data["cumulants"]["2"]["residual_in_se"]) == 3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--depth", "1", "--width", "8"], "--depth must be >= 2"),
        (["--depth", "3", "--width", "8", "--samples", "10"], "--samples must be >= 150"),
        (["--depth", "2", "--width", "16", "--samples", "100"], "--samples must be >= 150"),
        (["--depth", "3", "--width", "8", "--samples", "10000000000"], "above 2e10"),
        (["--depth", "3", "--width", "8", "--seed", "-1"], "--seed must be >= 0"),
    ],
)
def test_bad_input_is_one_line(argv, message, capsys):
    assert main(["check", "tanh", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
