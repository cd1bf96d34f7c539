"""Reading values and keeping them: ``cat``, ``pin``, ``unpin`` and ``pins``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from . import output as out
from .common import State, Target, complete_target, json_option, pass_state, resolve_target

if TYPE_CHECKING:
    from kitaru_store.repository import Repository


def _entry_meta(target: Target) -> dict[str, Any]:
    assert target.entry is not None and target.manifest is not None
    e = target.entry
    return {
        "exec_id": target.manifest.exec_id,
        "artifact_id": e.artifact_id,
        "name": e.name,
        "kind": e.kind,
        "artifact_type": e.artifact_type,
        "checkpoint": e.checkpoint,
        "invocation_id": e.invocation_id,
        "object_id": e.object_id,
        "size": e.size,
        "serializer": e.serializer,
        "created_at": e.created_at,
        "tags": list(e.tags),
        "metadata": e.metadata,
        "inputs": list(e.inputs),
    }


def _object_meta(repo: Repository, target: Target) -> dict[str, Any]:
    from kitaru_store.serialization import serializer_name

    info = repo.object_info(target.object_id)
    head = repo.get_bytes(target.object_id)[:1] if info.size else b""
    return {
        "object_id": info.object_id,
        "size": info.size,
        "stored_size": info.stored_size,
        "codec": info.codec,
        "chunks": info.chunks,
        "serializer": serializer_name(head) if head else None,
        "touched_at": info.touched_at,
    }


def _print_meta(meta: dict[str, Any]) -> None:
    def show(key: str, value: Any) -> str:
        if value is None or value == [] or value == {}:
            return "-"
        if key in ("size", "stored_size"):
            return f"{out.size(value)} ({value} bytes)"
        if key in ("created_at", "touched_at"):
            return out.when(value)
        if key == "tags":
            return ", ".join(value)
        if key == "inputs":
            return ", ".join(out.short(v) for v in value)
        if key == "metadata":
            return out.inline(value)
        return str(value)

    out.echo_lines(out.fields((k.replace("_", " "), show(k, v)) for k, v in meta.items()))


@click.command(short_help="Print a value (or its metadata with --meta).")
@click.argument("target", metavar="EXEC:NAME|OBJECT", shell_complete=complete_target)
@click.option(
    "--meta", is_flag=True, help="Show the entry's metadata (or the object's) instead of the value."
)
@click.option(
    "--allow-pickle",
    is_flag=True,
    help="Load values stored with pickle (this runs code from the store: trust it first).",
)
@json_option
@pass_state
def cat(state: State, target: str, meta: bool, allow_pickle: bool, as_json: bool) -> None:
    """Print a value: text as it is, structures as JSON, bytes raw (a hexdump on a terminal).

    The argument is EXEC:NAME (an execution id prefix, ':', then a checkpoint, invocation or
    artifact name) or OBJECT (an object id, or a unique prefix of 4+ characters).

    Values stored with pickle are refused unless --allow-pickle is given; KITARU_ALLOW_PICKLE is
    not consulted here.
    """
    repo = state.repo()
    t = resolve_target(repo, target)
    if meta:
        info = _entry_meta(t) if t.entry is not None else _object_meta(repo, t)
        if as_json:
            out.echo_json(info)
        else:
            _print_meta(info)
        return

    from kitaru_store import serialization
    from kitaru_store.errors import KitaruError, PickleNotAllowedError

    data = repo.get_bytes(t.object_id)
    serializer = serialization.serializer_name(data)
    if serializer == "pickle" and not allow_pickle:
        raise PickleNotAllowedError(
            "this value was stored with pickle, and loading a pickle runs code",
            exec_id=t.manifest.exec_id if t.manifest else None,
            name=t.entry.name if t.entry else None,
            object_id=t.object_id,
            hint="pass --allow-pickle only if you trust the store; --meta shows the entry without loading it",
        )
    try:
        value = serialization.deserialize(data, allow_pickle=allow_pickle, object_id=t.object_id)
    except KitaruError as exc:
        exc.concerning(
            exec_id=t.manifest.exec_id if t.manifest else None, name=t.entry.name if t.entry else None
        )
        raise
    if as_json:
        doc: dict[str, Any] = {}
        if t.entry is not None and t.manifest is not None:
            doc.update(exec_id=t.manifest.exec_id, name=t.entry.name)
        doc.update(object_id=t.object_id, serializer=serializer, size=len(data))
        if serializer == "bytes":
            doc["encoding"] = "base64"
        doc["value"] = out.jsonable(value)
        out.echo_json(doc)
        return
    out.write_value(value, serializer, t.object_id)


@click.command(short_help="Pin an object so that gc keeps it.")
@click.argument("name")
@click.argument("target", metavar="EXEC:NAME|OBJECT", shell_complete=complete_target)
@json_option
@pass_state
def pin(state: State, name: str, target: str, as_json: bool) -> None:
    """Keep an object whatever gc finds, under NAME (pinning an existing NAME moves it).

    The object is given as EXEC:NAME or as an object id (prefix), as for `cat`.
    """
    repo = state.repo()
    t = resolve_target(repo, target)
    repo.pin(name, t.object_id)
    if as_json:
        out.echo_json({"name": name, "object_id": t.object_id})
    else:
        click.echo(f"pinned {name} -> {t.object_id}")


def _complete_pin(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    from click.shell_completion import CompletionItem

    state = ctx.find_object(State) or State()
    try:
        names = state.repo().pins()
    except Exception:
        return []
    return [CompletionItem(n) for n in sorted(names) if n.startswith(incomplete)]


@click.command(short_help="Remove a pin.")
@click.argument("name", shell_complete=_complete_pin)
@json_option
@pass_state
def unpin(state: State, name: str, as_json: bool) -> None:
    """Remove the pin NAME (the object stays until a gc finds it unreferenced)."""
    repo = state.repo()
    pins = repo.pins()
    if name not in pins:
        from kitaru_store.errors import NotFoundError

        raise NotFoundError(
            f"no pin named {name!r}",
            name=name,
            hint="pins: " + (", ".join(sorted(pins)) if pins else "(none)"),
        )
    repo.unpin(name)
    if as_json:
        out.echo_json({"name": name, "object_id": pins[name]})
    else:
        click.echo(f"unpinned {name} (was {pins[name]})")


@click.command(short_help="List pins.")
@json_option
@pass_state
def pins(state: State, as_json: bool) -> None:
    """List pins: name and object id."""
    found = state.repo().pins()
    if as_json:
        out.echo_json(dict(sorted(found.items())))
        return
    out.echo_lines(out.table([[name, oid] for name, oid in sorted(found.items())]))


COMMANDS = [cat, pin, unpin, pins]
