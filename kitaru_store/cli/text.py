"""The text of ``log``, its colours, and the formatting helpers it needs: no click, no store libraries.

``log`` has two ways in: the click command (history.py) and the fast path (quicklog.py), which
does without click and msgspec. Both print exactly what :func:`log_pages` returns, painted by
:func:`log_painters`, so the two cannot drift apart; they differ only in how they echo it (click
takes the colour codes off where there is no terminal; the fast path paints only on one).
output.py re-exports the helpers for the other commands.
"""

from __future__ import annotations

import datetime as dt

from kitaru_store.names import escape, refused_character

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see kitaru_store/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence
    from typing import Any, Protocol

    class Summary(Protocol):
        """What ``log`` reads of an execution: a manifests.ExecutionSummary, or a summary.PlainSummary."""

        @property
        def exec_id(self) -> str: ...
        @property
        def flow_name(self) -> str: ...
        @property
        def status(self) -> str: ...
        @property
        def started_at(self) -> dt.datetime: ...
        @property
        def ended_at(self) -> dt.datetime | None: ...
        @property
        def artifact_count(self) -> int: ...


SHORT = 12  # characters of an id shown where a short id will do
LOG_PAGE = 100  # rows of `log` formatted and printed at a time

STATUS_COLOURS = {
    "completed": "green",
    "cached": "green",
    "failed": "red",
    "cancelled": "yellow",
    "running": "cyan",
    "waiting": "magenta",
    "damaged": "red",  # a row whose summary is damaged (listing.DAMAGED)
}


# The ANSI codes of the colours `log` paints: click.style's (tests/cli/test_cli_quicklog.py
# compares them), so that `log` looks like the commands that colour with click.
SGR = {
    "bold": "\x1b[1m",
    "red": "\x1b[31m",
    "green": "\x1b[32m",
    "yellow": "\x1b[33m",
    "magenta": "\x1b[35m",
    "cyan": "\x1b[36m",
}
RESET = "\x1b[0m"


def painter(code: str) -> Callable[[str], str]:
    before = SGR[code]
    return lambda s: before + s + RESET


def paint_status(status: str) -> str:
    colour = STATUS_COLOURS.get(status)
    return SGR[colour] + status + RESET if colour else status


def log_painters(colour: bool) -> dict[str, Callable[[str], str]]:
    """The ``paint_*`` arguments of :func:`log_pages`: ids yellow, statuses in their colours and
    the header bold; or, without ``colour``, the text as it is."""
    if not colour:
        return {"paint_id": str, "paint_status": str, "paint_header": str}
    return {"paint_id": painter("yellow"), "paint_status": paint_status, "paint_header": painter("bold")}


def printable(text: str) -> str:
    """``text`` with each control character as an escape (``\\u001b``): a status is free text
    (only names are checked when stored), and must neither move a terminal's cursor nor be taken
    apart where click removes colour codes."""
    if refused_character(text) is None:
        return text
    return "".join(escape(c) if refused_character(c) else c for c in text)


def short(hex_id: str | None, length: int = SHORT) -> str:
    return hex_id[:length] if hex_id else "-"


def duration(seconds: float | None) -> str:
    """340ms, 2.3s, 4m05s, 10m, 2h03m, 3d04h, 7d."""
    if seconds is None:
        return "-"
    if seconds < 0:
        return "-" + duration(-seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        big, small, units = whole // 60, whole % 60, "ms"
    elif whole < 86400:
        big, small, units = whole // 3600, whole % 3600 // 60, "hm"
    else:
        big, small, units = whole // 86400, whole % 86400 // 3600, "dh"
    return f"{big}{units[0]}{small:02d}{units[1]}" if small else f"{big}{units[0]}"


def elapsed(start: dt.datetime | None, end: dt.datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


def when(t: dt.datetime | None) -> str:
    """A time in the local zone, ISO-like: 2024-05-01 14:03:22."""
    if t is None:
        return "-"
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def damage_warning(s: Summary) -> str | None:
    """The stderr line for a damaged row (a manifests.DamagedSummary, which has a problem), else None."""
    problem = getattr(s, "problem", None)
    if problem is None:
        return None
    return f"warning: execution {s.exec_id}: {problem}; run `kitaru-store fsck`"


def _warnings(page: Sequence[Summary]) -> Iterator[tuple[str, bool]]:
    lines = [w for w in map(damage_warning, page) if w is not None]
    if lines:
        yield "\n".join(lines), True


def pages(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """``items`` in lists of ``size`` (the last may be shorter; none is empty)."""
    page: list[Any] = []
    for item in items:
        page.append(item)
        if len(page) >= size:
            yield page
            page = []
    if page:
        yield page


class Columns:
    """Left-aligned columns two spaces apart, like output.table, for rows formatted a page at a
    time, so that a long listing starts printing at once.

    Cells are plain text; ``styles`` colours a column's cells (a function of the text, or None),
    after their width is measured, and ``header_style`` the header line. The widths are those of
    the header and the first page, and grow when a later page needs more: every page is aligned,
    and no column moves left.
    """

    def __init__(
        self,
        header: Sequence[str] | None = None,
        styles: Sequence[Callable[[str], str] | None] = (),
        header_style: Callable[[str], str] = str,
    ) -> None:
        self.header = list(header) if header else None
        self.styles = list(styles)
        self.header_style = header_style
        self.widths = [len(h) for h in header] if header else []

    def page(self, rows: Sequence[Sequence[str]]) -> list[str]:
        """The lines of ``rows`` (and of the header, before the first page)."""
        if not rows:
            return []
        widths = self.widths or [0] * len(rows[0])
        self.widths = [
            max(w, *map(len, column)) for w, column in zip(widths, zip(*rows, strict=True), strict=True)
        ]
        lines = []
        if self.header is not None:
            line = "  ".join(h.ljust(w) for h, w in zip(self.header, self.widths, strict=True)).rstrip()
            lines.append(self.header_style(line))
            self.header = None
        styles = self.styles + [None] * (len(self.widths) - len(self.styles))
        padded = list(zip(styles[:-1], self.widths[:-1], strict=True))
        paint_last = styles[-1]
        for row in rows:
            cells = [
                (paint(c) if paint else c) + " " * (w - len(c))
                for c, (paint, w) in zip(row, padded, strict=False)
            ]
            cells.append(paint_last(row[-1]) if paint_last else row[-1])  # the last column is not padded
            lines.append("  ".join(cells).rstrip())
        return lines


def log_pages(
    summaries: Iterable[Summary],
    *,
    oneline: bool,
    filtered: bool,
    paint_id: Callable[[str], str],
    paint_status: Callable[[str], str],
    paint_header: Callable[[str], str],
) -> Iterator[tuple[str, bool]]:
    """What ``log`` prints, a page of LOG_PAGE rows at a time: (text, whether it goes to stderr).

    The columns are short id, flow, status, start time (local), duration and the number of
    artifacts. ``filtered``: a flow or status was asked for (it changes the empty-list message).
    The ``paint_*`` functions colour the id, the status and the header line (or return them as
    they are): the click command and the fast path each bring their own. A damaged row (status
    "damaged") is listed like the others, and a warning naming it follows its page on stderr.
    """
    if oneline:
        for page in pages(summaries, LOG_PAGE):
            lines = [
                f"{paint_id(short(s.exec_id))} {paint_status(printable(s.status))} {s.flow_name}"
                f" {when(s.started_at)}"
                for s in page
            ]
            yield "\n".join(lines), False
            yield from _warnings(page)
        return
    shown = 0
    columns = Columns(
        ["ID", "FLOW", "STATUS", "STARTED", "DURATION", "ARTIFACTS"],
        styles=[paint_id, None, paint_status],
        header_style=paint_header,
    )
    for page in pages(summaries, LOG_PAGE):
        rows = [
            [
                short(s.exec_id),
                s.flow_name,
                printable(s.status),
                when(s.started_at),
                duration(elapsed(s.started_at, s.ended_at)),
                str(s.artifact_count),
            ]
            for s in page
        ]
        yield "\n".join(columns.page(rows)), False
        yield from _warnings(page)
        shown += len(rows)
    if not shown:
        yield "no executions" + (" match" if filtered else " yet"), True
