"""Memory: ``memory ls``, ``get``, ``history``, ``set``, ``rm`` and ``redact``.

A key is addressed in one scope: ``--namespace NAME`` (the default: namespace "default"),
``--flow NAME`` or ``--exec ID`` (an execution id or a unique prefix of one).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from . import output as out
from .common import State, json_option, pass_state

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

    from kitaru_store.memory import Author, MemoryVersion, Scope
    from kitaru_store.repository import Repository

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_NAMESPACE = "default"  # kitaru_store.memory.DEFAULT_NAMESPACE (not imported for --help)


def scope_options(fn: F) -> F:
    """``--namespace``, ``--flow`` and ``--exec``: at most one of them."""
    for option in reversed(
        [
            click.option(
                "--namespace",
                metavar="NAME",
                help=f"The key is in this namespace (default: {DEFAULT_NAMESPACE!r}).",
            ),
            click.option("--flow", metavar="NAME", help="The key is in this flow's memory."),
            click.option(
                "--exec",
                "exec_id",
                metavar="EXEC",
                help="The key is in this execution's memory (an id or a unique prefix).",
            ),
        ]
    ):
        fn = option(fn)
    return fn


def _chosen(namespace: str | None, flow: str | None, exec_id: str | None) -> tuple[str, str]:
    given = [(k, v) for k, v in (("namespace", namespace), ("flow", flow), ("execution", exec_id)) if v]
    if len(given) > 1:
        raise click.UsageError("give at most one of --namespace, --flow and --exec")
    return given[0] if given else ("namespace", DEFAULT_NAMESPACE)


def _scope(
    repo: Repository, namespace: str | None, flow: str | None, exec_id: str | None, *, write: bool = False
) -> Scope:
    kind, name = _chosen(namespace, flow, exec_id)
    return repo.memory.scope(kind, name, must_exist=write)


def _author() -> Author:
    from kitaru_store.memory import make_author

    return make_author("cli")


def _complete_key(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Live keys of the scope chosen by the options typed so far."""
    from click.shell_completion import CompletionItem

    state = ctx.find_object(State) or State()
    try:
        repo = state.repo()
        target = _scope(repo, ctx.params.get("namespace"), ctx.params.get("flow"), ctx.params.get("exec_id"))
        keys = [item.key for item in repo.memory.list(target, prefix=incomplete or None)]
    except Exception:
        return []
    return [CompletionItem(k) for k in keys]


# --- presentation ----------------------------------------------------------------------------


def _who(a: Author | None) -> str:
    """alice (cli), alice (checkpoint summarize in 1a2b3c4d5e6f), alice (flow research in ...)."""
    if a is None:
        return "-"
    if a.origin == "checkpoint" and a.exec_id:
        return f"{a.user} (checkpoint {a.invocation_id} in {out.short(a.exec_id)})"
    if a.origin == "flow" and a.exec_id:
        return f"{a.user} (flow {a.flow} in {out.short(a.exec_id)})"
    return f"{a.user} ({a.origin})"


def _where(kind: str, name: str) -> str:
    return f"execution {name}" if kind == "execution" else f"{kind} {name!r}"


def _op(v: MemoryVersion) -> str:
    if v.deleted:
        return out.style("delete", fg="red")
    if v.redacted:
        return out.style("set (redacted)", fg="yellow")
    return "set"


def _doc(v: MemoryVersion) -> dict[str, Any]:
    doc: dict[str, Any] = out.jsonable(v.to_dict())
    return doc


# --- commands --------------------------------------------------------------------------------


@click.group(short_help="Browse and change memory: versioned key-value state.")
def memory() -> None:
    """Browse and change memory: durable, versioned key-value state kept across executions.

    Keys live in a scope: a namespace (--namespace NAME, default "default"), a flow (--flow NAME)
    or an execution (--exec ID). Every set and rm adds a version; history shows them all.
    """


@memory.command(name="ls", short_help="List the live keys of a scope.")
@scope_options
@click.option("--prefix", metavar="TEXT", help="Only keys that start with TEXT (e.g. user/42/).")
@click.option("--all", "every", is_flag=True, help="List the keys of every scope.")
@json_option
@pass_state
def ls(
    state: State,
    namespace: str | None,
    flow: str | None,
    exec_id: str | None,
    prefix: str | None,
    every: bool,
    as_json: bool,
) -> None:
    """List the live keys of a scope (deleted keys are left out): key, version, size, serializer,
    last change and who made it. A redacted latest version is marked."""
    repo = state.repo()
    if every:
        if namespace or flow or exec_id:
            raise click.UsageError("--all lists every scope: drop --namespace, --flow and --exec")
        scopes = repo.memory.scopes()
    else:
        scopes = [_scope(repo, namespace, flow, exec_id)]
    items = [item for s in scopes for item in repo.memory.list(s, prefix=prefix)]
    if as_json:
        click.echo(out.dumps([out.jsonable(i.to_dict()) for i in items]))
        return
    if not items:
        where = "any scope" if every else _where(scopes[0].kind, scopes[0].name)
        click.echo(f"no memory keys in {where}" + (f" starting with {prefix!r}" if prefix else ""), err=True)
        return
    rows = []
    for i in items:
        row = [
            i.key,
            str(i.version),
            out.size(i.size) if not i.redacted else out.style("redacted", fg="yellow"),
            i.serializer or "-",
            out.when(i.updated_at),
            _who(i.updated_by),
        ]
        rows.append([_where(i.scope, i.scope_name), *row] if every else row)
    header = ["KEY", "VERSION", "SIZE", "TYPE", "UPDATED", "BY"]
    out.echo_lines(out.table(rows, header=["SCOPE", *header] if every else header))


@memory.command(short_help="Print a key's value (latest, or --version N).")
@click.argument("key", shell_complete=_complete_key)
@scope_options
@click.option("--version", "version", type=click.IntRange(min=1), metavar="N", help="Read version N.")
@click.option(
    "--allow-pickle",
    is_flag=True,
    help="Load values stored with pickle (this runs code from the store: trust it first).",
)
@json_option
@pass_state
def get(
    state: State,
    key: str,
    namespace: str | None,
    flow: str | None,
    exec_id: str | None,
    version: int | None,
    allow_pickle: bool,
    as_json: bool,
) -> None:
    """Print the value of KEY as `cat` does: text as it is, structures as JSON, bytes raw (a
    hexdump on a terminal). A deleted key or a redacted version is an error."""
    from kitaru_store import serialization
    from kitaru_store.errors import PickleNotAllowedError

    repo = state.repo()
    target = _scope(repo, namespace, flow, exec_id)
    found, data = repo.memory.read(target, key, version=version)
    serializer = serialization.serializer_name(data)
    if serializer == "pickle" and not allow_pickle:
        raise PickleNotAllowedError(
            "this value was stored with pickle, and loading a pickle runs code",
            name=key,
            object_id=found.object_id,
            hint="pass --allow-pickle only if you trust the store; `memory history` shows the version",
        )
    value = serialization.deserialize(data, allow_pickle=allow_pickle, object_id=found.object_id)
    if as_json:
        doc = {
            "scope": found.scope,
            "scope_name": found.scope_name,
            "key": key,
            "version": found.version,
            "object_id": found.object_id,
            "serializer": serializer,
            "size": len(data),
        }
        if serializer == "bytes":
            doc["encoding"] = "base64"
        doc["value"] = out.jsonable(value)
        out.echo_json(doc)
        return
    out.write_value(value, serializer, found.object_id or "")


@memory.command(short_help="Every version of a key, oldest first.")
@click.argument("key", shell_complete=_complete_key)
@scope_options
@json_option
@pass_state
def history(
    state: State, key: str, namespace: str | None, flow: str | None, exec_id: str | None, as_json: bool
) -> None:
    """Every version of KEY, oldest first: sets, deletions and redacted versions, with who wrote
    each and when. A redacted version shows who redacted it, when and why."""
    repo = state.repo()
    versions = repo.memory.history(_scope(repo, namespace, flow, exec_id), key)
    if as_json:
        click.echo(out.dumps([_doc(v) for v in versions]))
        return
    rows = [
        [
            str(v.version),
            _op(v),
            out.size(v.size) if not v.deleted else "-",
            out.short(v.object_id),
            out.when(v.written_at),
            _who(v.written_by),
        ]
        for v in versions
    ]
    lines = out.table(rows, header=["VERSION", "OP", "SIZE", "OBJECT", "WRITTEN", "BY"])
    click.echo(lines[0])
    for v, line in zip(versions, lines[1:], strict=True):
        click.echo(line)
        if v.redacted:
            if v.bytes_erased is None:
                kept = "erasure queued: the next gc deletes the bytes"
            else:
                kept = "bytes erased" if v.bytes_erased else "bytes kept: " + "; ".join(v.kept_by)
            click.echo(
                f"  redacted {out.when(v.redacted_at)} by {_who(v.redacted_by)}:"
                f" {v.redaction_reason} ({kept})"
            )


def _parse_value(text: str, as_string: bool) -> Any:
    if as_string:
        return text

    def no_constants(name: str) -> Any:
        raise ValueError(name)  # NaN and Infinity are not JSON: keep them as text

    try:
        return json.loads(text, parse_constant=no_constants)
    except ValueError:
        return text


@memory.command(name="set", short_help="Set a key to a value (a new version).")
@click.argument("key", shell_complete=_complete_key)
@click.argument("value")
@scope_options
@click.option("--string", "as_string", is_flag=True, help="Store VALUE as text even if it parses as JSON.")
@json_option
@pass_state
def set_(
    state: State,
    key: str,
    value: str,
    namespace: str | None,
    flow: str | None,
    exec_id: str | None,
    as_string: bool,
    as_json: bool,
) -> None:
    """Set KEY to VALUE, as a new version. VALUE is parsed as JSON when it parses (42, true,
    {"a": 1}, "quoted text"), else taken as text; --string always takes it as text."""
    from kitaru_store.memory import MemoryKeyNotFoundError

    repo = state.repo()
    target = _scope(repo, namespace, flow, exec_id, write=True)
    try:
        previous = repo.memory.version(target, key).object_id
    except MemoryKeyNotFoundError:
        previous = None
    v = repo.memory.set(target, key, _parse_value(value, as_string), author=_author())
    if as_json:
        out.echo_json(_doc(v))
        return
    same = " (unchanged value: no new bytes stored)" if previous == v.object_id else ""
    click.echo(
        f"set {key!r} in {_where(v.scope, v.scope_name)}: version {v.version},"
        f" object {out.short(v.object_id)} ({out.size(v.size)}){same}"
    )


@memory.command(name="rm", short_help="Delete a key (a tombstone version).")
@click.argument("key", shell_complete=_complete_key)
@scope_options
@json_option
@pass_state
def rm(
    state: State, key: str, namespace: str | None, flow: str | None, exec_id: str | None, as_json: bool
) -> None:
    """Delete KEY: adds a tombstone version. `ls` and `get` no longer show it; `history` keeps
    every version, and `get --version N` still reads the earlier values."""
    repo = state.repo()
    v = repo.memory.delete(_scope(repo, namespace, flow, exec_id, write=True), key, author=_author())
    if as_json:
        out.echo_json(_doc(v))
        return
    click.echo(f"deleted {key!r} in {_where(v.scope, v.scope_name)} (version {v.version})")


@memory.command(short_help="Erase one version's value; keep its record.")
@click.argument("key", shell_complete=_complete_key)
@click.argument("version", type=click.IntRange(min=1))
@scope_options
@click.option("--reason", required=True, metavar="TEXT", help="Why the value is erased (recorded).")
@json_option
@pass_state
def redact(
    state: State,
    key: str,
    version: int,
    namespace: str | None,
    flow: str | None,
    exec_id: str | None,
    reason: str,
    as_json: bool,
) -> None:
    """Erase the value of version VERSION of KEY. The version's record stays (who wrote it, when,
    its size) and records who redacted it, when and why.

    The value's bytes are deleted from the store unless something else still references them
    (another version, an execution's artifact, a pin): then they stay, and the output says what
    holds them. Deleted bytes can linger in free pages of the data file until they are reused;
    `kitaru-store gc --compact` rewrites the file without them.
    """
    if not reason.strip():
        from kitaru_store import errors

        raise errors.UsageError("a redaction needs a reason", name=key, hint="say why: --reason TEXT")
    repo = state.repo()
    v = repo.memory.redact(
        _scope(repo, namespace, flow, exec_id), key, version, reason=reason, author=_author()
    )
    if as_json:
        out.echo_json(_doc(v))
        return
    where = f"version {v.version} of {key!r} in {_where(v.scope, v.scope_name)}"
    if v.bytes_erased is None:
        click.echo(f"redacted {where}; its bytes are queued for erasure by the next gc")
    elif v.bytes_erased:
        click.echo(f"redacted {where}: its bytes were deleted from the store")
        for note in v.kept_by:
            click.echo(f"  ({note})")
        click.echo("  (`kitaru-store gc --compact` rewrites the data file without the freed pages)")
    else:
        click.echo(f"redacted {where}; the bytes stay in the store, still referenced by:")
        out.echo_lines(f"  {note}" for note in v.kept_by)


COMMANDS = [memory]
