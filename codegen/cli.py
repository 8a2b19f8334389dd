"""The ``pdlt`` command line. A user error is one line on stderr and exit status 2; anything else
is a bug in pdlt, reported as such with its traceback and exit status 1 (``derive/errors.py``)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from pdlt.derive.errors import UserError

from .arguments import (
    SHIPPED_ORDER,
    add_flow_arguments,
    add_kernel_arguments,
    add_predict_arguments,
    add_tradeoff_arguments,
)

EXIT_USAGE = 2
EXIT_BUG = 1


# ------------------------------------------------------------------ parser


class OneLineParser(argparse.ArgumentParser):
    """argparse, with a usage error reported like every other bad input: one line, exit status 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"pdlt: error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="pdlt",
        description="Finite-width recursions of deep MLPs (Roberts-Yaida-Hanin), derived by machine "
        "for any activation.",
    )
    parser.add_argument("--version", action="version", version=f"pdlt {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("activations", help="list the registered activations")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=("listing", "cmd_activations"))

    p = sub.add_parser("latex", help="print the recursions as LaTeX (generic, and specialised to ACT)")
    p.add_argument("activation", nargs="?", help="registered name or formula in z (optional)")
    p.add_argument("--order", type=int, default=SHIPPED_ORDER, help=f"order in 1/n (default {SHIPPED_ORDER})")
    p.add_argument("--param", action="append", default=[], help="activation parameter NAME=VALUE")
    p.add_argument("--body", action="store_true", help="only the body, not a standalone document")
    p.add_argument("--sector", choices=("all", "ntk"), default="all",
                   help="all recursions (default), or only the NTK sector (A, B, D, F with K, V, H)")  # fmt: skip
    p.add_argument("--out", help="write to this file instead of stdout")
    p.set_defaults(func=("commands", "cmd_latex"))

    p = sub.add_parser("generate", help="write a kernel module for a formula (it needs numpy, numba and pdlt.runtime)")
    p.add_argument("expression", help='activation: a formula in z, e.g. "z*tanh(log(1+exp(z)))", or a name')
    p.add_argument("--name", required=True, help="module name (a Python identifier)")
    p.add_argument("--order", type=int, default=SHIPPED_ORDER, help=f"order in 1/n (default {SHIPPED_ORDER})")
    p.add_argument("--param", action="append", default=[], help="activation parameter NAME=VALUE")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=("commands", "cmd_generate"))

    p = sub.add_parser("flow", help="iterate the recursions through the layers")
    add_flow_arguments(p)
    p.add_argument("--json", action="store_true", help="print JSON (schema in docs/user-guide.md, section JSON)")
    p.add_argument("--plot", help="also draw K, V/(nK^2), G{1} against depth (PNG), laws overlaid at criticality")
    p.set_defaults(func=("commands", "cmd_flow"))

    p = sub.add_parser("criticality", help="critical points, universality class, exponents and nu")
    p.add_argument("activation", help="registered name or formula in z")
    p.add_argument("--param", action="append", default=[], help="activation parameter NAME=VALUE")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=("commands", "cmd_criticality"))

    p = sub.add_parser("phase", help="phase diagram in the (C_b, C_W) plane as a PNG")
    p.add_argument("activation", help="registered name or formula in z")
    p.add_argument("--param", action="append", default=[], help="activation parameter NAME=VALUE")
    p.add_argument("--out", required=True, help="output image (PNG)")
    p.set_defaults(func=("commands", "cmd_phase"))

    p = sub.add_parser("check", help="sample real networks and compare the 1/n expansion with them, order by order")
    add_flow_arguments(p)
    p.add_argument("--samples", type=int, default=20000, help="number of sampled networks (default 20000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=("commands", "cmd_check"))

    p = sub.add_parser(
        "kernel", help="N x N kernel matrices (NNGP K, NTK Theta) at infinite width for inputs in a .npy"
    )
    add_kernel_arguments(p)
    p.set_defaults(func=("kernel_command", "cmd_kernel"))

    p = sub.add_parser("aspect-ratio", help="how large finite-width effects are at depth L and width n")
    p.add_argument("activation", help="registered name or formula in z")
    p.add_argument("--depth", type=int, required=True, help="number of layers L")
    p.add_argument("--width", required=True, help="hidden width n")
    p.add_argument("--outputs", type=int, default=1, help="output width n_L (default 1)")
    p.add_argument("--C-b", dest="C_b", type=float, help="bias variance (default: the critical point)")
    p.add_argument("--C-W", dest="C_W", type=float, help="weight variance (default: the critical point)")
    p.add_argument("--param", action="append", default=[], help="activation parameter NAME=VALUE")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=("commands", "cmd_aspect_ratio"))

    p = sub.add_parser("tradeoff", help="NTK fluctuations against representation learning (dNTK, ddNTK) over L/n")
    add_tradeoff_arguments(p)
    p.set_defaults(func=("tradeoff_command", "cmd_tradeoff"))
    p = sub.add_parser("predict", help="trained finite-width network: mean output, variance (book ∞.155, ∞.161)")
    add_predict_arguments(p)
    p.set_defaults(func=("predict_command", "cmd_predict"))

    p = sub.add_parser("bench", help="benchmark generated kernels against lambdify+scipy and Monte Carlo")
    p.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--out", help="also write the JSON results to this file")
    p.add_argument("--kernels", action="store_true", help="benchmark N x N kernel matrices instead")
    p.add_argument("--sizes", help="with --kernels: comma-separated N (default 1000,3000; 300 with --quick)")
    p.add_argument("--four", action="store_true", help="benchmark the four-index tensors on many inputs instead")
    p.set_defaults(func=("commands", "cmd_bench"))
    return parser


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("pdlt")
    except metadata.PackageNotFoundError:  # pragma: no cover - a bare checkout
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        module, name = args.func  # imported only now: the parser alone stays light
        return getattr(importlib.import_module(f"pdlt.codegen.{module}"), name)(args)
    except BrokenPipeError:  # pragma: no cover - e.g. piped into head
        return 0
    except Exception as exc:
        from .usercache import discard_fresh

        discard_fresh()  # a failed command leaves nothing in the user cache
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
    """A UserError: bad input, including a generated module's FlowError (pdlt.runtime.errors)."""
    return isinstance(exc, UserError)


if __name__ == "__main__":
    sys.exit(main())
