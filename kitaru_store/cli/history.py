"""Reading executions: ``log``, ``show``, ``ls`` and ``diff``."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import click

from kitaru_store.listing import BATCH

from . import output as out
from .common import (
    STATUSES,
    Failed,
    State,
    complete_exec,
    entry_label,
    json_option,
    pass_state,
)
from .log_options import COUNT, FLAG, OPTIONS, STATUS
from .text import damage_warning, log_pages, log_painters

if TYPE_CHECKING:
    from kitaru_store.manifests import CheckpointRecord, Entry, ExecutionSummary, Failure, Manifest


# --- log -------------------------------------------------------------------------------------


def _summary_dict(s: ExecutionSummary) -> dict[str, Any]:
    d: dict[str, Any] = out.jsonable(s)
    d["duration_seconds"] = out.elapsed(s.started_at, s.ended_at)
    return d


def _warning_of_damage(summaries: Iterator[ExecutionSummary]) -> Iterator[ExecutionSummary]:
    """``summaries``, with a warning on stderr for each damaged row (its JSON says "damaged")."""
    for s in summaries:
        warning = damage_warning(s)
        if warning is not None:
            click.echo(warning, err=True)
        yield s


_TYPES: dict[str, click.ParamType[Any]] = {COUNT: click.IntRange(min=0), STATUS: click.Choice(STATUSES)}


def _log_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options of log_options.OPTIONS, which the fast path parses too, in their order."""
    for spellings, dest, takes, metavar, help_text in reversed(OPTIONS):
        kind: dict[str, Any] = {"is_flag": True} if takes == FLAG else {"type": _TYPES.get(takes)}
        f = click.option(*spellings, dest, metavar=metavar, help=help_text, **kind)(f)
    return f


# `kitaru-store log` without --json usually runs quicklog.py's fast path instead of this command,
# with the same options (log_options.py) and output (text.py); tests/cli/test_cli_quicklog.py
# compares them.
@click.command(short_help="List executions, newest first.")
@_log_options
@json_option
@pass_state
def log(
    state: State, limit: int | None, flow: str | None, status: str | None, oneline: bool, as_json: bool
) -> None:
    """List executions, newest first.

    Columns: short id, flow, status, start time (local), duration and the number of artifacts
    (every named value: checkpoint outputs, saved artifacts, LLM records, wait inputs). Rows are
    printed 100 at a time; a column widens where a later page needs more room.
    """
    expect = limit + 1 if limit is not None else BATCH
    summaries: Iterator[ExecutionSummary] = state.repo().iter_executions(
        flow=flow, status=status, expect=expect
    )
    if limit is not None:
        summaries = itertools.islice(summaries, limit)
    # Printed a page at a time: on a store of 100,000 executions the first rows show at once.
    if as_json:
        out.echo_json_list(_summary_dict(s) for s in _warning_of_damage(summaries))
        return
    for text, err in log_pages(
        summaries,
        oneline=oneline,
        filtered=bool(flow or status),
        **log_painters(colour=not out.no_color()),  # click.echo takes them off where no terminal is
    ):
        click.echo(text, err=err)


# --- show ------------------------------------------------------------------------------------


def _failure_lines(f: Failure, indent: str, *, where: bool = True) -> list[str]:
    place = f" (in checkpoint {f.checkpoint})" if f.checkpoint and where else ""
    lines = [f"{out.style(out.terminal_text(f.type), fg='red')}: {out.terminal_text(f.message)}{place}"]
    if f.traceback:
        lines.extend(indent + line for line in out.terminal_text(f.traceback).rstrip("\n").splitlines())
    return lines


def _checkpoint_head(c: CheckpointRecord) -> list[str]:
    attempts = len(c.attempts)
    return [
        out.style(c.invocation_id, bold=True),
        out.status_text(c.status),
        f"{attempts} attempt{'s' if attempts != 1 else ''}",
        out.duration(out.elapsed(c.started_at, c.ended_at)),
    ]


def _checkpoint_details(c: CheckpointRecord, sizes: dict[str, int]) -> list[str]:
    details: list[tuple[str, str]] = []
    if c.name != c.invocation_id:
        details.append(("checkpoint", c.name))
    if c.output_object_id:
        size = sizes.get(c.output_object_id)
        details.append(("output", out.short(c.output_object_id) + (f" ({out.size(size)})" if size else "")))
    if c.upstream:
        details.append(("upstream", ", ".join(c.upstream)))
    if c.inputs:
        details.append(("inputs", ", ".join(out.short(i) for i in c.inputs)))
    if c.reused_from:
        details.append(("reused from", c.reused_from))
    if c.metadata:
        details.append(("metadata", out.inline(c.metadata)))
    for n, a in enumerate(c.attempts, 1):
        if a.failure is not None:
            took = out.duration(out.elapsed(a.started_at, a.ended_at))
            details.append(
                (f"attempt {n}", f"failed after {took}: " + _failure_lines(a.failure, "", where=False)[0])
            )
    if c.failure is not None:
        details.append(("failure", _failure_lines(c.failure, "", where=False)[0]))
    return ["      " + line for line in out.fields(details)]


def entry_rows(entries: tuple[Entry, ...] | list[Entry]) -> list[list[str]]:
    return [
        [entry_label(e), e.kind, e.artifact_type, out.size(e.size), out.short(e.object_id)] for e in entries
    ]


@click.command(short_help="Show an execution: status, times, failure, checkpoints, artifacts.")
@click.argument("exec_id", metavar="EXEC", shell_complete=complete_exec)
@json_option
@pass_state
def show(state: State, exec_id: str, as_json: bool) -> None:
    """Show an execution's manifest: flow, status, times, failure, checkpoints and artifacts.

    EXEC is an execution id or a unique prefix of one (4+ characters).
    """
    m = state.repo().get_execution(exec_id)
    if as_json:
        out.echo_json(m)
        return
    click.echo(out.style(f"execution {m.exec_id}", fg="yellow"))
    info: list[tuple[str, str]] = [
        ("flow", m.flow_name),
        ("status", out.status_text(m.status)),
        ("started", out.when(m.started_at)),
        ("ended", out.when(m.ended_at)),
        ("duration", out.duration(out.elapsed(m.started_at, m.ended_at))),
    ]
    if m.replay_of:
        info.append(("replay of", m.replay_of))
    if m.input_object_id:
        info.append(("input", out.short(m.input_object_id)))
    if m.result_object_id:
        info.append(("result", out.short(m.result_object_id)))
    if m.metadata:
        info.append(("metadata", out.inline(m.metadata)))
    out.echo_lines(out.fields(info))
    if m.failure is not None:
        click.echo("failure:")
        out.echo_lines("  " + line for line in _failure_lines(m.failure, "    "))
    sizes = {e.object_id: e.size for e in m.entries}
    calls = sorted(m.checkpoints, key=lambda c: c.seq)  # call order (concurrent calls end out of order)
    click.echo()
    click.echo(out.style(f"checkpoints ({len(calls)})", bold=True))
    heads = out.table([_checkpoint_head(c) for c in calls])
    for c, head in zip(calls, heads, strict=True):
        click.echo("  " + head)
        out.echo_lines(_checkpoint_details(c, sizes))
    if m.waits:
        click.echo()
        click.echo(out.style(f"waits ({len(m.waits)})", bold=True))
        for w in sorted(m.waits, key=lambda w: w.seq):
            click.echo(f"  {out.style(w.name, bold=True)}  {out.status_text(w.status)}")
            details: list[tuple[str, str]] = []
            if w.question:
                details.append(
                    (
                        "question",
                        out.terminal_text(w.question.splitlines()[0])
                        + (" ..." if "\n" in w.question else ""),
                    )
                )
            if w.value_object_id:
                details.append(("answer", out.short(w.value_object_id)))
            if w.answered_at:
                details.append(("answered", out.when(w.answered_at)))
            if w.metadata:
                details.append(("metadata", out.inline(w.metadata)))
            out.echo_lines("      " + line for line in out.fields(details))
    click.echo()
    click.echo(out.style(f"artifacts ({len(m.entries)})", bold=True))
    out.echo_lines("  " + line for line in out.table(entry_rows(m.entries)))


# --- ls --------------------------------------------------------------------------------------

# Mirrors kitaru_store.manifests.ENTRY_KINDS (a test keeps them equal; see STATUSES in common.py).
KINDS = ("checkpoint_output", "manual", "llm_record", "wait_input")


@click.command(name="ls", short_help="List an execution's entries, one per line.")
@click.argument("exec_id", metavar="EXEC", shell_complete=complete_exec)
@click.option("--kind", type=click.Choice(KINDS), help="Only entries of this kind.")
@json_option
@pass_state
def ls(state: State, exec_id: str, kind: str | None, as_json: bool) -> None:
    """List an execution's entries: name, kind, type, size and short object id.

    The name shown is the one `cat EXEC:NAME` takes (a checkpoint output's invocation id).
    """
    m = state.repo().get_execution(exec_id)
    entries = [e for e in m.entries if kind is None or e.kind == kind]
    if as_json:
        out.echo_json(entries)
        return
    out.echo_lines(out.table(entry_rows(entries)))


# --- diff ------------------------------------------------------------------------------------


def _keyed(m: Manifest) -> dict[tuple[str, str], list[str]]:
    keyed: dict[tuple[str, str], list[str]] = {}
    for e in m.entries:
        keyed.setdefault((entry_label(e), e.kind), []).append(e.object_id)
    return {k: sorted(v) for k, v in keyed.items()}


def diff_manifests(a: Manifest, b: Manifest) -> dict[str, Any]:
    """Entries (by name and kind) added in ``b``, removed from ``a``, and changed (object ids)."""
    ka, kb = _keyed(a), _keyed(b)

    def one(ids: list[str]) -> str | list[str]:
        return ids[0] if len(ids) == 1 else ids

    added = [{"name": n, "kind": k, "object_id": one(kb[n, k])} for n, k in sorted(kb.keys() - ka.keys())]
    removed = [{"name": n, "kind": k, "object_id": one(ka[n, k])} for n, k in sorted(ka.keys() - kb.keys())]
    changed = [
        {"name": n, "kind": k, "before": one(ka[n, k]), "after": one(kb[n, k])}
        for n, k in sorted(ka.keys() & kb.keys())
        if ka[n, k] != kb[n, k]
    ]
    unchanged = [n for n, k in sorted(ka.keys() & kb.keys()) if ka[n, k] == kb[n, k]]
    return {
        "a": a.exec_id,
        "b": b.exec_id,
        "added": added,
        "removed": removed,
        "changed": changed,
        "unchanged": unchanged,
    }


def _ids(value: str | list[str]) -> str:
    return out.short(value) if isinstance(value, str) else ",".join(out.short(v) for v in value)


@click.command(short_help="Compare two executions' entries by object id.")
@click.argument("exec_a", metavar="EXEC_A", shell_complete=complete_exec)
@click.argument("exec_b", metavar="EXEC_B", shell_complete=complete_exec)
@click.option("--exit-code", is_flag=True, help="Exit with 1 when the executions differ (like git diff).")
@json_option
@pass_state
def diff(state: State, exec_a: str, exec_b: str, exit_code: bool, as_json: bool) -> None:
    """Compare two executions' entries by name and object id.

    Lines start with + (only in EXEC_B), - (only in EXEC_A) or ~ (the object differs).
    """
    repo = state.repo()
    a, b = repo.get_execution(exec_a), repo.get_execution(exec_b)
    d = diff_manifests(a, b)
    differs = bool(d["added"] or d["removed"] or d["changed"])
    if as_json:
        click.echo(out.dumps(d))
    else:
        click.echo(out.style(f"--- a {out.short(a.exec_id)} {a.flow_name} ({a.status})", bold=True))
        click.echo(out.style(f"+++ b {out.short(b.exec_id)} {b.flow_name} ({b.status})", bold=True))
        rows = [[out.style("-", fg="red"), r["name"], r["kind"], _ids(r["object_id"])] for r in d["removed"]]
        rows += [[out.style("+", fg="green"), r["name"], r["kind"], _ids(r["object_id"])] for r in d["added"]]
        rows += [
            [out.style("~", fg="yellow"), r["name"], r["kind"], f"{_ids(r['before'])} -> {_ids(r['after'])}"]
            for r in d["changed"]
        ]
        rows.sort(key=lambda r: r[1])
        out.echo_lines(out.table(rows))
        click.echo(
            f"{len(d['added'])} added, {len(d['removed'])} removed, {len(d['changed'])} changed,"
            f" {len(d['unchanged'])} unchanged"
        )
    if exit_code and differs:
        raise Failed()


COMMANDS = [log, show, ls, diff]
