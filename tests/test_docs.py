"""docs/activations/ is what the generator renders now (the derivation pages are generated)."""

from __future__ import annotations

from pathlib import Path

from pdlt.codegen.docs import check_docs

ROOT = Path(__file__).resolve().parents[1]


def test_derivation_pages_are_up_to_date():
    diffs = check_docs(ROOT / "docs" / "activations")
    assert not diffs, "stale docs/activations; run python -m pdlt.codegen\n" + "".join(diffs)[:4000]
