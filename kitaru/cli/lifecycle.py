"""``kitaru-store cancel`` and ``kitaru-store rm``: stop or forget executions (kitaru/lifecycle.py).

Exit codes: 0 done; 1 the operation failed part-way (``rm`` of several, one changed meanwhile);
2 a usage or typed error before anything changed (an unknown id, a finished execution to cancel,
a running one to delete without --force).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from kitaru_store.cli import output as out
from kitaru_store.cli.common import CommandError, State, complete_exec, pass_state

from .recovery import RefusedError, json_refusing

if TYPE_CHECKING:
    from kitaru_store.errors import KitaruError
    from kitaru_store.manifests import Manifest


def _label(m: Manifest) -> str:
    return f"{out.short(m.exec_id)} ({m.flow_name})"


@click.command(short_help="Cancel a running or waiting execution.")
@click.argument("exec_id", metavar="EXEC", shell_complete=complete_exec)
@click.option("--reason", metavar="TEXT", help="Why, recorded with the cancellation.")
@json_refusing
@pass_state
def cancel(state: State, exec_id: str, reason: str | None, as_json: bool) -> None:
    """Cancel EXEC.

    A waiting or crashed execution becomes cancelled at once. A running one gets a cancel
    request: the process running it stops at its next checkpoint boundary or wait poll, and the
    execution ends cancelled (`kitaru-store retry` runs it again). A finished one is an error.
    """
    from kitaru.lifecycle import cancel as cancel_execution
    from kitaru_store.errors import KitaruError

    try:
        m = cancel_execution(state.repo(), exec_id, reason=reason)
    except KitaruError as exc:
        raise RefusedError(exc, as_json=as_json) from exc
    requested = m.status == "running"
    if as_json:
        out.echo_json(
            {
                "exec_id": m.exec_id,
                "flow_name": m.flow_name,
                "status": m.status,
                "cancel_requested": requested,
            }
        )
    elif requested:
        who = f"process {m.owner.pid} on host {m.owner.host}" if m.owner else "its process"
        click.echo(f"cancel requested for {_label(m)}: {who} stops at its next checkpoint boundary")
    else:
        click.echo(f"cancelled {_label(m)}")


@click.command(short_help="Delete executions.")
@click.argument("exec_ids", metavar="EXEC...", nargs=-1, required=True, shell_complete=complete_exec)
@click.option("--force", is_flag=True, help="Delete running executions too (their process stops).")
@json_refusing
@pass_state
def rm(state: State, exec_ids: tuple[str, ...], force: bool, as_json: bool) -> None:
    """Delete each EXEC: its record goes, and `kitaru-store gc` reclaims what only it kept.

    Every EXEC is checked before any is deleted: an unknown id, or a running execution without
    --force, deletes nothing. Pinned objects stay pinned.
    """
    from kitaru.lifecycle import check_deletable, delete
    from kitaru_store.errors import KitaruError

    repo = state.repo()
    try:
        found = {m.exec_id: m for m in (repo.get_execution(e) for e in exec_ids)}
        for m in found.values():
            check_deletable(m, force=force)
    except KitaruError as exc:
        raise RefusedError(exc, as_json=as_json) from exc
    deleted: list[Manifest] = []
    error: KitaruError | None = None
    for m in found.values():
        try:
            delete(repo, m.exec_id, force=force)
        except KitaruError as exc:
            error = exc
            break
        deleted.append(m)
    if as_json:
        done = [{"exec_id": m.exec_id, "flow_name": m.flow_name, "status": m.status} for m in deleted]
        out.echo_json({"deleted": done, **({"error": error.to_dict()} if error else {})})
    else:
        for m in deleted:
            click.echo(f"deleted {_label(m)}")
        if deleted:
            click.echo("run `kitaru-store gc` to reclaim their space", err=True)
    if error is not None:
        if as_json:
            raise click.exceptions.Exit(1)
        raise CommandError(error, as_json=False)


COMMANDS = [cancel, rm]
