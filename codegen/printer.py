"""A strict sympy printer for numba-compiled Python (STYLE habit 3).

Target facts live in tables: which sympy functions map to which ``math`` functions numba compiles,
and how symbols map to array elements. Anything outside the tables raises
:class:`UnsupportedExpression` instead of printing a comment or a slow fallback.
"""

from __future__ import annotations

import math

import sympy as sp
from sympy.printing.pycode import PythonCodePrinter

from pdlt.derive.errors import UserError

# sympy function name -> numba-compiled call (all in numba's supported subset of math)
NUMBA_FUNCTIONS: dict[str, str] = {
    "exp": "math.exp",
    "log": "math.log",
    "sqrt": "math.sqrt",
    "sin": "math.sin",
    "cos": "math.cos",
    "tan": "math.tan",
    "sinh": "math.sinh",
    "cosh": "math.cosh",
    "tanh": "math.tanh",
    "asin": "math.asin",
    "acos": "math.acos",
    "atan": "math.atan",
    "asinh": "math.asinh",
    "acosh": "math.acosh",
    "atanh": "math.atanh",
    "erf": "math.erf",
    "erfc": "math.erfc",
    "expm1": "math.expm1",
    "log1p": "math.log1p",
}


class UnsupportedExpression(UserError, TypeError):
    """The expression contains something the numba target cannot compute."""


class NumbaPrinter(PythonCodePrinter):
    """Print sympy expressions as numba-compilable Python; symbols through ``symbol_map``."""

    printmethod = "_numbacode"
    _kf = dict(NUMBA_FUNCTIONS)

    def __init__(self, symbol_map: dict[sp.Symbol, str] | None = None) -> None:
        super().__init__({"strict": True, "fully_qualified_modules": True, "standard": "python3"})
        self.symbol_map = dict(symbol_map or {})
        self.known_functions = dict(NUMBA_FUNCTIONS)

    def _print_Symbol(self, expr: sp.Symbol) -> str:
        if expr in self.symbol_map:
            return self.symbol_map[expr]
        raise UnsupportedExpression(f"symbol {expr} has no binding in the generated code")

    def _print_Function(self, expr: sp.Function) -> str:
        name = type(expr).__name__
        if name not in self.known_functions:
            raise UnsupportedExpression(f"function {name} is not supported by the numba printer")
        return f"{self.known_functions[name]}({', '.join(self._print(a) for a in expr.args)})"

    def _print_Float(self, expr: sp.Float) -> str:
        return repr(float(expr))

    def _print_Pow(self, expr: sp.Pow, rational: bool = False) -> str:
        base, exp = expr.as_base_exp()
        if exp == sp.Rational(1, 2):
            return f"math.sqrt({self._print(base)})"
        if exp == -sp.Rational(1, 2):
            return f"(1.0/math.sqrt({self._print(base)}))"
        if exp.is_Integer and exp < 0:
            return f"(1.0/({self._print(sp.Pow(base, -exp))}))"
        return super()._print_Pow(expr, rational=rational)

    def _print_log(self, expr: sp.log) -> str:
        """log, with the two forms that overflow written so that they do not: log(1 + e^u) (softplus)
        as max(u, 0) + log1p(e^-|u|), and log(cosh u) as |u| + log1p(e^-2|u|) - log 2."""
        (arg,) = expr.args
        rest = arg - 1
        if arg.is_Add and isinstance(rest, sp.exp):
            u = self._print(rest.args[0])
            return f"(max({u}, 0.0) + math.log1p(math.exp(-abs({u}))))"
        if isinstance(arg, sp.cosh):
            u = self._print(arg.args[0])
            return f"(abs({u}) + math.log1p(math.exp(-2.0*abs({u}))) - {math.log(2.0)!r})"
        return f"math.log({self._print(arg)})"

    def _print_Exp1(self, expr) -> str:
        return "math.e"

    def _print_Pi(self, expr) -> str:
        return "math.pi"

    def _print_Abs(self, expr: sp.Abs) -> str:
        return f"abs({self._print(expr.args[0])})"

    def _print_Heaviside(self, expr) -> str:
        raise UnsupportedExpression("Heaviside must be split into pieces before printing")

    def _print_Piecewise(self, expr) -> str:
        raise UnsupportedExpression("Piecewise must be split into pieces before printing")

    def _print_Infinity(self, expr) -> str:
        raise UnsupportedExpression("infinity in generated code")

    _print_NegativeInfinity = _print_Infinity
    _print_ComplexInfinity = _print_Infinity

    def _print_NaN(self, expr) -> str:
        raise UnsupportedExpression("nan in generated code")

    def _print_ImaginaryUnit(self, expr) -> str:
        raise UnsupportedExpression("complex numbers in generated code")


def _refuse(self, expr) -> str:
    raise UnsupportedExpression(f"function {type(expr).__name__} is not supported by the numba printer")


# sympy's Python printer defines _print_<name> for its own table (gamma, loggamma, ...): every
# function outside ours must refuse rather than print something numba cannot compile.
for _name in PythonCodePrinter._kf:
    if _name not in NUMBA_FUNCTIONS and _name not in ("Abs", "Max", "Min", "Sqrt"):
        setattr(NumbaPrinter, f"_print_{_name}", _refuse)


def print_pairs(
    outputs: list[tuple[str, sp.Expr]],
    symbol_map: dict[sp.Symbol, str],
    temp_prefix: str = "t",
) -> list[tuple[str, str]]:
    """Straight-line code as (target, printed expression) pairs for many outputs, common
    subexpressions shared through temporaries ``<temp_prefix>0, <temp_prefix>1, ...``.

    Returns plain strings (the symbolic boundary is crossed here, STYLE habit 2).
    """
    exprs = [e for _, e in outputs]
    temps = sp.numbered_symbols(temp_prefix)
    replacements, reduced = sp.cse(exprs, symbols=temps, order="canonical")
    printer = NumbaPrinter(dict(symbol_map))
    pairs: list[tuple[str, str]] = []
    for sym, expr in replacements:
        pairs.append((sym.name, printer.doprint(expr)))
        printer.symbol_map[sym] = sym.name
    for (target, _), expr in zip(outputs, reduced):
        pairs.append((target, printer.doprint(expr)))
    return pairs
