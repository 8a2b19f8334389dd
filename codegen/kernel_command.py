"""``pdlt kernel``: N x N kernel matrices (NNGP K, NTK Theta, the finite-width mean kernel G) for inputs read from a
.npy file (DESIGN §9)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .commands import CliError, _hyperparameters, _kernels, _probe_writable, _progress, output_file, resolve
from .generate import SHIPPED_ORDER


def output_store(text: str) -> Path:
    """Check, before any work, that a .zarr store (a folder) can be written at ``text``."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise CliError(f"--out {text} exists and is not a zarr store")
    _probe_writable(path.parent, "--out", text)
    return path


def _numbers(text: str | None, option: str) -> list[float] | None:
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise CliError(f"{option} takes a number or comma-separated numbers (one per layer), got {text!r}") from None
    return values


def _widths(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise CliError(f"--widths takes comma-separated integers n_1,...,n_(L-1), got {text!r}") from None


def _read_inputs(text: str, option: str = "--inputs", shape: str = "(N, n_0)") -> np.ndarray:
    try:
        x = np.load(text, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read {option} {text}: {exc}") from None
    if not isinstance(x, np.ndarray):
        raise CliError(f"{option} {text} holds several arrays (an .npz); give a .npy file with one {shape} array")
    return x


class _Bar:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, pairs: int) -> None:
        self.pairs, self.live = pairs, sys.stderr.isatty()

    def __call__(self, done: int, total: int, what: str | None = None) -> None:
        """done of total blocks of pairs, or of total ``what`` (the four-index tensors' layers)."""
        if self.live:
            filled = int(30 * done / max(total, 1))
            bar = "#" * filled + "-" * (30 - filled)
            end = "\n" if done >= total else ""
            unit = f"{self.pairs:,} pairs" if what is None else f"{total:,} {what}"
            line = f"\rpdlt: [{bar}] {100 * done / max(total, 1):3.0f}% of {unit}"
            print(line, end=end, file=sys.stderr, flush=True)


def cmd_kernel(args: argparse.Namespace) -> int:
    if args.depth < 1:
        raise CliError(f"--depth must be >= 1, got {args.depth}")
    if not str(args.out).endswith((".npz", ".zarr")):
        raise CliError(f"--out must name a .npz file or a .zarr store, got {args.out!r}")
    if args.chunk_size is not None and args.chunk_size < 1:
        raise CliError(f"--chunk-size must be >= 1, got {args.chunk_size}")
    out = output_file(args.out) if args.out.endswith(".npz") else output_store(args.out)
    tensors = [t.strip() for t in args.tensors.split(",") if t.strip()]
    if args.order is not None and "G" not in tensors:
        raise CliError("--order is the order of the finite-width mean kernel: it goes with --tensors ...,G")
    layers = None
    if args.layers:
        try:
            layers = [int(v) for v in args.layers.split(",")]
        except ValueError:
            raise CliError(f"--layers takes comma-separated layer numbers, got {args.layers!r}") from None
    x = _read_inputs(args.inputs)
    act = resolve(args.activation, args.param)
    cb, cw = _numbers(args.C_b, "--C-b"), _numbers(args.C_W, "--C-W")
    args.C_b, args.C_W = (None if cb is None else cb[0]), (None if cw is None else cw[0])
    _hyperparameters(args, act)  # defaults, or the critical point with --critical
    cb = cb if cb is not None else [args.C_b]
    cw = cw if cw is not None else [args.C_W]
    module = _kernels(act, SHIPPED_ORDER)
    params = {s.name: float(v) for s, v in act.params}
    n = x.shape[0] if x.ndim == 2 else 0
    lambda_b, lambda_W = _numbers(args.lambda_b, "--lambda-b"), _numbers(args.lambda_W, "--lambda-W")
    if args.rates:
        lambda_b, lambda_W = _book_rates(act, args, lambda_b, lambda_W)
    result = module.kernel(
        x,
        args.depth,
        C_b=cb,
        C_W=cw,
        lambda_b=lambda_b,
        lambda_W=lambda_W,
        layers=layers,
        tensors=tensors,
        tolerance=args.tolerance,
        progress=_Bar(n * (n - 1) // 2),
        out=str(out),
        scheduler=args.scheduler,
        chunk_size=args.chunk_size,
        parametrization=args.parametrization,
        widths=_widths(args.widths),
        order=1 if args.order is None else args.order,
        **params,
    )
    stored = [int(v) for v in result.layers]
    names = ", ".join(k for k in result.arrays() if k != "layers")
    _progress(f"wrote {out}: {names} at layers {_span(stored)} for N = {n} inputs ({result.method})")
    summary = {
        "activation": args.activation,
        "out": str(out),
        "N": n,
        "depth": args.depth,
        "layers": stored,
        "tensors": [k for k in result.arrays() if k != "layers"],
        "method": result.method,
        "terms": [int(t) for t in result.terms],
        "error_bound": [float(e) for e in result.error],
        **(
            {"order": result.order, "G_error_bound": [float(e) for e in result.G_error]} if result.G is not None else {}
        ),
        **({"four_index_error_bound": [float(e) for e in result.four_error]} if result.four else {}),
        "params": params,
        **{k: [float(v) for v in vals] for k, vals in result.hyper.items()},
    }
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(f"{args.activation}: N = {n}, depth {args.depth}, pair expectations by {result.method}")
        with_g, with_four = result.G is not None, bool(result.four)
        head = "layer  terms  error bound" + ("  G error bound" if with_g else "")
        print(head + ("  V..U error bound" if with_four else ""))
        for l in range(1, args.depth + 1):
            g = f"  {result.G_error[l - 1]:13.1e}" if with_g else ""
            g += f"  {result.four_error[l - 1]:16.1e}" if with_four else ""
            print(f"{l:5d}  {int(result.terms[l - 1]):5d}  {result.error[l - 1]:11.1e}{g}")
    return 0


def _book_rates(act, args, lambda_b, lambda_W):
    """Per-layer learning rates of the equivalence principle for the activation's universality class."""
    from pdlt.derive.criticality import critical_points

    from .tradeoff import learning_rates

    if args.parametrization != "ntk":
        raise CliError("--rates sets the book's learning rates: it goes with --parametrization ntk")
    for name, value in (("--lambda-b", lambda_b), ("--lambda-W", lambda_W)):
        if value is not None and len(value) != 1:
            raise CliError(f"with --rates, {name} is the single number lambda~ (the rule sets each layer)")
    report = critical_points(act)
    lb = 1.0 if lambda_b is None else lambda_b[0]
    lw = 1.0 if lambda_W is None else lambda_W[0]
    return learning_rates(report.klass, report.exponents, args.depth, "equivalence", lb, lw)


def _span(layers: list[int]) -> str:
    if len(layers) > 2 and layers == list(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}..{layers[-1]}"
    return ",".join(map(str, layers))
