"""Fuzzing the command line and the parser (issue 9): random command lines with numbers at the edges
and random formulas. Whatever the input: exit status 0 or 2, never a traceback or an internal error,
a refusal is one line on stderr, and a refused command leaves no file behind.

Command lines use shipped activations at the shipped order, so no case waits for a compilation; the
formulas go through the parser and the real-line check (what ``pdlt generate`` and ``flow`` do first).
``docs/testing.md`` reports how many inputs a run tries.
"""

from __future__ import annotations

import pytest
import sympy as sp
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pdlt.codegen.cli import main
from pdlt.derive.activations import check_real_line
from pdlt.derive.errors import UserError
from pdlt.derive.parse import parse_activation

EDGES = ["0", "-0", "-1", "1e-300", "1e-12", "1e30", "1e300", "nan", "inf", "-inf", "abc", "", "1,2", "2/3"]
SENSIBLE = {  # values a user would type, so that about half the command lines succeed
    "--depth": st.integers(1, 30).map(str),
    "--width": st.integers(1, 200).map(str),
    "--widths": st.lists(st.integers(1, 50), min_size=1, max_size=4).map(lambda v: ",".join(map(str, v))),
    "--C-b": st.floats(0, 2).map(repr),
    "--C-W": st.floats(0.1, 3).map(repr),
    "--input-norm2": st.floats(0.01, 10).map(repr),
    "--tolerance": st.sampled_from(["1e-10", "1e-6", "0.1"]),
    "--C-b-n": st.floats(-1, 1).map(repr),
    "--C-W-n": st.floats(-1, 1).map(repr),
}
ACTIVATIONS = st.sampled_from(["tanh", "relu", "sin", "gelu", "erf", "hard_tanh", "leaky_relu", "nope", "z)"])


ASPECT = {"--depth", "--width", "--C-b", "--C-W"}  # what aspect-ratio takes besides --outputs
NONNEGATIVE = st.sampled_from(["0", "1", "12345", "-1"])


@st.composite
def command_lines(draw):
    command = draw(st.sampled_from(["flow", "flow", "aspect-ratio", "check"]))
    argv = [command, draw(ACTIVATIONS)]
    if command in ("flow", "check"):
        argv += ["--order", draw(st.sampled_from(["2", "2", "2", "-1", "abc"]))]
    if command == "check":  # a few hundred networks: the statistics do not matter here, the handling does
        argv += ["--samples", draw(st.sampled_from(["200", "100", "99", "-5", "x"])), "--seed", draw(NONNEGATIVE)]
    allowed = sorted(SENSIBLE) if command != "aspect-ratio" else sorted(ASPECT)
    names = draw(st.lists(st.sampled_from(allowed), max_size=5, unique=True))
    for name in ["--depth", *[n for n in names if n != "--depth"]]:
        edge = draw(st.integers(0, 9)) == 0  # one value in ten at the edges
        argv += [name, draw(st.one_of(st.sampled_from(EDGES), st.floats().map(repr))) if edge else draw(SENSIBLE[name])]
    if "--width" not in names and "--widths" not in names:
        argv += ["--width", "16"]
    if command == "aspect-ratio" and draw(st.booleans()):
        argv += ["--outputs", draw(st.sampled_from(["1", "10", "0", "-3", "x"]))]
    if draw(st.booleans()):
        argv.append("--json")
    return argv


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=command_lines())
def test_random_command_lines_exit_0_or_2_with_one_line(argv, tmp_path_factory, capsys, monkeypatch):
    folder = tmp_path_factory.mktemp("fuzz")
    monkeypatch.setenv("PDLT_CACHE_DIR", str(folder / "cache"))
    monkeypatch.chdir(folder)
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse: --help or a usage error
        code = stop.code
    _, err = capsys.readouterr()
    event(f"exit {code}" + (f": {err.split(':')[2].strip()[:40]}" if code == 2 and err.count(":") >= 2 else ""))
    assert code in (0, 2), (argv, err)
    assert "Traceback" not in err and "internal error" not in err, (argv, err)
    if code == 2:
        errors = [line for line in err.splitlines() if line.startswith("pdlt: error:")]
        assert len(errors) == 1, (argv, err)
        assert not [p for p in folder.rglob("*") if p.is_file()], argv  # nothing written


FORMULA_ATOMS = st.sampled_from(["z", "1", "2", "0", "pi", "e", "0.5", "1e300", "-3"])
FUNCTIONS = st.sampled_from(["exp", "log", "sqrt", "sin", "tanh", "erf", "abs", "relu", "sigmoid", "foo", "__import__"])


@st.composite
def formulas(draw, depth=3):
    if depth == 0 or draw(st.booleans()):
        return draw(FORMULA_ATOMS)
    kind = draw(st.sampled_from(["call", "binary", "attr"]))
    if kind == "call":
        return f"{draw(FUNCTIONS)}({draw(formulas(depth=depth - 1))})"
    if kind == "attr":
        return f"{draw(formulas(depth=depth - 1))}.__class__"
    op = draw(st.sampled_from(["+", "-", "*", "/", "**", "//", "%", "@", ","]))
    return f"({draw(formulas(depth=depth - 1))}){op}({draw(formulas(depth=depth - 1))})"


@settings(max_examples=500, deadline=None)
@given(formulas())
def test_random_formulas_parse_or_are_refused_with_a_user_error(text):
    try:
        expr = parse_activation(text)
    except UserError:
        return
    assert isinstance(expr, sp.Expr)
    try:
        check_real_line(expr, text)
    except UserError:
        pass


@pytest.mark.parametrize("argv", [["flow", "tanh", "--depth", "x"], ["nope"], []])
def test_usage_errors_are_one_line_too(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("pdlt: error:")


INPUT_ARRAYS = st.sampled_from(
    [
        [[1.0, 0.5], [0.2, -1.0], [1.0, 0.5000001]],
        [[1.0, 0.0], [-1.0, 0.0]],
        [[3.0, 4.0]],
        [[0.0, 0.0], [1.0, 1.0]],
        [[1e300, 1.0], [1.0, 1.0]],
        [[1e-300, 1e-300], [1e-300, 2e-300]],
        [[float("nan"), 1.0]],
        [[float("inf"), 1.0]],
        [1.0, 2.0],
        [[]],
        [[1.0, 2.0], [3.0, 40.0]],
    ]
)
KERNEL_OPTIONS = {
    "--C-b": st.sampled_from(["0", "0.1", "0.1,0.2", "-1", "nan", "x", "0,0,0,0,0,0,0"]),
    "--C-W": st.sampled_from(["1", "2", "1.5,1", "0", "-2", "inf", "1e300"]),
    "--lambda-b": st.sampled_from(["0", "1", "-1", "1,2,3"]),
    "--lambda-W": st.sampled_from(["1", "0.5", "nan"]),
    "--layers": st.sampled_from(["1", "2,3", "0", "99", "x", "1,1"]),
    "--tensors": st.sampled_from(["K", "K,Theta", "Theta", "G", "V", "Q", ""]),
    "--tolerance": st.sampled_from(["1e-10", "1e-3", "0", "2", "nan"]),
    "--parametrization": st.sampled_from(["ntk", "standard", "mup"]),
    "--widths": st.sampled_from(["4", "4,4", "0", "x"]),
    "--chunk-size": st.sampled_from(["1", "2", "0", "-1"]),
}


@st.composite
def kernel_command_lines(draw):
    argv = ["kernel", draw(ACTIVATIONS), "--inputs", "x.npy", "--depth", draw(st.sampled_from(["1", "2", "3", "0"]))]
    for name in draw(st.lists(st.sampled_from(sorted(KERNEL_OPTIONS)), max_size=4, unique=True)):
        argv += [name, draw(KERNEL_OPTIONS[name])]
    argv += ["--out", draw(st.sampled_from(["k.npz", "k.npz", "k.zarr", "k.txt", "missing/k.npz"]))]
    if draw(st.booleans()):
        argv.append("--json")
    return argv, draw(INPUT_ARRAYS)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=kernel_command_lines())
def test_random_kernel_command_lines_exit_0_or_2_with_one_line(case, tmp_path_factory, capsys, monkeypatch):
    import numpy as np

    argv, inputs = case
    folder = tmp_path_factory.mktemp("fuzz")
    monkeypatch.setenv("PDLT_CACHE_DIR", str(folder / "cache"))
    monkeypatch.chdir(folder)
    np.save(folder / "x.npy", np.array(inputs, dtype=float))
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    _, err = capsys.readouterr()
    event(f"exit {code}" + (f": {err.split(':')[2].strip()[:40]}" if code == 2 and err.count(":") >= 2 else ""))
    assert code in (0, 2), (argv, inputs, err)
    assert "Traceback" not in err and "internal error" not in err, (argv, inputs, err)
    if code == 2:
        errors = [line for line in err.splitlines() if line.startswith("pdlt: error:")]
        assert len(errors) == 1, (argv, inputs, err)
        left = [p for p in folder.rglob("*") if p.is_file() and p.name != "x.npy"]
        assert not left, (argv, left)
