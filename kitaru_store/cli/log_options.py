"""The options of ``kitaru-store log``, defined once, without click.

The click command (history.py) is declared from :data:`OPTIONS`, and the fast path (quicklog.py)
parses the command line with the same table and takes a value only where :func:`accepts` says
click would (anything else it leaves to click, which explains the mistake).
"""

from __future__ import annotations

from kitaru_store.names import STATUSES

COUNT, TEXT, STATUS, FLAG = "count", "text", "status", "flag"  # what an option takes

# (spellings, destination, what it takes, metavar, help), in the order --help lists them.
OPTIONS: tuple[tuple[tuple[str, ...], str, str, str | None, str], ...] = (
    (("-n", "--max-count"), "limit", COUNT, "N", "Show at most N executions."),
    (("--flow",), "flow", TEXT, "NAME", "Only executions of this flow."),
    (("--status",), "status", STATUS, None, "Only executions with this status."),
    (("--oneline",), "oneline", FLAG, None, "One compact line per execution, no header."),
)


def accepts(takes: str, value: str) -> bool:
    """Whether click takes ``value`` for an option that takes ``takes``: a COUNT is
    click.IntRange(min=0) (read here as ASCII digits only), a STATUS click.Choice(STATUSES)."""
    if takes == COUNT:
        return value.isascii() and value.isdigit()
    if takes == STATUS:
        return value in STATUSES
    return True
