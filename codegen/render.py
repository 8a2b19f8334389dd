"""Render templates: one cached Jinja environment, strict about undefined names (STYLE habit 4)."""

from __future__ import annotations

from functools import cache

import jinja2
import sympy as sp

from .ir import ModuleIR, literal, pyrepr
from .lower import _version


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pdlt.codegen", "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["pyrepr"] = pyrepr
    env.filters["literal"] = literal
    return env


def module_context(module: ModuleIR) -> dict:
    """Everything module.py.jinja uses: the IR's plain data and the tool versions for the header."""
    return {**module.context(), "pdlt_version": _version("pdlt"), "sympy_version": sp.__version__}


def render_module(module: ModuleIR) -> str:
    """The text of the generated module for ``module``."""
    return environment().get_template("module.py.jinja").render(**module_context(module))
