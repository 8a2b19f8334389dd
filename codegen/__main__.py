"""``python -m pdlt.codegen [--check]``: regenerate generated/, or fail with a diff when stale."""

from __future__ import annotations

import argparse
import sys

from .generate import GENERATED_DIR, REGENERATE, check, regenerate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pdlt.codegen", description=__doc__)
    parser.add_argument("--check", action="store_true", help="render in memory, diff against generated/, exit 1 if stale")
    args = parser.parse_args(argv)
    if args.check:
        drifts = check()
        if not drifts:
            print(f"generated/ is up to date ({GENERATED_DIR})")
            return 0
        for drift in drifts:
            sys.stdout.write(drift.diff)
        print(f"\n{len(drifts)} generated file(s) are stale; update them with: {REGENERATE}", file=sys.stderr)
        return 1
    changed = regenerate()
    for path in changed:
        print(f"wrote {path}")
    print(f"{len(changed)} file(s) changed in {GENERATED_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
