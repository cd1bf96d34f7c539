"""``kitaru.memory``: durable, versioned key-value state across executions.

::

    from kitaru import memory

    memory.set("user/42/prefs", {"tone": "brief"})      # version 1, in namespace "default"
    memory.get("user/42/prefs")                          # {'tone': 'brief'}
    memory.set("seen", 3, scope="flow")                  # in a flow: this flow's memory
    memory.history("user/42/prefs")                      # every version, oldest first

A key lives in a scope: ``"namespace"`` (a name of your choice, default ``"default"``),
``"flow"`` (a flow's name: the running flow's, or ``flow=``) or ``"execution"`` (an execution's
id: the running one's, or ``exec_id=``). Without ``scope=``, ``exec_id=`` means the execution
scope, ``flow=`` the flow scope, and otherwise it is the namespace scope.

Every ``set`` and ``delete`` adds a version; a value equal to a stored one adds a version record
but no bytes. Writes are durable when the call returns, inside a checkpoint too (they are not part
of the checkpoint's commit). Inside a flow the version records the execution (and checkpoint
invocation) that wrote it; outside, the OS user and "client". See docs/memory.md.

Importing this module is cheap: the store loads on the first call.
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any

from kitaru_store.lazy import lazy_getattr

from . import context
from .errors import KitaruContextError, KitaruUsageError

if TYPE_CHECKING:
    from kitaru_store import Repository
    from kitaru_store.memory import (
        Author,
        MemoryItem,
        MemoryKeyNotFoundError,
        MemoryRedactedError,
        MemoryVersion,
        Scope,
    )

SCOPES = ("namespace", "flow", "execution")  # kitaru_store.memory.SCOPES (a test keeps them equal)
DEFAULT_NAMESPACE = "default"

# Names defined in kitaru_store.memory, imported on first use (PEP 562) so that `import kitaru`
# does not load msgspec: ``except kitaru.memory.MemoryKeyNotFoundError`` works as usual.
_LAZY = ("Author", "MemoryItem", "MemoryKeyNotFoundError", "MemoryRedactedError", "MemoryVersion")
__getattr__ = lazy_getattr(__name__, dict.fromkeys(_LAZY, "memory"), package="kitaru_store")


class _Raise:
    def __repr__(self) -> str:
        return "<raise>"


_RAISE: Any = _Raise()


# --- scopes, stores and writers --------------------------------------------------------------


def _kind(scope: str | None, namespace: str | None, flow: str | None, exec_id: str | None) -> str:
    given = [
        k for k, v in (("namespace", namespace), ("flow", flow), ("execution", exec_id)) if v is not None
    ]
    if len(given) > 1:
        raise KitaruUsageError(
            "give at most one of namespace=, flow= and exec_id=",
            hint="a memory key lives in one scope: a namespace, a flow or an execution",
        )
    if scope is None:
        return given[0] if given else "namespace"
    if scope not in SCOPES:
        raise KitaruUsageError(f"unknown memory scope {scope!r}", hint=f"use one of: {', '.join(SCOPES)}")
    if given and given[0] != scope:
        param = {"namespace": "namespace=", "flow": "flow=", "execution": "exec_id="}[given[0]]
        raise KitaruUsageError(
            f"scope={scope!r} does not go with {param}",
            hint=f"drop scope= (the {param} argument selects the scope), or pass the name of the {scope}",
        )
    return scope


def resolve_scope(
    repo: Repository | None,
    api: str,
    *,
    scope: str | None = None,
    namespace: str | None = None,
    flow: str | None = None,
    exec_id: str | None = None,
    use_context: bool = True,
    write: bool = False,
) -> Scope:
    """The scope a call addresses. ``use_context``: default flow and execution to the running ones.

    An explicit execution id may be a unique prefix; a write needs the execution to exist.
    """
    from kitaru_store.memory import make_scope

    kind = _kind(scope, namespace, flow, exec_id)
    run = context.maybe_current_flow() if use_context else None
    if kind == "namespace":
        return make_scope("namespace", DEFAULT_NAMESPACE if namespace is None else namespace)
    if kind == "flow":
        if flow is None:
            if run is None:
                raise _needs_name(api, "flow", "flow=NAME", use_context)
            flow = run.flow_name
        return make_scope("flow", flow)
    if exec_id is None:
        if run is None:
            raise _needs_name(api, "execution", "exec_id=ID", use_context)
        return make_scope("execution", run.exec_id)
    if repo is None:
        return make_scope("execution", exec_id)
    return repo.memory.scope("execution", exec_id, must_exist=write)


def _needs_name(api: str, kind: str, param: str, use_context: bool) -> Exception:
    if not use_context:
        return KitaruUsageError(
            f"{api} with scope={kind!r} needs {param}",
            hint="KitaruClient browses memory from outside any flow: name the flow or execution",
        )
    return KitaruContextError(
        f"{api} with scope={kind!r} was called outside a flow, so there is no current {kind}",
        hint=f"pass {param}, or call it inside a @flow or @checkpoint",
    )


def author() -> Author:
    """Who is writing: the running checkpoint or flow (with its execution id), else this client."""
    from kitaru_store.memory import make_author

    cp = context.maybe_current_checkpoint()
    if cp is not None:
        return make_author(
            "checkpoint", exec_id=cp.flow.exec_id, flow=cp.flow.flow_name, invocation_id=cp.invocation_id
        )
    run = context.maybe_current_flow()
    if run is not None:
        return make_author("flow", exec_id=run.exec_id, flow=run.flow_name)
    return make_author("client")


def _repo(*, write: bool) -> Repository | None:
    """The running flow's store; outside a flow the located one. A write creates a missing store
    (as running a flow does); a read of a missing store finds nothing (None)."""
    run = context.maybe_current_flow()
    if run is not None:
        return run.repo
    from kitaru_store import StoreNotFoundError

    from .runtime import open_repository

    try:
        return open_repository(None, create=write)
    except StoreNotFoundError:
        if write:
            raise
        return None


def _missing(target: Scope, key: str, version: int | None) -> MemoryKeyNotFoundError:
    """The error for a key looked up in a store that does not exist yet (the key is validated)."""
    from kitaru_store.memory import MemoryKeyNotFoundError, validate_key

    validate_key(key, target)
    return MemoryKeyNotFoundError(
        f"no memory key {key!r} in {target.describe()}",
        key=key,
        scope=target,
        version=version,
        hint="there is no kitaru store yet: set a value or run a flow first",
    )


# --- the API ---------------------------------------------------------------------------------


def set(
    key: str,
    value: Any,
    *,
    scope: str | None = None,
    namespace: str | None = None,
    flow: str | None = None,
    exec_id: str | None = None,
    allow_pickle: bool | None = None,
) -> MemoryVersion:
    """Store ``value`` as the next version of ``key``; returns that version.

    Durable when it returns. An unchanged value adds a version that shares the stored bytes.
    """
    repo = _repo(write=True)
    assert repo is not None
    target = resolve_scope(
        repo, "kitaru.memory.set()", scope=scope, namespace=namespace, flow=flow, exec_id=exec_id, write=True
    )
    from kitaru_store.errors import KitaruError

    try:
        return repo.memory.set(target, key, value, allow_pickle=allow_pickle, author=author())
    except KitaruError as exc:
        raise exc.concerning(name=key) from exc.__cause__


def get(
    key: str,
    *,
    version: int | None = None,
    scope: str | None = None,
    namespace: str | None = None,
    flow: str | None = None,
    exec_id: str | None = None,
    default: Any = _RAISE,
    allow_pickle: bool | None = None,
) -> Any:
    """The value of ``key``: its latest version, or ``version``.

    A missing key or version, or a deleted key, is a MemoryKeyNotFoundError (naming the scope and
    similar keys), unless ``default`` is given. A redacted version is a MemoryRedactedError.
    Inside a checkpoint the value's object is recorded as an input of the checkpoint.
    """
    from kitaru_store import serialization
    from kitaru_store.memory import MemoryKeyNotFoundError

    repo = _repo(write=False)
    target = resolve_scope(
        repo, "kitaru.memory.get()", scope=scope, namespace=namespace, flow=flow, exec_id=exec_id
    )
    try:
        if repo is None:
            raise _missing(target, key, version)
        found, data = repo.memory.read(target, key, version=version)
    except MemoryKeyNotFoundError:
        if default is _RAISE:
            raise
        return default
    value = serialization.deserialize(data, allow_pickle=allow_pickle, object_id=found.object_id)
    cp = context.maybe_current_checkpoint()
    if cp is not None and found.object_id:
        cp.loaded.append(found.object_id)
    return value


def delete(
    key: str,
    *,
    scope: str | None = None,
    namespace: str | None = None,
    flow: str | None = None,
    exec_id: str | None = None,
) -> MemoryVersion:
    """Delete ``key``: adds a tombstone version (history keeps every earlier version).

    A missing or already deleted key is a MemoryKeyNotFoundError.
    """
    repo = _repo(write=False)
    target = resolve_scope(
        repo,
        "kitaru.memory.delete()",
        scope=scope,
        namespace=namespace,
        flow=flow,
        exec_id=exec_id,
        write=True,
    )
    if repo is None:
        raise _missing(target, key, None)
    return repo.memory.delete(target, key, author=author())


def list(
    *,
    scope: str | None = None,
    namespace: str | None = None,
    flow: str | None = None,
    exec_id: str | None = None,
    prefix: str | None = None,
) -> builtins.list[MemoryItem]:
    """The live keys of a scope (deleted ones left out), in key order, with their latest version.

    ``prefix`` keeps the keys that start with it (``prefix="user/42/"``).
    """
    repo = _repo(write=False)
    target = resolve_scope(
        repo, "kitaru.memory.list()", scope=scope, namespace=namespace, flow=flow, exec_id=exec_id
    )
    if repo is None:
        return []
    return repo.memory.list(target, prefix=prefix)


def history(
    key: str,
    *,
    scope: str | None = None,
    namespace: str | None = None,
    flow: str | None = None,
    exec_id: str | None = None,
) -> builtins.list[MemoryVersion]:
    """Every version of ``key``, oldest first: sets, deletions and redacted versions."""
    repo = _repo(write=False)
    target = resolve_scope(
        repo, "kitaru.memory.history()", scope=scope, namespace=namespace, flow=flow, exec_id=exec_id
    )
    if repo is None:
        raise _missing(target, key, None)
    return repo.memory.history(target, key)


def redact(
    key: str,
    version: int,
    *,
    reason: str,
    scope: str | None = None,
    namespace: str | None = None,
    flow: str | None = None,
    exec_id: str | None = None,
) -> MemoryVersion:
    """Erase the value of one version; its record stays, marked redacted (who, when, ``reason``).

    The value's bytes are deleted from the store unless something else references the same
    bytes (another version, an execution's artifact, a pin); then ``bytes_erased`` is False and
    ``kept_by`` lists those references. Reading the version is then a MemoryRedactedError.
    """
    repo = _repo(write=False)
    target = resolve_scope(
        repo,
        "kitaru.memory.redact()",
        scope=scope,
        namespace=namespace,
        flow=flow,
        exec_id=exec_id,
        write=False,  # the execution may be gone; its memory is still there to redact
    )
    if repo is None:
        raise _missing(target, key, version)
    return repo.memory.redact(target, key, version, reason=reason, author=author())


__all__ = [
    "SCOPES",
    "MemoryItem",
    "MemoryKeyNotFoundError",
    "MemoryRedactedError",
    "MemoryVersion",
    "delete",
    "get",
    "history",
    "list",
    "redact",
    "set",
]
