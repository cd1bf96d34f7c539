"""What every command shares: the store option's state, ``--json``, the one error handler,
argument resolution (EXEC, EXEC:NAME, OBJECT) and shell completion of ids and names.

Only click, the standard library and kitaru_store.names at import time; the store is imported when a
command runs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import click

from kitaru_store.names import STATUSES as STATUSES  # not from manifests: msgspec

from . import output

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

    from kitaru_store.errors import KitaruError
    from kitaru_store.manifests import Entry, Manifest
    from kitaru_store.repository import Repository

F = TypeVar("F", bound=Callable[..., Any])
JSON_META = "kitaru_store.json"


@dataclass
class State:
    """The global options. ``store`` is None unless given with --store (KITARU_STORE is read by
    kitaru_store.config.locate itself, so that `path` can tell the two apart)."""

    store: str | None = None

    def repo(self) -> Repository:
        """The located store; a missing store is StoreNotFoundError, never a new empty store."""
        from kitaru_store.errors import ReadOnlyStoreError
        from kitaru_store.remote.hooks import open_repository

        try:
            return open_repository(self.store, create=False)
        except ReadOnlyStoreError:
            # A store this user may not write: the read commands work, the write ones say why not.
            return open_repository(self.store, create=False, readonly=True)


pass_state = click.make_pass_decorator(State, ensure=True)


def _remember_json(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    ctx.meta[JSON_META] = bool(value)
    return bool(value)


def json_option(fn: F, *, error_exit: int = 1) -> F:
    """``--json``: machine-readable output, and errors as a JSON object on stdout."""
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        callback=_remember_json,
        is_eager=True,
        help=f"Print JSON (errors too: an object on stdout, exit code {error_exit}).",
    )(fn)


# --- the one place where a KitaruError becomes a message and an exit code ---------------------


class CommandError(click.ClickException):
    """A KitaruError on its way out: ``error: <message>`` on stderr, or a JSON object on stdout."""

    exit_code = 1

    def __init__(self, error: KitaruError, *, as_json: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.as_json = as_json

    def to_dict(self) -> dict[str, Any]:
        out = self.error.to_dict()
        for attr in ("candidates", "available"):
            value = getattr(self.error, attr, None)
            if value is not None:
                out[attr] = value
        return out

    def show(self, file: Any = None) -> None:
        if self.as_json:
            click.echo(output.dumps(self.to_dict()))
            return
        message = " ".join(self.format_message().split("\n"))
        click.echo(f"{output.style('error', fg='red', bold=True)}: {message}", err=True)


class Failed(click.ClickException):
    """A command that ran but found a problem (fsck, an incomplete gc): its output is printed
    already; only the exit code remains."""

    exit_code = 1

    def __init__(self) -> None:
        super().__init__("")

    def show(self, file: Any = None) -> None:
        pass


class KitaruGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        from kitaru_store.errors import KitaruError

        try:
            return super().invoke(ctx)
        except KitaruError as exc:
            raise CommandError(exc, as_json=bool(ctx.meta.get(JSON_META))) from exc
        except RecursionError as exc:  # data stored before depth was bounded, too deep to print
            from kitaru_store.errors import NestingTooDeepError

            err = NestingTooDeepError(
                "what this command would print nests too deeply to show",
                hint="read it with the Python API (KitaruClient), which decodes at any stack depth",
            )
            raise CommandError(err, as_json=bool(ctx.meta.get(JSON_META))) from exc


# --- arguments -------------------------------------------------------------------------------


@dataclass
class Target:
    """What `cat` and `pin` address: an entry of an execution, or a bare object."""

    object_id: str
    manifest: Manifest | None = None
    entry: Entry | None = None


def resolve_target(repo: Repository, text: str) -> Target:
    """``EXEC:NAME`` (an execution id prefix, then a name) or ``OBJECT`` (a 4+ character prefix).

    Names may contain ':', execution ids never do, so the first ':' separates the two.
    """
    if ":" in text:
        from kitaru_store.resolve import resolve

        exec_part, name = text.split(":", 1)
        manifest = repo.get_execution(exec_part)
        entry = resolve(manifest, name)
        return Target(entry.object_id, manifest, entry)
    return Target(repo.resolve_object(text))


def entry_label(entry: Entry) -> str:
    """The name that addresses an entry unambiguously: a checkpoint output's invocation id."""
    if entry.kind == "checkpoint_output" and entry.invocation_id:
        return entry.invocation_id
    return entry.name


def _completion_repo(ctx: click.Context) -> Repository | None:
    state = ctx.find_object(State)
    try:
        return (state or State()).repo()
    except Exception:
        return None


def complete_exec(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Recent execution ids (short), with their flow and status as help."""
    from click.shell_completion import CompletionItem

    repo = _completion_repo(ctx)
    if repo is None:
        return []
    items = []
    try:
        for s in repo.list_executions(limit=200):
            sid = output.short(s.exec_id)
            if sid.startswith(incomplete.lower()):
                items.append(CompletionItem(sid, help=f"{s.flow_name} {s.status}"))
    except Exception:
        return []
    return items


def complete_target(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """``EXEC:`` while the id is typed, then ``EXEC:NAME`` for the names of that execution."""
    from click.shell_completion import CompletionItem

    if ":" not in incomplete:
        return [CompletionItem(i.value + ":", help=i.help) for i in complete_exec(ctx, param, incomplete)]
    repo = _completion_repo(ctx)
    if repo is None:
        return []
    exec_part, name = incomplete.split(":", 1)
    try:
        from kitaru_store.resolve import addressable_names

        names = addressable_names(repo.get_execution(exec_part))
    except Exception:
        return []
    return [CompletionItem(f"{exec_part}:{n}") for n in names if n.startswith(name)]


def stdout_is_tty() -> bool:
    return output.isatty(sys.stdout)
