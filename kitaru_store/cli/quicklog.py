"""The fast path of ``kitaru-store log``: the click command's output, without click or msgspec.

Why: the first page of ``log`` must show in under 100 ms on a store of 100,000 executions. Reading
it takes about a millisecond, but a process that imports click and msgspec spends more than that
starting up on a slow machine (here: ~20 ms for the interpreter, ~35 ms for click, ~45 ms for
msgspec; docs/benchmarks.md). ``log`` is the command people run again and again, so it gets this
path; every other command, and anything unusual about ``log``, goes through click.

How: :func:`kitaru_store.cli.main` hands the arguments to :func:`run` first. It handles

    [--store PATH] log [-n N | --max-count N] [--flow NAME] [--status STATUS] [--oneline]

(each option at most once; a value as the next word, after ``=``, or as in ``-n20``) and returns
None for anything else: --json, --help, a repeated or unknown option, a value click would refuse
or that is empty or starts with "-", shell completion, a stdout click would re-wrap, and any
error before the first line is printed (a missing store, for one). The click command then runs
from the start, with its usual messages and exit codes.

Shared with the click command: the options of ``log`` (log_options.py), the store's location
(config), its LMDB handle (backend), the newest-first walk of the indexes (listing.py), the
summaries' decoder (summary.py) and the text and its colours (text.py). Its own: the parsing of
the command line from that table, and an echo that paints only on a terminal, where click.echo
takes the colour codes off elsewhere (tests/cli/test_cli_quicklog.py compares the two).
"""

from __future__ import annotations

import codecs
import errno
import io
import itertools
import os
import stat
import sys

from kitaru_store import listing, summary
from kitaru_store.errors import KitaruError

from . import text
from .log_options import FLAG, OPTIONS, accepts

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see kitaru_store/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from typing import TextIO

    from kitaru_store.backend import Backend
    from kitaru_store.repository import Repository

    from .text import Summary

COMPLETE_VAR = "_KITARU_STORE_COMPLETE"  # click's shell completion (app.main)


class _Unhandled(Exception):
    """Something this module leaves to click."""


# --- the command line ------------------------------------------------------------------------

_GLOBAL_OPTIONS = {"--store": "store"}  # app.py's group option
# log_options.OPTIONS by spelling: the destination and what the option takes.
_LOG_OPTIONS = {spelling: (dest, takes) for spellings, dest, takes, *_ in OPTIONS for spelling in spellings}
_LOG_FLAGS = {spelling: dest for spelling, (dest, takes) in _LOG_OPTIONS.items() if takes == FLAG}
_LOG_VALUES = {spelling: dest for spelling, (dest, takes) in _LOG_OPTIONS.items() if takes != FLAG}
_SHORT = [spelling for spelling in _LOG_VALUES if len(spelling) == 2]  # -n20 for -n 20


def parse(argv: Sequence[str]) -> dict[str, str] | None:
    """The options of ``[--store PATH] log [OPTIONS]``, by name (a flag's value is ""), or None
    when argv has anything else, or anything click might read differently."""
    found: dict[str, str] = {}
    table, command, i = _GLOBAL_OPTIONS, False, 0
    while i < len(argv):
        word = argv[i]
        i += 1
        if not command and word == "log":
            table, command = _LOG_VALUES, True
            continue
        if command and word in _LOG_FLAGS:
            key, value = _LOG_FLAGS[word], ""
        else:
            name, equals, value = word.partition("=")
            if not (name.startswith("--") and equals):  # --name=value
                if word in table and i < len(argv):  # --name value, -n value
                    name, value = word, argv[i]
                    i += 1
                elif command and word[:2] in _SHORT:  # -nvalue
                    name, value = word[:2], word[2:]
                else:
                    return None
            key = table.get(name, "")
            if not key or not value or value.startswith("-"):
                return None
        if key in found:  # click takes the last one; rare enough to leave to it
            return None
        found[key] = value
    if not command:
        return None
    for dest, takes in _LOG_OPTIONS.values():
        if dest in found and not accepts(takes, found[dest]):
            return None
    return found


def _store_option_ok(value: str) -> bool:
    """Whether click.Path(file_okay=False) takes ``value`` (--store, else KITARU_STORE): a path
    that does not exist, or one that is readable and not a file."""
    try:
        st = os.stat(value)
    except OSError:
        return True
    return not stat.S_ISREG(st.st_mode) and os.access(value, os.R_OK)


def _plain_streams() -> bool:
    """Whether sys.stdout and sys.stderr are UTF-8 text streams, which click.echo writes to as
    they are (it re-wraps others, ASCII ones for one)."""
    for stream in (sys.stdout, sys.stderr):
        if not isinstance(stream, io.TextIOWrapper) or codecs.lookup(stream.encoding).name != "utf-8":
            return False
    return True


# --- echo ------------------------------------------------------------------------------------


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except Exception:
        return False


def painters() -> dict[str, Callable[[str], str]]:
    """The colours of the click command (text.log_painters) where click.echo keeps them: on a
    terminal and without NO_COLOR (output.no_color). Elsewhere click takes them off; this path
    does not paint."""
    return text.log_painters(colour=not os.environ.get("NO_COLOR") and _isatty(sys.stdout))


def echo(message: str, err: bool = False) -> None:
    """click.echo(message, err=err) for a text stream, of text painted by :func:`painters`."""
    stream = sys.stderr if err else sys.stdout
    stream.write(message + "\n")
    stream.flush()


# --- the store -------------------------------------------------------------------------------


def _open(store: str | None) -> Backend:
    """What ``State.repo()`` opens, read-only: a missing store is left to click to report."""
    from kitaru_store import config, layout
    from kitaru_store.backend import open_backend

    loc = config.locate(store)
    if config.read_config(loc.path) is None:
        raise _Unhandled(f"no store at {loc.path}")
    return open_backend(
        layout.db_dir(loc.path),
        readonly=True,
        create=False,
        lock_path=layout.lock_file(loc.path, layout.STORE_LOCK),
    )


def newest_first(
    backend: Backend, *, flow: str | None, status: str | None, expect: int = listing.BATCH
) -> Iterator[Summary]:
    """Repository.iter_executions without msgspec (listing.py's walk, summary.py's decoder)."""
    observe = _Observer(backend)
    for batch in listing.summary_batches(backend, flow=flow, first=expect):
        yield from listing.rows(batch, _decode, flow=flow, status=status, observe=observe)


def _decode(data: bytes) -> Summary:
    return summary.decode(data, summary.PlainSummary)


class _Observer:
    """A ``running`` row as its execution is (kitaru_store.liveness: a crashed run is failed).

    Rare, so the repository (and msgspec) is opened only for the first such row.
    """

    def __init__(self, backend: Backend) -> None:
        self.root = os.path.dirname(backend.path)
        self.repo: Repository | None = None

    def __call__(self, summary: Summary) -> Summary:
        from kitaru_store import liveness

        # No run lock file: no owner on this host (another host's, or an older kitaru's run; an
        # owner whose last write failed keeps its file). A held one: its owner runs it. Only a
        # free one needs its manifest read.
        path = liveness.lock_path(self.root, summary.exec_id)
        if not os.path.exists(path) or liveness.lock_state(path) is not False:
            return summary
        from kitaru_store.errors import ReadOnlyStoreError
        from kitaru_store.remote.hooks import open_repository

        if self.repo is None:  # as the CLI opens it (cli/common.py): a crash is a commit to push
            try:
                self.repo = open_repository(self.root, create=False)
            except ReadOnlyStoreError:
                self.repo = open_repository(self.root, create=False, readonly=True)
        result: Summary = liveness.observe_summary(self.repo, summary)
        return result


# --- the command -----------------------------------------------------------------------------


def run(argv: Sequence[str]) -> int | None:
    """``kitaru-store log`` with these arguments, if they are a form this module handles: its
    exit code. None: click should run the command line instead."""
    try:
        return _run(argv)
    except KeyboardInterrupt:
        # What click.core.Command.main prints: a newline ends the terminal's ^C, then "Aborted!".
        echo("\nAborted!", err=True)
        return 1


def _run(argv: Sequence[str]) -> int | None:
    if os.environ.get(COMPLETE_VAR):
        return None
    opts = parse(argv)
    if opts is None or not _plain_streams():
        return None
    store = opts.get("store")
    if not _store_option_ok(store or os.environ.get("KITARU_STORE") or ""):
        return None
    flow, status = opts.get("flow"), opts.get("status")
    try:
        expect = int(opts["limit"]) + 1 if "limit" in opts else listing.BATCH
        summaries = newest_first(_open(store), flow=flow, status=status, expect=expect)
        if "limit" in opts:
            summaries = itertools.islice(summaries, int(opts["limit"]))
        pages = text.log_pages(
            summaries, oneline="oneline" in opts, filtered=bool(flow or status), **painters()
        )
        first = list(itertools.islice(pages, 1))  # the first page (or the message that there is none)
    except Exception:
        # Nothing is printed yet: the click command runs instead, and reports what it finds.
        return None
    try:
        for message, err in itertools.chain(first, pages):
            echo(message, err)
    except KitaruError as exc:  # as the click command reports it (common.KitaruGroup)
        from .common import CommandError

        CommandError(exc, as_json=False).show()
        return 1
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        # As click does for a closed pipe (`log | head`): exit 1, quietly, even when Python
        # flushes what is left of stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0
