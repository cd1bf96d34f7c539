"""The ``kitaru-store`` command group and its entry point."""

from __future__ import annotations

from typing import Any

import click
from click.core import ParameterSource

from kitaru_store import __version__

from . import history, maintenance, memory, remote, values
from .common import KitaruGroup, State

PROG = "kitaru-store"
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=KitaruGroup, context_settings=CONTEXT)
@click.option(
    "--store",
    metavar="PATH",
    envvar="KITARU_STORE",
    show_envvar=True,
    type=click.Path(file_okay=False, path_type=str),
    help="The store directory. Default: KITARU_STORE, else the nearest .kitaru/ directory,"
    " else the per-user data directory.",
)
@click.version_option(__version__, "-V", "--version", prog_name=PROG)
@click.pass_context
def cli(ctx: click.Context, store: str | None) -> None:
    """Inspect and maintain a kitaru artifact store.

    Commands that read never create a store: a missing one is an error that says where it was
    looked for. Ids may be shortened to a unique prefix of at least 4 characters.

    \b
    Exit codes: 0 success, 1 error or problem found, 2 usage error.
    Output is plain (no colour, no progress bars) when not on a
    terminal; NO_COLOR turns colour off on a terminal too.
    """
    # A KITARU_STORE value reaches kitaru_store.config.locate itself, so that it is reported as
    # found through the environment rather than given explicitly.
    from_env = ctx.get_parameter_source("store") is ParameterSource.ENVIRONMENT
    ctx.obj = State(store=None if from_env else store)


for _command in (
    *history.COMMANDS,
    *values.COMMANDS,
    *maintenance.COMMANDS,
    *memory.COMMANDS,
    *remote.COMMANDS,
):
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point: ``kitaru-store = "kitaru_store.cli:main"``."""
    return cli.main(args=argv, prog_name=PROG, complete_var="_KITARU_STORE_COMPLETE")
