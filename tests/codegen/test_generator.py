"""Lowering, rendering and writing: plain data only, golden pieces, determinism, atomicity."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import mpmath
import numpy as np
import pytest
import sympy as sp

from pdlt.codegen.lower import lower
from pdlt.codegen.render import module_context, pyrepr, render_module
from pdlt.codegen.write import write_atomic
from pdlt.derive import activations
from pdlt.derive.evaluate import reference_flow

PLAIN = (str, int, float, bool, type(None))


def _plain(value) -> bool:
    if isinstance(value, PLAIN):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


@pytest.mark.parametrize("name", ["linear", "tanh", "elu", "gelu", "leaky_relu"])
def test_templates_see_plain_data_only(name):
    context = module_context(lower(activations.get(name), 1))
    bad = [k for k, v in context.items() if not _plain(v)]
    assert not bad, bad


def test_pyrepr_refuses_sympy_objects():
    with pytest.raises(TypeError, match="plain data only"):
        pyrepr(sp.Symbol("x"))
    assert pyrepr((1, 0.5, "a", (2,))) == "(1, 0.5, 'a', (2,))"


def _lines(module, name: str) -> tuple[str, ...]:
    return next(f.lines() for f in module.functions if f.name == name)


def test_golden_pieces_for_the_linear_network_at_order_zero_and_one():
    """Checked by hand: K' = C_b + C_W <z^2>_K, and <z^2>_K = K, d/dK = 1 (Isserlis)."""
    ir0 = lower(activations.get("linear"), 0)
    assert _lines(ir0, "_step") == ("out[1, 0] = cw[0]*s[1, 0] + cb[0]",)
    assert _lines(ir0, "_cumulants") == ("s[1, 0] = mu[1, 0]",)
    # row 2 = order + 2 holds <sigma'^2>_K and its K-derivative: 1 and 0 for sigma(z) = z; the
    # delta expansion needs d/dK <sigma^2>_K = 1 even at order 0 (chi_parallel)
    # (and g'' = 0, which the shift of K_[0] reads)
    assert _lines(ir0, "_exact")[:5] == ("mu[1, 0] = K", "mu[1, 1] = 1", "mu[1, 2] = 0", "if perp:", "    mu[2, 0] = 1")
    assert _lines(ir0, "sigma") == ("return z",)
    # the derived susceptibilities and delta step (book 5.46-5.52), printed
    assert _lines(ir0, "_susceptibilities") == (
        "chi[0] = C_W*mu[1, 1]",
        "chi[1] = C_W*mu[2, 0]",
        "chi[2] = (1/2)*C_W*mu[2, 1]",
    )
    # ddK0' = chi_par ddK0 + (chi_par - chi_perp) ddK2 + (C_W g''/2 - h) dK1^2, with y0 = chi_perp ddK2, y2 = h dK1^2
    assert _lines(ir0, "_delta_step") == (
        "y0 = chi[1]*state[2]",
        "y1 = state[1]**2",
        "y2 = chi[2]*y1",
        "out[0] = C_W*mu[1, 0] + C_b",
        "out[1] = chi[0]*state[1]",
        "out[2] = y0 + y2",
        "out[3] = (1/2)*C_W*mu[1, 2]*y1 + chi[0]*state[3] + chi[0]*state[2] - y0 - y2",
    )
    ir1 = lower(activations.get("linear"), 1)
    assert "mu[1, 1] = 1" in _lines(ir1, "_exact") and "mu[2, 0] = 3*K**2" in _lines(ir1, "_exact")
    assert ir1.constant("QUADRATURE") == {"kind": "none"}


def test_order_zero_modules_compute_chi_parallel():
    """Before the sectors, an order-0 module never computed d/dK <sigma^2>_K, so its chi_parallel
    was 0; the delta sector asks for it. Linear network: chi_parallel = C_W exactly."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "lin0.py")
        write_atomic(path, render_module(lower(activations.get("linear"), 0)))
        spec = importlib.util.spec_from_file_location("lin0", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        out = np.zeros(3)
        mod.susceptibilities(0.7, 1.5, np.zeros(1), out)
    assert out.tolist() == [1.5, 1.5, 0.0]


def test_the_template_uses_exactly_what_the_context_provides():
    """Key contract: every name module.py.jinja reads is provided, and nothing provided goes unused."""
    from jinja2 import meta

    from pdlt.codegen.render import environment

    env = environment()
    source = env.loader.get_source(env, "module.py.jinja")[0]
    used = meta.find_undeclared_variables(env.parse(source))
    provided = set(module_context(lower(activations.get("relu"), 1)))
    assert used == provided, (used - provided, provided - used)


@pytest.mark.parametrize("name", ["gelu", "hard_tanh", "sigmoid"])
def test_wrapped_lines_parse_to_the_same_code(name):
    """Long assignments are split inside parentheses: the wrapped code is the same program."""
    import ast

    from pdlt.codegen.ir import Assign, emit, wrap

    module = lower(activations.get(name), 2)
    count = 0
    for f in module.functions:
        for stmt in f.body:
            if isinstance(stmt, Assign) and len(stmt.target) + len(stmt.expr) > 96:
                count += 1
                one = ast.dump(ast.parse(f"{stmt.target} = {stmt.expr}"))
                assert ast.dump(ast.parse("\n".join(wrap(f"{stmt.target} = ", stmt.expr)))) == one
                assert all(len(line) <= 110 for line in emit((stmt,), "    "))
    assert count > 0  # the check saw long lines


def test_rendering_is_byte_identical_run_to_run_and_across_hash_seeds(tmp_path):
    code = (
        "from pdlt.codegen.lower import lower; from pdlt.codegen.render import render_module; "
        "from pdlt.derive import activations; import sys; "
        "sys.stdout.write(render_module(lower(activations.get('hard_tanh'), 1)))"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env=dict(os.environ, PYTHONHASHSEED=seed),
        ).stdout
        for seed in ("0", "1", "4242")
    }
    assert len(outs) == 1
    assert render_module(lower(activations.get("hard_tanh"), 1)) in outs


def test_header_says_who_made_it_and_not_to_edit():
    text = render_module(lower(activations.get("relu"), 1, command="pdlt generate relu --name r --order 1"))
    head = text.split('"""')[1]
    assert "Generated by `pdlt generate relu --name r --order 1`" in head
    assert "DO NOT EDIT" in head and "Spec hash" in head
    assert "/work" not in text and "/home" not in text  # no paths


def test_generated_module_imports_numpy_numba_and_the_runtime_only(tmp_path):
    text = render_module(lower(activations.get("swish"), 1))
    imports = {line for line in text.splitlines() if line.startswith(("import ", "from "))}
    assert {line.split()[1].split(".")[0] for line in imports} == {"math", "numpy", "numba", "pdlt"}
    assert {line.split()[1] for line in imports if "pdlt" in line} == {"pdlt.runtime", "pdlt.runtime.api",
                                                                        "pdlt.runtime.errors"}  # fmt: skip


def test_a_module_refuses_a_runtime_with_another_calling_convention(tmp_path):
    from pdlt.runtime import RUNTIME_ABI

    text = render_module(lower(activations.get("relu"), 0))
    text = text.replace(f"RUNTIME_ABI = {RUNTIME_ABI}", "RUNTIME_ABI = 99")
    path = tmp_path / "old_relu.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("old_relu", path)
    with pytest.raises(ImportError, match=f"needs pdlt.runtime ABI 99, found {RUNTIME_ABI}: regenerate it"):
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "m.py"
    target.write_text("old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        write_atomic(target, "new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.py"]  # no temporary left behind


def test_atomic_write_reports_unchanged(tmp_path):
    target = tmp_path / "m.py"
    assert write_atomic(target, "x") is True
    assert write_atomic(target, "x") is False


@pytest.fixture(scope="module")
def sigmoid_order_three(tmp_path_factory):
    """Order-3 kernels for a quadrature activation, generated into a fresh folder and imported."""
    path = tmp_path_factory.mktemp("order3") / "sig3.py"
    write_atomic(path, render_module(lower(activations.get("sigmoid"), 3)))
    spec = importlib.util.spec_from_file_location("sig3", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_order_three_module_compiles_and_runs(sigmoid_order_three):
    """Order 3 kernels for a quadrature activation: generated, imported, iterated."""
    mod = sigmoid_order_three
    flow = mod.flow(4, width=16, C_b=0.0, C_W=1.0, input_norm2=1.0)
    assert flow.coefficients.shape == (4, 5, 4)
    assert np.all(np.isfinite(flow.coefficients))
    assert mod.ORDER == 3 and flow.errors.max() < 1e-10


def test_order_three_flow_against_reference_with_unequal_widths(sigmoid_order_three):
    """Every c[m][k] of the order-3 flow (k = 0..3, m = 1..4) at depth 3, widths 7, 12 (the width ratio
    enters, and every coefficient is non-zero at layer 3), against the 25-digit mpmath evaluation of
    the symbolic recursion (pdlt.derive.evaluate.reference_flow: independent of code generation and
    of the generated quadrature).

    Tolerance: the module's own error estimate (flow.errors, the largest relative error of any
    expectation used, ~2e-15 here) times 1e4, a bound on how much the order-3 recursion amplifies
    relative errors of its inputs over two steps (each c[m][k] is a polynomial of degree <= 4 in
    the expectations, with cancellations; the measured amplification is about 30), with the
    estimate floored at 8 eps (roundoff). The reference's own error, ~1e-25, does not count."""
    mod = sigmoid_order_three
    widths = [7, 12]
    flow = mod.flow(3, widths=widths, C_b=0.1, C_W=1.3, input_norm2=0.8)
    ref = reference_flow(
        activations.get("sigmoid"), 3, 3, widths, mpmath.mpf("0.1"), mpmath.mpf("1.3"), mpmath.mpf("0.8"), dps=25
    )
    rel = 1e4 * max(float(flow.errors.max()), 8 * np.finfo(float).eps)
    assert rel < 1e-10  # the estimate itself is what the module promises (tolerance=1e-10)
    keys = set()
    for l, layer in enumerate(ref):
        for (m, k), value in layer.items():
            keys.add((m, k))
            got = flow.coefficients[l, m, k]
            assert abs(got - float(value)) <= rel * abs(float(value)) + 1e-300, (l + 1, m, k, got, float(value))
    assert {(1, 3), (2, 3), (3, 3), (4, 3)} <= keys and len(keys) == 10
    assert all(abs(float(ref[-1][key])) > 1e-8 for key in keys)  # nothing vanishes at layer 3: a real check
