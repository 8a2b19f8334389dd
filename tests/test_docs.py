"""The generated docs (derivation pages, criticality table) are what the generator renders now."""

from __future__ import annotations

from pathlib import Path

from pdlt.codegen.docs import check_docs

ROOT = Path(__file__).resolve().parents[1]


def test_derivation_pages_are_up_to_date():
    diffs = check_docs(ROOT / "docs")
    assert not diffs, "stale generated docs; run python -m pdlt.codegen\n" + "".join(diffs)[:4000]
