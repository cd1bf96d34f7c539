"""The ``kitaru-store`` command group and its entry point."""

from __future__ import annotations

import importlib
from typing import Any

import click
from click.core import ParameterSource

from kitaru_store import __version__

from .common import KitaruGroup, State
from .quicklog import COMPLETE_VAR

PROG = "kitaru-store"
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

# Command name -> the module of this package that defines it (in its COMMANDS list), or the full
# path of a kitaru module for the commands that run the SDK. A module is imported when one of its
# commands runs, or when --help or shell completion lists them all, so that `log` does not load
# the value, memory and remote commands.
COMMAND_MODULES = {
    **dict.fromkeys(("log", "show", "ls", "diff"), "history"),
    **dict.fromkeys(("cat", "pin", "unpin", "pins"), "values"),
    **dict.fromkeys(("init", "gc", "fsck", "stats", "path"), "maintenance"),
    "memory": "memory",
    **dict.fromkeys(("remote", "push", "pull", "clone"), "remote"),
    "cancel": "kitaru.cli.lifecycle",
    "rm": "kitaru.cli.lifecycle",
}


class LazyGroup(KitaruGroup):
    """The command group, loading command modules on demand (click's lazy-loading pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMAND_MODULES})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            name = COMMAND_MODULES[cmd_name]  # a full dotted path, or a module of this package
            module = importlib.import_module(name if "." in name else f".{name}", __package__)
            for command in module.COMMANDS:
                self.add_command(command)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, context_settings=CONTEXT)
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


def main(argv: list[str] | None = None) -> Any:
    """The click group's entry point (kitaru_store.cli.main, the console script, calls it for
    every command line that the fast path of ``log`` leaves to click)."""
    return cli.main(args=argv, prog_name=PROG, complete_var=COMPLETE_VAR)
