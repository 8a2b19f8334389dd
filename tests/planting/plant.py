"""Plant known mistakes in the engine and report which tests catch them.

    python tests/planting/plant.py [--rev REV] [--only NAME,...] [--tests ARGS] [--keep-going] [--json OUT]

For each mistake in ``MISTAKES``: copy the sources at ``REV`` (default: the working tree) into a
scratch folder, apply the mistake (a source edit that must match exactly once), regenerate
``generated/`` and the generated docs with the mistake in place (``python -m pdlt.codegen``, as a
developer would after editing derive/), and run the selected tests against the copy. A mistake is
*caught* when at least one test fails. The working tree is never modified.

The copy is imported through a scratch virtual environment whose ``.pth`` points at a folder
holding ``pdlt/derive``, ``pdlt/codegen``, ``pdlt/generated``, ``pdlt/runtime`` (links into the copy) and at this
environment's site-packages for the dependencies (the editable install's finder there is not
loaded, so nothing resolves to the working tree). Each mistake gets its own ``PDLT_CACHE_DIR``.

``--tests`` is passed to pytest (default: the deterministic suite, everything but
``tests/montecarlo``). ``--quick`` regenerates ``generated/`` only and leaves out the tests that
cannot see a mistake in the recursion once it is regenerated: the drift checks (``test_docs.py``,
``test_generated_is_up_to_date``) and the expectations against mpmath (which never call the
recursion), and runs tests/derive first, then tests/generated and tests/codegen. Without
``--keep-going`` pytest stops at the first failure (``-x``), which answers "caught or not" and
names the first test that caught it; with it every failing test is listed. The table this prints
is the one in ``docs/testing.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"derive": "derive", "codegen": "codegen", "generated": "generated", "runtime": "runtime"}


@dataclass(frozen=True)
class Mistake:
    name: str
    what: str
    path: str  # relative to the repository root
    old: str  # must occur exactly once
    new: str


# Mistakes in individual terms of the derived recursion are planted by re-wrapping derive_step at
# the end of recursion.py, so that every consumer (generator, references, tests) sees them.
_WRAP = '''

_planted_original = derive_step


def _planted_terms(expr, **powers):
    """The monomials of expr whose degree in each named symbol is as given."""
    symbols = {{"V": nt.c(2, 1), "G1": nt.c(1, 1), "g1": nt.s(1, 1), "g2": nt.s(1, 2), "g3": nt.s(1, 3),
                "g4": nt.s(1, 4), "var": nt.s(2, 0), "var1": nt.s(2, 1)}}
    out = sp.Integer(0)
    for term in sp.Add.make_args(sp.expand(expr)):
        if all(sp.degree(term, symbols[k]) == v for k, v in powers.items()):
            out += term
    assert out != 0, "the planted term is absent"
    return out


@cache
def derive_step(order: int, renormalized: bool = False) -> StepDerivation:
    step = _planted_original(order, renormalized)
    new = dict(step.new_state)
    {body}
    return StepDerivation(step.order, step.renormalized, new, step.cumulants)
'''
_RECURSION = "derive/recursion.py"
_END = "    return StepDerivation(p, renormalized, new_state, _cumulants_from_moments(p))\n"


def _wrapped(body: str) -> Mistake:
    return _END + _WRAP.format(body=body)


def _term_mistake(name: str, what: str, body: str) -> Mistake:
    return Mistake(name, what, _RECURSION, _END, _wrapped(body))


MISTAKES = [
    # the four of issue 11, which passed every deterministic test before it
    _term_mistake("G2-sign", "flip the sign of G{2} (c[1][2])", "if order >= 2:\n        new[(1, 2)] = -new[(1, 2)]"),
    Mistake(
        "quartic-taylor",
        "double the 1/4! of the fourth K-derivative in the Taylor expansion",
        _RECURSION,
        "QQ(1, factorial(m) * factorial(j))",
        "QQ(2 if j == 4 else 1, factorial(m) * factorial(j))",
    ),
    _term_mistake(
        "V1-g2sq-sign",
        "flip the sign of the V^2 g''^2 / 2 term of V{1} (c[2][2])",
        "if order >= 2:\n        t = _planted_terms(new[(2, 2)], V=2, g2=2)\n"
        "        new[(2, 2)] = sp.expand(new[(2, 2)] - 2 * t)",
    ),
    _term_mistake(
        "U-drop-term",
        "drop the 3 C_W^3 V^2 g'^2 g'' term of U (c[3][2])",
        "if order >= 2:\n        t = _planted_terms(new[(3, 2)], V=2, g1=2, g2=1)\n"
        "        new[(3, 2)] = sp.expand(new[(3, 2)] - t)",
    ),
    _term_mistake(
        "G2-scale-0.9", "scale G{2} by 0.9", "if order >= 2:\n        new[(1, 2)] = sp.Rational(9, 10) * new[(1, 2)]"
    ),
    _term_mistake(
        "G2-scale-1.1", "scale G{2} by 1.1", "if order >= 2:\n        new[(1, 2)] = sp.Rational(11, 10) * new[(1, 2)]"
    ),
    # mistakes in the engine itself
    Mistake(
        "log1p-cubic",
        "wrong sign of the u^3/3 term of log(1 + u)",
        "derive/series.py",
        "Fraction((-1) ** (q + 1), q)",
        "Fraction((-1) ** (q + 1) * (-1 if q == 3 else 1), q)",
    ),
    Mistake(
        "ratio-power",
        "width ratio r^k replaced by r for k >= 2 in the state of layer l",
        _RECURSION,
        "sym_gen[nt.c(m, k)] * rg**k * dg**k",
        "sym_gen[nt.c(m, k)] * rg ** min(k, 1) * dg**k",
    ),
    Mistake(
        "derivative-cut",
        "one K-derivative too few kept for each cumulant (truncation bound)",
        _RECURSION,
        "return [(m, j) for m in range(1, order + 2) for j in range(0, 2 * (order + 1 - m) + 1)]",
        "return [(m, j) for m in range(1, order + 2) for j in range(0, max(1, 2 * (order + 1 - m)))]",
    ),
    Mistake(
        "cumulant-binomial",
        "wrong binomial in the moment-to-cumulant recursion for s_m",
        _RECURSION,
        "(comb(m - 1, i - 1) * base[i] * nt.mu(m - i, 0) for i in range(1, m))",
        "(comb(m - 1, i) * base[i] * nt.mu(m - i, 0) for i in range(1, m))",
    ),
    Mistake(
        "delta-moments",
        "wrong binomial in the moments of Delta from its cumulants",
        _RECURSION,
        "acc = acc + (kappa_delta[i] * moments[j - i]).scale(comb(j - 1, i - 1))",
        "acc = acc + (kappa_delta[i] * moments[j - i]).scale(comb(j - 1, i - 1) + (i == 3))",
    ),
    Mistake(
        "renormalized-power",
        "the 1/n_l^k part of C_W enters at 1/n_l^(k+1)",
        _RECURSION,
        'cw = series(sum((sym_gen[nt.hyper("C_W", k)] * dg**k for k in range(p + 1)), ring.zero))',
        'cw = series(sum((sym_gen[nt.hyper("C_W", k)] * dg ** (k + (k > 1)) for k in range(p + 1)), ring.zero))',
    ),
    _term_mistake(
        "G3-sign", "flip the sign of G{3} (c[1][3], order 3)", "if order >= 3:\n        new[(1, 3)] = -new[(1, 3)]"
    ),
    _term_mistake(
        "V-var-g4",
        "add a spurious V^2 g'''' / 8 source to G{2} (order 2)",
        "if order >= 2:\n        new[(1, 2)] = sp.expand(new[(1, 2)] + nt.r**2 * nt.c(2, 1)**2 * nt.s(1, 4) / 8)",
    ),
]


def _site_packages() -> str:
    return sysconfig.get_paths()["purelib"]


def _prepare(rev: str | None, scratch: Path) -> Path:
    """A copy of the sources (the working tree, or ``rev``) in ``scratch/tree``."""
    tree = scratch / "tree"
    if rev is None:
        ignore = shutil.ignore_patterns(
            ".git",
            ".venv",
            ".ci-venv",
            "__pycache__",
            ".hypothesis",
            ".pytest_cache",
            "*.egg-info",
            "build",
            "dist",
            "*.nbi",
            "*.nbc",
        )
        shutil.copytree(ROOT, tree, ignore=ignore)
    else:
        tree.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def _environment(scratch: Path, tree: Path) -> Path:
    """A scratch venv that imports pdlt from ``tree`` and the dependencies from this environment."""
    venv = scratch / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    shim = scratch / "shim" / "pdlt"
    shim.mkdir(parents=True)
    for name, folder in PACKAGES.items():
        (shim / name).symlink_to(tree / folder, target_is_directory=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(purelib, "_planted.pth").write_text(f"{shim.parent}\n{_site_packages()}\n")
    bindir = venv / "bin"
    (bindir / "pdlt").write_text(f"#!{python}\nimport sys\nfrom pdlt.codegen.cli import main\nsys.exit(main())\n")
    (bindir / "pdlt").chmod(0o755)
    return python


def _apply(tree: Path, mistake: Mistake) -> None:
    path = tree / mistake.path
    text = path.read_text()
    count = text.count(mistake.old)
    if count != 1:
        raise SystemExit(f"plant.py: mistake {mistake.name!r}: the edit matches {count} times in {mistake.path}")
    path.write_text(text.replace(mistake.old, mistake.new))


def _run(cmd: list[str], cwd: Path, env: dict, log: Path) -> int:
    with log.open("a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        return subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT).returncode


QUICK_TESTS = (
    "tests/derive tests/generated tests/codegen tests/test_readme.py "
    "--deselect=tests/generated/test_uptodate.py::test_generated_is_up_to_date "
    "--deselect=tests/generated/test_kernels.py::test_expectations_against_mpmath"
)
REGENERATE_ALL = ["-m", "pdlt.codegen"]
REGENERATE_KERNELS = ["-c", "from pdlt.codegen.generate import regenerate; regenerate()"]


def plant(
    mistake: Mistake,
    rev: str | None,
    tests: list[str],
    keep_going: bool,
    logs: Path,
    regenerate: list[str] = REGENERATE_ALL,
) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"pdlt-plant-{mistake.name}-") as tmp:
        scratch = Path(tmp)
        tree = _prepare(rev, scratch)
        python = _environment(scratch, tree)
        _apply(tree, mistake)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env.update(
            PDLT_CACHE_DIR=str(scratch / "cache"),
            PATH=f"{python.parent}:{env.get('PATH', '')}",
            PYTHONDONTWRITEBYTECODE="1",
        )
        log = logs / f"{mistake.name}.log"
        log.write_text("")
        start = time.monotonic()
        if _run([str(python), *regenerate], tree, env, log) != 0:
            return {"mistake": mistake.name, "caught": True, "by": ["regeneration failed"], "seconds": 0.0}
        junit = scratch / "junit.xml"
        cmd = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *tests]
        if not keep_going:
            cmd.insert(4, "-x")
        code = _run(cmd, tree, env, log)
        failed = _failures(junit) if junit.exists() else []
        if code not in (0, 1):  # interrupted, internal or usage error, no tests: no verdict
            raise SystemExit(f"plant.py: pytest exited {code} for {mistake.name}; see {log}")
        return {
            "mistake": mistake.name,
            "what": mistake.what,
            "caught": code == 1,
            "by": failed,
            "seconds": round(time.monotonic() - start, 1),
        }


def _failures(junit: Path) -> list[str]:
    text = junit.read_text()
    out = []
    for case in re.finditer(r'<testcase classname="([^"]*)" name="([^"]*)"[^>]*?(/>|>(.*?)</testcase>)', text, re.S):
        body = case.group(4) or ""
        if "<failure" in body or "<error" in body:
            out.append(f"{case.group(1).replace('.', '/')}.py::{case.group(2)}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rev", help="git revision whose sources to plant into (default: the working tree)")
    parser.add_argument("--only", help="comma-separated mistake names (default: all)")
    parser.add_argument("--tests", help="pytest arguments (default: tests --ignore=tests/montecarlo)")
    parser.add_argument(
        "--quick", action="store_true", help="regenerate generated/ only; default tests: " + QUICK_TESTS
    )
    parser.add_argument("--keep-going", action="store_true", help="run every test and list every failure")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--list", action="store_true", help="list the mistakes and exit")
    args = parser.parse_args(argv)
    chosen = MISTAKES
    if args.list:
        for m in MISTAKES:
            print(f"{m.name:20} {m.what}")
        return 0
    if args.only:
        names = args.only.split(",")
        unknown = set(names) - {m.name for m in MISTAKES}
        if unknown:
            parser.error(f"unknown mistake(s): {', '.join(sorted(unknown))}")
        chosen = [m for m in MISTAKES if m.name in names]
    logs = Path(tempfile.mkdtemp(prefix="pdlt-plant-logs-"))
    print(f"logs in {logs}", file=sys.stderr)
    tests = args.tests or (QUICK_TESTS if args.quick else "tests --ignore=tests/montecarlo")
    regenerate = REGENERATE_KERNELS if args.quick else REGENERATE_ALL
    results = []
    for mistake in chosen:
        print(f"planting {mistake.name}: {mistake.what} ...", file=sys.stderr, flush=True)
        result = plant(mistake, args.rev, tests.split(), args.keep_going, logs, regenerate)
        results.append(result)
        verdict = "CAUGHT by " + ", ".join(result["by"][:6]) if result["caught"] else "missed"
        print(f"  {verdict} ({result['seconds']} s)", file=sys.stderr, flush=True)
    caught = sum(r["caught"] for r in results)
    print(
        f"\n{caught} of {len(results)} planted mistakes caught by: pytest {tests}"
        + (f" at {args.rev}" if args.rev else "")
    )
    for r in results:
        print(f"| {r['mistake']} | {'caught' if r['caught'] else 'missed'} | {'; '.join(r['by'][:6])} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
