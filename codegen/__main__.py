"""``python -m pdlt.codegen [--check]``: regenerate generated/, or fail with a diff when stale."""

from __future__ import annotations

import argparse
import sys

from .docs import DOCS_DIR, check_docs, pages
from .generate import GENERATED_DIR, REGENERATE, check, regenerate
from .write import write_atomic


def _progress(message: str) -> None:
    print(f"  {message} ...", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pdlt.codegen", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="render in memory, diff against generated/, exit 1 if stale"
    )
    args = parser.parse_args(argv)
    # docs/ exists beside the packages in a source checkout (not in an installed copy)
    with_docs = DOCS_DIR.is_dir()
    if args.check:
        diffs = [drift.diff for drift in check(progress=_progress)]
        # the criticality table runs the kernels: only once they are known to equal a fresh render
        if with_docs:
            diffs += check_docs(progress=_progress, with_numbers=not diffs)
        if not diffs:
            print(
                f"generated/ is up to date ({GENERATED_DIR})" + (" and so are the generated docs" if with_docs else "")
            )
            return 0
        for diff in diffs:
            sys.stdout.write(diff)
        print(f"\n{len(diffs)} generated file(s) are stale; update them with: {REGENERATE}", file=sys.stderr)
        return 1
    changed = regenerate(progress=_progress)
    if with_docs:
        for name, text in pages(_progress).items():
            if write_atomic(DOCS_DIR / name, text):
                changed.append(DOCS_DIR / name)
    for path in changed:
        print(f"wrote {path}")
    print(f"{len(changed)} file(s) changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
