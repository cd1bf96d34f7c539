"""Presentation for the CLI: sizes, durations, times, hexdumps, JSON, colour and progress bars.

Only click and the standard library at import time: this module is loaded for ``--help``.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import IO, TYPE_CHECKING, Any

import click

from kitaru_store.names import CONTROL_CHARACTERS, escape

# The formatting `log` needs lives in text.py (no click there, for the fast path of `log`).
from .text import SHORT as SHORT
from .text import STATUS_COLOURS as STATUS_COLOURS
from .text import duration as duration
from .text import elapsed as elapsed
from .text import pages as pages
from .text import short as short
from .text import when as when

PROGRESS_MIN = 5000  # show a progress bar only when a phase has at least this many items


# --- terminals and colour --------------------------------------------------------------------


def isatty(stream: IO[Any]) -> bool:
    """Whether ``stream`` is a terminal (tests monkeypatch this to exercise terminal output)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def no_color() -> bool:
    """https://no-color.org: any non-empty NO_COLOR turns colour off."""
    return bool(os.environ.get("NO_COLOR"))


def style(text: str, **kwargs: Any) -> str:
    """click.style, unless NO_COLOR is set. click.echo drops the codes anyway when not on a terminal."""
    if no_color():
        return text
    return click.style(text, **kwargs)


def styler(**kwargs: Any) -> Callable[[str], str]:
    """``lambda text: style(text, **kwargs)`` for many cells: NO_COLOR and click.style are
    consulted once (click.style only wraps the text in escape codes)."""
    if no_color():
        return str
    before, after = click.style("\x00", **kwargs).split("\x00")
    return lambda text: before + text + after


# The characters names may not hold (names.CONTROL_CHARACTERS), but newline and tab.
_UNPRINTABLE = re.compile(f"(?![\n\t])[{CONTROL_CHARACTERS}]")


def terminal_text(text: str) -> str:
    """Free text a store holds (failure messages, tracebacks, wait questions, metadata: perhaps
    pulled from a remote), safe for stdout: on a terminal, each control character but newline
    and tab becomes an escape such as ``\\u009b`` (which JSON reads as the same character), so
    that stored text cannot move the cursor, clear the screen or reorder what is shown. Into a
    pipe, the text as it is."""
    if not isatty(sys.stdout):
        return text
    return _UNPRINTABLE.sub(lambda found: escape(found[0]), text)


def status_text(text: str, width: int = 0) -> str:
    padded = text.ljust(width)
    colour = STATUS_COLOURS.get(text)
    return style(padded, fg=colour) if colour else padded


# --- sizes, durations and times --------------------------------------------------------------


def size(n: int | None) -> str:
    """1023 B, 1.0 KiB, 4.2 MiB, ... (binary units)."""
    if n is None:
        return "-"
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        value /= 1024
        if value < 1024 or unit == "PiB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str) -> float:
    """Seconds in ``0``, ``90``, ``30s``, ``10m``, ``2h``, ``7d``, ``1w``, ``1h30m``; ValueError otherwise."""
    raw = text.strip().lower()
    if not raw:
        raise ValueError("empty duration")
    try:
        value = float(raw)
    except ValueError:
        pass
    else:
        if value < 0 or value != value:
            raise ValueError(f"{text!r} is not a duration")
        return value
    pos = 0
    total = 0.0
    for m in _DURATION_PART.finditer(raw):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(raw):
        raise ValueError(f"{text!r} is not a duration (use forms like 0, 30s, 10m, 2h, 7d or 1h30m)")
    return total


# click.ParamType is generic in click 8.2 and later only: subscripted for the type checker alone.
if TYPE_CHECKING:
    _FloatParam = click.ParamType[float]
    _SampleParam = click.ParamType[int | float]
else:
    _FloatParam = _SampleParam = click.ParamType


class DurationType(_FloatParam):
    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, int | float):
            return float(value)
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class SampleType(_SampleParam):
    """``--sample``: a count (``500``), a fraction (``0.1``) or a percentage (``10%``)."""

    name = "N|FRACTION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int | float:
        if isinstance(value, int | float):
            return value
        text = str(value).strip()
        try:
            if text.endswith("%"):
                pct = float(text[:-1])
                if 0 < pct <= 100:
                    return pct / 100 if pct < 100 else 1.0
            elif re.fullmatch(r"\d+", text):
                return int(text)
            else:
                frac = float(text)
                if 0 < frac < 1:
                    return frac
                if frac == 1:
                    return 1.0
        except ValueError:
            pass
        self.fail(f"{value!r} is not a count, a fraction between 0 and 1, or a percentage", param, ctx)


# --- bytes -----------------------------------------------------------------------------------


def hexdump(data: bytes | bytearray | memoryview, limit: int = 256) -> list[str]:
    """``xxd``-like lines for the first ``limit`` bytes."""
    view = bytes(data[:limit])
    lines = []
    for off in range(0, len(view), 16):
        row = view[off : off + 16]
        hexes = " ".join(f"{b:02x}" for b in row[:8]) + "  " + " ".join(f"{b:02x}" for b in row[8:])
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in row)
        lines.append(f"{off:08x}  {hexes:<48}  |{text}|")
    return lines


# --- tables and JSON -------------------------------------------------------------------------


def table(rows: Sequence[Sequence[str]], *, header: Sequence[str] | None = None) -> list[str]:
    """Left-aligned columns two spaces apart; the last column is not padded."""
    all_rows = [list(header)] if header else []
    all_rows.extend(list(r) for r in rows)
    if not all_rows:
        return []
    widths = [max(len(click.unstyle(r[i])) for r in all_rows) for i in range(len(all_rows[0]))]
    out = []
    for n, row in enumerate(all_rows):
        cells = []
        for i, cell in enumerate(row):
            pad = widths[i] - len(click.unstyle(cell)) if i < len(row) - 1 else 0
            cells.append(cell + " " * pad)
        line = "  ".join(cells).rstrip()
        out.append(style(line, bold=True) if header and n == 0 else line)
    return out


def fields(pairs: Iterable[tuple[str, str]]) -> list[str]:
    """``label:  value`` lines with the values aligned."""
    items = list(pairs)
    width = max((len(k) for k, _ in items), default=0) + 1
    return [f"{(k + ':').ljust(width)}  {v}" for k, v in items]


def jsonable(value: Any) -> Any:
    """Builtins for JSON: Structs, dataclasses, datetimes (ISO 8601), bytes (base64), ...

    Struct fields are all kept, defaults included, so that every object of a kind has the same
    keys (the manifests are stored with their defaults omitted).
    """
    from kitaru_store.nesting import on_fresh_stack
    from kitaru_store.serialization import to_jsonable

    return on_fresh_stack(lambda: to_jsonable(_all_fields(value)))


def _all_fields(value: Any) -> Any:
    fields_ = getattr(type(value), "__struct_fields__", None)
    if fields_ is not None:
        return {f: _all_fields(getattr(value, f)) for f in fields_}
    if isinstance(value, dict):
        return {k: _all_fields(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_all_fields(v) for v in value]
    return value


def dumps(value: Any) -> str:
    """Indented JSON; NaN and infinities become null, so the output is always valid JSON."""
    import json  # here, not at the top: most commands print no JSON

    return terminal_text(json.dumps(_finite(value), indent=2, ensure_ascii=False))


def inline(value: Any) -> str:
    """One-line JSON, for metadata shown inside human output."""
    import json

    return terminal_text(json.dumps(_finite(jsonable(value)), ensure_ascii=False))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def echo_json(value: Any) -> None:
    click.echo(dumps(jsonable(value)))


def echo_lines(lines: Iterable[str]) -> None:
    for line in lines:
        click.echo(line)


def echo_json_list(items: Iterable[Any], page_size: int = 100) -> None:
    """What ``click.echo(dumps(list(items)))`` prints, written a page of items at a time."""
    opened = False
    for page in pages(items, page_size):
        # An item's lines, indented one more level; a newline in JSON text is always structure.
        text = ",\n".join("  " + dumps(item).replace("\n", "\n  ") for item in page)
        click.echo((",\n" if opened else "[\n") + text, nl=False)
        opened = True
    click.echo("\n]" if opened else "[]")


# --- progress --------------------------------------------------------------------------------


class Progress:
    """A ``progress(phase, done, total)`` callback drawing one click progress bar per phase.

    Draws only on a terminal (stderr), only for phases of at least ``minimum`` items, and never
    into a pipe: the library calls it between batches, so it costs nothing when hidden.
    """

    def __init__(self, *, minimum: int | None = None, labels: dict[str, str] | None = None) -> None:
        self.enabled = isatty(sys.stderr)
        self.minimum = PROGRESS_MIN if minimum is None else minimum
        self.labels = labels or {}
        self._phase: str | None = None
        self._bar: Any = None

    def __call__(self, phase: str, done: int, total: int) -> None:
        if not self.enabled or total < self.minimum:
            return
        if phase != self._phase:
            self.close()
            self._phase = phase
            self._bar = click.progressbar(
                length=total, label=self.labels.get(phase, phase), file=sys.stderr, show_pos=True
            )
            self._bar.__enter__()
        self._bar.update(max(0, done - self._bar.pos))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
        self._bar = None
        self._phase = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


HEXDUMP_BYTES = 256


def write_value(value: Any, serializer: str, object_id: str) -> None:
    """Print a loaded value as ``cat`` does: text as it is, bytes raw into a pipe (a size and a
    hexdump on a terminal), anything else as pretty JSON."""
    sys.stdout.flush()
    stdout = sys.stdout.buffer
    tty = isatty(sys.stdout)
    if serializer == "str":
        text: str = value
        stdout.write(text.encode("utf-8", "surrogatepass"))
        if tty and text and not text.endswith("\n"):
            stdout.write(b"\n")
        stdout.flush()
    elif serializer == "bytes":
        raw: bytes = value
        if not tty:
            stdout.write(raw)
            stdout.flush()
            return
        click.echo(f"{len(raw)} bytes ({size(len(raw))}), object {short(object_id)}")
        echo_lines(hexdump(raw, HEXDUMP_BYTES))
        if len(raw) > HEXDUMP_BYTES:
            click.echo(
                f"... {len(raw) - HEXDUMP_BYTES} more bytes; pipe or redirect the output to get them all"
            )
    else:
        click.echo(dumps(jsonable(value)))
