"""Stage 2 entry points: render kernel modules and write them, or check them for drift."""

from __future__ import annotations

import difflib
import keyword
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sympy as sp

from pdlt.derive.activations import ALIASES, REGISTRY, Activation
from pdlt.derive.errors import UserError

from .arguments import SHIPPED_ORDER  # noqa: F401 (re-exported)
from .ir import ModuleIR
from .lower import lower, lower_ntk, lower_pair_metric
from .render import environment, module_context, render_module
from .write import write_atomic

GENERATED_DIR = Path(__file__).resolve().parent.parent / "generated"
REGENERATE = "python -m pdlt.codegen"


class GenerateError(UserError):
    """Bad arguments to the generator (name, order, output folder)."""


def check_name(name: str) -> str:
    if not name.isidentifier() or keyword.iskeyword(name) or name.startswith("_"):
        raise GenerateError(f"--name must be a Python identifier not starting with '_', got {name!r}")
    return name


def check_order(order: int) -> int:
    if not isinstance(order, int) or order < 0:
        raise GenerateError(f"order must be an integer >= 0, got {order!r}")
    if order > 6:
        raise GenerateError(f"order {order} is beyond what pdlt supports (at most 6)")
    return order


def module_text(act: Activation, order: int, command: str) -> str:
    return render_module(lower(act, check_order(order), command))


def pair_metric_text(command: str) -> str:
    """The shared pair-sector module (activation-independent)."""
    ir = lower_pair_metric(command)
    return environment().get_template("pair_metric.py.jinja").render(**module_context(ir))


def ntk_text(command: str) -> str:
    """The shared ntk-sector module (activation-independent)."""
    ir = lower_ntk(command)
    return environment().get_template("ntk.py.jinja").render(**module_context(ir))


def catalogue_entry(act: Activation, ir: ModuleIR) -> dict:
    """What ``pdlt activations`` lists for a shipped activation (so that listing needs no sympy)."""
    return {
        "formula": sp.sstr(act.expr),
        "description": act.description,
        "params": {s.name: float(v) for s, v in act.params},
        "breakpoints": [float(b) for b in act.breakpoints],
        "exact_powers": sorted({2 * a for a, _, path, _ in ir.constant("EXPECTATIONS") if path == "exact"}),
    }


def index_text(shipped: dict[str, int], catalogue: dict[str, dict] | None = None) -> str:
    return (
        environment()
        .get_template("index.py.jinja")
        .render(command=REGENERATE, shipped=shipped, catalogue=catalogue or {}, aliases=ALIASES)
    )


def shipped_files(order: int = SHIPPED_ORDER, progress: Callable[[str], None] | None = None) -> dict[str, str]:
    """File name -> text of everything in generated/, rendered in memory."""
    files, catalogue = {}, {}
    for name, act in sorted(REGISTRY.items()):
        if progress:
            progress(f"rendering generated/{name}.py")
        ir = lower(act, check_order(order), REGENERATE)
        files[f"{name}.py"] = render_module(ir)
        catalogue[name] = catalogue_entry(act, ir)
    if progress:
        progress("rendering generated/pair_metric.py")
    files["pair_metric.py"] = pair_metric_text(REGENERATE)
    if progress:
        progress("rendering generated/ntk.py")
    files["ntk.py"] = ntk_text(REGENERATE)
    files["__init__.py"] = index_text({name: order for name in sorted(REGISTRY)}, catalogue)
    return files


@dataclass
class Drift:
    path: Path
    diff: str


def check(directory: Path = GENERATED_DIR, progress: Callable[[str], None] | None = None) -> list[Drift]:
    """Render in memory and compare with ``directory``: one Drift per stale, missing or extra file."""
    drifts: list[Drift] = []
    expected = shipped_files(progress=progress)
    for name, text in expected.items():
        path = directory / name
        old = path.read_text() if path.exists() else ""
        if old != text:
            diff = "".join(
                difflib.unified_diff(
                    old.splitlines(True), text.splitlines(True), f"a/generated/{name}", f"b/generated/{name}", n=2
                )
            )
            drifts.append(Drift(path, diff))
    for path in sorted(directory.glob("*.py")):
        if path.name not in expected:
            drifts.append(Drift(path, f"extra file generated/{path.name} is not produced by the generator\n"))
    return drifts


def regenerate(directory: Path = GENERATED_DIR, progress: Callable[[str], None] | None = None) -> list[Path]:
    """Write every shipped module (atomically); returns the paths that changed."""
    changed = []
    files = shipped_files(progress=progress)
    for name, text in files.items():
        if write_atomic(directory / name, text):
            changed.append(directory / name)
    for path in sorted(directory.glob("*.py")):
        if path.name not in files:
            path.unlink()
            changed.append(path)
    return changed
