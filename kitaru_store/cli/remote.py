"""Remotes: ``remote add|list|set|remove``, ``push``, ``pull`` and ``clone`` (docs/remotes.md).

Only click and the standard library at import time: the remote package, and boto3 behind it,
are imported when a command runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from . import output as out
from .common import Failed, State, complete_exec, json_option, pass_state

if TYPE_CHECKING:
    from kitaru_store.remote.settings import RemoteSpec
    from kitaru_store.remote.sync import PullReport, PushReport

DEFAULT_JOBS = 8  # kitaru_store.remote.sync.DEFAULT_JOBS (not imported for --help)


def _spec_dict(spec: RemoteSpec) -> dict[str, Any]:
    return spec.to_dict()


def _spec_lines(spec: RemoteSpec) -> list[str]:
    extras = []
    if spec.endpoint_url:
        extras.append(f"endpoint {spec.endpoint_url}")
    if spec.region:
        extras.append(f"region {spec.region}")
    if spec.profile:
        extras.append(f"profile {spec.profile}")
    if spec.fallback:
        extras.append("fallback")
    if spec.write_through:
        extras.append("write-through")
    return [f"{spec.name}\t{spec.url}" + (f"\t({', '.join(extras)})" if extras else "")]


def _jobs_option(fn: Any) -> Any:
    return click.option(
        "--jobs",
        "-j",
        type=click.IntRange(1, 64),
        default=DEFAULT_JOBS,
        show_default=True,
        help="Parallel requests to the remote.",
    )(fn)


def _remote_option(fn: Any) -> Any:
    return click.option(
        "--remote",
        "-r",
        "remote_name",
        metavar="NAME",
        help="The remote (default: origin, else the only one).",
    )(fn)


def _connection_options(fn: Any) -> Any:
    for option in reversed(
        [
            click.option(
                "--endpoint-url",
                metavar="URL",
                help="S3 endpoint of a non-AWS server (MinIO, Ceph RGW, ...), e.g. http://127.0.0.1:9000.",
            ),
            click.option(
                "--region", metavar="REGION", help="The bucket's region (default: from AWS config)."
            ),
            click.option(
                "--profile", metavar="NAME", help="AWS profile for credentials (default: AWS env vars)."
            ),
        ]
    ):
        fn = option(fn)
    return fn


# --- remote add / list / set / remove ---------------------------------------------------------


@click.group(
    invoke_without_command=True,
    short_help="Manage remotes: S3-compatible buckets to push to and pull from.",
)
@json_option
@click.pass_context
def remote(ctx: click.Context, as_json: bool) -> None:
    """Manage the remotes of this store. Without a subcommand: list them.

    A remote is a bucket and prefix on S3-compatible storage, s3://BUCKET/PREFIX. Credentials
    come from the standard AWS environment variables, shared files or --profile; they are never
    written into the store.
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(remote_list, as_json=as_json)


@remote.command(name="add", short_help="Add a remote.")
@click.argument("name")
@click.argument("url")
@_connection_options
@click.option("--fallback", is_flag=True, help="load() fetches objects missing locally from this remote.")
@click.option("--write-through", is_flag=True, help="Every commit that changes an execution pushes it here.")
@json_option
@pass_state
def remote_add(
    state: State,
    name: str,
    url: str,
    endpoint_url: str | None,
    region: str | None,
    profile: str | None,
    fallback: bool,
    write_through: bool,
    as_json: bool,
) -> None:
    """Add remote NAME at URL (s3://BUCKET/PREFIX). Nothing is sent to the remote yet: the first
    push creates it. Creates the store if there is none yet."""
    from kitaru_store.remote import settings
    from kitaru_store.repository import Repository

    spec = settings.make_spec(
        name,
        url,
        endpoint_url=endpoint_url,
        region=region,
        profile=profile,
        fallback=fallback,
        write_through=write_through,
    )
    repo = Repository.open(state.store)
    settings.add(repo.root, spec)
    if as_json:
        out.echo_json(_spec_dict(spec))
    else:
        out.echo_lines(_spec_lines(spec))


@remote.command(name="list", short_help="List the remotes.")
@json_option
@pass_state
def remote_list(state: State, as_json: bool) -> None:
    """List the configured remotes: name, URL and options."""
    from kitaru_store.remote import settings

    specs = settings.load(state.repo().root)
    if as_json:
        out.echo_json([_spec_dict(s) for s in specs.values()])
        return
    if not specs:
        click.echo("no remotes (add one with `kitaru-store remote add origin s3://BUCKET/PREFIX`)", err=True)
    for spec in specs.values():
        out.echo_lines(_spec_lines(spec))


@remote.command(name="set", short_help="Change a remote's URL or options.")
@click.argument("name")
@click.option("--url", metavar="URL", help="A new URL (s3://BUCKET/PREFIX).")
@_connection_options
@click.option("--fallback/--no-fallback", default=None, help="Fetch objects missing locally on load.")
@click.option("--write-through/--no-write-through", default=None, help="Push every change to executions.")
@json_option
@pass_state
def remote_set(
    state: State,
    name: str,
    url: str | None,
    endpoint_url: str | None,
    region: str | None,
    profile: str | None,
    fallback: bool | None,
    write_through: bool | None,
    as_json: bool,
) -> None:
    """Change remote NAME; options not given stay as they are."""
    from kitaru_store.remote import settings

    spec = settings.update(
        state.repo().root,
        name,
        url=url,
        endpoint_url=endpoint_url,
        region=region,
        profile=profile,
        fallback=fallback,
        write_through=write_through,
    )
    if as_json:
        out.echo_json(_spec_dict(spec))
    else:
        out.echo_lines(_spec_lines(spec))


@remote.command(name="remove", short_help="Forget a remote.")
@click.argument("name")
@json_option
@pass_state
def remote_remove(state: State, name: str, as_json: bool) -> None:
    """Forget remote NAME and what this store tracked about it. Nothing on the remote changes."""
    from kitaru_store.remote import settings

    spec = settings.remove(state.repo().root, name)
    if as_json:
        out.echo_json({"removed": name, **_spec_dict(spec)})
    else:
        click.echo(f"removed remote {name} ({spec.url})")


# --- push / pull / clone ---------------------------------------------------------------------


def _ids(label: str, values: list[str]) -> str:
    shown = ", ".join(out.short(v) for v in values[:10]) + (" ..." if len(values) > 10 else "")
    return f"{label}: {len(values)} ({shown})"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _show_push(report: PushReport) -> None:
    where = f"{report.remote} ({report.url})"
    if not report.pushed and not report.objects_uploaded:
        click.echo(f"nothing to push to {where}: {_plural(len(report.up_to_date), 'execution')} up to date")
    else:
        click.echo(
            f"pushed {_plural(len(report.pushed), 'execution')} to {where}:"
            f" {_plural(report.objects_uploaded, 'object')} uploaded ({out.size(report.bytes_uploaded)}),"
            f" {report.objects_present} already there, in {out.duration(report.seconds)}"
        )
        if report.up_to_date:
            click.echo(f"up to date: {len(report.up_to_date)}")
    if report.behind:
        click.echo(_ids("behind the remote, not pushed (pull them)", report.behind))


def _show_pull(report: PullReport) -> None:
    where = f"{report.remote} ({report.url})"
    if not report.fetched and not report.updated:
        click.echo(f"nothing to pull from {where}: {_plural(len(report.up_to_date), 'execution')} up to date")
    else:
        click.echo(
            f"pulled {_plural(len(report.fetched), 'new execution')} and"
            f" {_plural(len(report.updated), 'newer version')} from {where}:"
            f" {_plural(report.objects_fetched, 'object')} fetched ({out.size(report.bytes_fetched)}),"
            f" {report.objects_present} already here, in {out.duration(report.seconds)}"
        )
        if report.up_to_date:
            click.echo(f"up to date: {len(report.up_to_date)}")
    if report.ahead:
        click.echo(_ids("ahead of the remote, kept (push them)", report.ahead))


def _finish(report: PushReport | PullReport, as_json: bool, *, pushing: bool) -> None:
    """Exit 1 after the report if anything was left out: diverged executions, failed imports."""
    from kitaru_store.remote.sync import PullReport, _conflict

    failed = report.failed if isinstance(report, PullReport) else []
    if not as_json:
        label = out.style("error", fg="red", bold=True)
        if failed:
            click.echo(
                f"{label}: {_plural(len(failed), 'execution')} could not be pulled (not stored):", err=True
            )
            for failure in failed:
                click.echo(f"  {out.short(failure.exec_id)}  {failure.error.message}", err=True)
            hints = dict.fromkeys(f.error.hint for f in failed if f.error.hint)
            for hint in hints:
                click.echo(f"hint: {hint}", err=True)
        if report.conflicts:
            click.echo(f"{label}: {_conflict(report.conflicts, report.remote, pushing=pushing)}", err=True)
    if report.conflicts or failed:
        raise Failed()


@click.command(short_help="Push executions and their objects to a remote.")
@click.argument("exec_ids", nargs=-1, metavar="[EXEC]...", shell_complete=complete_exec)
@_remote_option
@click.option("--force", is_flag=True, help="The local version wins over a newer or diverged remote one.")
@_jobs_option
@json_option
@pass_state
def push(
    state: State, exec_ids: tuple[str, ...], remote_name: str | None, force: bool, jobs: int, as_json: bool
) -> None:
    """Push executions (default: all of them) to a remote: objects the remote lacks, then the
    manifests, with conditional writes so that concurrent pushers never lose each other's work.

    An execution whose remote version is newer is left alone (pull it); one changed on both
    sides is a conflict: exit code 1, unless --force.
    """
    from kitaru_store.remote.sync import Remote

    repo = state.repo()
    remote_ = Remote.open(repo, remote_name, jobs=jobs)
    with out.Progress(labels={"push": "pushing"}) as progress:
        report = remote_.push(exec_ids or None, force=force, progress=progress, raise_on_conflict=False)
    if as_json:
        out.echo_json(report.to_dict())
    else:
        _show_push(report)
    _finish(report, as_json, pushing=True)


@click.command(short_help="Fetch executions and their objects from a remote.")
@click.argument("exec_ids", nargs=-1, metavar="[EXEC]...")
@click.option("--all", "pull_all", is_flag=True, help="Every execution on the remote (the default).")
@_remote_option
@click.option("--force", is_flag=True, help="The remote version wins over a newer or diverged local one.")
@_jobs_option
@json_option
@pass_state
def pull(
    state: State,
    exec_ids: tuple[str, ...],
    pull_all: bool,
    remote_name: str | None,
    force: bool,
    jobs: int,
    as_json: bool,
) -> None:
    """Fetch executions from a remote (EXEC: ids or unique prefixes on the remote; default: all).

    Only objects missing here are fetched; each is verified against its id before it is stored,
    and an execution's objects and manifest are committed together. An execution whose remote
    data is bad is left out and listed (exit code 1); every other one is pulled.
    """
    from kitaru_store.remote.sync import Remote

    if exec_ids and pull_all:
        raise click.UsageError("give execution ids or --all, not both")
    repo = state.repo()
    remote_ = Remote.open(repo, remote_name, jobs=jobs)
    with out.Progress(labels={"pull": "pulling"}) as progress:
        report = remote_.pull(
            exec_ids or None, force=force, progress=progress, raise_on_conflict=False, raise_on_failure=False
        )
    if as_json:
        out.echo_json(report.to_dict())
    else:
        _show_pull(report)
    _finish(report, as_json, pushing=False)


@click.command(short_help="Make a new store from a remote.")
@click.argument("url")
@click.argument("path", type=click.Path(file_okay=False, path_type=str))
@click.option(
    "--name",
    "-o",
    "name",
    default="origin",
    show_default=True,
    help="The name of the remote in the new store.",
)
@_connection_options
@click.option("--fallback", is_flag=True, help="load() fetches objects missing locally from this remote.")
@click.option("--write-through", is_flag=True, help="Every commit that changes an execution pushes it here.")
@_jobs_option
@json_option
def clone(
    url: str,
    path: str,
    name: str,
    endpoint_url: str | None,
    region: str | None,
    profile: str | None,
    fallback: bool,
    write_through: bool,
    jobs: int,
    as_json: bool,
) -> None:
    """Create a store at PATH with URL as its remote (origin) and pull every execution.

    PATH must not hold a store yet. The global --store is not used.
    """
    from kitaru_store.remote import sync

    repo, report = sync.clone(
        url,
        path,
        name=name,
        endpoint_url=endpoint_url,
        region=region,
        profile=profile,
        fallback=fallback,
        write_through=write_through,
        jobs=jobs,
        raise_on_failure=False,
    )
    if as_json:
        out.echo_json({"path": str(repo.root), **report.to_dict()})
    else:
        click.echo(f"cloned {report.url} into {repo.root}")
        _show_pull(report)
    _finish(report, as_json, pushing=False)


COMMANDS = [remote, push, pull, clone]
