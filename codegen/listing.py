"""``pdlt activations``: the registry as the shipped kernels record it (pdlt.generated.CATALOGUE), so that
listing imports neither sympy nor numba (issue 9: listing and help under a second)."""

from __future__ import annotations

import argparse
import json


def cmd_activations(args: argparse.Namespace) -> int:
    from pdlt import generated

    rows = [{"name": name, **entry} for name, entry in sorted(generated.CATALOGUE.items())]
    if args.json:
        print(json.dumps({"activations": rows, "aliases": generated.ALIASES}, indent=2))
        return 0
    print(f"{'name':<11} {'formula':<38} exact <sigma^k>_K for k in")
    for row in rows:
        exact = ",".join(map(str, row["exact_powers"])) or "-"
        extra = f"  params {row['params']}" if row["params"] else ""
        print(f"{row['name']:<11} {row['formula']:<38} {exact}{extra}")
    print("aliases: " + ", ".join(f"{k} -> {v}" for k, v in generated.ALIASES.items()))
    print('any formula in z works too, e.g. pdlt flow "z*tanh(log(1+exp(z)))" ...')
    return 0
