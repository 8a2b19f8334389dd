"""Safe parsing of a user's activation formula (a string in ``z``) into a sympy expression.

User text never reaches ``eval``, ``exec``, ``sympify``, ``parse_expr`` or ``S()``: Python's
``ast`` parses it (``compile`` to a tree only, nothing runs), a whitelist walk accepts the
variable ``z``, the constants ``pi`` and ``e``, int and float literals, ``+ - * / **``, unary
``+ -`` and the calls in :data:`FUNCTIONS`, and sympy constructors build the result. Anything
else raises :class:`ActivationParseError` with one line naming the problem and the token.

Guards against input that would hang or blow up sympy (all documented limits):

- at most 2000 characters and 50 nested operators/calls; integer literals below 10**30,
  float literals with at most 30 significant digits, converted exactly (``0.1`` -> 1/10);
- a constant exponent of ``**`` is real with absolute value at most 64 (``2**z`` is fine);
- at most 12 calls of max, min and relu, since sympy compares nested arguments pairwise;
- a fractional power of a rational number needs ``bits(base) * denominator(exponent)
  <= 2048``, since sympy factors the base to simplify the root;
- every constant subexpression evaluates to a finite number of absolute value at most
  1e300 (it must fit a double), and exact rationals have at most 1100 bits;
- no intermediate or final ``nan``, ``zoo``, ``oo``; no division by zero; the result holds
  no imaginary unit, and a constant result (no ``z``) is finite and real.

``heaviside(x)`` is ``sympy.Heaviside(x, 1/2)``: the value at 0 is 1/2, the midpoint
convention that keeps ``heaviside(x) + heaviside(-x) == 1``.
"""

from __future__ import annotations

import ast
import math
import re
import warnings
from collections.abc import Callable
from fractions import Fraction
from typing import NamedTuple

import sympy as sp

from .errors import UserError
from .notation import z

MAX_LENGTH = 2000
MAX_DEPTH = 50
_CHAINS = {ast.Add: "sum", ast.Sub: "sum", ast.Mult: "product"}  # associative chains, one level each
MAX_INT_DIGITS = 30
MAX_FLOAT_DIGITS = 30
MAX_EXPONENT = 64
MAX_CONSTANT = 1e300
MAX_RATIONAL_BITS = 1100
MAX_ROOT_COST = 2048  # bits of a rational base times the denominator of its exponent
MAX_PIECEWISE = 12  # max/min/relu calls: sympy compares every pair of nested Max/Min arguments
_PIECEWISE = frozenset({"max", "min", "relu"})

_HALF = sp.Rational(1, 2)
_NON_FINITE = (sp.nan, sp.zoo, sp.oo, -sp.oo)


class ActivationParseError(UserError):
    """A formula was rejected; the message is one line naming the problem."""


class FunctionSpec(NamedTuple):
    """One callable of the formula language: arity, sympy builder, description."""

    arity: int
    build: Callable[..., sp.Expr]
    description: str


def _rational_bits(q: sp.Rational) -> int:
    """Size of an exact rational: bits of numerator plus bits of denominator."""
    return int(q.p).bit_length() + int(q.q).bit_length()


def _power(base: sp.Expr, exponent: sp.Expr) -> sp.Expr:
    """``base**exponent``, refusing roots of big rationals that sympy would factor slowly."""
    if (
        isinstance(base, sp.Rational)
        and isinstance(exponent, sp.Rational)
        and not isinstance(exponent, sp.Integer)
        and _rational_bits(base) * int(exponent.q) > MAX_ROOT_COST
    ):
        raise ActivationParseError(
            f"fractional power of a {len(str(abs(base.p)))}-digit number with exponent "
            f"{exponent} is too costly to simplify exactly (use a smaller base or exponent)"
        )
    if base == 0 and exponent.is_extended_negative:
        raise ActivationParseError("division by zero (0 raised to a negative power)")
    return sp.Pow(base, exponent)


def _sigmoid(x: sp.Expr) -> sp.Expr:
    return 1 / (1 + sp.exp(-x))


def _softplus(x: sp.Expr) -> sp.Expr:
    return sp.log(1 + sp.exp(x))


def _phi(x: sp.Expr) -> sp.Expr:
    return (1 + sp.erf(x / sp.sqrt(2))) / 2


FUNCTIONS: dict[str, FunctionSpec] = {
    "exp": FunctionSpec(1, sp.exp, "exponential e**x"),
    "log": FunctionSpec(1, sp.log, "natural logarithm"),
    "sqrt": FunctionSpec(1, lambda x: _power(x, _HALF), "square root"),
    "sin": FunctionSpec(1, sp.sin, "sine"),
    "cos": FunctionSpec(1, sp.cos, "cosine"),
    "tan": FunctionSpec(1, sp.tan, "tangent"),
    "sinh": FunctionSpec(1, sp.sinh, "hyperbolic sine"),
    "cosh": FunctionSpec(1, sp.cosh, "hyperbolic cosine"),
    "tanh": FunctionSpec(1, sp.tanh, "hyperbolic tangent"),
    "asinh": FunctionSpec(1, sp.asinh, "inverse hyperbolic sine"),
    "atan": FunctionSpec(1, sp.atan, "inverse tangent"),
    "erf": FunctionSpec(1, sp.erf, "error function"),
    "erfc": FunctionSpec(1, sp.erfc, "complementary error function 1 - erf(x)"),
    "abs": FunctionSpec(1, sp.Abs, "absolute value |x|"),
    "sign": FunctionSpec(1, sp.sign, "sign of x (0 at 0)"),
    "heaviside": FunctionSpec(1, lambda x: sp.Heaviside(x, _HALF), "step function, 1/2 at 0 (Heaviside(x, 1/2))"),
    "sigmoid": FunctionSpec(1, _sigmoid, "logistic sigmoid 1/(1 + exp(-x))"),
    "softplus": FunctionSpec(1, _softplus, "softplus log(1 + exp(x))"),
    "relu": FunctionSpec(1, lambda x: sp.Max(0, x), "rectifier max(0, x)"),
    "Phi": FunctionSpec(1, _phi, "Gaussian CDF (1 + erf(x/sqrt(2)))/2"),
    "max": FunctionSpec(2, sp.Max, "larger of two arguments"),
    "min": FunctionSpec(2, sp.Min, "smaller of two arguments"),
}

CONSTANTS: dict[str, sp.Expr] = {"z": z, "pi": sp.pi, "e": sp.E}

_BINARY: dict[type[ast.operator], str] = {
    ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**",
    ast.FloorDiv: "//", ast.Mod: "%", ast.MatMult: "@", ast.LShift: "<<",
    ast.RShift: ">>", ast.BitOr: "|", ast.BitXor: "^", ast.BitAnd: "&",
}  # fmt: skip

_FORBIDDEN: dict[type[ast.AST], str] = {
    ast.Attribute: "attribute access is not allowed",
    ast.Subscript: "subscripts (indexing) are not allowed",
    ast.Lambda: "lambda expressions are not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "comprehensions are not allowed",
    ast.Compare: "comparisons are not allowed",
    ast.BoolOp: "boolean operators (and/or) are not allowed",
    ast.IfExp: "conditional expressions (x if c else y) are not allowed",
    ast.NamedExpr: "assignment expressions (:=) are not allowed",
    ast.JoinedStr: "strings are not allowed",
    ast.List: "lists are not allowed",
    ast.Tuple: "tuples are not allowed",
    ast.Set: "sets are not allowed",
    ast.Dict: "dicts are not allowed",
    ast.Starred: "argument unpacking (*) is not allowed",
}

_EXPONENT = re.compile(r"[eE]")


def parse_activation(text: str) -> sp.Expr:
    """Parse an activation formula in ``z`` into a sympy expression, or raise
    :class:`ActivationParseError` with a one-line reason."""
    if not isinstance(text, str):
        raise ActivationParseError(f"the formula must be a string, not {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ActivationParseError(f"formula too long: {len(text)} characters (at most {MAX_LENGTH})")
    source = text.strip()
    if not source:
        raise ActivationParseError("empty formula: write an expression in z, e.g. tanh(z)")
    lead = len(text) - len(text.lstrip())
    try:
        with warnings.catch_warnings():  # e.g. "invalid decimal literal": keep output clean
            warnings.simplefilter("ignore", SyntaxWarning)
            tree = ast.parse(source, mode="eval")  # builds a tree only; nothing is executed
    except SyntaxError as err:
        raise ActivationParseError(_syntax_message(err, source, lead)) from None
    except (ValueError, RecursionError, MemoryError) as err:
        raise ActivationParseError(f"syntax error: {_one_line(str(err))}") from None
    result = _Builder(source).build(tree.body, 0)
    if result.has(sp.I):
        raise ActivationParseError("formula is complex-valued: it contains the imaginary unit")
    if not result.has(z) and (result.is_finite is False or result.is_extended_real is False):
        raise ActivationParseError(f"constant formula {result} is not a finite real number")
    return result


def _one_line(message: str, limit: int = 60) -> str:
    """Collapse whitespace and mask unprintable characters so that a message stays on one
    readable line, and cut it short."""
    flat = "".join(c if c.isprintable() else " " for c in message)
    flat = " ".join(flat.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _syntax_message(err: SyntaxError, source: str, lead: int) -> str:
    """One line for a syntax error: line (if not the first), column and nearby text."""
    line, col = err.lineno or 1, err.offset or 1
    where = f"column {col + lead}" if line == 1 else f"line {line}, column {col}"
    lines = source.splitlines() or [""]
    near = lines[min(line, len(lines)) - 1][max(col - 1, 0) : max(col - 1, 0) + 12]
    hint = f" near '{_one_line(near)}'" if near.strip() else " at the end"
    return f"syntax error at {where}{hint}: {_one_line(err.msg or 'invalid syntax')}"


class _Builder:
    """Whitelist walk of a parsed formula, building sympy objects with constructors."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.piecewise = 0  # max/min/relu calls seen so far

    def snippet(self, node: ast.AST) -> str:
        """The source text of a node, one line, quoted and cut short."""
        segment = ast.get_source_segment(self.source, node) or type(node).__name__
        return f"'{_one_line(segment, 40)}'"

    def fail(self, node: ast.AST, problem: str) -> ActivationParseError:
        """The error for a problem at a node: the problem, then the offending text."""
        return ActivationParseError(f"{problem}: {self.snippet(node)}")

    def build(self, node: ast.expr, depth: int) -> sp.Expr:
        """Build one node; ``depth`` counts the operators and calls enclosing it."""
        if isinstance(node, ast.Constant):
            return self.constant(node)
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, (ast.BinOp, ast.UnaryOp, ast.Call)):
            if depth >= MAX_DEPTH:
                raise self.fail(node, f"formula nested too deeply (more than {MAX_DEPTH} levels)")
            if isinstance(node, ast.BinOp):
                return self.binary(node, depth + 1)
            if isinstance(node, ast.UnaryOp):
                return self.unary(node, depth + 1)
            return self.call(node, depth + 1)
        for kind, problem in _FORBIDDEN.items():
            if isinstance(node, kind):
                raise self.fail(node, problem)
        raise self.fail(node, f"unsupported syntax ({type(node).__name__})")

    def constant(self, node: ast.Constant) -> sp.Expr:
        """A literal: bounded ints and exact floats only (no bool, complex, str, bytes)."""
        value = node.value
        if isinstance(value, bool) or value is None or value is Ellipsis:
            raise self.fail(node, f"'{value}' is not allowed; use numbers, z, pi or e")
        if isinstance(value, int):
            if abs(value) >= 10**MAX_INT_DIGITS:
                raise self.fail(node, f"integer literal with more than {MAX_INT_DIGITS} digits")
            return sp.Integer(value)
        if isinstance(value, float):
            return self.float_literal(node, value)
        if isinstance(value, complex):
            raise self.fail(node, "complex literals are not allowed")
        if isinstance(value, (str, bytes)):
            raise self.fail(node, "strings are not allowed")
        raise self.fail(node, f"unsupported literal ({type(value).__name__})")

    def float_literal(self, node: ast.Constant, value: float) -> sp.Expr:
        """A float literal as the exact rational of its decimal text: ``0.1`` -> 1/10."""
        text = (ast.get_source_segment(self.source, node) or repr(value)).replace("_", "")
        mantissa = _EXPONENT.split(text)[0].replace(".", "").strip("0")
        if len(mantissa) > MAX_FLOAT_DIGITS:
            raise self.fail(node, f"float literal with more than {MAX_FLOAT_DIGITS} significant digits")
        if math.isinf(value) or (value == 0 and mantissa):
            raise self.fail(node, "float literal out of range")
        try:  # the exponent is bounded: the literal is a finite nonzero double (or zero)
            exact = Fraction(text)
        except ValueError:  # a spelling Fraction does not read: the double's shortest repr
            exact = Fraction(repr(value))
        return self.vet(sp.Rational(exact.numerator, exact.denominator), node)

    def name(self, node: ast.Name) -> sp.Expr:
        """The variable ``z`` or a constant; any other name is refused, never looked up."""
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        if node.id in FUNCTIONS:
            raise ActivationParseError(f"{self.snippet(node)} is a function: call it, e.g. {node.id}(z)")
        raise ActivationParseError(f"unknown name {self.snippet(node)}: the variable is z, the constants are pi and e")

    def binary(self, node: ast.BinOp, depth: int) -> sp.Expr:
        """``+ - * / **`` with the exponent and division-by-zero checks."""
        op = type(node.op)
        if op not in (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow):
            hint = " (use ** for powers)" if op is ast.BitXor else ""
            raise self.fail(node, f"operator '{_BINARY.get(op, '?')}' is not supported{hint}")
        if op in _CHAINS:
            return self.chain(node, depth)
        left = self.build(node.left, depth)
        right = self.build(node.right, depth)
        if op is ast.Pow:
            self.check_exponent(node, right)
        if op is ast.Div and right == 0:
            raise self.fail(node, "division by zero")
        return self.make(node, _OPERATIONS[op], left, right)

    def chain(self, node: ast.BinOp, depth: int) -> sp.Expr:
        """A flat chain ``a + b - c + ...`` or ``a * b * c``: one level of nesting, however long, and
        walked without recursion (Python nests it to the left, one level per term)."""
        kind = _CHAINS[type(node.op)]
        spine = []
        while isinstance(node, ast.BinOp) and _CHAINS.get(type(node.op)) == kind:
            spine.append(node)
            node = node.left
        total = self.build(node, depth)
        for link in reversed(spine):
            total = self.make(link, _OPERATIONS[type(link.op)], total, self.build(link.right, depth))
        return total

    def check_exponent(self, node: ast.BinOp, exponent: sp.Expr) -> None:
        """A constant exponent must be real with absolute value at most ``MAX_EXPONENT``."""
        if exponent.has(z):
            return
        value = _numeric(exponent)
        if value is None or value.imag != 0 or abs(value.real) > MAX_EXPONENT:
            raise self.fail(node, f"exponent must be a real number of absolute value at most {MAX_EXPONENT}")

    def unary(self, node: ast.UnaryOp, depth: int) -> sp.Expr:
        """Unary ``-`` and ``+``."""
        if isinstance(node.op, ast.USub):
            return self.make(node, lambda x: -x, self.build(node.operand, depth))
        if isinstance(node.op, ast.UAdd):
            return self.build(node.operand, depth)
        if isinstance(node.op, ast.Not):
            raise self.fail(node, "boolean operators (not) are not allowed")
        raise self.fail(node, "operator '~' is not supported")

    def call(self, node: ast.Call, depth: int) -> sp.Expr:
        """A call of a table function by plain name; the callee is checked before any argument."""
        func = node.func
        if isinstance(func, ast.Attribute):
            raise self.fail(func, "attribute access is not allowed")
        if not isinstance(func, ast.Name):
            raise self.fail(func, "only functions from the table can be called, by name")
        if func.id not in FUNCTIONS:
            if func.id in CONSTANTS:
                raise ActivationParseError(f"{self.snippet(func)} is not a function")
            raise ActivationParseError(f"unknown function {self.snippet(func)}; allowed: {', '.join(FUNCTIONS)}")
        spec = FUNCTIONS[func.id]
        if func.id in _PIECEWISE:
            self.piecewise += 1
            if self.piecewise > MAX_PIECEWISE:
                raise self.fail(node, f"too many max/min/relu calls (at most {MAX_PIECEWISE})")
        if node.keywords:
            raise self.fail(node.keywords[0], "keyword arguments are not allowed")
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self.fail(arg, "argument unpacking (*) is not allowed")
        if len(node.args) != spec.arity:
            plural = "s" if spec.arity != 1 else ""
            raise self.fail(
                node,
                f"{func.id} takes {spec.arity} argument{plural}, got {len(node.args)}",
            )
        args = [self.build(arg, depth) for arg in node.args]
        return self.make(node, spec.build, *args)

    def make(self, node: ast.AST, build: Callable[..., sp.Expr], *args: sp.Expr) -> sp.Expr:
        """Run a sympy constructor, turning its failures into one-line parse errors."""
        try:
            result = build(*args)
        except ActivationParseError as err:
            raise self.fail(node, str(err)) from None
        except Exception as err:  # sympy raises many kinds on odd input: report, don't crash
            reason = _one_line(str(err)) or type(err).__name__
            raise self.fail(node, f"cannot evaluate ({reason})") from None
        return self.vet(result, node)

    def vet(self, expr: sp.Expr, node: ast.AST) -> sp.Expr:
        """Reject non-finite results, oversized rationals and out-of-range constants."""
        if expr.has(*_NON_FINITE):
            raise self.fail(node, "result is not finite (nan or infinity)")
        for atom in expr.atoms(sp.Rational):
            if _rational_bits(atom) > MAX_RATIONAL_BITS:
                raise self.fail(node, "numeric constant too large for exact arithmetic")
        if not expr.has(z):
            value = _numeric(expr)
            if value is None or not abs(value) <= MAX_CONSTANT:
                raise self.fail(node, f"constant is not a finite number of size at most {MAX_CONSTANT:g}")
        return expr


_OPERATIONS: dict[type[ast.operator], Callable[[sp.Expr, sp.Expr], sp.Expr]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: _power,
}


def _numeric(expr: sp.Expr) -> complex | None:
    """The value of a constant expression as a Python complex, or None if not a finite number."""
    try:
        value = complex(expr.evalf(15))
    except Exception:  # evalf can fail many ways (overflow, unevaluable): not a number
        return None
    return value if math.isfinite(value.real) and math.isfinite(value.imag) else None
