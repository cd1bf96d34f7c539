"""lazy.py: the one import-on-first-use mechanism (kitaru, kitaru_store, kitaru.memory, repository)."""

from __future__ import annotations

import sys
import types

import pytest
from store_helpers import fresh_python

from kitaru_store.lazy import lazy_getattr, lazy_module


def test_a_lazy_module_imports_on_first_use_and_takes_its_place() -> None:
    namespace = {"__package__": "kitaru_store"}
    namespace["layout"] = lazy_module("layout", namespace)
    assert "lazy module kitaru_store.layout" in repr(namespace["layout"])
    assert namespace["layout"].REFS == b"refs"
    import kitaru_store.layout

    assert namespace["layout"] is kitaru_store.layout


def test_lazy_getattr_imports_from_another_package_and_caches_on_the_module() -> None:
    module = types.ModuleType("kitaru_lazy_probe")
    sys.modules[module.__name__] = module
    try:
        getter = lazy_getattr(module.__name__, {"REFS": "layout"}, package="kitaru_store")
        assert getter("REFS") == b"refs"
        assert module.REFS == b"refs"  # cached: later lookups do not come back to the getter
        with pytest.raises(AttributeError, match="has no attribute 'nope'"):
            getter("nope")
    finally:
        del sys.modules[module.__name__]


def test_repository_loads_the_object_engine_only_when_a_value_is_read() -> None:
    code = (
        "import sys\nfrom kitaru_store import repository, repo_objects\n"
        "before = 'kitaru_store.codec' in sys.modules\n"
        "repo_objects.codec.HEADER_SIZE\n"
        "print(before, type(repo_objects.codec).__name__)"
    )
    assert fresh_python(code) == ["False", "module"]
