"""The pdlt command line: outputs, the JSON schema, and one clear line with exit 2 on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pdlt.codegen.cli import main


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PDLT_CACHE_DIR", str(tmp_path / "cache"))


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_flow_table(capsys):
    code, out, err = run(capsys, "flow", "tanh", "--order", "2", "--depth", "10", "--width", "64",
                         "--C-b", "0", "--C-W", "1", "--input-norm2", "1")
    assert code == 0
    lines = out.splitlines()
    header = next(line for line in lines if line.split()[:1] == ["layer"])
    for column in ("K", "G{1}", "G{2}", "V", "V{1}", "U", "kappa_1", "kappa_2", "kappa_3"):
        assert column in header.split()
    row2 = next(line for line in lines if line.split()[:1] == ["2"]).split()
    assert float(row2[1]) == pytest.approx(0.39429, rel=1e-4)


def test_flow_json_schema(capsys):
    code, out, _ = run(capsys, "flow", "tanh", "--depth", "4", "--widths", "32,64,48", "--json")
    data = json.loads(out)
    assert {"activation", "order", "C_b", "C_W", "input_norm2", "widths", "layers"} <= set(data)
    assert data["widths"] == [32, 64, 48] and data["order"] == 2
    layer3 = data["layers"][2]
    assert layer3["layer"] == 3
    assert len(layer3["cumulants"]["1"]) == 3 and len(layer3["cumulants"]["2"]) == 2 and len(layer3["cumulants"]["3"]) == 1
    c1 = layer3["cumulants"]["1"]
    assert layer3["values"]["1"] == pytest.approx(c1[0] + c1[1] / 64 + c1[2] / 64**2, rel=1e-14)
    first = data["layers"][0]["values"]
    assert first["2"] == 0.0 and first["3"] == 0.0


def test_formula_is_generated_once_then_reused(capsys, tmp_path):
    args = ["flow", "z*tanh(log(1+exp(z)))", "--depth", "3", "--width", "16", "--json"]
    code, out, err = run(capsys, *args)
    assert code == 0 and "first use" in err
    files = list((tmp_path / "cache" / "kernels").glob("*.py"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    code, out2, err2 = run(capsys, *args)
    assert code == 0 and "first use" not in err2 and out2 == out
    assert files[0].stat().st_mtime_ns == stamp
    # the same function as the shipped mish kernels
    shipped = json.loads(run(capsys, "flow", "mish", "--depth", "3", "--width", "16", "--json")[1])
    for a, b in zip(json.loads(out)["layers"], shipped["layers"]):
        np.testing.assert_allclose(a["cumulants"]["2"], b["cumulants"]["2"], rtol=1e-12)


def test_generate_writes_an_importable_self_contained_module(capsys, tmp_path):
    out_dir = tmp_path / "mykernels"
    code, out, _ = run(capsys, "generate", "z*tanh(log(1+exp(z)))", "--name", "mish", "--order", "2", "--out", str(out_dir))
    assert code == 0 and Path(out.strip()) == out_dir / "mish.py"
    script = f"import sys; sys.path.insert(0, {str(out_dir)!r}); import mish; print(mish.flow(3, width=8).K[-1])"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, env=env)
    # -I: isolated mode, so only numpy and numba (site-packages) are reachable besides the folder
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) > 0


def test_latex(capsys):
    code, out, _ = run(capsys, "latex", "tanh", "--order", "2")
    assert code == 0
    assert out.startswith("\\documentclass") and "\\usepackage{amsmath" in out and out.rstrip().endswith("\\end{document}")
    assert out.count("\\begin{align}") == out.count("\\end{align}") >= 3
    assert out.count("{") == out.count("}")
    assert "\\chi_{\\parallel}" in out and "G^{\\{1\\}}" in out and "V" in out


def test_activations_listing(capsys):
    code, out, _ = run(capsys, "activations", "--json")
    names = {row["name"] for row in json.loads(out)["activations"]}
    assert {"tanh", "relu", "gelu", "hard_tanh", "leaky_relu"} <= names


BAD = [
    (["flow", "foo(z)", "--depth", "3", "--width", "4"], "unknown function"),
    (["flow", "z+", "--depth", "3", "--width", "4"], "syntax error"),
    (["flow", "__import__('os').system('echo hacked')", "--depth", "3", "--width", "4"], "attribute access"),
    (["flow", "__import__('os')", "--depth", "3", "--width", "4"], "unknown function"),
    (["flow", "z.__class__", "--depth", "3", "--width", "4"], "attribute access"),
    (["flow", "exp(z**2)", "--depth", "3", "--width", "4"], "not integrable"),
    (["flow", "tanh", "--depth", "3", "--width", "4", "--C-W", "0"], "--C-W must be > 0"),
    (["flow", "gelu", "--depth", "400", "--width", "64"], "vanished"),
    (["flow", "tanh", "--depth", "3", "--width", "4", "--C-b", "-0.1"], "--C-b must be >= 0"),
    (["flow", "tanh", "--depth", "3", "--width", "4", "--input-norm2", "-1"], "--input-norm2 must be > 0"),
    (["flow", "tanh", "--depth", "3", "--width", "0"], "widths must be integers >= 1"),
    (["flow", "tanh", "--depth", "3", "--widths", "4,0"], "widths must be integers >= 1"),
    (["flow", "tanh", "--depth", "3", "--widths", "4"], "widths needs depth - 1 = 2 values"),
    (["flow", "tanh", "--depth", "0", "--width", "4"], "--depth must be >= 1"),
    (["flow", "tanh", "--depth", "3", "--width", "4", "--order", "-1"], "order must be an integer >= 0"),
    (["flow", "tanh", "--depth", "3"], "exactly one of --width"),
    (["flow", "leaky_relu", "--depth", "3", "--width", "4", "--param", "alpha=2"], "--param expects NAME=VALUE"),
    (["latex", "tanh", "--order", "-2"], "order must be an integer >= 0"),
    (["generate", "z", "--name", "1bad", "--out", "OUT"], "--name must be a Python identifier"),
    (["generate", "z", "--name", "ok", "--order", "-1", "--out", "OUT"], "order must be an integer >= 0"),
    (["generate", "foo(z)", "--name", "ok", "--out", "OUT"], "unknown function"),
]


@pytest.mark.parametrize("argv,message", BAD)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(capsys, tmp_path, argv, message):
    out_dir = tmp_path / "out"
    argv = [str(out_dir) if a == "OUT" else a for a in argv]
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    lines = [line for line in err.splitlines() if line.startswith("pdlt: error:")]
    assert len(lines) == 1 and message in lines[0], err
    assert not out_dir.exists()


def test_installed_command_exits_2(tmp_path):
    env = dict(os.environ, PDLT_CACHE_DIR=str(tmp_path))
    result = subprocess.run([sys.executable, "-m", "pdlt.codegen.cli", "flow", "tanh", "--depth", "2", "--width", "-3"],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
