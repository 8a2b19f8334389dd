"""The README's quick start and .ci/run stay in step."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", quick, re.S)


def test_quick_start_has_exactly_two_commands():
    commands = _commands()
    assert len(commands) == 2 and all("\n" not in c for c in commands)
    assert "pdlt flow tanh --order 2 --depth 10 --width 64 --C-b 0 --C-W 1 --input-norm2 1" in commands[0]


def test_ci_runs_the_readme_test_command():
    test_command = _commands()[1].split("&& ", 2)[2]  # after creating and activating the venv
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command in ci.splitlines()
