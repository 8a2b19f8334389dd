"""The user kernel cache: its key follows every source that can change a generated module."""

from __future__ import annotations

import shutil

import pytest

from pdlt.codegen import usercache
from pdlt.derive.activations import Activation
from pdlt.derive.notation import z


@pytest.fixture
def engine_copy(tmp_path, monkeypatch):
    """The key computed over a copy of the engine's sources, which the test may edit."""
    derive, codegen, runtime = tmp_path / "derive", tmp_path / "codegen", tmp_path / "runtime"
    for source, copy in (
        (usercache.DERIVE, derive),
        (usercache.TEMPLATES.parent, codegen),
        (usercache.RUNTIME, runtime),
    ):
        shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(usercache, "DERIVE", derive)
    monkeypatch.setattr(usercache, "TEMPLATES", codegen / "templates")
    monkeypatch.setattr(usercache, "RUNTIME", runtime)
    usercache.engine_digest.cache_clear()
    yield tmp_path
    usercache.engine_digest.cache_clear()


def _key() -> str:
    usercache.engine_digest.cache_clear()
    return usercache.cache_key(Activation("f", z * z), 2)


def test_the_key_covers_derive_codegen_templates_and_the_runtime():
    names = {(p.parent.name, p.name) for p in usercache.engine_sources()}
    assert {
        ("derive", "recursion.py"),
        ("derive", "series.py"),
        ("codegen", "lower.py"),
        ("codegen", "printer.py"),
        ("templates", "module.py.jinja"),
        ("derive", "sectors.py"),
        ("runtime", "numerics.py"),
    } <= names


@pytest.mark.parametrize(
    "source",
    [
        "derive/recursion.py",
        "derive/expectations.py",
        "derive/sectors.py",
        "codegen/printer.py",
        "codegen/templates/module.py.jinja",
        "runtime/numerics.py",
    ],
)
def test_editing_an_engine_source_invalidates_cached_kernels(engine_copy, source):
    """An editable install whose engine was edited must not be served kernels from before."""
    before = _key()
    assert _key() == before  # deterministic
    path = engine_copy / source
    path.write_text(path.read_text() + "\n# edited\n")
    assert _key() != before


def test_the_key_depends_on_the_activation_and_order():
    assert usercache.cache_key(Activation("f", z * z), 2) != usercache.cache_key(Activation("f", z * z), 3)
    assert usercache.cache_key(Activation("f", z * z), 2) != usercache.cache_key(Activation("f", z**3), 2)
