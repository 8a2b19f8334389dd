"""Tests of the safe activation parser: exact parses, one-line rejections, no eval anywhere."""

from __future__ import annotations

import ast
import builtins
import inspect
import warnings

import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import pdlt.derive.parse as parse_module
from pdlt.derive.notation import z
from pdlt.derive.parse import FUNCTIONS, ActivationParseError, parse_activation

# ---------------------------------------------------------------------------------------------
# Correct parses, compared structurally with hand-built sympy objects.

EXPECTED_CALLS: dict[str, sp.Expr] = {
    "exp": sp.exp(z),
    "log": sp.log(z),
    "sqrt": sp.sqrt(z),
    "sin": sp.sin(z),
    "cos": sp.cos(z),
    "tan": sp.tan(z),
    "sinh": sp.sinh(z),
    "cosh": sp.cosh(z),
    "tanh": sp.tanh(z),
    "asinh": sp.asinh(z),
    "atan": sp.atan(z),
    "erf": sp.erf(z),
    "erfc": sp.erfc(z),
    "abs": sp.Abs(z),
    "sign": sp.sign(z),
    "heaviside": sp.Heaviside(z, sp.Rational(1, 2)),
    "sigmoid": 1 / (1 + sp.exp(-z)),
    "softplus": sp.log(1 + sp.exp(z)),
    "relu": sp.Max(0, z),
    "Phi": (1 + sp.erf(z / sp.sqrt(2))) / 2,
}


def test_function_table_is_the_documented_one() -> None:
    assert set(FUNCTIONS) == set(EXPECTED_CALLS) | {"max", "min"}
    for name, (arity, build, description) in FUNCTIONS.items():
        assert arity == (2 if name in ("max", "min") else 1), name
        assert callable(build)
        assert isinstance(description, str) and description and "\n" not in description


@pytest.mark.parametrize("name", sorted(EXPECTED_CALLS))
def test_each_function_of_z(name: str) -> None:
    got = parse_activation(f"{name}(z)")
    assert got == EXPECTED_CALLS[name]
    assert sp.srepr(got) == sp.srepr(EXPECTED_CALLS[name])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("z*tanh(log(1+exp(z)))", z * sp.tanh(sp.log(1 + sp.exp(z)))),
        ("0.1*z", sp.Rational(1, 10) * z),
        ("0.1 + 0.2", sp.Rational(3, 10)),  # exact decimal, not 0.30000000000000004
        ("1.5e3*z", 1500 * z),
        ("2.5E-1*z", z / 4),
        ("1_000*z", 1000 * z),
        ("max(0, z)", sp.Max(0, z)),
        ("min(z, 1)", sp.Min(z, 1)),
        ("max(-1, min(1, z))", sp.Max(-1, sp.Min(1, z))),
        ("e**z", sp.exp(z)),
        ("exp(1)", sp.E),
        ("pi/2", sp.pi / 2),
        ("2**z", sp.Integer(2) ** z),
        ("z**z", z**z),
        ("z**0.5", sp.sqrt(z)),
        ("z**64 - z**-64", z**64 - z**-64),
        ("-z", -z),
        ("+z", z),
        ("--z", z),
        ("(z)", z),
        ("  tanh(z)  ", sp.tanh(z)),
        ("(z\n + 1)", z + 1),
        ("z/2 - 3*z**2", z / 2 - 3 * z**2),
        ("heaviside(0)", sp.Rational(1, 2)),
        ("sign(0)", sp.Integer(0)),
        ("abs(-2)*z", 2 * z),
        ("sigmoid(2*z)", 1 / (1 + sp.exp(-2 * z))),
        ("Phi(z)", sp.Rational(1, 2) + sp.erf(sp.sqrt(2) * z / 2) / 2),
        ("relu(z) + relu(-z)", sp.Max(0, z) + sp.Max(0, -z)),
        ("9" * 30 + "*z", sp.Integer(10**30 - 1) * z),
        ("0x10*z", 16 * z),
        ("z - z", sp.Integer(0)),  # constant activation, finite: allowed
        ("1.5**0.5", sp.sqrt(sp.Rational(3, 2))),
    ],
)
def test_parses(text: str, expected: sp.Expr) -> None:
    got = parse_activation(text)
    assert got == expected
    assert sp.srepr(got) == sp.srepr(expected)


def test_variable_is_the_real_notation_symbol() -> None:
    got = parse_activation("z")
    assert got is z
    assert got.is_real


def test_limits_are_inclusive() -> None:
    assert parse_activation("-" * 50 + "z") == z
    assert parse_activation("exp(" * 50 + "z" + ")" * 50).has(z)
    assert parse_activation("z" + " " * 1999) == z
    assert parse_activation("max(" * 12 + "z" + ", 0)" * 12) == sp.Max(0, z)
    assert parse_activation("(10**29+1)**(1/16)").is_positive


# ---------------------------------------------------------------------------------------------
# Rejections: one line, naming the problem and where possible the token.

REJECTED: list[tuple[str, str]] = [
    # syntax
    ("z +* 2", "syntax error at column 4"),
    ("  z +* 2", "syntax error at column 6"),
    ("tanh(z", "syntax error"),
    ("z\x00", "syntax error"),
    ("*z", "syntax error"),
    # names and functions
    ("x", "unknown name 'x'"),
    ("tanh(x) + z", "unknown name 'x'"),
    ("E*z", "unknown name 'E': the variable is z, the constants are pi and e"),
    ("__builtins__", "unknown name '__builtins__'"),
    ("exp", "'exp' is a function"),
    ("foo(z)", "unknown function 'foo'; allowed: exp, log"),
    ("__import__('os')", "unknown function '__import__'"),
    ("eval('1')", "unknown function 'eval'"),
    ("z(1)", "'z' is not a function"),
    ("exp(z)(1)", "only functions from the table can be called"),
    # arity and arguments
    ("exp(z, 2)", "exp takes 1 argument, got 2"),
    ("exp()", "exp takes 1 argument, got 0"),
    ("max(z)", "max takes 2 arguments, got 1"),
    ("min(0, z, 1)", "min takes 2 arguments, got 3"),
    ("exp(z, base=2)", "keyword arguments are not allowed: 'base=2'"),
    ("exp(**{})", "keyword arguments are not allowed"),
    ("exp(*[z])", "argument unpacking"),
    # attribute access, subscripts, containers, strings
    ("__import__('os').system('echo hi')", "attribute access is not allowed"),
    ("z.__class__", "attribute access is not allowed: 'z.__class__'"),
    ("().__class__", "attribute access is not allowed"),
    ("os.system", "attribute access is not allowed"),
    ("z[0]", "subscripts"),
    ("[z]", "lists are not allowed"),
    ("(z, 1)", "tuples are not allowed"),
    ("{z}", "sets are not allowed"),
    ("{1: z}", "dicts are not allowed"),
    ("'z'", "strings are not allowed"),
    ("b'z'", "strings are not allowed"),
    ('f"{z}"', "strings are not allowed"),
    # other syntax
    ("lambda: 1", "lambda expressions are not allowed"),
    ("[z for z in (1,)]", "comprehensions are not allowed"),
    ("(z for z in (1,))", "comprehensions are not allowed"),
    ("z < 1", "comparisons are not allowed"),
    ("z and 1", "boolean operators"),
    ("not z", "boolean operators"),
    ("z if z else 1", "conditional expressions"),
    ("(y := z)", "assignment expressions"),
    ("await z", "unsupported syntax"),
    ("True", "'True' is not allowed"),
    ("None", "'None' is not allowed"),
    ("1j*z", "complex literals are not allowed: '1j'"),
    ("z ^ 2", "operator '^' is not supported (use ** for powers)"),
    ("z // 2", "operator '//' is not supported"),
    ("z % 2", "operator '%' is not supported"),
    ("~z", "operator '~' is not supported"),
    # sizes
    ("", "empty formula"),
    ("   \n ", "empty formula"),
    ("z" * 2001, "formula too long: 2001 characters"),
    ("-" * 51 + "z", "nested too deeply"),
    ("exp(" * 51 + "z" + ")" * 51, "nested too deeply"),
    ("9" * 31, "integer literal with more than 30 digits"),
    ("1." + "1" * 31, "more than 30 significant digits"),
    ("1e400", "float literal out of range"),
    ("1e-400*z", "float literal out of range"),
    ("max(" * 13 + "z" + ", 0)" * 13, "too many max/min/relu calls"),
    # exponents
    ("z**1000", "exponent must be a real number of absolute value at most 64"),
    ("z**65", "absolute value at most 64"),
    ("z**-65", "absolute value at most 64"),
    ("z**64.5", "absolute value at most 64"),
    ("9**9**9", "absolute value at most 64"),
    ("z**sqrt(-1)", "exponent must be a real number"),
    ("(10**29+1)**(1/32)", "too costly"),
    # division, non-finite and non-real values
    ("1/0", "division by zero: '1/0'"),
    ("z/0.0", "division by zero"),
    ("z/(z-z)", "division by zero"),
    ("0**-1", "division by zero"),
    ("log(0)", "result is not finite"),
    ("z + 1/log(0)", "result is not finite (nan or infinity): 'log(0)'"),
    ("exp(1000)", "constant is not a finite number of size at most 1e+300"),
    ("exp(exp(exp(100)))*z", "constant is not a finite number"),
    ("sin(exp(exp(exp(100))))*z", "constant is not a finite number"),
    ("max(z, exp(exp(exp(1000))))", "constant is not a finite number"),
    ("(10**29)**64", "numeric constant too large"),
    ("(1/10**29)**64*z", "numeric constant too large"),
    ("sqrt(-1)*z", "complex-valued"),
    ("log(-1)", "complex-valued"),
    ("(-8)**(1/3)", "not a finite real number"),
]


@pytest.mark.parametrize(("text", "fragment"), REJECTED)
def test_rejected_with_one_clear_line(text: str, fragment: str) -> None:
    with pytest.raises(ActivationParseError) as info:
        parse_activation(text)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message and "\x00" not in message
    assert len(message) < 300


def test_no_syntax_warning_escapes() -> None:
    """'1if ...' makes Python warn about a decimal literal; the parser stays quiet."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ActivationParseError, match="conditional expressions"):
            parse_activation("1if z else 2")


def test_error_is_a_value_error() -> None:
    assert issubclass(ActivationParseError, ValueError)


@pytest.mark.parametrize("bad", [None, 1.0, b"z", ["z"]])
def test_non_string_input(bad: object) -> None:
    with pytest.raises(ActivationParseError, match="must be a string"):
        parse_activation(bad)  # type: ignore[arg-type]


def test_import_trick_is_never_executed(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("__import__ was called")

    monkeypatch.setattr(builtins, "__import__", boom)
    for text in ("__import__('os')", "__import__('os').system('echo hi')"):
        with pytest.raises(ActivationParseError):
            parse_activation(text)


# ---------------------------------------------------------------------------------------------
# No eval, exec, sympify or parse_expr, at run time or in the source.


def test_no_eval_sympify_or_parse_expr_is_called(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(name: str):
        def trap(*args: object, **kwargs: object) -> None:
            raise AssertionError(f"{name} was called")

        return trap

    real_compile = builtins.compile

    def ast_only_compile(source, filename, mode, flags=0, *args, **kwargs):
        assert flags & ast.PyCF_ONLY_AST, "compile was called to produce code, not a tree"
        return real_compile(source, filename, mode, flags, *args, **kwargs)

    monkeypatch.setattr(builtins, "eval", forbidden("eval"))
    monkeypatch.setattr(builtins, "exec", forbidden("exec"))
    monkeypatch.setattr(builtins, "compile", ast_only_compile)
    monkeypatch.setattr(sp, "sympify", forbidden("sympy.sympify"))
    monkeypatch.setattr(sp, "parse_expr", forbidden("sympy.parse_expr"))
    monkeypatch.setattr(sp.parsing.sympy_parser, "parse_expr", forbidden("parse_expr"))

    assert parse_activation("z*tanh(log(1+exp(z)))") == z * sp.tanh(sp.log(1 + sp.exp(z)))
    assert parse_activation("0.1*Phi(z) + max(0, z)**2") == (
        sp.Rational(1, 10) * (1 + sp.erf(z / sp.sqrt(2))) / 2 + sp.Max(0, z) ** 2
    )
    for text in ("__import__('os').system('echo hi')", "eval('z')", "z.__class__", "1/0"):
        with pytest.raises(ActivationParseError):
            parse_activation(text)


def test_source_names_no_evaluator() -> None:
    """The module never even mentions an evaluator of text (static check of its tree)."""
    tree = ast.parse(inspect.getsource(parse_module))
    forbidden = {"eval", "exec", "sympify", "parse_expr", "S", "simplify", "__import__"}
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert not (names | attributes) & forbidden
    assert "compile" not in names  # the builtin: only ast.parse builds a tree


# ---------------------------------------------------------------------------------------------
# Random input: a result or ActivationParseError, never anything else.

TOKENS = [
    "z", "pi", "e", "x", "0", "1", "2", "0.5", "64", "65", "1e308", "10**29", "-", "+", "*",
    "/", "**", "(", ")", ",", "exp(", "log(", "sqrt(", "sin(", "tanh(", "erfc(", "abs(",
    "sign(", "heaviside(", "sigmoid(", "Phi(", "max(", "min(", "relu(", "z.", "[", "]", "'",
    " if ", " else ", "lambda:", "__import__(", "j", "_",
]  # fmt: skip


def _parse_or_reject(text: str) -> None:
    try:
        result = parse_activation(text)
    except ActivationParseError as err:
        assert "\n" not in str(err)
        return
    assert isinstance(result, sp.Expr)
    assert result.free_symbols <= {z}
    assert not result.has(sp.nan, sp.zoo, sp.oo, -sp.oo, sp.I)


@settings(deadline=None, max_examples=300)
@given(st.text(max_size=60))
def test_random_text_is_parsed_or_rejected(text: str) -> None:
    _parse_or_reject(text)


@settings(deadline=None, max_examples=300)
@given(st.text(alphabet="z0123456789.e+-*/() ,^expilogsqrtanhmx_j'[]", max_size=60))
def test_random_formula_characters_are_parsed_or_rejected(text: str) -> None:
    _parse_or_reject(text)


@settings(deadline=None, max_examples=300)
@given(st.lists(st.sampled_from(TOKENS), max_size=25).map("".join))
def test_random_token_strings_are_parsed_or_rejected(text: str) -> None:
    _parse_or_reject(text)


def test_a_long_flat_sum_or_product_is_one_level_not_one_per_term() -> None:
    """z/1 + z/2 + ... + z/51 was refused as 'nested too deeply'; a chain of 999 terms parses
    without recursion, while real nesting is still bounded."""
    assert parse_activation("+".join(f"z/{i}" for i in range(1, 52))) == sp.harmonic(51) * z
    assert parse_activation("+".join(["z"] * 999)) == 999 * z
    assert parse_activation("-".join(["z"] * 999)) == -997 * z
    assert parse_activation("*".join(["z"] * 999)) == z**999
    with pytest.raises(ActivationParseError, match="nested too deeply"):
        parse_activation("tanh(" * 60 + "z" + ")" * 60)
    with pytest.raises(ActivationParseError, match="nested too deeply"):
        parse_activation("z" + "**(1+z" * 60 + ")" * 60)
