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

# Command name -> the module that defines it (in its COMMANDS list): a plain name is a module of
# this package, a dotted one a module of another package (the recovery commands run flows, so
# they live in kitaru; kitaru_store itself never imports kitaru). A module is imported when one of
# its commands runs, or when --help or shell completion lists this package's commands, so that
# `log` does not load the value, memory and remote commands.
COMMAND_MODULES = {
    **dict.fromkeys(("log", "show", "ls", "diff"), "history"),
    **dict.fromkeys(("cat", "pin", "unpin", "pins"), "values"),
    **dict.fromkeys(("init", "gc", "fsck", "stats", "path", "migrate"), "maintenance"),
    "memory": "memory",
    **dict.fromkeys(("remote", "push", "pull", "clone"), "remote"),
    **dict.fromkeys(("retry", "resume", "input", "abort-wait", "replay"), "kitaru.cli.recovery"),
    **dict.fromkeys(("cancel", "rm"), "kitaru.cli.lifecycle"),
}

# The one-line help of the commands of other packages, for --help and shell completion to list
# them without importing their package (`import kitaru` would about double the time of --help).
# A test keeps these equal to the commands' own short_help.
SUMMARIES = {
    "retry": "Run a failed or cancelled execution again, in place.",
    "resume": "Continue a waiting execution after its wait got input.",
    "input": "Answer a pending wait of an execution.",
    "abort-wait": "Refuse a pending wait: the execution fails.",
    "replay": "Run an execution again as a new one, from a checkpoint on.",
    "cancel": "Cancel a running or waiting execution.",
    "rm": "Delete executions.",
}


class LazyGroup(KitaruGroup):
    """The command group, loading command modules on demand (click's lazy-loading pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMAND_MODULES})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            if "." in COMMAND_MODULES[cmd_name] and cmd_name in SUMMARIES:
                # Listed, not run (resolve_command loads what runs): a stand-in that only tells.
                return click.Command(cmd_name, short_help=SUMMARIES[cmd_name], callback=_listed_only)
            self._load(cmd_name)
        return super().get_command(ctx, cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in self.commands and args[0] in COMMAND_MODULES:
            self._load(args[0])
        return super().resolve_command(ctx, args)

    def _load(self, cmd_name: str) -> None:
        name = COMMAND_MODULES[cmd_name]
        module = importlib.import_module(name if "." in name else f"{__package__}.{name}")
        for command in module.COMMANDS:
            self.add_command(command)


def _listed_only() -> None:
    raise AssertionError("a command listed by its summary was run without being loaded")


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
