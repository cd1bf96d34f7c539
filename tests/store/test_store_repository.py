"""repository.py: a Repository composed of parts, closed for real, with hooks attached from outside;
and the core (kitaru_store outside remote/ and cli/) never importing the remote layer."""

from __future__ import annotations

import ast
import gc
from pathlib import Path

import pytest
from store_helpers import ROOT, commit_execution, fresh_python

from kitaru_store import ObjectNotFoundError, Repository, StateError
from kitaru_store.backend import open_backend

CORE = ROOT / "kitaru_store"
OUTSIDE_CORE = ("remote", "cli")  # the layers that may import the remote layer


def _closed(repo: Repository) -> StateError:
    with pytest.raises(StateError, match="repository is closed") as caught:
        repo.get_execution("0" * 32)
    return caught.value


def test_parts_and_the_documented_methods_are_one_implementation(repo: Repository) -> None:
    exec_id = commit_execution(repo, "flow", {"x": 1})
    oid = repo.resolve_name(exec_id, "x").object_id
    assert repo.executions.get(exec_id) == repo.get_execution(exec_id)
    assert repo.objects.get_value(oid) == repo.get_value(oid) == 1
    assert repo.objects.resolve(oid[:8]) == repo.resolve_object(oid[:8]) == oid
    assert [s.exec_id for s in repo.executions.page()] == [exec_id]
    repo.refs.pin("keep", oid)
    assert repo.pins() == {"keep": oid}
    assert repo.maintenance.fsck().ok and repo.fsck().ok
    assert repo.stats() == repo.maintenance.stats()


def test_with_block_closes_the_repository_and_its_environment(store_path: Path) -> None:
    with Repository.open(store_path) as repo:
        commit_execution(repo, "flow", {"x": 1})
        kv = repo.kv
    assert repo.closed
    assert not kv.is_open  # type: ignore[attr-defined]  # the LMDB Backend: no other user
    error = _closed(repo)
    assert error.name == str(store_path)
    with pytest.raises(StateError, match="repository is closed"):
        repo.writer().put_bytes(b"late")
    memory = repo.memory
    with pytest.raises(StateError, match="repository is closed"):
        memory.set(memory.scope("flow", "flow"), "key", 1)
    repo.close()  # twice: nothing happens
    again = Repository.open(store_path)  # the store opens again, with what was committed
    assert again.count_executions() == 1


def test_closing_one_of_two_repositories_on_a_path_leaves_the_other_working(store_path: Path) -> None:
    a = Repository.open(store_path)
    b = Repository.open(store_path)
    reader = Repository.open(store_path, readonly=True)
    exec_id = commit_execution(a, "flow", {"x": 1})
    a.close()
    _closed(a)
    assert b.get_execution(exec_id).flow_name == "flow"  # b and its writes go on
    oid = b.put_value("after a closed").object_id
    assert reader.get_value(oid) == "after a closed"
    b.close()
    assert reader.get_value(oid) == "after a closed"  # the read-only one is a user too
    kv = reader.kv
    reader.close()
    assert not kv.is_open  # type: ignore[attr-defined]  # the last user closed it


def test_a_store_opened_under_two_spellings_is_one_set_of_users(tmp_path: Path) -> None:
    """The process shares one environment per real path: closing a Repository opened through a
    symlink must not close it under one opened by the real path, even mid-read (a view into
    an unmapped file would crash the process: run in a child to see it)."""
    script = f"""
import os
from kitaru_store import Repository, layout
real, link = {str(tmp_path / "store")!r}, {str(tmp_path / "link")!r}
a = Repository.open(real)
os.symlink(real, link)
b = Repository.open(link)
w = b.writer(); eid = w.create_execution("f"); w.commit()
with a.kv.read(buffers=True) as rt:
    view = rt.get_view(layout.MANIFESTS, layout.uuid_key(eid))
    b.close()
    print("read", len(bytes(view)) > 0)
print("still", a.get_execution(eid).flow_name)
"""
    assert fresh_python(script) == ["read", "True", "still", "f"]


def test_a_repository_collected_unclosed_does_not_keep_the_environment_open(store_path: Path) -> None:
    Repository.open(store_path).put_value("dropped without close()")
    gc.collect()
    with Repository.open(store_path) as repo:
        kv = repo.kv
    assert not kv.is_open  # type: ignore[attr-defined]
    fresh = open_backend(str(store_path / "db"))
    assert fresh is not kv and fresh.is_open


def test_closing_an_in_memory_repository_drops_its_data(tmp_path: Path) -> None:
    mem = Repository.open_memory(tmp_path / "mem")
    oid = mem.put_value({"k": "v"}).object_id
    other = Repository.open_memory(tmp_path / "mem")  # its own data, whatever the path
    assert not other.has_object(oid)
    mem.close()
    with pytest.raises(StateError, match="repository is closed"):
        mem.get_value(oid)
    assert other.get_value(other.put_value(1).object_id) == 1


def test_after_commit_hooks_get_the_changed_executions(repo: Repository) -> None:
    seen: list[list[str]] = []
    repo.hooks.after_commit.append(seen.append)
    exec_id = commit_execution(repo, "flow", {"x": 1})
    assert seen == [[exec_id]]
    repo.put_value("objects only")  # no execution changed: no call
    with repo.writer() as w:
        w.remote_sync = False  # an import (a pull) is not a change to push back
        w.update_execution(exec_id, metadata={"k": 1})
    assert seen == [[exec_id]]
    repo.update_execution(exec_id, metadata={"k": 2})
    assert seen == [[exec_id], [exec_id]]


def test_a_missing_object_hook_may_supply_the_object(store_path: Path) -> None:
    source = Repository.open(store_path / "source")
    oid = source.put_value({"from": "elsewhere"}).object_id
    repo = Repository.open(store_path / "local")
    asked: list[str] = []

    def decline(object_id: str) -> bool:
        asked.append(object_id)
        return False

    def fetch(object_id: str) -> bool:
        asked.append(object_id)
        repo.put_bytes(source.get_bytes(object_id))  # content-addressed: the same id
        return True

    repo.hooks.missing_object.append(decline)
    with pytest.raises(ObjectNotFoundError):
        repo.get_value(oid)
    repo.hooks.missing_object.append(fetch)
    assert repo.get_value(oid) == {"from": "elsewhere"}
    assert asked == [oid, oid, oid]
    assert repo.get_value(oid) == {"from": "elsewhere"}  # stored now: no hook asked
    assert len(asked) == 3


def _remote_imports(path: Path) -> list[str]:
    """The imports of kitaru_store.remote in a module (anywhere in it: top level, functions,
    TYPE_CHECKING blocks), and string constants naming it (a lazy import by name)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module or "").split(".")]).strip(".")
            names = [module] + [f"{module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = [node.value]  # "remote" too: lazy_module / lazy_getattr tables name a submodule
        found += [f"{path.name}:{getattr(node, 'lineno', '?')}: {n}" for n in names if _is_remote(n)]
    return found


def _is_remote(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in ("kitaru_store.remote", ".remote", "remote"))


def test_the_core_never_imports_the_remote_layer() -> None:
    core = [p for p in CORE.rglob("*.py") if p.relative_to(CORE).parts[0] not in OUTSIDE_CORE]
    assert len(core) > 30 and CORE / "repository.py" in core
    assert [hit for p in core for hit in _remote_imports(p)] == []
    # The check sees what it looks for: the CLI does import the remote layer.
    assert _remote_imports(CORE / "cli" / "common.py")


def test_using_a_store_loads_no_remote_code(store_path: Path) -> None:
    code = (
        "import sys\nfrom kitaru_store import Repository, ObjectNotFoundError\n"
        f"repo = Repository.open({str(store_path)!r})\n"
        "with repo.writer() as w:\n"
        "    e = w.create_execution('flow')\n"
        "    w.update_execution(e, status='completed')\n"
        "repo.get_execution(e)\n"
        "try:\n    repo.get_bytes('ab' * 32)\nexcept ObjectNotFoundError:\n    pass\n"
        "repo.gc(); repo.fsck(); repo.close()\n"
        "print(sorted(m for m in sys.modules if m.startswith('kitaru_store.remote')) or 'none')"
    )
    assert fresh_python(code) == ["none"]
