"""``kitaru.wait()``: park a flow until someone answers a question; input, abort, resume.

A wait is recorded in the execution's manifest (question, schema, metadata). With no answer yet,
the flow asks on the terminal if it runs in one (wait_prompt.py); otherwise, after polling up to
``timeout`` seconds for an answer given by another process, the execution is persisted as
``waiting``, the commands that answer and resume it go to stderr, and ``run()`` returns. An
answer is validated against the wait's schema and stored as an artifact of type ``input``;
``resume`` then runs the flow body again, reusing every completed checkpoint, and the wait
returns the answer.

A wait stores its schema twice: as JSON Schema (answer_schema.py), which any process checks an
answer against without the schema's class (say, one defined in a script's ``__main__``), and
as a description that rebuilds the type where its class is importable (builtins and their
generic forms, and msgspec Structs, dataclasses, pydantic models and enums found by name among
the classes the process has imported or registered: never imported on the manifest's word).
Where the type is there, the answer is stored converted to it; elsewhere as the checked JSON
data, which the flow converts when the wait returns. Waits stored before the JSON Schema are
validated by the rebuilt type alone, as before.
"""

from __future__ import annotations

import dataclasses
import enum
import getpass
import os
import sys
import time
import types
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .artifacts import new_entry
from .errors import (
    ExecutionStateError,
    InputValidationError,
    KitaruError,
    KitaruUsageError,
    WaitAbortedError,
    WaitNotFoundError,
)

if TYPE_CHECKING:
    from kitaru_store import Repository
    from kitaru_store.manifests import Manifest, WaitRecord

_BUILTINS: dict[str, Any] = {
    t.__name__: t for t in (bool, int, float, str, bytes, list, dict, tuple, set, frozenset, type(None))
}
_POLL_FIRST = 0.05  # seconds between looks at the store for an answer: growing to _POLL_MOST
_POLL_MOST = 0.5
_MISSING: Any = object()
# as calls.failure_of names it, so that an abort reads the same as the flow's own WaitAbortedError
_ABORTED_TYPE = f"{WaitAbortedError.__module__}.{WaitAbortedError.__qualname__}"


# --- schemas ---------------------------------------------------------------------------------


def describe(schema: Any) -> dict[str, Any]:
    """A data description of ``schema`` that another process can rebuild the type from."""
    if schema is None or schema is typing.Any:
        return {"kind": "any"}
    if isinstance(schema, type) and schema.__name__ in _BUILTINS and _BUILTINS[schema.__name__] is schema:
        return {"kind": "builtin", "name": schema.__name__}
    origin = typing.get_origin(schema)
    if origin is typing.Literal:
        return {"kind": "literal", "values": list(typing.get_args(schema))}
    if origin in (typing.Union, types.UnionType):
        return {"kind": "union", "args": [describe(a) for a in typing.get_args(schema)]}
    if origin is not None and isinstance(origin, type) and origin.__name__ in _BUILTINS:
        return {
            "kind": "generic",
            "origin": origin.__name__,
            "args": [describe(a) for a in typing.get_args(schema)],
        }
    if isinstance(schema, type):
        flavor = _flavor(schema)
        if flavor:  # another process checks the JSON Schema: the class need not be importable there
            return {"kind": "class", "flavor": flavor, "path": f"{schema.__module__}:{schema.__qualname__}"}
    raise KitaruUsageError(
        f"kitaru.wait() cannot use {schema!r} as a schema",
        hint="use a builtin type (bool, str, int, float, list[str], dict[str, int], Literal[...], ...),"
        " a msgspec Struct, a dataclass, a pydantic model or an Enum",
    )


def _flavor(cls: type) -> str | None:
    import msgspec

    if issubclass(cls, msgspec.Struct):
        return "struct"
    if dataclasses.is_dataclass(cls):
        return "dataclass"
    if issubclass(cls, enum.Enum):
        return "enum"
    if "pydantic" in sys.modules and issubclass(cls, sys.modules["pydantic"].BaseModel):
        return "pydantic"
    return None


def rebuild(desc: dict[str, Any]) -> Any:
    kind = desc.get("kind")
    if kind == "any":
        return Any
    if kind == "builtin":
        return _BUILTINS[desc["name"]]
    if kind == "literal":
        return typing.Literal[tuple(desc["values"])]
    if kind == "union":
        parts = [rebuild(a) for a in desc["args"]]
        return typing.Union[tuple(parts)]  # noqa: UP007 -- built at run time from stored parts
    if kind == "generic":
        origin = _BUILTINS[desc["origin"]]
        args = tuple(rebuild(a) for a in desc["args"])
        return origin[args] if args else origin
    if kind == "class":
        from kitaru_store.serialization import resolve_class

        cls = resolve_class(desc.get("path"), str(desc.get("flavor")))
        if cls is None:  # never imported on the manifest's word: it names what it likes
            raise KitaruUsageError(
                f"the wait's schema class {desc.get('path')} is not imported in this process",
                hint="import the module that defines it (or kitaru.register_type() it) before giving input",
            )
        return cls
    raise KitaruUsageError(f"unknown wait schema {desc!r}", hint="upgrade kitaru")


def validate(value: Any, desc: dict[str, Any], *, exec_id: str | None, name: str) -> Any:
    """``value`` converted to the wait's schema, or InputValidationError saying what is wrong."""
    import msgspec

    schema = rebuild(desc)
    try:
        if isinstance(schema, type) and _flavor(schema) == "pydantic":
            return value if isinstance(value, schema) else schema.model_validate(value)  # type: ignore[attr-defined]
        if schema is Any:
            return value
        if isinstance(schema, type) and isinstance(value, schema) and not isinstance(value, bool):
            return value  # (a bool is an int, but not a valid answer to an int wait: msgspec decides)
        return msgspec.convert(value, schema, strict=True)
    except (msgspec.ValidationError, ValueError, TypeError) as exc:
        raise InputValidationError(
            f"input for wait {name!r} does not match its schema {schema_text(desc)}: {exc}",
            exec_id=exec_id,
            name=name,
            hint="give a value of the expected type",
        ) from None


def validate_answer(record: WaitRecord, value: Any, *, exec_id: str | None = None) -> Any:
    """``value`` checked against the wait's stored schema: what to store as its answer.

    The one validation every way of answering goes through (the terminal prompt,
    ``KitaruClient().executions.input``, ``kitaru-store input``). With a JSON Schema stored, the
    answer is checked as JSON data against it, then converted to the schema's type where this
    process has it (a conversion can only refuse what JSON Schema cannot say, such as a pydantic
    validator); without one (a wait stored by an older kitaru), by the rebuilt type as before.
    InputValidationError names the path of the bad field: ``answer.items[2].score: expected int``.
    """
    import msgspec

    from kitaru_store import nesting

    from .answer_schema import BadSchema, SchemaMismatch, check

    name = record.name
    if record.json_schema is None:
        return validate(value, record.schema, exec_id=exec_id, name=name)

    def refused(problem: str, hint: str = "give a value of the expected type") -> InputValidationError:
        return InputValidationError(
            f"input for wait {name!r} does not match its schema {schema_text(record.schema)}: {problem}",
            exec_id=exec_id,
            name=name,
            hint=hint,
        )

    try:
        plain = msgspec.to_builtins(value, str_keys=True, enc_hook=_plain_hook)
    except (TypeError, ValueError, RecursionError, msgspec.EncodeError) as exc:
        raise refused(f"the answer is not JSON data ({exc})") from None
    nesting.require_within(plain, f"the answer to wait {name!r}", exec_id=exec_id, name=name)
    try:
        nesting.on_fresh_stack(lambda: check(plain, record.json_schema))
    except SchemaMismatch as exc:
        raise refused(str(exc)) from None
    except (BadSchema, RecursionError) as exc:
        raise refused(
            f"its stored schema cannot be used ({exc})", hint="abort the wait; the schema is damaged"
        ) from None
    try:
        schema = rebuild(record.schema)
    except KitaruUsageError:  # the class lives in another process (a script's __main__): JSON data
        return plain
    return _converted(value, plain, schema, lambda problem: refused(problem))


def _plain_hook(obj: Any) -> Any:
    dump = getattr(obj, "model_dump", None)  # a pydantic model
    if callable(dump):
        return dump(mode="json")
    raise TypeError(f"{type(obj).__name__} is not JSON data")


def _converted(value: Any, plain: Any, schema: Any, refused: Any) -> Any:
    """The checked answer as an instance of ``schema`` (``value`` itself if it is one already)."""
    import msgspec

    if schema is Any:
        return plain
    if isinstance(schema, type) and isinstance(value, schema) and not isinstance(value, bool):
        return value
    try:
        if isinstance(schema, type) and _flavor(schema) == "pydantic":
            return schema.model_validate(plain)  # type: ignore[attr-defined]
        return msgspec.convert(plain, schema, strict=True)
    except (msgspec.ValidationError, ValueError, TypeError) as exc:
        raise refused(str(exc)) from None


def schema_text(desc: dict[str, Any]) -> str:
    kind = desc.get("kind")
    if kind == "any":
        return "any"
    if kind == "builtin":
        return str(desc["name"])
    if kind == "literal":
        return "Literal[" + ", ".join(repr(v) for v in desc["values"]) + "]"
    if kind == "union":
        return " | ".join(schema_text(a) for a in desc["args"])
    if kind == "generic":
        args = ", ".join(schema_text(a) for a in desc["args"])
        return f"{desc['origin']}[{args}]" if args else str(desc["origin"])
    return str(desc.get("path", desc))


# --- the flow side ---------------------------------------------------------------------------


def wait(
    *,
    name: str | None = None,
    question: str | None = None,
    schema: Any = None,
    timeout: float | None = None,
    metadata: dict[str, Any] | None = None,
) -> Any:
    """Wait for input. Flow-body only. Returns the validated answer once there is one.

    On a terminal the question is asked there (``KITARU_NO_PROMPT=1`` turns that off). Otherwise
    the execution is persisted as ``waiting``, the commands that answer and resume it are printed
    to stderr, and ``run()`` returns; give the answer with ``kitaru-store input`` or
    ``KitaruClient().executions.input(...)`` and continue with ``resume``. ``timeout`` (seconds):
    wait in this process at most this long for an answer (typed, or given by another process)
    before leaving the execution ``waiting``.
    """
    from kitaru_store.manifests import WaitRecord

    from . import context
    from .answer_schema import json_schema_of
    from .calls import now

    run = context.current_flow_body("kitaru.wait()")
    if name is not None:
        from kitaru_store.names import validate_name

        validate_name(name, what="wait name", exec_id=run.exec_id)
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout >= 0
    ):
        raise KitaruUsageError(
            f"timeout must be a number of seconds >= 0, not {timeout!r}", exec_id=run.exec_id
        )
    if question is not None and not isinstance(question, str):
        raise KitaruUsageError(
            f"question must be a string, not {type(question).__name__}",
            exec_id=run.exec_id,
            name=name,
            hint="build the text first, e.g. with .load() and an f-string",
        )
    desc = describe(schema)
    meta = _jsonable(metadata or {}, run.exec_id, name)
    wid = run.next_invocation_id(name or "wait")
    seq = run.next_seq()
    repo = run.repo
    record = _record(repo.get_execution(run.exec_id), wid)
    if record is None:
        reused = _reuse_answer(run, wid, seq)
        if reused is not _MISSING:
            return _converted(reused, reused, rebuild_live(schema), _flow_refused(run.exec_id, wid))
        record = WaitRecord(
            name=wid,
            status="pending",
            created_at=now(),
            question=question,
            schema=desc,
            json_schema=json_schema_of(schema),
            metadata=meta,
            timeout=timeout,
            seq=seq,
        )
        with repo.writer() as w:
            w.set_wait(run.exec_id, record)
    answer = _await_answer(run, record, timeout)
    return _converted(answer, answer, rebuild_live(schema), _flow_refused(run.exec_id, wid))


def rebuild_live(schema: Any) -> Any:
    """The type the flow converts its answer to: the schema it passed (Any for none)."""
    return Any if schema is None else schema


def _flow_refused(exec_id: str, name: str) -> Any:
    def refused(problem: str) -> InputValidationError:
        return InputValidationError(
            f"the answer to wait {name!r} does not convert to its schema in the flow: {problem}",
            exec_id=exec_id,
            name=name,
            hint="the answer passed the stored JSON Schema but not a check only the flow's code has"
            " (a validator); start a new run",
        )

    return refused


def _await_answer(run: Any, record: WaitRecord, timeout: float | None) -> Any:
    """The answer's stored value: asked on a terminal, or polled for until ``timeout``.

    Raises WaitSuspended (after printing how to answer) when the process should let go: no
    terminal and no time left, or the person left the prompt empty.
    """
    from . import wait_prompt
    from .cancellation import check as check_cancel
    from .runtime import WaitSuspended

    repo, exec_id = run.repo, run.exec_id
    prompt = wait_prompt.prompting()
    deadline = None if timeout is None and prompt else time.monotonic() + (timeout or 0)
    pause = _POLL_FIRST
    asked = typed = False
    while True:
        if record.status == "answered" and record.value_object_id:
            if asked:
                wait_prompt.say(f"{'' if typed else chr(10)}kitaru: {record.name!r} answered; continuing")
            return repo.get_value(record.value_object_id)
        if record.status == "aborted":
            raise WaitAbortedError(
                f"wait {record.name!r} was aborted", exec_id=exec_id, name=record.name, hint="start a new run"
            )
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            _let_go(run, record)
            raise WaitSuspended(record.name)
        seconds = pause if left is None else min(pause, left)
        if prompt:
            if not asked:
                wait_prompt.ask(record, schema_text(record.schema), optional=_takes_null(record))
                asked = True
            outcome = _typed(run, record, wait_prompt.read_line(seconds))
            if outcome is None:
                _let_go(run, record)
                raise WaitSuspended(record.name)
            typed = typed or outcome
        else:
            time.sleep(seconds)
        pause = min(pause * 1.5, _POLL_MOST)
        check_cancel(run)  # a wait poll is a boundary too
        found = _record(repo.get_execution(exec_id), record.name)
        record = found if found is not None else record


def _let_go(run: Any, record: WaitRecord) -> None:
    from . import wait_prompt

    wait_prompt.announce(run.repo, run.exec_id, run.flow_name, record, schema_text(record.schema))


def _takes_null(record: WaitRecord) -> bool:
    try:
        validate_answer(record, None)
    except KitaruError:
        return False
    return True


def _typed(run: Any, record: WaitRecord, line: Any) -> bool | None:
    """Give what was typed as the answer: True if it was recorded, False if nothing was (yet),
    None if the person left it empty (the wait stays)."""
    from . import wait_prompt

    if line is wait_prompt.NOTHING:
        return False
    if line is wait_prompt.EOF or not line.strip():
        if not _takes_null(record):
            wait_prompt.say("")
            return None
        line = "null"
    try:
        provide_input(run.repo, run.exec_id, record.name, _parsed(record, line.strip()))
    except InputValidationError as exc:
        wait_prompt.again(exc.message)
        return False
    except (WaitNotFoundError, ExecutionStateError):
        return False  # answered or aborted from elsewhere meanwhile: the next look says which
    return True


def _parsed(record: WaitRecord, text: str) -> Any:
    """JSON, or the text itself where the schema takes it as a string (``yes``, ``42`` for a str)."""
    import msgspec

    try:
        value = msgspec.json.decode(text)
    except (msgspec.DecodeError, RecursionError):
        return text
    if isinstance(value, str):
        return value
    try:
        validate_answer(record, value)
    except KitaruError:
        try:
            validate_answer(record, text)
        except KitaruError:
            return value  # the JSON value's own error is the one to show
        return text
    return value


def _reuse_answer(run: Any, wid: str, seq: int) -> Any:
    """In a replay, before its replay point, take the answer the source execution was given."""
    plan = run.plan
    if plan is None or plan.same_execution or not plan.active:
        return _MISSING
    source_wait = _record(plan.source, wid)
    if source_wait is None or source_wait.status != "answered" or not source_wait.value_object_id:
        return _MISSING
    import msgspec

    from .replay import copy_entries

    with run.repo.writer() as w:
        copy_entries(w, plan.source, run.exec_id, wid)
        w.set_wait(run.exec_id, msgspec.structs.replace(source_wait, seq=seq))
    return run.repo.get_value(source_wait.value_object_id)


def _record(manifest: Manifest, name: str) -> WaitRecord | None:
    return next((w for w in manifest.waits if w.name == name), None)


def _jsonable(metadata: dict[str, Any], exec_id: str | None, name: str | None) -> dict[str, Any]:
    import msgspec

    from kitaru_store import nesting

    from .errors import SerializationError

    nesting.require_within(metadata, "metadata", exec_id=exec_id, name=name)  # before msgspec recurses
    try:
        out = nesting.on_fresh_stack(lambda: msgspec.json.decode(msgspec.json.encode(metadata)))
    except (TypeError, RecursionError, msgspec.EncodeError) as exc:
        raise SerializationError(
            f"metadata must be JSON-able: {exc}",
            exec_id=exec_id,
            name=name,
            hint="use str, numbers, lists, dicts",
        ) from None
    if not isinstance(out, dict):
        raise SerializationError("metadata must be a dict", exec_id=exec_id, name=name)
    return out


# --- the client side -------------------------------------------------------------------------


@dataclass(frozen=True)
class PendingWait:
    exec_id: str
    name: str
    question: str | None
    schema: str
    metadata: dict[str, Any]
    created_at: Any
    timeout: float | None
    json_schema: dict[str, Any] | None = None  # None for a wait stored before waits kept one
    commands: tuple[str, ...] = ()  # the command lines that answer it and resume the execution


def _who() -> dict[str, Any]:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return {"user": user, "pid": os.getpid()}


def pending_waits(repo: Repository, exec_id: str) -> list[PendingWait]:
    from .wait_prompt import commands

    m = repo.get_execution(exec_id)
    return [
        PendingWait(
            exec_id=m.exec_id,
            name=w.name,
            question=w.question,
            schema=schema_text(w.schema),
            metadata=dict(w.metadata),
            created_at=w.created_at,
            timeout=w.timeout,
            json_schema=w.json_schema,
            commands=tuple(commands(repo, m.exec_id, w)),
        )
        for w in sorted(m.waits, key=lambda w: w.seq)
        if w.status == "pending"
    ]


def _pending(repo: Repository, exec_id: str, wait: str | None) -> tuple[Manifest, WaitRecord]:
    m = repo.get_execution(exec_id)
    if m.status not in ("waiting", "running"):
        raise ExecutionStateError(
            f"execution {m.exec_id} is {m.status}; only a waiting execution takes input",
            exec_id=m.exec_id,
            name=wait,
            hint="start a new run",
        )
    open_waits = [w for w in m.waits if w.status == "pending"]
    if wait is None:
        if len(open_waits) == 1:
            return m, open_waits[0]
        names = ", ".join(w.name for w in open_waits) or "(none)"
        what = (
            f"{len(open_waits)} pending waits; say which one with wait=" if open_waits else "no pending wait"
        )
        raise WaitNotFoundError(
            f"execution {m.exec_id} has {what}",
            exec_id=m.exec_id,
            hint=f"pending: {names}",
        )
    record = _record(m, wait)
    if record is None or record.status != "pending":
        names = ", ".join(w.name for w in open_waits) or "(none)"
        state = f"is {record.status}" if record else "does not exist"
        raise WaitNotFoundError(
            f"wait {wait!r} of execution {m.exec_id} {state}",
            exec_id=m.exec_id,
            name=wait,
            hint=f"pending waits: {names}",
        )
    return m, record


def _still_pending(current: Manifest, name: str) -> Manifest:
    """Checked again inside the commit: nobody answered or aborted the wait since it was read."""
    found = _record(current, name)
    if current.status not in ("waiting", "running"):
        raise ExecutionStateError(
            f"execution {current.exec_id} became {current.status} meanwhile",
            exec_id=current.exec_id,
            name=name,
            hint="start a new run",
        )
    if found is None or found.status != "pending":
        raise WaitNotFoundError(
            f"wait {name!r} of execution {current.exec_id} was {found.status if found else 'removed'}"
            " meanwhile",
            exec_id=current.exec_id,
            name=name,
            hint="another process answered or aborted it first",
        )
    return current


def provide_input(repo: Repository, exec_id: str, wait: str | None, value: Any) -> Any:
    """Validate ``value`` and store it as the wait's answer (an artifact of type input)."""
    import msgspec

    from .calls import now

    m, record = _pending(repo, exec_id, wait)
    checked = validate_answer(record, value, exec_id=m.exec_id)
    with repo.writer() as w:
        w.mutate(m.exec_id, lambda current: _still_pending(current, record.name))
        stored = w.put_value(checked)
        w.replace_entry(
            m.exec_id,
            new_entry(
                stored,
                name=record.name,
                kind="wait_input",
                artifact_type="input",
                created_at=now(),
                invocation_id=record.name,
                metadata={"question": record.question} if record.question else {},
            ),
        )
        w.set_wait(
            m.exec_id,
            msgspec.structs.replace(
                record,
                status="answered",
                answered_at=now(),
                value_object_id=stored.object_id,
                answered_by=_who(),
            ),
        )
    return checked


def abort_wait(repo: Repository, exec_id: str, wait: str | None, reason: str | None = None) -> None:
    """Refuse to answer: the wait is marked aborted and the execution fails cleanly."""
    import msgspec

    from kitaru_store.manifests import Failure

    from .calls import now

    m, record = _pending(repo, exec_id, wait)
    message = f"wait {record.name!r} was aborted" + (f": {reason}" if reason else "")
    with repo.writer() as w:
        w.mutate(m.exec_id, lambda current: _still_pending(current, record.name))
        w.set_wait(
            m.exec_id,
            msgspec.structs.replace(record, status="aborted", answered_at=now(), answered_by=_who()),
        )
        w.update_execution(
            m.exec_id,
            status="failed",
            ended_at=now(),
            failure=Failure(type=_ABORTED_TYPE, message=message, checkpoint=record.name),
        )
