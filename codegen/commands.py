"""What each ``pdlt`` command does: check the input, compute, print (``cli.py`` parses the arguments)."""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import sympy as sp

from pdlt.derive import activations as acts
from pdlt.derive.activations import Activation
from pdlt.derive.errors import UserError
from pdlt.derive.notation import z

from .arguments import SHIPPED_ORDER
from .formatting import format_aspect_ratio, format_criticality, format_table
from .write import write_atomic


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


def cmd_latex(args: argparse.Namespace) -> int:
    from pdlt.derive import latex

    from .generate import check_order

    check_order(args.order)
    if args.out:
        output_file(args.out)
    act = resolve(args.activation, args.param) if args.activation else None
    if getattr(args, "sector", "all") == "ntk":
        if act is not None:
            raise CliError("--sector ntk prints the recursions generic in sigma: give no activation")
        section = "\\section*{The NTK at finite width: $A$, $B$, $D$, $F$}\n\n" + latex.ntk_section() + "\n"
        text = section if args.body else latex.document(args.order, text=section)
    else:
        text = latex.body(args.order, act) if args.body else latex.document(args.order, act)
    if args.out:
        write_atomic(Path(args.out), text)
        _progress(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from .generate import check_name, check_order, module_text

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


def width_number(text: str, option: str = "--width") -> int:
    """A hidden width as typed: an integer, also written as a float (1e30 is a fine width: at that size the output
    is the infinite-width answer to double precision). Whether it is >= 1 the runtime checks."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value.is_integer()):
        raise CliError(f"{option}: widths must be integers >= 1, got {text!r}")
    return int(value)


def _parse_widths(args: argparse.Namespace) -> dict:
    if (args.width is None) == (args.widths is None):
        raise CliError("give exactly one of --width N and --widths n1,n2,...")
    if args.width is not None:
        return {"width": width_number(args.width)}
    return {"widths": [width_number(w, "--widths") for w in args.widths.split(",") if w.strip()]}


def run_flow(args: argparse.Namespace):
    from .generate import check_order

    if args.depth < 1:
        raise CliError(f"--depth must be >= 1, got {args.depth}")
    check_order(args.order)
    width_kw = _parse_widths(args)
    act = resolve(args.activation, args.param)
    _hyperparameters(args, act)
    if args.C_W <= 0:
        raise CliError(f"--C-W must be > 0, got {args.C_W}")
    if args.C_b < 0:
        raise CliError(f"--C-b must be >= 0, got {args.C_b}")
    if args.input_norm2 <= 0:
        raise CliError(f"--input-norm2 must be > 0, got {args.input_norm2}")
    if not args.tolerance > 0:  # also refuses nan
        raise CliError(f"--tolerance must be > 0 (a relative error), got {args.tolerance}")
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


def _hyperparameters(args: argparse.Namespace, act: Activation) -> None:
    """Fill in C_b and C_W: given, the defaults (0, 1), or with --critical the activation's critical
    point (the stable one first, as ``pdlt criticality`` reports), said on stderr."""
    if not args.critical:
        args.C_b = 0.0 if args.C_b is None else args.C_b
        args.C_W = 1.0 if args.C_W is None else args.C_W
        return
    if args.C_b is not None or args.C_W is not None:
        raise CliError("give --critical or --C-b/--C-W, not both")
    from pdlt.derive.criticality import critical_points

    from .analysis import usable_point

    report = critical_points(act)
    point = usable_point(report)
    if point is None:
        raise CliError(f"{args.activation} has no critical initialization ({report.reason}); give --C-b and --C-W")
    args.C_b, args.C_W = float(point.C_b), float(point.C_W)
    kstar = "a line of fixed points" if point.K_star is None else f"K* = {point.K_star:.6g}"
    _progress(
        f"critical point of {args.activation}: C_b = {args.C_b:.10g}, C_W = {args.C_W:.10g} ({report.klass}, {kstar})"
    )


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

    from .analysis import exponents_from_flow, nu_from_flow, renormalized_initialization, usable_point

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
        renormalized = renormalized_initialization(report.klass, point)
        if renormalized:
            data["renormalized"] = renormalized
    if args.json:
        print(json.dumps(data, indent=1))
        return 0
    print(format_criticality(data))
    return 0


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

    args.width = width_number(args.width)
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
    print(format_aspect_ratio(result, args))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from .check import GROUPS, check

    if args.samples < 3 * GROUPS:
        raise CliError(
            f"--samples must be >= {3 * GROUPS} (the standard errors come from {GROUPS} groups, each of at least "
            f"3 networks for the third cumulant), got {args.samples}"
        )
    if args.depth < 2:
        raise CliError(f"--depth must be >= 2 for pdlt check (G(1) is not random), got {args.depth}")
    if args.seed < 0:
        raise CliError(f"--seed must be >= 0, got {args.seed}")
    hidden = _parse_widths(args)
    if args.samples * (args.depth - 1) * max(hidden.get("widths") or [hidden["width"]]) > 2e10:
        raise CliError("--samples x depth x width is above 2e10 sigma evaluations (hours); sample fewer")
    act, _, flow = run_flow(args)
    _progress(f"sampling {args.samples} networks ...")
    result = check(act, flow, args.samples, args.seed)
    print(json.dumps(result.as_dict(), indent=1) if args.json else result.text())
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import main as bench_main

    if args.out:
        output_file(args.out)
    sizes = None
    if args.four and args.kernels:
        raise CliError("--four and --kernels are separate benchmarks: give one")
    if args.sizes:
        if not args.kernels:
            raise CliError("--sizes goes with --kernels")
        try:
            sizes = tuple(int(v) for v in args.sizes.split(","))
        except ValueError:
            raise CliError(f"--sizes takes comma-separated integers, got {args.sizes!r}") from None
        if min(sizes) < 2:
            raise CliError(f"--sizes must be >= 2, got {args.sizes}")
    return bench_main(quick=args.quick, as_json=args.json, out=args.out, kernels=args.kernels, sizes=sizes,
                      four=args.four)  # fmt: skip
