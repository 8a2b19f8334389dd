"""The planting script stays runnable: every planted mistake still applies to today's sources."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from plant import MISTAKES, ROOT  # noqa: E402


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m.name for m in MISTAKES])
def test_each_mistake_applies_exactly_once_and_compiles(mistake):
    source = (ROOT / mistake.path).read_text()
    assert source.count(mistake.old) == 1, f"update tests/planting/plant.py: {mistake.name} no longer applies"
    planted = source.replace(mistake.old, mistake.new)
    assert planted != source
    compile(planted, mistake.path, "exec")


def test_mistake_names_are_unique():
    assert len({m.name for m in MISTAKES}) == len(MISTAKES)
