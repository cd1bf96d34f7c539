"""Looking after the store: ``gc``, ``fsck``, ``stats`` and ``path``."""

from __future__ import annotations

import click

from . import output as out
from .common import Failed, State, json_option, pass_state

DEFAULT_GRACE = "1h"  # kitaru_store.gc.DEFAULT_GRACE


@click.command(short_help="Remove unreferenced objects.")
@click.option("--dry-run", is_flag=True, help="Report what would be removed; remove nothing.")
@click.option(
    "--grace",
    type=out.DurationType(),
    default=DEFAULT_GRACE,
    show_default=True,
    help="Keep unreferenced objects touched this recently (0, 30s, 10m, 2h, 7d, 1h30m).",
)
@click.option(
    "--compact",
    is_flag=True,
    help="Then rewrite the data file without free pages (needs the store to itself).",
)
@json_option
@pass_state
def gc(state: State, dry_run: bool, grace: float, compact: bool, as_json: bool) -> None:
    """Remove objects that no execution, pin or running writer references.

    Objects touched within the grace period stay, which protects what a concurrent writer is
    about to reference. Without --compact the data file keeps its size: freed pages are reused
    by later writes. Exits with 1 if --compact could not run.
    """
    repo = state.repo()
    labels = {"mark": "marking", "scan": "scanning", "sweep": "sweeping"}
    with out.Progress(labels=labels) as progress:
        report = repo.gc(grace=grace, dry_run=dry_run, compact=compact and not dry_run, progress=progress)
    if as_json:
        out.echo_json(report.to_dict())
    else:
        verb = "would remove" if dry_run else "removed"
        click.echo(
            f"{verb} {report.objects_removed} of {report.objects_total} objects,"
            f" {out.size(report.bytes_removed)} ({report.bytes_removed} bytes)"
        )
        click.echo(
            f"kept {report.objects_live} referenced objects and {report.objects_in_grace} within the"
            f" grace period ({out.duration(report.grace_seconds) if report.grace_seconds else '0'})"
        )
        if report.erasures and dry_run:
            click.echo(f"queued erasures of redacted values: {report.erasures} waiting")
        elif report.erasures:
            click.echo(
                f"queued erasures of redacted values: {report.erasures} done, removing"
                f" {report.erased_objects} objects, {out.size(report.erased_bytes)}"
                + (f"; {report.erasures_kept} kept, still referenced" if report.erasures_kept else "")
            )
        click.echo(
            f"file size: {out.size(report.file_size_before)} -> {out.size(report.file_size_after)}"
            f" in {out.duration(report.seconds)}"
        )
        if dry_run and compact:
            click.echo("(--compact is ignored with --dry-run)")
        elif not compact and not dry_run and report.bytes_removed:
            click.echo("(freed pages are reused by later writes; --compact shrinks the file)")
    if report.compact_error:
        click.echo(
            f"{out.style('error', fg='red', bold=True)}: compaction skipped: {report.compact_error}", err=True
        )
        raise Failed()


@click.command(short_help="Verify objects, manifests and indexes.")
@click.option(
    "--sample",
    type=out.SampleType(),
    help="Check only a random sample of objects: a count (500), a fraction (0.1) or a percentage (10%);"
    " the same fraction of executions and of index keys.",
)
@click.option("--seed", type=int, help="Seed for --sample, to repeat a run.")
@json_option
@pass_state
def fsck(state: State, sample: int | float | None, seed: int | None, as_json: bool) -> None:
    """Verify the store: re-hash objects, check every entry's object exists, check the indexes.

    Prints each problem found and exits with 1 if there is any.
    """
    repo = state.repo()
    with out.Progress(labels={"objects": "checking objects", "manifests": "checking manifests"}) as progress:
        report = repo.fsck(sample=sample, seed=seed, progress=progress)
    if as_json:
        out.echo_json(report.to_dict())
    else:
        for p in report.problems:
            where = []
            if p.exec_id:
                where.append(f"execution {out.short(p.exec_id)}")
            if p.name:
                where.append(f"name {p.name!r}")
            if p.object_id and p.object_id not in p.detail:
                where.append(f"object {p.object_id}")
            click.echo(
                f"{out.style(p.kind, fg='red')}: {p.detail}" + (f" ({', '.join(where)})" if where else "")
            )
        executions = f"{report.manifests_checked}" + (
            f" of {report.manifests_total}" if sample is not None else ""
        )
        click.echo(
            f"checked {report.objects_checked} of {report.objects_total} objects,"
            f" {executions} executions, {report.entries_checked} entries: "
            + (
                out.style("ok", fg="green")
                if report.ok
                else out.style(
                    f"{len(report.problems)} problem{'s' if len(report.problems) != 1 else ''}", fg="red"
                )
            )
        )
    if not report.ok:
        raise Failed()


def _ratio(x: float) -> str:
    return f"{x:.2f}x"


@click.command(short_help="Object counts, sizes, dedup and compression ratios.")
@json_option
@pass_state
def stats(state: State, as_json: bool) -> None:
    """Count executions and objects; logical, unique and stored bytes; dedup and compression.

    logical: the sizes of every entry of every execution added up; unique: the bytes of the
    distinct values actually stored (after dedup); stored: those bytes as compressed on disk;
    file: the size of the LMDB data file (stored bytes plus indexes and free pages).
    """
    st = state.repo().stats()
    if as_json:
        out.echo_json(st.to_dict())
        return
    share = f" (stored bytes are {st.stored_bytes / st.file_bytes:.0%} of it)" if st.file_bytes else ""
    out.echo_lines(
        out.fields(
            [
                ("executions", str(st.executions)),
                ("entries", str(st.entries)),
                (
                    "objects",
                    f"{st.objects} ({st.chunked_values} chunked values,"
                    f" {st.compressed_objects} compressed records)",
                ),
                ("logical bytes", f"{out.size(st.logical_bytes)} ({st.logical_bytes})"),
                ("unique bytes", f"{out.size(st.unique_bytes)} ({st.unique_bytes})"),
                ("stored bytes", f"{out.size(st.stored_bytes)} ({st.stored_bytes})"),
                ("dedup ratio", _ratio(st.dedup_ratio) + " (logical / unique)"),
                ("compression ratio", _ratio(st.compression_ratio) + " (unique / stored)"),
                ("file size", f"{out.size(st.file_bytes)} ({st.file_bytes}){share}"),
            ]
        )
    )


_SOURCES = {
    "explicit": "--store",
    "env": "the KITARU_STORE environment variable",
    "project": "the nearest .kitaru/ directory",
    "user": "the per-user data directory (nothing else was set or found)",
}


@click.command(short_help="Create a store (here: .kitaru/ with --project).")
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@click.option("--project", is_flag=True, help="Create .kitaru/ in the current directory (a project store).")
@json_option
@pass_state
def init(state: State, directory: str | None, project: bool, as_json: bool) -> None:
    """Create a store, like `git init`: at DIRECTORY, or with --project as .kitaru/ in the current
    directory (found from here and every directory below), or else where the store is located
    (--store, KITARU_STORE, a .kitaru/ above, the per-user data directory).

    An existing store is left as it is; a directory that holds something else is an error.
    """
    from pathlib import Path

    from kitaru_store import config
    from kitaru_store.repository import Repository

    if directory and project:
        raise click.UsageError("give a DIRECTORY or --project, not both")
    target = directory or (str(Path.cwd() / config.PROJECT_DIR) if project else state.store)
    loc = config.locate(target)
    existed = config.read_config(loc.path) is not None
    repo = Repository.open(loc.path, create=True)
    if as_json:
        out.echo_json(
            {"path": str(repo.root), "created": not existed, "store_id": repo.config.get("store_id")}
        )
    else:
        click.echo(f"{'existing' if existed else 'created'} kitaru store in {repo.root}")


@click.command(short_help="Where the store is and how it was found.")
@json_option
@pass_state
def path(state: State, as_json: bool) -> None:
    """Print where the store is and how it was found: explicit (--store), env (KITARU_STORE),
    project (a .kitaru/ directory here or above) or user (the per-user data directory).

    Exits with 1 if that location holds something that is not a kitaru store.
    """
    from kitaru_store import config
    from kitaru_store.errors import NotAStoreError, StoreFormatError

    loc = config.locate(state.store)
    problem = None
    try:
        exists = config.read_config(loc.path) is not None
    except (NotAStoreError, StoreFormatError) as exc:
        exists, problem = False, str(exc)
    if as_json:
        out.echo_json(
            {
                "path": str(loc.path),
                "source": loc.source,
                "exists": exists,
                "looked": list(loc.looked),
                **({"problem": problem} if problem else {}),
            }
        )
    else:
        click.echo(str(loc.path))
        lines = [("source", f"{loc.source} ({_SOURCES.get(loc.source, loc.source)})")]
        if problem:
            lines.append(("store", out.style(problem, fg="red")))
        else:
            lines.append(
                ("store", "exists" if exists else "does not exist yet (the first flow run creates it)")
            )
        if loc.looked:
            lines.append(("looked at", "; ".join(loc.looked)))
        out.echo_lines(out.fields(lines))
    if problem:
        raise Failed()


@click.command(short_help="Convert executions of an older manifest format to the current one.")
@json_option
@pass_state
def migrate(state: State, as_json: bool) -> None:
    """Store every execution of manifest format 1 (one whole record) as format 2 (a head and a
    record per entry, checkpoint and wait). Each is converted in a transaction of its own; running
    it again converts nothing. Kitaru reads both formats, and converts an execution when it writes
    to it: this converts the rest at once.

    A damaged execution is left as it is and listed; the command then exits with 1.
    """
    from kitaru_store import manifest_store
    from kitaru_store.errors import CorruptManifestError

    report = manifest_store.migrate(state.repo().kv)
    if as_json:
        out.echo_json(
            {
                "converted": report.converted,
                "current": report.current,
                "damaged": [{"exec_id": e, "problem": p} for e, p in report.damaged],
            }
        )
        if report.damaged:
            raise Failed()
        return
    for exec_id, _ in report.damaged:
        click.echo(f"{out.style('damaged', fg='red')}: execution {exec_id} was left as it is")
    click.echo(
        f"converted {len(report.converted)} execution{'s' if len(report.converted) != 1 else ''}"
        f" to manifest format 2; {report.current} had it already"
    )
    if report.damaged:
        exec_id, problem = report.damaged[0]
        raise CorruptManifestError(
            f"{len(report.damaged)} execution(s) could not be converted; the first: {problem}",
            exec_id=exec_id,
            hint="run `kitaru-store fsck`; the damaged executions were left as they are",
        )


COMMANDS = [init, gc, fsck, stats, path, migrate]
