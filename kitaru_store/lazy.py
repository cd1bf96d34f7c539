"""Imports on first use: the one mechanism for keeping heavy modules out of ``import``.

kitaru, kitaru_store and kitaru_store.remote keep their heavy modules (lmdb, zstandard, boto3,
thread pools) out of `import` this way, and kitaru.memory keeps msgspec out:

* :func:`lazy_getattr`: a module ``__getattr__`` (PEP 562) for public names, each imported from
  the submodule a table names when it is first looked up;
* :func:`lazy_module`: a stand-in for a submodule in a module's own globals (where PEP 562 does
  not reach), imported when one of its attributes is first used.
"""

from __future__ import annotations

import importlib
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see kitaru_store/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def lazy_getattr(module: str, table: dict[str, str], *, package: str | None = None) -> Callable[[str], Any]:
    """A ``__getattr__`` for ``module`` that imports ``<package>.<table[name]>`` (``package``:
    ``module`` itself unless given) and caches the attribute on ``module``."""
    base = package or module

    def __getattr__(name: str) -> Any:
        source = table.get(name)
        if source is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{source}", base), name)
        setattr(sys.modules[module], name, value)
        return value

    return __getattr__


class _LazyModule:
    __slots__ = ("_name", "_namespace")

    def __init__(self, name: str, namespace: dict[str, Any]) -> None:
        self._name = name
        self._namespace = namespace

    def __getattr__(self, attr: str) -> Any:
        module = importlib.import_module(f".{self._name}", self._namespace["__package__"])
        self._namespace[self._name] = module  # later uses find the module itself
        return getattr(module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._namespace['__package__']}.{self._name}>"


def lazy_module(name: str, namespace: dict[str, Any]) -> Any:
    """A stand-in for submodule ``name`` of the package whose module has globals ``namespace``:
    on first attribute use it imports the submodule and takes its place in ``namespace``."""
    return _LazyModule(name, namespace)
