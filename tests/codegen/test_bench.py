"""`pdlt bench --quick`: the smoke run's structure and sanity, never its speed (DESIGN section 6)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pdlt import generated
from pdlt.codegen.bench import BENCH_HYPER, QUICK_ACTIVATIONS
from pdlt.codegen.cli import main


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def test_bench_quick(capsys, tmp_path):
    """One quick run (about 10 s): the text report on stdout, the JSON (keys of docs/benchmarks.md)
    in --out; positive finite timings, the arithmetic between them, and the by-hand recursion
    (scipy quad, epsrel 1e-12 per expectation; 9 layers whose chi_parallel <= 1 at tanh's critical
    point do not amplify it) against the generated tanh flow to 1e-10 relative."""
    out_file = tmp_path / "bench.json"
    code = main(["bench", "--quick", "--out", str(out_file)])
    out, _ = capsys.readouterr()
    assert code == 0
    data = json.loads(out_file.read_text())
    lines = out.splitlines()
    assert [line[:3] for line in lines if line.startswith("(")] == ["(a)", "(b)", "(c)", "(d)", "(d)"]
    rows = [line.split()[0] for line in lines if line.startswith("    ") and "C_b" not in line]
    assert sorted(rows) == sorted(QUICK_ACTIVATIONS)  # one table row per activation of (a)
    assert set(data) == {"quick", "generated", "by_hand", "speedup_vs_by_hand", "montecarlo", "startup"}
    assert data["quick"] is True

    assert sorted(data["generated"]) == sorted(QUICK_ACTIVATIONS)
    for name, row in data["generated"].items():
        assert set(row) == {
            "order",
            "depth",
            "C_b",
            "C_W",
            "seconds",
            "seconds_checked",
            "seconds_wrapper",
            "per_layer_us",
        }
        assert row["order"] == generated.SHIPPED[name] and row["depth"] == 1000
        assert (row["C_b"], row["C_W"]) == BENCH_HYPER[name]
        assert all(_positive(row[k]) for k in ("seconds", "seconds_checked", "seconds_wrapper", "per_layer_us"))
        assert row["per_layer_us"] == pytest.approx(row["seconds"] / 1000 * 1e6, rel=1e-12)

    hand = data["by_hand"]
    assert set(hand) == {"activation", "order", "layers", "seconds", "per_layer_us", "K_last"}
    assert (hand["activation"], hand["order"], hand["layers"]) == ("tanh", 2, 9)
    assert _positive(hand["seconds"]) and hand["per_layer_us"] == pytest.approx(hand["seconds"] / 9 * 1e6, rel=1e-12)
    K = generated.load("tanh").flow(10, width=64, C_b=0.0, C_W=1.0, input_norm2=1.0).K[-1]
    assert hand["K_last"] == pytest.approx(K, rel=1e-10)
    assert data["speedup_vs_by_hand"] == pytest.approx(
        hand["per_layer_us"] / data["generated"]["tanh"]["per_layer_us"], rel=1e-12
    )

    mc = data["montecarlo"]
    assert set(mc) == {
        "activation",
        "depth",
        "width",
        "networks",
        "seconds",
        "relative_standard_error",
        "reached_1_percent",
    }
    assert (mc["activation"], mc["depth"], mc["width"]) == ("tanh", 10, 64)
    assert mc["networks"] > 0 and mc["networks"] % 256 == 0 and _positive(mc["seconds"])
    assert _positive(mc["relative_standard_error"])
    assert mc["reached_1_percent"] == (mc["relative_standard_error"] <= 0.01)

    assert set(data["startup"]) == {"cold", "warm"}
    for row in data["startup"].values():
        assert set(row) == {"process_seconds", "import_and_flow_seconds", "peak_rss_mib"}
        assert all(_positive(v) for v in row.values())
        assert row["import_and_flow_seconds"] <= row["process_seconds"]


def test_kernel_bench_structure_and_its_numpy_baseline():
    """pdlt bench --kernels at a tiny size: the rows it reports, and the numpy arc-cosine baseline it times is
    the relu recursion (it equals pdlt's K and Theta off the diagonal to roundoff; on it, to the sqrt(eps) that
    its angle loses at a coincidence, over 3 layers)."""
    from pdlt.codegen.bench_kernels import bench_kernels, numpy_arccos, report

    data = bench_kernels((20,), names=("relu",), ntk_depths=(30,))
    assert [c["code"] for c in data["cases"]] == ["numpy arc-cosine (relu)", "pdlt relu"]
    assert all(_positive(c["seconds"]) and c["N"] == 20 for c in data["cases"])
    acc = data["accuracy"]["relu"]
    assert acc["pdlt"] < 1e-14 < acc["numpy_arccos"]
    # title, header, two cases, accuracy title, relu; the NTK statistics' title and one row per activation; the
    # two-input title and its row
    assert len(report(data)) == 6 + 1 + 3 + 1 + 1
    assert [(r["activation"], r["depth"]) for r in data["ntk"]] == [("tanh", 30), ("relu", 30), ("erf", 30)]
    assert all(_positive(r["seconds"]) for r in data["ntk"])
    (pair,) = data["ntk_pair"]
    assert pair["depth"] == 30 and _positive(pair["seconds"]) and 0 < pair["error"] <= 1e-5
    x = np.random.default_rng(0).normal(size=(7, 5))
    K, T = numpy_arccos(x, 4, 0.1, 1.9)
    res = generated.load("relu").kernel(x, 4, C_b=0.1, C_W=1.9, layers=[4])
    off = ~np.eye(7, dtype=bool)  # on the diagonal the baseline's arccos(1 - eps) is off by sqrt(eps) per layer
    np.testing.assert_allclose(K[off], res.K[0][off], rtol=1e-12)
    np.testing.assert_allclose(T[off], res.Theta[0][off], rtol=1e-12)
    np.testing.assert_allclose(np.diag(T), np.diag(res.Theta[0]), rtol=4 * 1.5e-8)


def test_kernel_bench_times_the_finite_width_mean_kernel_beside():
    from pdlt.codegen.bench_kernels import bench_kernels, report

    data = bench_kernels((12,), names=("erf",), ntk_depths=(5,))
    codes = [c["code"] for c in data["cases"]]
    assert codes == ["numpy arc-cosine (relu)", "pdlt erf", "pdlt erf K+G, order 1"]
    g = data["cases"][2]
    assert _positive(g["seconds"]) and g["ratio"] == g["seconds"] / data["cases"][1]["seconds"]
    assert "of K+Theta" in report(data)[4]


def test_bench_four_quick(capsys, tmp_path):
    """``pdlt bench --four --quick``: V on four inputs through three layers, one line per case and the JSON rows
    in --out, the error bound within the tolerance asked for."""
    out_file = tmp_path / "four.json"
    assert main(["bench", "--four", "--quick", "--out", str(out_file)]) == 0
    out, _ = capsys.readouterr()
    rows = json.loads(out_file.read_text())
    assert [(r["N"], r["tensors"], r["depth"]) for r in rows] == [(4, "V", 3)]
    assert 0 < rows[0]["error"] <= rows[0]["tolerance"] and rows[0]["seconds"] > 0
    assert out.startswith("N =   4,   V, depth  3")
