"""``pdlt predict``: the mean output of a fully trained finite-width network (book ∞.155-∞.160, issue 10)."""

from __future__ import annotations

import argparse
import json

import numpy as np

from .commands import CliError, _hyperparameters, _kernels, resolve
from .generate import SHIPPED_ORDER
from .kernel_command import _numbers, _read_inputs

ALGORITHMS = ("gradient-flow", "gd", "newton2")


def cmd_predict(args: argparse.Namespace) -> int:
    from pdlt.runtime.predict import predict

    if args.depth < 2:
        raise CliError(f"--depth must be >= 2 (a one-layer network has no finite-width correction), got {args.depth}")
    if args.width is not None and not (np.isfinite(args.width) and args.width >= 1):
        raise CliError(f"--width must be >= 1, got {args.width}")
    if args.algorithm == "gd" and args.eta is None:
        raise CliError("--algorithm gd needs --eta (the global learning rate)")
    if args.algorithm != "gd" and args.eta is not None:
        raise CliError(f"--eta is the learning rate of gd; --algorithm {args.algorithm} does not take one")
    X = _read_inputs(args.train_inputs, "--train-inputs")
    Y = _read_inputs(args.train_targets, "--train-targets", "(N,) or (N, n_L)")
    XT = _read_inputs(args.test_inputs, "--test-inputs", "(M, n_0)")
    for option, a in (("--train-inputs", X), ("--test-inputs", XT)):
        if a.ndim != 2:
            raise CliError(f"{option} must hold a 2-d (N, n_0) array, got shape {a.shape}")
    act = resolve(args.activation, args.param)
    cb, cw = _numbers(args.C_b, "--C-b"), _numbers(args.C_W, "--C-W")
    args.C_b, args.C_W = (None if cb is None else cb[0]), (None if cw is None else cw[0])
    _hyperparameters(args, act)
    cb = cb if cb is not None else [args.C_b]
    cw = cw if cw is not None else [args.C_W]
    lb, lw = _numbers(args.lambda_b, "--lambda-b"), _numbers(args.lambda_W, "--lambda-W")
    module = _kernels(act, SHIPPED_ORDER)
    params = {s.name: float(v) for s, v in act.params}
    result = predict(module, X, Y, XT, args.depth, C_b=cb, C_W=cw, lambda_b=lb, lambda_W=lw,
                     algorithm=args.algorithm, eta=args.eta, tolerance=args.tolerance, **params)  # fmt: skip
    if args.json:
        print(json.dumps(result.as_dict(args.width), indent=1))
        return 0
    n_out = result.mean_infinite.shape[1]
    rate = f" at eta = {args.eta:g}" if args.algorithm == "gd" else ""
    print(f"{args.activation}: depth {args.depth}, {args.algorithm}{rate}; mean output = infinite + coefficient / n "
          f"+ O(1/n^2) (error bound {result.error:.1e}); training NTK condition number {result.condition:.3g}, "
          "on which the O(1/n^2) remainder grows")  # fmt: skip
    at = f" at n = {args.width:g}" if args.width else ""
    head = "  test  out      infinite   coefficient" + (f"   mean{at}" if args.width else "")
    head += "  var infinite  var coefficient" + (f"  variance{at}" if args.width else "")
    names = list(result.parts)
    print(head + "".join(f"  {name:>16}" for name in names))
    mean = result.mean(args.width) if args.width else None
    variance = result.variance(args.width) if args.width else None
    for j in range(result.mean_infinite.shape[0]):
        for i in range(n_out):
            row = f"{j:6d}  {i:3d}  {result.mean_infinite[j, i]:12.6g}  {result.mean_coefficient[j, i]:12.6g}"
            row += f"  {mean[j, i]:{len(at) + 5}.6g}" if mean is not None else ""
            row += f"  {result.variance_infinite[j]:12.6g}  {result.variance_coefficient[j, i]:15.6g}"
            row += f"  {variance[j, i]:{len(at) + 9}.6g}" if variance is not None else ""
            row += "".join(f"  {result.parts[name][j, i]:16.6g}" for name in names)
            print(row)
    print("the parts split the mean's coefficient; Python's predict(...).variance_parts splits the variance's")
    return 0
