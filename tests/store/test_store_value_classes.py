"""Stored values that name a class: found among imported or registered classes, never imported.

A value names its class as ``module:qualname``; importing that module would run its code (a
value naming ``venv.__main__`` creates a virtualenv). Loading finds the class in ``sys.modules``
or the registry only, checks its kind without running class code, and otherwise gives the fields
as plain data with one warning.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import subprocess
import sys
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

import kitaru
from kitaru import KitaruClient
from kitaru_store import Repository, SerializationError
from kitaru_store import serialization as ser

PROGRAM_MODULES = ["venv.__main__", "unittest.__main__", "idlelib.idle"]


def claiming(module: str, kind: str) -> Any:
    """A value of a class that says it is defined in ``module`` (serialized in the usual format)."""
    if kind == "struct":
        cls: Any = msgspec.defstruct("Args", [("path", str)])
    elif kind == "enum":
        cls = enum.Enum("Args", {"A": "some-dir"})
    else:
        cls = dataclasses.make_dataclass("Args", [("path", str)])
    cls.__module__ = module
    return cls.A if kind == "enum" else cls(path="some-dir")


def _plain(kind: str) -> Any:
    return "some-dir" if kind == "enum" else {"path": "some-dir"}


@pytest.fixture
def empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The working directory a program would write into (venv creates its directory there)."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    before = set(sys.modules)
    yield cwd
    assert list(cwd.iterdir()) == []  # no virtualenv, nothing written
    assert not (set(sys.modules) - before) & set(PROGRAM_MODULES)  # nothing imported


@pytest.mark.parametrize("module", PROGRAM_MODULES)
@pytest.mark.parametrize("kind", ["dataclass", "struct", "enum"])
def test_a_value_naming_a_program_module_loads_as_data(empty_cwd: Path, module: str, kind: str) -> None:
    data, _ = ser.serialize(claiming(module, kind))
    assert f"{module}:Args".encode() in bytes(data)
    with pytest.warns(RuntimeWarning, match=rf"{module}:Args \(not imported\)") as caught:
        assert ser.deserialize(data) == _plain(kind)
    assert len(caught) == 1 and caught[0].filename == __file__  # the caller's line, not ours


@kitaru.checkpoint
def _load_named(exec_id: str, name: str) -> Any:
    return kitaru.load(exec_id, name)


@kitaru.flow
def _loading(exec_id: str, name: str) -> Any:
    return _load_named(exec_id, name).load()


@kitaru.checkpoint
def _save_claiming(module: str) -> None:
    kitaru.save("args", claiming(module, "dataclass"))


@kitaru.flow
def _saving(module: str) -> None:
    _save_claiming(module)


def test_every_load_path_runs_nothing(repo: Repository, empty_cwd: Path, store_path: Path) -> None:
    exec_id = _saving.run("venv.__main__").exec_id
    entry = repo.resolve_name(exec_id, "args")
    ref = next(a for a in KitaruClient().executions.get(exec_id).artifacts if a.name == "args")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert repo.get_value(entry.object_id) == {"path": "some-dir"}
        assert ref.load() == {"path": "some-dir"}
        assert _loading.run(exec_id, "args").wait() == {"path": "some-dir"}
    assert len(caught) == 3 and all("venv.__main__:Args" in str(w.message) for w in caught)
    # The CLI, in a process of its own (whose imports are not the test's).
    env = {**os.environ, "KITARU_STORE": str(store_path), "PYTHONPATH": str(Path(ser.__file__).parents[1])}
    cli = [sys.executable, "-m", "kitaru_store.cli"]
    done = subprocess.run(
        [*cli, "cat", f"{exec_id}:args", "--json"], cwd=empty_cwd, env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["value"] == {"path": "some-dir"}
    assert b"not imported" in done.stderr


def test_the_class_is_found_without_running_any_of_its_modules_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """A module's __getattr__ (PEP 562) or a metaclass hook is code: resolving runs neither."""
    calls: list[str] = []
    fake = types.ModuleType("kitaru_fake_module")
    fake.__getattr__ = lambda name: calls.append(name) or type("Made", (), {})  # type: ignore[method-assign]

    class Meta(type):
        def __getattribute__(cls, name: str) -> Any:
            calls.append(name)
            return super().__getattribute__(name)

    fake.Plain = Meta("Plain", (), {})  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "kitaru_fake_module", fake)
    with pytest.warns(RuntimeWarning, match="not imported.*Plain \\(not a dataclass class\\)"):
        value = ser.deserialize(_stored("dataclass", "kitaru_fake_module:Missing", {"a": 1}, also="Plain"))
    assert value == [{"a": 1}, {"a": 1}]
    assert calls == []


def _stored(kind: str, path: str, fields: dict[str, Any], *, also: str) -> bytes:
    items = [
        msgspec.msgpack.Ext(ser.X_OBJECT, msgspec.msgpack.encode([kind, p, fields]))
        for p in (path, path.replace("Missing", also))
    ]
    return ser.TAG_MSGPACK + msgspec.msgpack.encode(items)


@dataclasses.dataclass
class Exits:
    code: int

    def __post_init__(self) -> None:
        raise SystemExit(self.code)


def test_no_base_exception_escapes_a_load(repo: Repository) -> None:
    data = ser.TAG_MSGPACK + msgspec.msgpack.encode(
        msgspec.msgpack.Ext(
            ser.X_OBJECT, msgspec.msgpack.encode(["dataclass", f"{__name__}:Exits", {"code": 3}])
        )
    )
    oid = repo.put_bytes(data)
    with pytest.raises(SerializationError, match="SystemExit") as info:
        repo.get_value(oid)
    assert info.value.object_id == oid


class Unimported(msgspec.Struct):
    x: int


def test_registered_classes_load_under_their_stored_path() -> None:
    path = "kitaru_never_imported.shapes:Unimported"
    data = ser.TAG_MSGPACK + msgspec.msgpack.encode(
        msgspec.msgpack.Ext(ser.X_OBJECT, msgspec.msgpack.encode(["struct", path, {"x": 1}]))
    )
    with pytest.warns(RuntimeWarning, match="not imported"):
        assert ser.deserialize(data) == {"x": 1}
    assert kitaru.register_type(Unimported, stored_as=path) is Unimported
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert ser.deserialize(data) == Unimported(1)
    finally:
        ser._registered.pop(path)
    assert "kitaru_never_imported" not in sys.modules


@pytest.mark.parametrize("bad", [os.system, int, object(), "os:system"])
def test_only_data_classes_can_be_registered(bad: Any) -> None:
    with pytest.raises(SerializationError, match="cannot register"):
        kitaru.register_type(bad)
