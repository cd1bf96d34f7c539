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

Shared with the click command: the store's location (config), its LMDB handle (backend), the
newest-first walk of the indexes (listing.py) and the text (text.log_pages). Its own, each
compared with the original by tests/cli/test_cli_quicklog.py: the argument parsing, click.style's
colour codes and click.echo's stripping of them off a terminal, and a decoder for the MessagePack
that msgspec writes for an ExecutionSummary (anything else is left to msgspec).
"""

from __future__ import annotations

import codecs
import datetime as dt
import errno
import io
import itertools
import os
import re
import stat
import sys

from kitaru_store import checksum, listing
from kitaru_store.errors import KitaruError
from kitaru_store.names import STATUSES

from . import text

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see kitaru_store/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from typing import TextIO

    from kitaru_store.backend import Backend
    from kitaru_store.repository import Repository

    from .text import Summary

COMPLETE_VAR = "_KITARU_STORE_COMPLETE"  # click's shell completion (app.main)


class _Unhandled(Exception):
    """Something this module leaves to click (or, in :func:`decode_summary`, to msgspec)."""


# --- the command line ------------------------------------------------------------------------

_GLOBAL_OPTIONS = {"--store": "store"}
_LOG_OPTIONS = {"-n": "limit", "--max-count": "limit", "--flow": "flow", "--status": "status"}
_LOG_FLAGS = {"--oneline": "oneline"}


def parse(argv: Sequence[str]) -> dict[str, str] | None:
    """The options of ``[--store PATH] log [OPTIONS]``, by name (a flag's value is ""), or None
    when argv has anything else, or anything click might read differently."""
    found: dict[str, str] = {}
    table, command, i = _GLOBAL_OPTIONS, False, 0
    while i < len(argv):
        word = argv[i]
        i += 1
        if not command and word == "log":
            table, command = _LOG_OPTIONS, True
            continue
        if command and word in _LOG_FLAGS:
            key, value = _LOG_FLAGS[word], ""
        else:
            name, equals, value = word.partition("=")
            if not (name.startswith("--") and equals):  # --name=value
                if word in table and i < len(argv):  # --name value, -n value
                    name, value = word, argv[i]
                    i += 1
                elif command and word.startswith("-n"):  # -nvalue
                    name, value = "-n", word[2:]
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
    limit, status = found.get("limit"), found.get("status")
    if limit is not None and not (limit.isascii() and limit.isdigit()):  # click.IntRange(min=0)
        return None
    if status is not None and status not in STATUSES:  # click.Choice(STATUSES)
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


# --- colour and echo -------------------------------------------------------------------------

# click.style's codes for what `log` paints (test_cli_quicklog.py compares them with click.style).
_SGR = {
    "bold": "\x1b[1m",
    "red": "\x1b[31m",
    "green": "\x1b[32m",
    "yellow": "\x1b[33m",
    "magenta": "\x1b[35m",
    "cyan": "\x1b[36m",
}
_RESET = "\x1b[0m"
# What click.echo removes when the stream is not a terminal (click._compat._ansi_re).
_ANSI = re.compile(r"\033\[[0-?]*[ -/]*[@-~]")


def _paint(code: str) -> Callable[[str], str]:
    before = _SGR[code]
    return lambda s: before + s + _RESET


def _paint_status(status: str) -> str:
    colour = text.STATUS_COLOURS.get(status)
    return _SGR[colour] + status + _RESET if colour else status


def painters() -> dict[str, Callable[[str], str]]:
    """The history.log command's painters: output.styler and output.status_text, without click."""
    if os.environ.get("NO_COLOR"):  # output.no_color
        return {"paint_id": str, "paint_status": str, "paint_header": str}
    return {"paint_id": _paint("yellow"), "paint_status": _paint_status, "paint_header": _paint("bold")}


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except Exception:
        return False


def echo(message: str, err: bool = False) -> None:
    """click.echo(message, err=err) for a text stream: colour codes come off unless on a terminal."""
    stream = sys.stderr if err else sys.stdout
    out = message + "\n"
    if not _isatty(stream):
        out = _ANSI.sub("", out)
    stream.write(out)
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


def newest_first(backend: Backend, *, flow: str | None, status: str | None) -> Iterator[Summary]:
    """Repository.iter_executions, without msgspec for the first batch (listing.py's walk)."""
    decode: Callable[[bytes], Summary] = decode_summary
    observe = _Observer(backend)
    for batch in listing.summary_batches(backend, flow=flow):
        yield from listing.rows(batch, decode, flow=flow, status=status, observe=observe)
        if len(batch) == listing.BATCH:
            # A long listing: msgspec decodes ten times faster than decode_summary, and that pays
            # for its import (~40 ms here) within a few thousand rows.
            from kitaru_store.manifests import decode_summary as decode


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
        from kitaru_store.repository import Repository

        if self.repo is None:
            try:
                self.repo = Repository.open(self.root, create=False)
            except ReadOnlyStoreError:
                self.repo = Repository.open(self.root, create=False, readonly=True)
        result: Summary = liveness.observe_summary(self.repo, summary)
        return result


# --- ExecutionSummary records ----------------------------------------------------------------


class _Summary:
    """A manifests.ExecutionSummary's fields, with the same names and defaults."""

    __slots__ = (
        "artifact_count",
        "checkpoint_count",
        "ended_at",
        "exec_id",
        "flow_name",
        "replay_of",
        "started_at",
        "status",
    )

    exec_id: str
    flow_name: str
    status: str
    started_at: dt.datetime
    ended_at: dt.datetime | None
    artifact_count: int
    checkpoint_count: int
    replay_of: str | None

    def __init__(self) -> None:
        self.ended_at = None
        self.artifact_count = 0
        self.checkpoint_count = 0
        self.replay_of = None


_FIELDS = {
    "exec_id": str,
    "flow_name": str,
    "status": str,
    "started_at": dt.datetime,
    "ended_at": dt.datetime,
    "artifact_count": int,
    "checkpoint_count": int,
    "replay_of": str,
}
_REQUIRED = frozenset(("exec_id", "flow_name", "status", "started_at"))
_NULLABLE = frozenset(("ended_at", "replay_of"))
_INT_SIZES = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def decode_summary(data: bytes) -> Summary:
    """manifests.decode_summary(data), without importing msgspec for what msgspec writes.

    A summary is a MessagePack map of its fields (defaults left out) and, since summaries have
    one, the checksum pair (checksum.py), verified first; msgspec writes text, ints, nil and
    timezone-aware datetimes as timestamps (extension type -1). Anything else (a field this
    version does not know, a naive datetime, which msgspec writes as text, a timestamp finer
    than a microsecond, damaged bytes) goes to msgspec: its result, or its error (always a
    CorruptSummaryError for damage).
    """
    sealed = checksum.present(data)
    if sealed and checksum.checked_tag(data) is None:
        raise listing.damaged("its checksum does not match")
    try:
        return _decode(data, sealed)
    except (_Unhandled, IndexError, ValueError, OverflowError):  # UnicodeDecodeError is a ValueError
        from kitaru_store.manifests import decode_summary as msgspec_decode

        return msgspec_decode(data)


def _decode(data: bytes, sealed: bool) -> _Summary:
    head = data[0]
    if 0x80 <= head <= 0x8F:  # fixmap
        count, pos = head & 0x0F, 1
    elif head == 0xDE:  # map 16
        count, pos = int.from_bytes(data[1:3]), 3
    else:
        raise _Unhandled("not a small map")
    end = len(data)
    if sealed:  # the checksum pair, verified, ends the map
        count, end = count - 1, end - checksum.SIZE
    summary = _Summary()
    seen: set[str] = set()
    for _ in range(count):
        key, pos = _str(data, pos)
        kind = _FIELDS.get(key)
        if kind is None or key in seen:
            raise _Unhandled(f"field {key!r}")
        seen.add(key)
        value: object
        if data[pos] == 0xC0 and key in _NULLABLE:
            value, pos = None, pos + 1
        elif kind is str:
            value, pos = _str(data, pos)
        elif kind is int:
            value, pos = _int(data, pos)
        else:
            value, pos = _timestamp(data, pos)
        setattr(summary, key, value)
    if pos != end or not seen >= _REQUIRED:
        raise _Unhandled("trailing bytes or missing fields")
    return summary


def _str(data: bytes, pos: int) -> tuple[str, int]:
    head = data[pos]
    if 0xA0 <= head <= 0xBF:  # fixstr
        size, pos = head & 0x1F, pos + 1
    elif 0xD9 <= head <= 0xDB:  # str 8, 16, 32
        width = 1 << (head - 0xD9)
        size, pos = int.from_bytes(data[pos + 1 : pos + 1 + width]), pos + 1 + width
    else:
        raise _Unhandled("not text")
    if pos + size > len(data):
        raise _Unhandled("truncated")
    return data[pos : pos + size].decode(), pos + size


def _int(data: bytes, pos: int) -> tuple[int, int]:
    head = data[pos]
    if head <= 0x7F:  # positive fixint
        return head, pos + 1
    if head >= 0xE0:  # negative fixint
        return head - 0x100, pos + 1
    size = _INT_SIZES.get(head)
    if size is None or pos + 1 + size > len(data):
        raise _Unhandled("not an int")
    return int.from_bytes(data[pos + 1 : pos + 1 + size], signed=head >= 0xD0), pos + 1 + size


def _timestamp(data: bytes, pos: int) -> tuple[dt.datetime, int]:
    head = data[pos]
    if head == 0xD6 and data[pos + 1] == 0xFF:  # fixext 4: seconds (32 bits)
        seconds, nanos, end = int.from_bytes(data[pos + 2 : pos + 6]), 0, pos + 6
    elif head == 0xD7 and data[pos + 1] == 0xFF:  # fixext 8: nanoseconds (30 bits), seconds (34)
        word = int.from_bytes(data[pos + 2 : pos + 10])
        seconds, nanos, end = word & ((1 << 34) - 1), word >> 34, pos + 10
    elif head == 0xC7 and data[pos + 1] == 12 and data[pos + 2] == 0xFF:  # ext 8: nanoseconds, seconds
        nanos = int.from_bytes(data[pos + 3 : pos + 7])
        seconds, end = int.from_bytes(data[pos + 7 : pos + 15], signed=True), pos + 15
    else:
        raise _Unhandled("not a timestamp")
    if end > len(data) or nanos >= 1_000_000_000 or nanos % 1000:
        raise _Unhandled("a timestamp msgspec should read")
    return _EPOCH + dt.timedelta(seconds=seconds, microseconds=nanos // 1000), end


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
        summaries = newest_first(_open(store), flow=flow, status=status)
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
