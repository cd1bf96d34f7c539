"""``kitaru-store retry``, ``resume``, ``input``, ``abort-wait`` and ``replay``: every recovery and
wait step, run in this process on the CLI's store through ``KitaruClient`` (the SDK's own code
paths: an answer is validated by the same function as ``executions.input``).

The flow of an execution is found as ``kitaru.registry.find`` finds it: by its recorded module, or
by the script it was run from. Exit codes: 0 done; 1 the flow ran and failed or was cancelled (its
outcome is printed first); 2 a usage or typed error before anything changed (unknown or ambiguous
id, wrong state, invalid JSON, an answer that does not fit the wait's schema, an unknown wait,
checkpoint or override name): the store is as it was.
"""

from __future__ import annotations

import contextlib
import reprlib
import shlex
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click

from kitaru_store.cli import output as out
from kitaru_store.cli.common import (
    CommandError,
    Failed,
    State,
    complete_exec,
    json_option,
    pass_state,
)

if TYPE_CHECKING:
    from kitaru_store.manifests import Manifest

    from ..client import KitaruClient
    from ..handles import FlowHandle

ERROR_EXIT = 2  # a typed error before anything changed, as click's usage errors
JSON_HINT = """give JSON, quoted for the shell: '"a string"', true, 42, '{"approved": true}'"""
_RESULT = reprlib.Repr()
_RESULT.maxstring = _RESULT.maxother = 60


def json_refusing(fn: Any) -> Any:
    """``--json``, for commands whose typed errors come before anything changed (exit code 2)."""
    return json_option(fn, error_exit=ERROR_EXIT)


class RefusedError(CommandError):
    """A KitaruError raised before anything changed: printed as every command's errors are."""

    exit_code = ERROR_EXIT


@contextlib.contextmanager
def _typed_errors(as_json: bool) -> Iterator[None]:
    """A KitaruError raised before the flow runs: exit code 2 (the runtime turns an error of the
    flow itself into a failed execution, which is an outcome, not an error)."""
    from ..errors import KitaruError

    try:
        yield
    except KitaruError as exc:
        raise RefusedError(exc, as_json=as_json) from exc


def _client(state: State) -> KitaruClient:
    from ..client import KitaruClient

    return KitaruClient(state.store)


def parse_json(text: str, *, what: str, name: str | None = None) -> Any:
    """The value of a JSON text given on the command line, or a KitaruUsageError saying why not.

    Standard JSON (RFC 8259: no NaN or Infinity), integers within 64 bits, at most
    ``nesting.MAX_DEPTH`` levels deep (what a stored value may nest); of a repeated key in an
    object the last one counts."""
    import msgspec

    from kitaru_store import nesting

    from ..errors import KitaruUsageError

    too_deep = f"{what} nests more than {nesting.MAX_DEPTH} levels deep"
    try:
        value = nesting.on_fresh_stack(lambda: msgspec.json.decode(text))
    except RecursionError:
        raise KitaruUsageError(too_deep, name=name, hint=JSON_HINT) from None
    except ValueError as exc:  # DecodeError, ValidationError (numbers out of range), lone surrogates
        raise KitaruUsageError(f"{what} is not valid JSON: {exc}", name=name, hint=JSON_HINT) from None
    if nesting.depth_exceeds(value):
        raise KitaruUsageError(too_deep, name=name, hint=JSON_HINT)
    return value


# --- output ----------------------------------------------------------------------------------


def _store_option(state: State) -> str:
    return f"--store {shlex.quote(state.store)} " if state.store else ""


def _outcome(client: KitaruClient, handle: FlowHandle, as_json: bool) -> None:
    """The execution after a run: its fields as JSON, or one line; exit code 1 when it failed."""
    m = client.repository.get_execution(handle.exec_id)
    if as_json:
        out.echo_json(m)
    else:
        click.echo(_line(m, handle))
    if m.status in ("failed", "cancelled"):
        raise Failed()


def _line(m: Manifest, handle: FlowHandle) -> str:
    flow = out.terminal_text(m.flow_name)
    where = f"{flow}, replay of {out.short(m.replay_of)}" if m.replay_of else flow
    head = f"{out.status_text(m.status)} {m.exec_id} ({where})"
    if m.status == "completed":
        return f"{head}: result {out.terminal_text(_RESULT.repr(handle.get()))}"
    if m.failure is not None:
        f = m.failure
        lines = f.message.splitlines()
        message = out.terminal_text(f"{f.type}: {lines[0] if lines else ''}")
        return f"{head}: {message}" + (f" (in checkpoint {f.checkpoint})" if f.checkpoint else "")
    pending = [w.name for w in sorted(m.waits, key=lambda w: w.seq) if w.status == "pending"]
    if m.status == "waiting" and pending:
        return f"{head}: waiting for input to {', '.join(map(repr, pending))}"
    return head


# --- commands --------------------------------------------------------------------------------

EXEC = click.argument("exec_id", metavar="EXEC", shell_complete=complete_exec)


@click.command(short_help="Run a failed or cancelled execution again, in place.")
@EXEC
@json_refusing
@pass_state
def retry(state: State, exec_id: str, as_json: bool) -> None:
    """Run a failed (a crashed one too) or cancelled execution again, in place, in this process.

    The checkpoints it completed are reused from their recorded outputs; the calls that had not
    completed (the one that failed or was cut short, unfinished items of a fan-out) run again,
    and so does everything the first run never reached. Prints the outcome: status, execution
    id, and the result or the failure. Exit code 1 if the flow failed again.

    EXEC is an execution id or a unique prefix of one (4+ characters). The flow is the one the
    execution recorded: imported from its module, or loaded from the script it was run from
    (`python script.py`), whose main block does not run.
    """
    client = _client(state)
    with _typed_errors(as_json):
        handle = client.executions.retry(exec_id)
    _outcome(client, handle, as_json)


@click.command(short_help="Continue a waiting execution after its wait got input.")
@EXEC
@json_refusing
@pass_state
def resume(state: State, exec_id: str, as_json: bool) -> None:
    """Continue a waiting execution in this process, once its wait has an answer (`input`).

    The checkpoints it completed are reused; the wait returns its answer and the flow goes on.
    Prints the outcome as `retry` does; a flow that reaches another wait stays `waiting`.
    """
    client = _client(state)
    with _typed_errors(as_json):
        handle = client.executions.resume(exec_id)
    _outcome(client, handle, as_json)


@click.command("input", short_help="Answer a pending wait of an execution.")
@EXEC
@click.option("--wait", "wait", metavar="NAME", required=True, help="The wait to answer.")
@click.option("--value", metavar="JSON", required=True, help="The answer, as JSON (a string in quotes).")
@json_refusing
@pass_state
def input_(state: State, exec_id: str, wait: str, value: str, as_json: bool) -> None:
    """Answer the pending wait NAME of an execution with a JSON value.

    The answer is validated against the wait's schema exactly as
    `KitaruClient().executions.input` validates it, and stored; `resume` then continues the
    flow. A value that is not JSON or does not fit the schema changes nothing.
    """
    client = _client(state)
    with _typed_errors(as_json):
        answer = client.executions.input(
            exec_id, wait=wait, value=parse_json(value, what="--value", name=wait)
        )
    m = client.repository.get_execution(exec_id)
    if as_json:
        out.echo_json(m)
        return
    click.echo(f"answered wait {wait!r} of {m.exec_id}: {out.terminal_text(_RESULT.repr(answer))}")
    click.echo(f"continue it with: kitaru-store {_store_option(state)}resume {m.exec_id}")


@click.command("abort-wait", short_help="Refuse a pending wait: the execution fails.")
@EXEC
@click.option("--wait", "wait", metavar="NAME", required=True, help="The wait to refuse.")
@click.option("--reason", metavar="TEXT", help="Why (kept in the execution's failure message).")
@json_refusing
@pass_state
def abort_wait(state: State, exec_id: str, wait: str, reason: str | None, as_json: bool) -> None:
    """Refuse the pending wait NAME: the wait is marked aborted and the execution fails cleanly
    (`retry` would then reach the wait again and ask anew)."""
    client = _client(state)
    with _typed_errors(as_json):
        client.executions.abort_wait(exec_id, wait=wait, reason=reason)
    m = client.repository.get_execution(exec_id)
    if as_json:
        out.echo_json(m)
        return
    click.echo(f"aborted wait {wait!r} of {m.exec_id}: the execution is {out.status_text(m.status)}")


@click.command(short_help="Run an execution again as a new one, from a checkpoint on.")
@EXEC
@click.option(
    "--from",
    "from_",
    metavar="CHECKPOINT",
    help="The checkpoint (name or invocation id) to run again; the calls before it are reused."
    " Default: reuse every call that completed.",
)
@click.option(
    "--override",
    "overrides",
    metavar="NAME=JSON",
    multiple=True,
    help="Use this output for checkpoint NAME (or checkpoint.NAME) instead of running it. Repeatable.",
)
@json_refusing
@pass_state
def replay(state: State, exec_id: str, from_: str | None, overrides: tuple[str, ...], as_json: bool) -> None:
    """Run an execution's flow again as a new execution, with the same inputs, in this process.

    The checkpoint calls before --from are reused from their recorded outputs; from there on
    everything runs. `--override NAME=JSON` gives a checkpoint an output instead of running it
    (NAME as a checkpoint name, an invocation id, or `checkpoint.NAME`). Prints the outcome of the
    new execution as `retry` does.
    """
    client = _client(state)
    with _typed_errors(as_json):
        handle = client.executions.replay(exec_id, from_=from_, overrides=_overrides(overrides))
    _outcome(client, handle, as_json)


def _overrides(given: tuple[str, ...]) -> dict[str, Any] | None:
    from ..errors import KitaruUsageError

    parsed: dict[str, Any] = {}
    for item in given:
        name, equals, text = item.partition("=")
        if not equals or not name:
            raise KitaruUsageError(
                f"--override {item!r} is not NAME=JSON",
                hint="for example --override summarize='\"a new summary\"'",
            )
        if name in parsed:
            raise KitaruUsageError(f"--override {name} is given twice", name=name, hint="give it once")
        parsed[name] = parse_json(text, what=f"--override {name}", name=name)
    return parsed or None


COMMANDS = [retry, resume, input_, abort_wait, replay]
