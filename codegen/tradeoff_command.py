"""``pdlt tradeoff``: representation learning against seed-to-seed fluctuations as L/n grows (issue 8, item 5)."""

from __future__ import annotations

import argparse
import json
import math

from .commands import CliError, _kernels, _progress, output_file, resolve
from .generate import SHIPPED_ORDER
from .tradeoff import LABELS, plot, tradeoff

MAX_DEPTH = 100_000


def _depths(text: str | None, width: int) -> list[int]:
    if text is None:
        top = max(width, 3)
        return sorted({int(round(v)) for v in [2 + (top - 2) * i / 11 for i in range(12)]})
    try:
        depths = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise CliError(f"--depths takes comma-separated integers, got {text!r}") from None
    if not depths or depths[0] < 2:
        raise CliError(f"--depths needs depths >= 2 (layer 1 has no finite-width part), got {text!r}")
    if depths[-1] > MAX_DEPTH:
        raise CliError(
            f"--depths goes up to {MAX_DEPTH} layers (r = L/n far beyond 1 means nothing here), got {depths[-1]}"
        )
    return depths


def cmd_tradeoff(args: argparse.Namespace) -> int:
    for name in ("width", "outputs"):
        if getattr(args, name) < 1:
            raise CliError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.samples < 0 or 0 < args.samples < 100:
        raise CliError(f"--samples must be 0 (no Monte Carlo) or >= 100 (the error bars need them), got {args.samples}")
    if args.seed < 0:
        raise CliError(f"--seed must be >= 0, got {args.seed}")
    if not (args.lambda_b >= 0 and args.lambda_W >= 0 and args.lambda_b + args.lambda_W > 0):
        raise CliError("--lambda-b and --lambda-W must be >= 0 and not both 0")
    depths = _depths(args.depths, args.width)
    if args.samples and args.samples * max(depths) * args.width**2 > 2e11:
        raise CliError("--samples x depth x width^2 is above 2e11 weights to draw (hours); sample fewer")
    out = output_file(args.out) if args.out else None
    act = resolve(args.activation, args.param)
    module = _kernels(act, SHIPPED_ORDER)
    result = tradeoff(act, module, args.width, depths, args.outputs, args.rates, args.lambda_b, args.lambda_W,
                      args.samples, args.seed, progress=_progress)  # fmt: skip
    if out is not None:
        plot(result, out)
        _progress(f"wrote {out}")
    if args.json:
        print(json.dumps(result.as_dict(), indent=1))
        return 0
    print(f"{act.name} at criticality (C_b = {result.C_b:g}, C_W = {result.C_W:.6g}), width {args.width}, "
          f"{args.rates} learning rates; each column is ~ r = L/n at leading order")  # fmt: skip
    names = [k for k, v in result.theory.items() if not all(math.isnan(x) for x in v)]
    print("     L      r  " + "  ".join(f"{k:>12}" for k in names))
    for i, L in enumerate(result.depths):
        row = "  ".join(f"{result.theory[k][i]:12.4g}" for k in names)
        print(f"{L:6d} {L / args.width:6.3g}  {row}")
    for k in names:
        print(f"  {k}: {LABELS[k]}")
    for k, points in result.montecarlo.items():
        for L, mean, se in points:
            want = result.theory[k][result.depths.index(L)]
            r = L / args.width
            print(f"  sampled, L = {L} (r = {r:.3g}): {k} = {mean:.4g} +- {se:.2g}; leading order {want:.4g} "
                  f"(next order ~ r^2 = {r * r:.2g} relative, 1/n = {1 / args.width:.2g})")  # fmt: skip
    if math.isfinite(result.r_star):
        print(f"optimal aspect ratio r* = {result.r_star:.4g} for n_L = {args.outputs} (A.73, nu = {result.nu:.4g})")
    return 0
