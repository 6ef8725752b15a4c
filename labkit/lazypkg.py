"""pyroute2's package, imported by name only when a name is used.

``from pyroute2 import IPRoute`` runs pyroute2's ``__init__``, which imports every part
of the library (IPDB, NDB, conntrack, nl80211, plan9, ...): 0.15-0.25 s in each process
that touches netlink, of which the lab uses only ``IPRoute`` and a few netlink modules.
Every ``labkit`` command, the lab's own process and the zygote that forks each flanneld
paid it.

:func:`register` (called by ``labkit/__init__``) adds an import hook that answers
``import pyroute2`` with a stand-in for the package (the same ``__path__``, so
``pyroute2.iproute`` and every other submodule import as usual) that imports a public
name's module the first time the name is asked for. The names and
their modules are read from pyroute2's own ``__init__.py`` (its ``from X import a, b``
lines, with ``ast``, never running it), so ``import pyroute2; pyroute2.NDB`` still
works. Nothing changes in pyroute2 itself; if its ``__init__`` has anything the reader
does not understand, the stand-in is not installed and the import is the normal one.
"""
from __future__ import annotations

import importlib
import importlib.machinery
import sys
import types
from typing import Any

PACKAGE = "pyroute2"


def public_names(init_source: str) -> dict[str, str] | None:
    """name -> module for each ``from pyroute2.X import name`` at the top of ``__init__``.
    Plain imports, ``try``/``if`` blocks (the version lookup, the Windows-only patch),
    expressions and assignments without a call are passed over; anything else (an
    assignment of a call, a function or class defined there) gives None: code the
    stand-in could not reproduce, so the normal import must run."""
    import ast
    names: dict[str, str] = {}
    for node in ast.parse(init_source).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PACKAGE + ".") \
                and node.level == 0:
            for alias in node.names:
                names[alias.asname or alias.name] = node.module
        elif isinstance(node, ast.Try | ast.If | ast.Import | ast.Expr):
            continue  # the version lookup, the Windows-only patch, `import sys`, docstrings
        elif isinstance(node, ast.Assign | ast.AugAssign) and not any(
                isinstance(n, ast.Call) for n in ast.walk(node.value)):
            continue  # `modules = [...]`, `__all__ = []`
        else:
            return None
    return names or None


class _LazyPackage(types.ModuleType):
    _lazy: dict[str, str]
    __all__: list[str]

    def __getattr__(self, name: str) -> Any:
        module = self._lazy.get(name)
        if module is None:
            if name == "__version__":
                try:
                    from pyroute2.config.version import __version__ as v
                except ImportError:
                    v = "unknown"
                setattr(self, name, v)
                return v
            if not name.startswith("_"):  # a subpackage the full __init__ would have loaded on the way
                try:
                    return importlib.import_module(f"{PACKAGE}.{name}")
                except ModuleNotFoundError as e:
                    if e.name != f"{PACKAGE}.{name}":
                        raise
            raise AttributeError(f"module {PACKAGE!r} has no attribute {name!r}")
        source = importlib.import_module(module)
        try:
            value = getattr(source, name)
        except AttributeError:  # `from pyroute2.config import log`: a submodule
            value = importlib.import_module(f"{module}.{name}")
        setattr(self, name, value)  # the next lookup is an ordinary attribute
        return value

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._lazy))


class _Finder:  # a meta path finder and its loader (not importlib.abc's: 12 ms to import)
    """Answers for ``pyroute2`` itself (not its submodules) with the stand-in."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != PACKAGE:
            return None
        real = importlib.machinery.PathFinder.find_spec(PACKAGE)
        if real is None or real.origin is None or not real.submodule_search_locations:
            return None
        try:
            with open(real.origin, encoding="utf-8") as f:
                names = public_names(f.read())
        except (OSError, SyntaxError, ValueError):
            names = None
        if names is None:
            return None  # the normal import
        loader: Any = self  # duck-typed: importlib.abc.Loader is not imported (see the class)
        spec = importlib.machinery.ModuleSpec(PACKAGE, loader, origin=real.origin, is_package=True)
        spec.submodule_search_locations = list(real.submodule_search_locations)
        spec.has_location = True
        spec.loader_state = names
        return spec

    def create_module(self, spec: Any) -> types.ModuleType:
        module = _LazyPackage(PACKAGE, "pyroute2 (labkit.lazypkg: public names imported on first use)")
        module._lazy = spec.loader_state
        module.__all__ = sorted(spec.loader_state)
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass  # nothing runs: names are imported by _LazyPackage.__getattr__


def register() -> None:
    """Put the finder on sys.meta_path (once); nothing is read until pyroute2 is imported."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
