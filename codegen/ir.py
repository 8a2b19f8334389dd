"""The module IR: what a generated kernel module holds, as plain data (STYLE habit 2).

``lower`` turns sectors into a :class:`ModuleIR`: constants (names and plain values) and numba
functions (name, runtime signature, arguments, a docstring and a body of statements). A body is a
tuple of statements, each ``Assign`` (straight-line code, already printed by the one strict printer),
``Loop`` or ``Branch`` (a loop over an index or a condition around statements), and ``emit`` turns
a body into lines. Templates see ``ModuleIR.context()`` only: strings, numbers, tuples, dicts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

WIDTH = 96  # longest generated line the layout aims for (one expression is never split mid-token)


@dataclass(frozen=True)
class Assign:
    target: str
    expr: str


@dataclass(frozen=True)
class Loop:
    var: str
    count: str  # Python expression for range(...)
    body: tuple


@dataclass(frozen=True)
class Branch:
    condition: str
    body: tuple


@dataclass(frozen=True)
class Return:
    expr: str


@dataclass(frozen=True)
class Function:
    name: str
    signature: str | None  # the runtime signature (pdlt.runtime.numerics.<name>) it is compiled for
    args: tuple[str, ...]
    doc: str
    body: tuple

    def lines(self) -> tuple[str, ...]:
        return tuple(emit(self.body)) or ("pass",)


@dataclass(frozen=True)
class Constant:
    name: str
    value: object  # plain data
    comment: str = ""
    dtype: str = ""  # numpy dtype when the module holds it as an array (the runtime's descriptions)


@dataclass(frozen=True)
class ModuleIR:
    name: str
    formula: str
    order: int
    command: str
    constants: tuple[Constant, ...]  # public ones (NAME, ORDER, ...) first, then the runtime's
    functions: tuple[Function, ...]

    def hash(self) -> str:
        """Content hash of the module (not of tool versions), printed in the header."""
        text = json.dumps(asdict(self), sort_keys=True, default=repr)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def constant(self, name: str) -> object:
        return next(c.value for c in self.constants if c.name == name)

    def context(self) -> dict:
        functions = tuple(
            {"name": f.name, "signature": f.signature, "args": ", ".join(f.args), "doc": f.doc, "lines": f.lines()}
            for f in self.functions
        )
        return {
            "name": self.name,
            "formula": self.formula,
            "order": self.order,
            "command": self.command,
            "spec_hash": self.hash(),
            "constants": tuple((c.name, c.value, c.comment, c.dtype) for c in self.constants),
            "functions": functions,
            "uses_math": any("math." in line for f in functions for line in f["lines"]),
        }


def emit(body: tuple, indent: str = "") -> list[str]:
    """Python lines for a body of statements, long assignments wrapped (see :func:`wrap`)."""
    lines: list[str] = []
    for stmt in body:
        if isinstance(stmt, Assign):
            lines.extend(indent + line for line in wrap(f"{stmt.target} = ", stmt.expr))
        elif isinstance(stmt, Return):
            lines.extend(indent + line for line in wrap("return ", stmt.expr))
        elif isinstance(stmt, Loop):
            lines.append(f"{indent}for {stmt.var} in range({stmt.count}):")
            lines.extend(emit(stmt.body, indent + "    ") or [indent + "    pass"])
        elif isinstance(stmt, Branch):
            lines.append(f"{indent}if {stmt.condition}:")
            lines.extend(emit(stmt.body, indent + "    ") or [indent + "    pass"])
        else:  # pragma: no cover - lower builds only the statements above
            raise TypeError(f"not a statement: {stmt!r}")
    return lines


def wrap(head: str, expr: str, width: int = WIDTH) -> list[str]:
    """``head + expr``, over several lines inside parentheses when longer than ``width``: breaks go
    before a `` + `` or `` - `` and after a ``*`` (anywhere inside brackets Python allows them)."""
    if len(head) + len(expr) <= width:
        return [head + expr]
    pieces, start = [], 0
    for j, ch in enumerate(expr):
        if ch in "+-" and expr[j - 1 : j] == " " and expr[j + 1 : j + 2] == " ":
            pieces.append(expr[start : j - 1])
            start = j
        elif ch == "*" and expr[j + 1 : j + 2] not in ("*", "") and expr[j - 1 : j] != "*":
            pieces.append(expr[start : j + 1])
            start = j + 1
    pieces.append(expr[start:])
    lines, current = [head + "("], "    "
    for piece in pieces:
        glue = " " if piece.startswith(("+ ", "- ")) and current.strip() else ""
        if len(current) + len(glue) + len(piece) > width and current.strip():
            lines.append(current.rstrip())
            current, glue = "    ", ""
        current += glue + piece
    lines.append(current.rstrip())
    lines.append(")")
    return lines


def pyrepr(value: object) -> str:
    """A Python literal for plain data (tuples, lists, dicts, str, int, float, bool, None)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{pyrepr(k)}: {pyrepr(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(pyrepr(v) for v in value)
        if isinstance(value, tuple):
            return f"({inner},)" if len(value) == 1 else f"({inner})"
        return f"[{inner}]"
    if isinstance(value, (str, int, float, bool)) or value is None:
        return repr(value)
    raise TypeError(f"templates take plain data only, got {type(value).__name__}")


def _string(value: object, used: int, width: int, indent: int = 4) -> str:
    """A dict value at ``indent``; a long string as adjacent literals inside parentheses, split between words; a
    long dict with one item per line."""
    text = pyrepr(value)
    if used + len(text) <= width or not isinstance(value, (str, dict)) or not value:
        return text
    inner = " " * (indent + 4)
    if isinstance(value, dict):
        items = ((pyrepr(k), v) for k, v in value.items())
        body = "\n".join(f"{inner}{k}: {_string(v, indent + len(k) + 6, width, indent + 4)}," for k, v in items)
        return f"{{\n{body}\n{' ' * indent}}}"
    parts, current = [], ""
    for word in value.split(" "):
        if current and len(current) + len(word) + 8 + indent > width:
            parts.append(current)
            current = ""
        current += word + " "
    parts.append(current[:-1])
    return "(\n" + "\n".join(f"{inner}{pyrepr(p)}" for p in parts) + f"\n{' ' * indent})"


def literal(value: object, name_width: int, width: int = WIDTH) -> str:
    """A Python literal for plain data; a tuple or list too long for one line gets one item per
    line (numbers: as many per line as fit)."""
    from .render import pyrepr

    text = pyrepr(value)
    if name_width + len(text) <= width or not isinstance(value, (tuple, list, dict)) or not value:
        return text
    if isinstance(value, dict):
        body = "\n".join(f"    {pyrepr(k)}: {_string(v, len(pyrepr(k)) + 6, width)}," for k, v in value.items())
        return f"{{\n{body}\n}}"
    open_, close = ("(", ")") if isinstance(value, tuple) else ("[", "]")
    items = [pyrepr(v) for v in value]
    if all(isinstance(v, (int, float)) for v in value):
        rows, current = [], ""
        for item in items:
            if current and len(current) + len(item) + 6 > width:
                rows.append(current)
                current = ""
            current += item + ", "
        rows.append(current)
        body = "\n".join("    " + row.rstrip() for row in rows)
    else:
        body = "\n".join(f"    {item}," for item in items)
    return f"{open_}\n{body}\n{close}"
