"""Render templates: one cached Jinja environment, strict about undefined names (STYLE habit 4)."""

from __future__ import annotations

from functools import cache

import jinja2

from .lower import KernelSpec


def pyrepr(value: object) -> str:
    """A Python literal for plain data (tuples, lists, dicts, str, int, float, bool, None)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{pyrepr(k)}: {pyrepr(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(pyrepr(v) for v in value)
        return (
            f"({inner},)"
            if isinstance(value, tuple) and len(value) == 1
            else (f"({inner})" if isinstance(value, tuple) else f"[{inner}]")
        )
    if isinstance(value, (str, int, float, bool)) or value is None:
        return repr(value)
    raise TypeError(f"templates take plain data only, got {type(value).__name__}")


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
    return env


def render_module(spec: KernelSpec) -> str:
    """The text of the generated module for ``spec``."""
    return environment().get_template("module.py.jinja").render(**spec.context())
