"""The pdlt command line: outputs, the JSON schema, and one clear line with exit 2 on bad input."""

from __future__ import annotations

import json
import os
import shutil
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


# the README's quick-start example
README_FLOW = "flow tanh --order 2 --depth 10 --width 64 --C-b 0 --C-W 1 --input-norm2 1".split()


def test_flow_table(capsys):
    code, out, err = run(capsys, *README_FLOW)
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
    assert (
        len(layer3["cumulants"]["1"]) == 3 and len(layer3["cumulants"]["2"]) == 2 and len(layer3["cumulants"]["3"]) == 1
    )
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
    code, out, _ = run(
        capsys, "generate", "z*tanh(log(1+exp(z)))", "--name", "mish", "--order", "2", "--out", str(out_dir)
    )
    assert code == 0 and Path(out.strip()) == out_dir / "mish.py"
    script = f"import sys; sys.path.insert(0, {str(out_dir)!r}); import mish; print(mish.flow(3, width=8).K[-1])"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, env=env)
    # -I: isolated mode: only the installed packages (numpy, numba, pdlt.runtime) and the folder are reachable
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) > 0


def test_latex(capsys):
    code, out, _ = run(capsys, "latex", "tanh", "--order", "2")
    assert code == 0
    assert (
        out.startswith("\\documentclass") and "\\usepackage{amsmath" in out and out.rstrip().endswith("\\end{document}")
    )
    assert out.count("\\begin{align}") == out.count("\\end{align}") >= 3
    assert out.count("{") == out.count("}")
    assert "\\chi_{\\parallel}" in out and "G^{\\{1\\}}" in out and "V" in out
    # the derived two-input sector, with the book's equation numbers
    assert "\\chi_{\\perp} &= C_W \\langle \\sigma'^2 \\rangle_{K_{00}} \\tag{5.51}" in out
    assert out.count("\\begin{align*}") == out.count("\\end{align*}") == 1 and "\\tag{5.48}" in out


def test_activations_listing(capsys):
    """The listing (read from pdlt.generated.CATALOGUE) is the registry: every name, formula, parameter and
    breakpoint; relu's <sigma^k> are closed forms for k = 2, 4, 6 and tanh's are not."""
    import sympy as sp

    from pdlt.derive.activations import ALIASES, REGISTRY

    code, out, _ = run(capsys, "activations", "--json")
    data = json.loads(out)
    rows = {row["name"]: row for row in data["activations"]}
    assert code == 0 and set(rows) == set(REGISTRY) and data["aliases"] == ALIASES
    for name, act in REGISTRY.items():
        assert rows[name]["formula"] == sp.sstr(act.expr) and rows[name]["description"] == act.description
        assert rows[name]["params"] == {s.name: float(v) for s, v in act.params}
        assert rows[name]["breakpoints"] == [float(b) for b in act.breakpoints]
    assert rows["relu"]["exact_powers"] == [2, 4, 6] and rows["tanh"]["exact_powers"] == []


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
    (["flow", "tanh", "--depth", "3", "--width", "1.5"], "--width: widths must be integers >= 1, got '1.5'"),
    (["flow", "tanh", "--depth", "3", "--width", "inf"], "--width: widths must be integers >= 1, got 'inf'"),
    (["flow", "tanh", "--depth", "3", "--widths", "4,2.5"], "--widths: widths must be integers >= 1, got '2.5'"),
    (["flow", "leaky_relu", "--depth", "3", "--width", "4", "--param", "alpha=2"], "--param expects NAME=VALUE"),
    (["latex", "tanh", "--order", "-2"], "order must be an integer >= 0"),
    (["generate", "z", "--name", "1bad", "--out", "OUT"], "--name must be a Python identifier"),
    (["generate", "z", "--name", "ok", "--order", "-1", "--out", "OUT"], "order must be an integer >= 0"),
    (["generate", "foo(z)", "--name", "ok", "--out", "OUT"], "unknown function"),
    (["flow", "1/z", "--depth", "3", "--width", "4"], "1/z is not real and finite for every real z (not for z in {0})"),
    (["flow", "sqrt(z)", "--depth", "3", "--width", "4"], "not for z in Interval.open(-oo, 0)"),
    (["generate", "log(1+z)", "--name", "ok", "--out", "OUT"], "not for z in Interval(-oo, -1)"),
    (["flow", "tanh", "--depth", "5", "--width", "8", "--C-W-n", "-5"], "the 1/n series gives Var G = "),
    (["flow", "tanh", "--depth", "3", "--width", "4", "--tolerance", "-1"], "--tolerance must be > 0"),
    (["flow", "tanh", "--depth", "3", "--width", "4", "--tolerance", "nan"], "--tolerance must be > 0"),
    (["flow", "tanh", "--C-W", "0.5", "--depth", "2000", "--width", "64"], "collapses toward the trivial fixed point"),
    # K = 1, 0.03, 1e-6, then e^{-1/2K} underflows: the collapse is named with its layer (the closed forms, which
    # cancel as K falls, are replaced by quadrature on the way down)
    (["flow", "max(0, z - 1)", "--depth", "200", "--width", "64"], "K = 1.15e-06 at layer 3 (K = 1 at layer 1)"),
    (["flow", "tanh", "--critical", "--C-W", "2", "--depth", "3", "--width", "4"], "not both"),
    (["flow", "sigmoid", "--critical", "--depth", "3", "--width", "4"], "sigmoid has no critical initialization"),
    # outputs are checked before any work (FILE is an existing plain file, TMP an existing folder)
    (["latex", "tanh", "--out", "TMP"], "--out TMP is a folder"),
    (["latex", "tanh", "--out", "FILE/x.tex"], "cannot write --out FILE/x.tex"),
    (["generate", "z*tanh(z)", "--name", "ok", "--out", "FILE/sub"], "cannot write --out FILE/sub"),
    (["generate", "z*tanh(z)", "--name", "ok", "--out", "FILE"], "exists and is not a folder"),
    (["phase", "tanh", "--out", "FILE/p.png"], "cannot write --out FILE/p.png"),
    (["flow", "tanh", "--depth", "3", "--width", "4", "--plot", "FILE/f.png"], "cannot write --plot FILE/f.png"),
    (["bench", "--quick", "--out", "TMP"], "--out TMP is a folder"),
    (["bench", "--four", "--kernels"], "--four and --kernels are separate benchmarks"),
]


@pytest.mark.parametrize("argv,message", BAD)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(capsys, tmp_path, argv, message):
    out_dir = tmp_path / "out"
    existing = tmp_path / "existing"
    existing.mkdir()
    plain = existing / "plain.txt"
    plain.write_text("keep")
    names = {"OUT": str(out_dir), "TMP": str(existing), "FILE": str(plain)}

    def spell(text: str) -> str:
        for key, value in names.items():
            text = text.replace(key, value)
        return text

    code, out, err = run(capsys, *[spell(a) for a in argv])
    assert code == 2
    assert out == ""
    lines = [line for line in err.splitlines() if line.startswith("pdlt: error:")]
    assert len(lines) == 1 and spell(message) in lines[0], err
    if any(key in message for key in ("FILE", "TMP")):
        assert "deriving" not in err  # a bad output is refused before any work
    assert not out_dir.exists()
    assert sorted(p.name for p in existing.iterdir()) == ["plain.txt"] and plain.read_text() == "keep"


def test_installed_command_exits_2(tmp_path):
    env = dict(os.environ, PDLT_CACHE_DIR=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-m", "pdlt.codegen.cli", "flow", "tanh", "--depth", "2", "--width", "-3"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1


def test_flow_param_against_the_closed_form(capsys):
    """leaky ReLU with --param slope=1/10 (A_q = (1 + a^q)/2): G' = C_b + c G X-bar with c = C_W A_2
    and X-bar the mean of n_l iid X = sigma(z)^2/(A_2 G), E X = 1, Var X = nu = 3 A_4/A_2^2 - 1,
    kappa_3(X) = 15 A_6/A_2^3 - 3(1 + nu) + 2, independent of G. So the mean is exact (K' = C_b + c K,
    G{1} = G{2} = 0) and, in powers of 1/n_l with r = n_l/n_{l-1}: V' = c^2 (r V + nu K^2),
    V{1}' = c^2 (r^2 V{1} + nu r V), U' = c^3 (r^2 U + 6 nu r K V + kappa_3(X) K^3). Every expectation
    of this module is an exact rule (error_estimate is a roundoff bound, ~1e-16): relative 1e-12."""
    argv = "flow leaky_relu --param slope=1/10 --depth 6 --widths 20,35,50,28,40 --C-b 0.1 --C-W 1.5 --input-norm2 0.8"
    code, out, _ = run(capsys, *argv.split(), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["params"] == {"slope": 0.1} and data["widths"] == [20, 35, 50, 28, 40]
    a = 0.1
    A2, A4, A6 = ((1 + a**q) / 2 for q in (2, 4, 6))
    nu = 3 * A4 / A2**2 - 1
    k3 = 15 * A6 / A2**3 - 3 * (1 + nu) + 2
    c = 1.5 * A2
    K, V, V1, U = 0.1 + 1.5 * 0.8, 0.0, 0.0, 0.0
    widths = [None, 20, 35, 50, 28, 40]
    for l, layer in enumerate(data["layers"], start=1):
        if l > 1:
            r = 1.0 if l == 2 else widths[l - 1] / widths[l - 2]
            K, V, V1, U = (
                0.1 + c * K,
                c**2 * (r * V + nu * K**2),
                c**2 * (r * r * V1 + nu * r * V),
                c**3 * (r * r * U + 6 * nu * r * K * V + k3 * K**3),
            )
        got = layer["cumulants"]
        assert got["1"] == pytest.approx([K, 0.0, 0.0], rel=1e-12, abs=1e-15), l
        assert got["2"] == pytest.approx([V, V1], rel=1e-12, abs=1e-15), l
        assert got["3"] == pytest.approx([U], rel=1e-12, abs=1e-15), l
        if l > 1:
            n = widths[l - 1]
            want = {"1": K, "2": V / n + V1 / n**2, "3": U / n**2}
            assert {m: layer["values"][m] for m in want} == pytest.approx(want, rel=1e-12)
    # the default slope (1/100) gives another kernel: the parameter was used
    default = json.loads(
        run(capsys, *"flow leaky_relu --depth 2 --width 20 --C-b 0.1 --C-W 1.5 --input-norm2 0.8 --json".split())[1]
    )
    assert default["layers"][1]["cumulants"]["1"][0] == pytest.approx(0.1 + 1.5 * (1 + 0.01**2) / 2 * 1.3, rel=1e-12)


def test_latex_out_writes_the_document_it_prints(capsys, tmp_path):
    """--out writes exactly what stdout would show (nothing on stdout, one progress line), a
    standalone document around --body; compiled when pdflatex is installed."""
    code, printed, _ = run(capsys, "latex", "tanh", "--order", "2")
    assert code == 0
    target = tmp_path / "tanh.tex"
    code, out, err = run(capsys, "latex", "tanh", "--order", "2", "--out", str(target))
    assert code == 0 and out == "" and f"wrote {target}" in err
    text = target.read_text()
    assert text == printed and text.endswith("\\end{document}\n")
    assert [p.name for p in tmp_path.iterdir() if p.name != "cache"] == ["tanh.tex"]  # no temporary left
    code, body, _ = run(capsys, "latex", "tanh", "--order", "2", "--body")
    assert code == 0 and "\\documentclass" not in body and body.strip() and body.strip() in text
    preamble = text[: text.index("\\begin{document}")]
    assert preamble.startswith("\\documentclass") and "\\usepackage{amsmath" in preamble
    for env in ("document", "align"):
        assert text.count(f"\\begin{{{env}}}") == text.count(f"\\end{{{env}}}") >= 1
    assert text.count("\\left") == text.count("\\right") and text.count("{") == text.count("}")
    if shutil.which("pdflatex"):
        result = subprocess.run(
            ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", target.name],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0 and (tmp_path / "tanh.pdf").stat().st_size > 1000, result.stdout[-2000:]


def test_unreliable_series_is_flagged_and_reliable_one_is_not(capsys):
    """ReLU at criticality: Var G(L) = K^2 ((1 + 5/n)^(L-1) - 1) exactly, so at n = 8 the 1/n^2 term
    kept is a quarter of the order-2 value by layer 3 (the series in 5/n = 0.625 converges slowly):
    the values are printed with one warning line. At width 64 and depth 10 (tanh, the README's
    example) the last term kept is below 10 % everywhere: no warning."""
    code, out, err = run(capsys, "flow", "relu", "--depth", "5", "--width", "8", "--C-W", "2", "--json")
    assert code == 0 and json.loads(out)["layers"][-1]["values"]["2"] > 0
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "at layer 3 " in warnings[0] and "unreliable" in warnings[0], err
    code, out, err = run(capsys, *README_FLOW)
    assert code == 0 and "warning" not in err


def test_series_check_against_the_exact_relu_terms():
    """The check's arithmetic on hand-made coefficients: last term / sum, and a negative sum refused."""
    from pdlt.codegen.reliability import check_series

    c = np.zeros((2, 4, 3))
    c[:, 1, 0] = 1.0
    c[1, 2, 1], c[1, 2, 2] = 1.0, 0.5  # Var G = 1/n + 0.5/n^2: at n = 4 the last term is 1/9 of it
    assert "11%" in check_series(c, np.array([4.0]), 2).unreliable
    assert check_series(c, np.array([6.0]), 2).unreliable is None  # 1/13 < 10 %
    c[1, 2, 2] = -8.0  # 1/4 - 8/16 < 0
    assert "Var G = -0.25 < 0" in check_series(c, np.array([4.0]), 2).impossible


def test_an_internal_bug_says_so_with_its_traceback_and_exit_1(capsys, monkeypatch):
    """A ValueError that is not a user error (here from numpy inside a command) is not dressed up
    as bad input: one line says it is a bug in pdlt, the traceback follows, exit status 1."""
    import pdlt.codegen.listing as listing

    def broken(args):
        return int(np.float64("not a number"))

    monkeypatch.setattr(listing, "cmd_activations", broken)
    code, out, err = run(capsys, "activations")
    assert code == 1 and out == ""
    assert "pdlt: internal error: this is a bug in pdlt" in err and "Traceback" in err and "ValueError" in err


def test_user_errors_share_one_base():
    from pdlt.codegen.generate import GenerateError
    from pdlt.codegen.printer import UnsupportedExpression
    from pdlt.derive.activations import ActivationError
    from pdlt.derive.errors import PdltError, UserError
    from pdlt.derive.parse import ActivationParseError

    for kind in (ActivationError, ActivationParseError, GenerateError, UnsupportedExpression):
        assert issubclass(kind, UserError) and issubclass(kind, PdltError) and issubclass(kind, ValueError)
    flow_error = generated_flow_error()
    from pdlt.codegen.cli import is_user_error

    assert is_user_error(flow_error) and not is_user_error(ValueError("from numpy"))


def generated_flow_error():
    from pdlt.generated import tanh

    try:
        tanh.flow(3, width=0)
    except tanh.FlowError as exc:
        return exc
    raise AssertionError("tanh.flow accepted width 0")


def test_a_huge_width_is_the_infinite_width_answer(capsys):
    """--width 10^30 overflowed an int64; it is a fine input: the summed values are the
    infinite-width kernel and a variance of order 1/n."""
    code, out, err = run(capsys, "flow", "tanh", "--depth", "3", "--width", str(10**30), "--json")
    assert code == 0, err
    last = json.loads(out)["layers"][-1]
    assert last["values"]["1"] == pytest.approx(last["cumulants"]["1"][0], rel=1e-15)
    assert 0 < last["values"]["2"] <= 1e-29


def test_version_and_latex_default_order(capsys):
    from importlib import metadata

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"pdlt {metadata.version('pdlt')}"
    code, out, _ = run(capsys, "latex", "tanh")  # the guide's default: order 2, as shipped
    assert code == 0 and out == run(capsys, "latex", "tanh", "--order", "2")[1]


@pytest.mark.parametrize("act,C_b,C_W", [("relu", 0.0, 2.0), ("tanh", 0.0, 1.0), ("gelu", 0.17292239, 1.98305826)])
def test_flow_at_the_critical_point(capsys, act, C_b, C_W):
    """--critical uses the book's critical points (relu 5.67, tanh 5.90, gelu table 5.1), said on stderr."""
    code, out, err = run(capsys, "flow", act, "--critical", "--depth", "3", "--width", "32", "--json")
    data = json.loads(out)
    assert code == 0 and "critical point of " + act in err
    assert data["C_b"] == pytest.approx(C_b, abs=5e-9) and data["C_W"] == pytest.approx(C_W, abs=5e-9)


def test_a_failed_command_leaves_nothing_in_the_user_cache(capsys, tmp_path, monkeypatch):
    """exp(z^2) is generated on first use, then its flow diverges: the command fails with exit 2 and
    removes the module it just generated (and numba's cache files for it); a success keeps them."""
    monkeypatch.setenv("PDLT_CACHE_DIR", str(tmp_path))
    code, _, err = run(capsys, "flow", "exp(z**2)", "--depth", "3", "--width", "8")
    assert code == 2 and "is not integrable" in err
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    code, _, _ = run(capsys, "flow", "z*erf(z)", "--depth", "3", "--width", "8")
    assert code == 0 and any(tmp_path.rglob("pdlt_kernels_*.py"))


def test_a_width_in_float_notation_is_that_integer(capsys):
    """--width 1e30 was refused as "invalid int value" (issue 9): it is the width 10^30, the same flow."""
    code, out, err = run(capsys, "flow", "tanh", "--depth", "3", "--width", "1e30", "--json")
    assert code == 0, err
    assert out == run(capsys, "flow", "tanh", "--depth", "3", "--width", str(10**30), "--json")[1]


def test_the_parser_imports_nothing_heavy():
    """pdlt --help and usage errors build the parser only: neither sympy nor numba may be imported for it (they
    took a second; issue 9). Commands import what they need when they run."""
    import subprocess
    import sys

    code = "import sys, pdlt.codegen.cli as c; c.build_parser(); print(sorted({'sympy', 'numba'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
    # nor for the listing of activations
    code = (
        "import sys, contextlib, io, pdlt.codegen.cli as c\n"
        "with contextlib.redirect_stdout(io.StringIO()): c.main(['activations'])\n"
        "print(sorted({'sympy', 'numba'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
