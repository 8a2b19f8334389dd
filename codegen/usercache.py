"""Kernels for any activation and order, generated on first use into a content-addressed cache.

The key hashes the activation's exact sympy form, the order, the sources of the engine (every
module of derive/, codegen/ and runtime/ and every template) and the pdlt and sympy versions, so an edited
engine (an editable install), a changed template or a new release never reuses a stale module. The
cache lives outside the repository: ``$PDLT_CACHE_DIR``, else ``$XDG_CACHE_HOME/pdlt``, else
``~/.cache/pdlt``. Modules are written atomically, so concurrent first uses are safe.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path
from types import ModuleType

import sympy as sp

from pdlt.derive import __file__ as _derive_file
from pdlt.derive.activations import Activation
from pdlt.runtime import __file__ as _runtime_file

from .generate import SHIPPED_ORDER, module_text
from .lower import _version
from .write import write_atomic

TEMPLATES = Path(__file__).resolve().parent / "templates"
MODULE_PREFIX = "pdlt_kernels_"  # import name of a cached module: the prefix, then its key
DERIVE = Path(_derive_file).resolve().parent
RUNTIME = Path(_runtime_file).resolve().parent


def cache_dir() -> Path:
    if os.environ.get("PDLT_CACHE_DIR"):
        return Path(os.environ["PDLT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pdlt"


def engine_sources() -> list[Path]:
    """Every file whose content can change a generated module: derive/, codegen/, templates, and
    the runtime the modules call (its ABI is recorded in each module)."""
    codegen = TEMPLATES.parent
    return sorted([*DERIVE.glob("*.py"), *codegen.glob("*.py"), *TEMPLATES.glob("*.jinja"), *RUNTIME.glob("*.py")])


@cache
def engine_digest() -> str:
    """sha256 over the engine's sources (names and contents), computed once per process."""
    h = hashlib.sha256()
    for path in engine_sources():
        h.update(f"{path.parent.name}/{path.name}\n".encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def cache_key(act: Activation, order: int) -> str:
    text = "\n".join(
        [
            act.name,
            sp.srepr(act.expr),
            repr([(s.name, str(v)) for s, v in act.params]),
            str(order),
            engine_digest(),
            _version("pdlt"),
            sp.__version__,
        ]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def kernels(act: Activation, order: int, progress: Callable[[str], None] | None = None) -> ModuleType:
    """The kernel module for ``act`` at ``order``: shipped if it is, else cached or generated."""
    if order == SHIPPED_ORDER:
        from pdlt import generated

        shipped = generated.SHIPPED
        if act.name in shipped and _is_registered(act):
            return generated.load(act.name)
    key = cache_key(act, order)
    module_name = f"{MODULE_PREFIX}{key}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    path = cache_dir() / "kernels" / f"{module_name}.py"
    if not path.exists():
        if progress:
            progress(f"deriving and generating order-{order} kernels for {act.name} (first use) ...")
        command = f"pdlt (user cache) for {sp.sstr(act.expr)} at order {order}"
        write_atomic(path, module_text(act, order, command))
        _FRESH.append((module_name, path))
        if progress:
            progress(f"cached in {path}")
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


_FRESH: list[tuple[str, Path]] = []  # modules this process generated into the cache


def discard_fresh() -> list[Path]:
    """Remove what this process added to the cache (the modules it generated and their numba cache
    files): a command that fails leaves nothing behind. Returns the paths removed."""
    removed = []
    numba_dir = os.environ.get("NUMBA_CACHE_DIR")
    while _FRESH:
        module_name, path = _FRESH.pop()
        sys.modules.pop(module_name, None)
        found = [path, *(path.parent / "__pycache__").glob(f"{module_name}.*")]
        if numba_dir:
            found += Path(numba_dir).rglob(f"{module_name}.*")
        for item in found:
            if item.exists():
                item.unlink()
                removed.append(item)
    return removed


def _is_registered(act: Activation) -> bool:
    from pdlt.derive.activations import REGISTRY

    reg = REGISTRY.get(act.name)
    return reg is not None and reg.expr == act.expr and reg.param_symbols == act.param_symbols
