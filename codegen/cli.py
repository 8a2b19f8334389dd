"""The ``pdlt`` command line. A user error is one line on stderr and exit status 2; anything else
is a bug in pdlt, reported as such with its traceback and exit status 1 (``derive/errors.py``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path

import numpy as np
import sympy as sp

from pdlt.derive import activations as acts
from pdlt.derive.activations import Activation
from pdlt.derive.errors import UserError
from pdlt.derive.notation import state_name, z

from .generate import SHIPPED_ORDER, check_name, check_order, module_text
from .write import write_atomic

EXIT_USAGE = 2
EXIT_BUG = 1


class CliError(UserError):
    """A user error reported as one line."""


def output_file(text: str, option: str = "--out") -> Path:
    """Check, before any work, that a file can be written at ``text`` (nothing is created)."""
    path = Path(text)
    if path.is_dir():
        raise CliError(f"{option} {text} is a folder; give a file name")
    _probe_writable(path.parent, option, text)
    return path


def output_folder(text: str, option: str = "--out") -> Path:
    """Check, before any work, that files can be written into the folder ``text``."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise CliError(f"{option} {text} exists and is not a folder")
    _probe_writable(path, option, text)
    return path


def _probe_writable(folder: Path, option: str, text: str) -> None:
    """Write and remove a temporary file in the nearest existing ancestor of ``folder``."""
    import tempfile

    existing = folder.resolve()
    while not existing.exists():
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, "a path component is not a folder")
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".pdlt-probe-"):
            pass
    except OSError as exc:
        raise CliError(f"cannot write {option} {text}: {exc.strerror or exc}") from None


def _progress(message: str) -> None:
    print(f"pdlt: {message}", file=sys.stderr, flush=True)


def resolve(text: str, params: list[str] | None = None) -> Activation:
    """A registered name, or a formula in z parsed safely (never eval'd)."""
    from pdlt.derive.parse import parse_activation

    if text in acts.REGISTRY or text in acts.ALIASES:
        act = acts.get(text)
    else:
        expr = parse_activation(text)
        if not expr.has(z):
            raise CliError(f"activation {text!r} does not depend on z")
        acts.check_real_line(expr, text)
        act = Activation(text, expr, f"user formula {text}")
    if params:
        act = _with_params(act, params)
    return act


def _with_params(act: Activation, settings: list[str]) -> Activation:
    known = {sym.name: sym for sym, _ in act.params}
    values = dict(act.params)
    for item in settings:
        name, sep, value = item.partition("=")
        if not sep or name not in known:
            raise CliError(f"--param expects NAME=VALUE with NAME in {sorted(known) or 'no parameters'}, got {item!r}")
        try:
            values[known[name]] = sp.Rational(value)
        except (TypeError, ValueError, sp.SympifyError):
            raise CliError(f"--param {name}: {value!r} is not a number") from None
    return Activation(act.name, act.expr, act.description, tuple(values.items()))


def _kernels(act: Activation, order: int):
    from .usercache import kernels

    return kernels(act, order, progress=_progress)


# ------------------------------------------------------------------ commands


def cmd_activations(args: argparse.Namespace) -> int:
    from pdlt.derive.expectations import expectations
    from pdlt.derive.recursion import moment_derivatives

    rows = []
    for name, act in sorted(acts.REGISTRY.items()):
        exps = expectations(act, moment_derivatives(SHIPPED_ORDER))
        exact = sorted({a for (a, _), e in exps.items() if e.exact})
        rows.append(
            {
                "name": name,
                "formula": sp.sstr(act.expr),
                "description": act.description,
                "params": {s.name: float(v) for s, v in act.params},
                "breakpoints": [float(b) for b in act.breakpoints],
                "exact_powers": [2 * a for a in exact],
            }
        )
    if args.json:
        print(json.dumps({"activations": rows, "aliases": acts.ALIASES}, indent=2))
        return 0
    print(f"{'name':<11} {'formula':<38} exact <sigma^k>_K for k in")
    for row in rows:
        exact = ",".join(map(str, row["exact_powers"])) or "-"
        extra = f"  params {row['params']}" if row["params"] else ""
        print(f"{row['name']:<11} {row['formula']:<38} {exact}{extra}")
    print("aliases: " + ", ".join(f"{k} -> {v}" for k, v in acts.ALIASES.items()))
    print('any formula in z works too, e.g. pdlt flow "z*tanh(log(1+exp(z)))" ...')
    return 0


def cmd_latex(args: argparse.Namespace) -> int:
    from pdlt.derive import latex

    check_order(args.order)
    if args.out:
        output_file(args.out)
    act = resolve(args.activation, args.param) if args.activation else None
    text = latex.body(args.order, act) if args.body else latex.document(args.order, act)
    if args.out:
        write_atomic(Path(args.out), text)
        _progress(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    name = check_name(args.name)
    order = check_order(args.order)
    act = resolve(args.expression, args.param)
    act = Activation(name, act.expr, act.description, act.params)
    out = output_folder(args.out)
    _progress(f"deriving order-{order} kernels for {sp.sstr(act.expr)} ...")
    command = f"pdlt generate {args.expression!r} --name {name} --order {order}"
    text = module_text(act, order, command)
    path = out / f"{name}.py"
    write_atomic(path, text)
    print(path)
    return 0


def _parse_widths(args: argparse.Namespace) -> dict:
    if (args.width is None) == (args.widths is None):
        raise CliError("give exactly one of --width N and --widths n1,n2,...")
    if args.width is not None:
        return {"width": args.width}
    try:
        widths = [int(w) for w in args.widths.split(",") if w.strip()]
    except ValueError:
        raise CliError(f"--widths must be comma-separated integers, got {args.widths!r}") from None
    return {"widths": widths}


def run_flow(args: argparse.Namespace):
    if args.depth < 1:
        raise CliError(f"--depth must be >= 1, got {args.depth}")
    check_order(args.order)
    width_kw = _parse_widths(args)
    if args.C_W <= 0:
        raise CliError(f"--C-W must be > 0, got {args.C_W}")
    if args.C_b < 0:
        raise CliError(f"--C-b must be >= 0, got {args.C_b}")
    if args.input_norm2 <= 0:
        raise CliError(f"--input-norm2 must be > 0, got {args.input_norm2}")
    act = resolve(args.activation, args.param)
    module = _kernels(act, args.order)
    params = {s.name: float(v) for s, v in act.params}
    flow = module.flow(
        args.depth,
        C_b=args.C_b,
        C_W=args.C_W,
        input_norm2=args.input_norm2,
        tolerance=args.tolerance,
        C_b_n=_series(args.C_b_n, "--C-b-n"),
        C_W_n=_series(args.C_W_n, "--C-W-n"),
        **width_kw,
        **params,
    )
    return act, module, flow


def cmd_flow(args: argparse.Namespace) -> int:
    from .reliability import check_series

    if args.plot:
        output_file(args.plot, "--plot")
    act, module, flow = run_flow(args)
    check = check_series(flow.coefficients, np.asarray(flow.widths, dtype=float), module.ORDER)
    if check.impossible:
        raise CliError(check.impossible)
    if check.unreliable:
        print(f"pdlt: {check.unreliable}", file=sys.stderr)
    data = flow.as_dict()
    data["activation"] = args.activation
    if args.plot:
        from .analysis import overlays
        from .plots import plot_flow

        laws, note = overlays(act, module, flow, args.C_b, args.C_W)
        title = f"{args.activation}: C_b = {args.C_b:g}, C_W = {args.C_W:g}, order {module.ORDER} ({note})"
        plot_flow(flow, title, Path(args.plot), laws)
        _progress(f"wrote {args.plot} ({note})")
    if args.json:
        print(json.dumps(data, indent=1))
        return 0
    print(format_table(flow, module, args))
    return 0


def _series(text: str | None, option: str) -> tuple[float, ...]:
    if not text:
        return ()
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise CliError(f"{option} must be comma-separated numbers (the 1/n, 1/n^2, ... pieces), got {text!r}") from None


def cmd_criticality(args: argparse.Namespace) -> int:
    from pdlt.derive.criticality import critical_points

    from .analysis import exponents_from_flow, nu_from_flow, usable_point

    act = resolve(args.activation, args.param)
    report = critical_points(act)
    data = report.as_dict()
    data["activation"] = args.activation
    point = usable_point(report)
    params = {s.name: float(v) for s, v in act.params}
    if point is not None:
        module = _kernels(act, SHIPPED_ORDER)
        data["nu_flow"] = nu_from_flow(module, point, params=params)
        data["exponents_flow"] = exponents_from_flow(module, point, params=params)
        if data.get("nu") is None:
            data["nu"] = data["nu_flow"]
            data["nu_source"] = "generated flow at large depth"
        else:
            data["nu_source"] = "exact (book 5.130-5.131)"
        if report.klass == "K*=0":
            data["renormalized"] = {
                "C_b_n": [0.0],
                "C_W_n": [2 * point.C_W / 3],
                "note": "book 5.141-5.142: C_W = (1 + 2/(3n)) / sigma_1^2; pass --C-W-n to pdlt flow",
            }
    if args.json:
        print(json.dumps(data, indent=1))
        return 0
    print(format_criticality(data))
    return 0


def format_criticality(data: dict) -> str:
    lines = [f"{data['activation']}: class {data['class']}", f"  {data['reason']}"]
    for p in data["critical_points"]:
        kstar = "line of fixed points" if p["K_star"] is None else f"K* = {p['K_star']:.10g}"
        lines.append(
            f"  critical point: C_b = {p['C_b']:.10g}, C_W = {p['C_W']:.10g}, {kstar}, "
            f"chi_par = {p['chi_parallel']:.6g}, chi_perp = {p['chi_perp']:.6g}, "
            f"{'stable' if p['stable'] else 'not stable'} ({p.get('note', '')})"
        )
    for p in data.get("rejected", []):
        lines.append(f"  rejected: {p}")
    if data.get("taylor"):
        taylor = ", ".join(f"{k} = {v['exact']}" for k, v in data["taylor"].items() if v is not None)
        lines.append(f"  Taylor data: {taylor}")
    if data.get("exponents"):
        lines.append("  exponents: " + ", ".join(f"{k} = {v}" for k, v in data["exponents"].items()))
    if data.get("exponents_flow"):
        lines.append(
            "  exponents from the generated flow (local slopes, l = 2000..4000): "
            + ", ".join(f"{k} = {v}" for k, v in data["exponents_flow"].items())
        )
    if data.get("nu") is not None:
        exact = f" (exact {data['nu_exact']})" if data.get("nu_exact") else ""
        lines.append(
            f"  nu = {data['nu']:.6g}{exact}: V/(nK^2) ~ nu l/n; "
            f"from the generated flow: {data.get('nu_flow', float('nan')):.6g}"
        )
    if data.get("renormalized"):
        lines.append(
            f"  1/n-corrected initialization: --C-W-n {data['renormalized']['C_W_n'][0]:.6g} "
            f"({data['renormalized']['note']})"
        )
    return "\n".join(lines)


def cmd_phase(args: argparse.Namespace) -> int:
    from pdlt.derive.criticality import critical_points

    from .plots import plot_phase

    output_file(args.out)
    act = resolve(args.activation, args.param)
    report = critical_points(act)
    points = [(p.C_b, p.C_W) for p in report.critical_points]
    params = {s.name: float(v) for s, v in act.params}
    plot_phase(act, _kernels(act, SHIPPED_ORDER), Path(args.out), critical=points, params=params)
    _progress(f"wrote {args.out}: class {report.klass}, critical points {points or 'none'}")
    return 0


def cmd_aspect_ratio(args: argparse.Namespace) -> int:
    from .analysis import aspect_ratio

    for name in ("depth", "width", "outputs"):
        if getattr(args, name) < 1:
            raise CliError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if (args.C_b is None) != (args.C_W is None):
        raise CliError("give both --C-b and --C-W, or neither (then the critical point is used)")
    act = resolve(args.activation, args.param)
    module = _kernels(act, SHIPPED_ORDER)
    params = {s.name: float(v) for s, v in act.params}
    result = aspect_ratio(act, module, args.depth, args.width, args.outputs, args.C_b, args.C_W, params)
    if args.json:
        print(json.dumps(result.as_dict(), indent=1))
        return 0
    print(
        f"{args.activation}: depth L = {args.depth}, width n = {args.width}, outputs n_L = {args.outputs}, "
        f"C_b = {result.C_b:.6g}, C_W = {result.C_W:.6g}"
    )
    print(
        f"  aspect ratio r = L/n = {result.r:.4g}; nu = {result.nu:.4g}; "
        f"optimal r* = 4/((20 + 3 n_L) nu) = {result.r_star:.4g}"
    )
    print(
        f"  at the output: V/(nK^2) = {result.vertex:.4g}, G{{1}}/(nK) = {result.nlo_metric:.4g}, "
        f"V{{1}}/(n^2K^2) = {result.next_vertex:.3g}; first neglected order ~ {result.neglected:.2g}"
    )
    print(f"  {result.verdict}")
    return 0


def format_table(flow, module, args) -> str:
    order = module.ORDER
    keys = [(m, k) for m in range(1, order + 2) for k in range(m - 1, order + 1)]
    vals = flow.values()
    head = [f"{'layer':>5}"] + [f"{state_name(m, k):>12}" for m, k in keys]
    head += [f"{'kappa_' + str(m):>12}" for m in range(1, order + 2)]
    lines = [
        f"pdlt flow: {args.activation} at order {order} in 1/n; C_b = {args.C_b:g}, C_W = {args.C_W:g}, "
        f"|x|^2/n_0 = {args.input_norm2:g}",
        "c[m][k] (columns by name) are the 1/n_{l-1}^k parts of kappa_m(G(l)), the m-th cumulant of the",
        "stochastic metric; kappa_m sums them at the actual widths (kappa_2 = Var G, E[z^4]-3E[z^2]^2 = 3 kappa_2).",
        "",
        " ".join(head),
    ]
    for l in range(1, flow.depth + 1):
        row = [f"{l:>5}"] + [f"{flow.coefficients[l - 1, m, k]:>12.5g}" for m, k in keys]
        row += [f"{vals[l - 1, m]:>12.5g}" for m in range(1, order + 2)]
        lines.append(" ".join(row))
    worst = float(max(flow.errors.max(), 0.0))
    lines.append("")
    lines.append(f"largest quadrature error estimate (relative): {worst:.1e}")
    return "\n".join(lines)


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import main as bench_main

    if args.out:
        output_file(args.out)
    return bench_main(quick=args.quick, as_json=args.json, out=args.out)


# ------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pdlt",
        description="Finite-width recursions of deep MLPs (Roberts-Yaida-Hanin), derived by machine "
        "for any activation.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("activations", help="list the registered activations")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_activations)

    p = sub.add_parser("latex", help="print the recursions as LaTeX (generic, and specialised to ACT)")
    p.add_argument("activation", nargs="?", help="registered name or formula in z (optional)")
    p.add_argument("--order", type=int, default=1, help="order in 1/n (default 1)")
    p.add_argument("--param", action="append", default=[], help="activation parameter NAME=VALUE")
    p.add_argument("--body", action="store_true", help="only the body, not a standalone document")
    p.add_argument("--out", help="write to this file instead of stdout")
    p.set_defaults(func=cmd_latex)

    p = sub.add_parser("generate", help="write a self-contained kernel module for a formula")
    p.add_argument("expression", help='activation: a formula in z, e.g. "z*tanh(log(1+exp(z)))", or a name')
    p.add_argument("--name", required=True, help="module name (a Python identifier)")
    p.add_argument("--order", type=int, default=SHIPPED_ORDER, help=f"order in 1/n (default {SHIPPED_ORDER})")
    p.add_argument("--param", action="append", default=[], help="activation parameter NAME=VALUE")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("flow", help="iterate the recursions through the layers")
    add_flow_arguments(p)
    p.add_argument("--json", action="store_true", help="print the DESIGN section 4 JSON schema")
    p.add_argument("--plot", help="also draw K, V/(nK^2), G{1} against depth (PNG), laws overlaid at criticality")
    p.set_defaults(func=cmd_flow)

    p = sub.add_parser("criticality", help="critical points, universality class, exponents and nu")
    p.add_argument("activation", help="registered name or formula in z")
    p.add_argument("--param", action="append", default=[], help="activation parameter NAME=VALUE")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_criticality)

    p = sub.add_parser("phase", help="phase diagram in the (C_b, C_W) plane as a PNG")
    p.add_argument("activation", help="registered name or formula in z")
    p.add_argument("--param", action="append", default=[], help="activation parameter NAME=VALUE")
    p.add_argument("--out", required=True, help="output image (PNG)")
    p.set_defaults(func=cmd_phase)

    p = sub.add_parser("aspect-ratio", help="how large finite-width effects are at depth L and width n")
    p.add_argument("activation", help="registered name or formula in z")
    p.add_argument("--depth", type=int, required=True, help="number of layers L")
    p.add_argument("--width", type=int, required=True, help="hidden width n")
    p.add_argument("--outputs", type=int, default=1, help="output width n_L (default 1)")
    p.add_argument("--C-b", dest="C_b", type=float, help="bias variance (default: the critical point)")
    p.add_argument("--C-W", dest="C_W", type=float, help="weight variance (default: the critical point)")
    p.add_argument("--param", action="append", default=[], help="activation parameter NAME=VALUE")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_aspect_ratio)

    p = sub.add_parser("bench", help="benchmark generated kernels against lambdify+scipy and Monte Carlo")
    p.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--out", help="also write the JSON results to this file")
    p.set_defaults(func=cmd_bench)
    return parser


def add_flow_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("activation", help="registered name or formula in z")
    p.add_argument("--order", type=int, default=SHIPPED_ORDER, help=f"order in 1/n (default {SHIPPED_ORDER})")
    p.add_argument("--depth", type=int, required=True, help="number of layers L")
    p.add_argument("--width", type=int, help="width of every hidden layer")
    p.add_argument("--widths", help="comma-separated n_1,...,n_{L-1}")
    p.add_argument("--C-b", dest="C_b", type=float, default=0.0, help="bias variance (default 0)")
    p.add_argument("--C-W", dest="C_W", type=float, default=1.0, help="weight variance C_W (default 1)")
    p.add_argument(
        "--input-norm2",
        dest="input_norm2",
        type=float,
        default=1.0,
        help="|x|^2/n_0 of the input, so K(1) = C_b + C_W |x|^2/n_0 (default 1)",
    )
    p.add_argument("--param", action="append", default=[], help="activation parameter NAME=VALUE")
    p.add_argument("--C-b-n", dest="C_b_n", help="1/n pieces of C_b: c_b{1},c_b{2},... (book 5.138)")
    p.add_argument("--C-W-n", dest="C_W_n", help="1/n pieces of C_W: c_W{1},c_W{2},... (book 5.139)")
    p.add_argument(
        "--tolerance",
        type=float,
        default=1e-10,
        help="largest relative quadrature error estimate accepted (default 1e-10)",
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # pragma: no cover - e.g. piped into head
        return 0
    except Exception as exc:
        if os.environ.get("PDLT_DEBUG"):
            raise
        if is_user_error(exc):
            message = exc.args[0] if exc.args else str(exc)
            print(f"pdlt: error: {message}", file=sys.stderr)
            return EXIT_USAGE
        if isinstance(exc, OSError):  # the machine's doing (e.g. a full disk while writing): one line
            where = f" ({exc.filename})" if exc.filename else ""
            print(f"pdlt: error: {exc.strerror or exc}{where}", file=sys.stderr)
            return EXIT_USAGE
        print(
            "pdlt: internal error: this is a bug in pdlt; please report it with the command that caused it",
            file=sys.stderr,
        )
        traceback.print_exc()
        return EXIT_BUG


def is_user_error(exc: BaseException) -> bool:
    """A UserError, or the FlowError of a generated module (self-contained, so a plain ValueError)."""
    if isinstance(exc, UserError):
        return True
    kind = type(exc)
    generated = kind.__module__.startswith(("pdlt.generated", "pdlt_kernels_"))
    return isinstance(exc, ValueError) and kind.__name__ == "FlowError" and generated


if __name__ == "__main__":
    sys.exit(main())
